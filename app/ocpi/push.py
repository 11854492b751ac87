"""Pushes from a CPO to its registered eMSP(s): EVSE status, sessions, CDRs, tariffs.

Each push goes to the peer's RECEIVER endpoint for the module (skipped when the peer has none), with
Token B and routing headers. Failures are logged in the traffic log ("out", with the error) and not
retried: per the spec's offline rules the receiver catches up by pulling our Sender lists.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.ocpi import client
from app.ocpi.transport import ocpi_datetime
from app.store.db import Database
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import Cpo


@dataclass
class PushOutcome:
    peer_id: int
    url: str | None  # None when the peer has no receiver endpoint for the module
    ok: bool
    http_status: int | None = None
    error: str | None = None
    location: str | None = None  # CDR POST: the Location header the eMSP answered with


def receiver_url(peer: OcpiPeer, module: str) -> str | None:
    """The peer's Receiver endpoint for `module` (2.1.1 endpoints carry no role)."""
    for endpoint in peer.endpoints:
        if endpoint.get("identifier") == module and endpoint.get("role", "RECEIVER") == "RECEIVER":
            return str(endpoint["url"])
    return None


async def _targets(db: Database, cpo_id: int) -> tuple[Cpo | None, list[OcpiPeer]]:
    async with db.session() as session:
        cpo = await session.get(Cpo, cpo_id)
        peers = (
            await session.execute(
                select(OcpiPeer).where(OcpiPeer.cpo_id == cpo_id, OcpiPeer.registered.is_(True))  # type: ignore[attr-defined]
            )
        ).scalars()
        return cpo, list(peers)


async def _push(
    db: Database, cpo_id: int, module: str, method: str, path: tuple[str, ...], body: Any, *, own_path: bool = True
) -> list[PushOutcome]:
    """`path` is appended to the receiver URL after `{country_code}/{party_id}` of this CPO."""
    cpo, peers = await _targets(db, cpo_id)
    if cpo is None:
        return []

    async def one(peer: OcpiPeer) -> PushOutcome:
        assert peer.id is not None
        base = receiver_url(peer, module)
        if base is None:
            return PushOutcome(peer.id, None, ok=False, error=f"peer has no {module} receiver endpoint")
        parts = (cpo.country_code, cpo.party_id, *path) if own_path else path
        url = client.join_url(base, *parts)
        routing = client.Routing(cpo.country_code, cpo.party_id, peer.country_code, peer.party_id)
        result = await client.call(
            db,
            cpo_id=cpo_id,
            method=method,
            url=url,
            token=peer.token_b,
            version=peer.version,
            module=module,
            body=body,
            routing=routing,
        )
        location = result.headers.get("location") if result.headers is not None else None
        return PushOutcome(peer.id, url, result.ok, result.http_status, result.error, location)

    return list(await asyncio.gather(*(one(p) for p in peers)))


async def push_evse_status(
    db: Database, cpo_id: int, location_id: str, evse_uid: str, status: str, last_updated: Any
) -> list[PushOutcome]:
    body = {"status": status, "last_updated": _ts(last_updated)}
    return await _push(db, cpo_id, "locations", "PATCH", (location_id, evse_uid), body)


async def push_session(db: Database, cpo_id: int, session: dict[str, Any]) -> list[PushOutcome]:
    return await _push(db, cpo_id, "sessions", "PUT", (str(session["id"]),), session)


async def push_session_patch(db: Database, cpo_id: int, session_id: str, changes: dict[str, Any]) -> list[PushOutcome]:
    """PATCH must carry last_updated; `charging_periods` in it are appended by the receiver."""
    if "last_updated" not in changes:
        raise ValueError("a Session PATCH must include last_updated")
    return await _push(db, cpo_id, "sessions", "PATCH", (session_id,), changes)


async def push_cdr(db: Database, cpo_id: int, cdr: dict[str, Any]) -> list[PushOutcome]:
    # CDRs are POSTed to the bare endpoint; the eMSP answers with a Location header.
    return await _push(db, cpo_id, "cdrs", "POST", (), cdr, own_path=False)


async def push_tariff(db: Database, cpo_id: int, tariff: dict[str, Any]) -> list[PushOutcome]:
    return await _push(db, cpo_id, "tariffs", "PUT", (str(tariff["id"]),), tariff)


async def push_tariff_deleted(db: Database, cpo_id: int, tariff_id: str) -> list[PushOutcome]:
    return await _push(db, cpo_id, "tariffs", "DELETE", (tariff_id,), None)


def _ts(value: Any) -> Any:
    return ocpi_datetime(value) if hasattr(value, "strftime") else value
