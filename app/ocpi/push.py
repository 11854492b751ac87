"""Pushes from a CPO to its registered eMSP(s): EVSE status, sessions, CDRs, tariffs.

Each helper records the push in the OCPI outbox within the caller's transaction (commit it with the
change it reports); app.ocpi.outbox delivers it to the peer's RECEIVER endpoint for the module, with
Token B and routing headers, in order per object, retried until the eMSP accepts it, a permanent
failure drops it (the eMSP catches up by pulling our Sender lists) or it is too old.

URLs: PUT, PATCH and DELETE address an object under this CPO's `{country_code}/{party_id}/…`;
POST creates one at the bare endpoint (CDRs; the eMSP answers with a Location header).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.network.evse_state import status_push
from app.ocpi import client
from app.ocpi.transport import ocpi_datetime
from app.store.ocpi_tables import OcpiPeer
from app.store.outbox import Push, enqueue, enqueue_many


def receiver_url(peer: OcpiPeer, module: str) -> str | None:
    """The peer's Receiver endpoint for `module` (2.1.1 endpoints carry no role)."""
    for endpoint in peer.endpoints:
        if endpoint.get("identifier") == module and endpoint.get("role", "RECEIVER") == "RECEIVER":
            return str(endpoint["url"])
    return None


def target_url(base: str, country_code: str, party_id: str, method: str, path: list[str]) -> str:
    """Where a push of `path` goes on a receiver endpoint `base` (see the module docstring)."""
    parts = path if method == "POST" else [country_code, party_id, *path]
    return client.join_url(base, *parts)


async def evse_status(
    session: AsyncSession, cpo_id: int, location_id: str, evse_uid: str, status: str, last_updated: Any
) -> int:
    """The EVSE status PATCH the CSMS's EVSE writer records (one definition: app.network.evse_state)."""
    return await enqueue_many(session, [status_push(cpo_id, location_id, evse_uid, status, _ts(last_updated))])


async def session_put(session: AsyncSession, cpo_id: int, ocpi_session: dict[str, Any]) -> int:
    session_id = str(ocpi_session["id"])
    return await enqueue(
        session,
        cpo_id=cpo_id,
        object_key=f"session:{session_id}",
        module="sessions",
        method="PUT",
        path=[session_id],
        body=ocpi_session,
        coalescible=True,  # a whole Session: a newer one supersedes it
    )


async def session_patch(
    session: AsyncSession, cpo_id: int, session_id: str, changes: dict[str, Any], *, now: Any = None
) -> int:
    """PATCH must carry last_updated. The receiver appends the `charging_periods` of a PATCH, so a
    PATCH still waiting for the peer absorbs a newer one by merging (newer fields win, periods
    concatenated in order) instead of being replaced: a peer that was down gets one PATCH, not one
    per update, and loses no period."""
    if "last_updated" not in changes:
        raise ValueError("a Session PATCH must include last_updated")
    patch = Push(
        cpo_id=cpo_id,
        object_key=f"session:{session_id}",
        module="sessions",
        method="PATCH",
        path=[session_id],
        body=changes,
        coalescible=True,
        appends=("charging_periods",),
    )
    return await enqueue_many(session, [patch], now=now)


async def cdr(session: AsyncSession, cpo_id: int, ocpi_cdr: dict[str, Any]) -> int:
    return await enqueue(
        session,
        cpo_id=cpo_id,
        object_key=f"cdr:{ocpi_cdr['id']}",
        module="cdrs",
        method="POST",
        path=[],
        body=ocpi_cdr,
    )


async def tariff_put(session: AsyncSession, cpo_id: int, tariff: dict[str, Any]) -> int:
    tariff_id = str(tariff["id"])
    return await enqueue(
        session,
        cpo_id=cpo_id,
        object_key=f"tariff:{tariff_id}",
        module="tariffs",
        method="PUT",
        path=[tariff_id],
        body=tariff,
        coalescible=True,
    )


async def tariff_deleted(session: AsyncSession, cpo_id: int, tariff_id: str) -> int:
    return await enqueue(
        session,
        cpo_id=cpo_id,
        object_key=f"tariff:{tariff_id}",
        module="tariffs",
        method="DELETE",
        path=[tariff_id],
        body=None,
    )


def _ts(value: Any) -> Any:
    return ocpi_datetime(value) if hasattr(value, "strftime") else value
