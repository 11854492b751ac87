"""A CPO's chargers on the control plane (CONTRACT §3): list, detail with the CSMS connection and
credentials, OCPP log."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any
from urllib.parse import quote

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.control.common import cpo_call, database, owned_cpo
from app.control.schemas import (
    Charger,
    ChargerConnection,
    ChargerDetail,
    ChargerList,
    ChargerState,
    OcppLogEntry,
    OcppLogPage,
)
from app.security.passwords import charger_password
from app.store.db import as_utc
from app.store.tables import Charger as ChargerRow
from app.store.tables import ChargerRoute, OcppLogRow
from app.web.auth import READ, WRITE
from app.web.http import enum_query, model_response, page_query, unprocessable
from app.web.limits import json_too_deep
from app.web.urls import base_url

MAX_IDENTITY = 255  # longer than any identity we generate (OCPP 2.0.1 allows 48): unknown without a query
PAYLOAD_MAX_DEPTH = 32  # a stored frame nested deeper is shown as text (json.loads would recurse on it)
SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

# What a Charger answer needs: never the password hash or the connection bookkeeping.
_COLUMNS = (
    ChargerRow.identity,
    ChargerRow.location_id,
    ChargerRow.vendor,
    ChargerRow.model,
    ChargerRow.ocpp_version,
    ChargerRow.status,
    ChargerRow.last_boot_at,
    ChargerRow.last_seen_at,
)


async def list_chargers(request: Request) -> Response:
    """The CPO's chargers by identity (stable pages), optionally of one `state`."""
    call = cpo_call(request, READ)
    page, limit, problems = page_query(request)
    state = enum_query(request, "state", ChargerState, problems)
    if problems:
        return unprocessable(problems)
    await owned_cpo(request, call.principal, call.cpo_id)
    conditions: list[ColumnElement[bool]] = [ChargerRow.cpo_id == call.cpo_id]  # type: ignore[list-item]
    if state is not None:
        conditions.append(ChargerRow.status == state)  # type: ignore[arg-type]
    async with database(request).session() as session:
        total = (await session.execute(select(func.count()).select_from(ChargerRow).where(*conditions))).scalar_one()
        rows = (
            await session.execute(
                select(*_COLUMNS)
                .where(*conditions)
                .order_by(ChargerRow.identity)
                .offset((page - 1) * limit)
                .limit(limit)
            )
        ).all()
        evses = await _evse_uids(session, call.cpo_id, [row.identity for row in rows])
    data = [_charger(row, evses[row.identity]) for row in rows]
    return model_response(ChargerList(data=data, total=total, page=page, limit=limit))


async def get_charger(request: Request) -> Response:
    """One charger and how to connect to the CSMS as it; the password only for a `cpos:write` token."""
    call = cpo_call(request, READ)
    identity = _identity(request)
    await owned_cpo(request, call.principal, call.cpo_id)
    async with database(request).session() as session:
        row = await _charger_row(session, call.cpo_id, identity)
        evses = await _evse_uids(session, call.cpo_id, [identity])
    password = None
    if WRITE in call.principal.scopes:
        password = charger_password(request.app.state.settings.charger_key(), call.cpo_id, identity)
    connection = ChargerConnection(
        url=csms_url(request, call.cpo_id, identity),
        subprotocol=SUBPROTOCOLS[row.ocpp_version],  # type: ignore[arg-type]
        username=identity,
        password=password,
    )
    return model_response(ChargerDetail(**_charger(row, evses[identity]).model_dump(), connection=connection))


async def get_ocpp_log(request: Request) -> Response:
    """The charger's OCPP frames, newest first (like the OCPI traffic log)."""
    call = cpo_call(request, READ)
    page, limit, problems = page_query(request)
    if problems:
        return unprocessable(problems)
    identity = _identity(request)
    await owned_cpo(request, call.principal, call.cpo_id)
    where = (OcppLogRow.cpo_id == call.cpo_id, OcppLogRow.identity == identity)
    async with database(request).session() as session:
        await _charger_row(session, call.cpo_id, identity)
        total = (await session.execute(select(func.count()).select_from(OcppLogRow).where(*where))).scalar_one()
        rows = (
            await session.execute(
                select(OcppLogRow)
                .where(*where)
                # By time: frames of one charger may be buffered by several API processes over reconnects.
                .order_by(OcppLogRow.timestamp.desc(), OcppLogRow.id.desc())  # type: ignore[attr-defined,union-attr]
                .offset((page - 1) * limit)
                .limit(limit)
            )
        ).scalars()
        data = [_log_entry(row) for row in rows]
    return model_response(OcppLogPage(data=data, total=total, page=page, limit=limit))


def csms_root(request: Request, cpo_id: int) -> str:
    """The CPO's CSMS endpoint under the API's public base (http → ws, https → wss); chargers append
    their identity."""
    scheme, _, rest = base_url(request).partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ocpp/{cpo_id}"


def csms_url(request: Request, cpo_id: int, identity: str) -> str:
    return f"{csms_root(request, cpo_id)}/{quote(identity, safe='')}"


def _identity(request: Request) -> str:
    """The path's charger identity. One we could never have stored is unknown (404) without a query:
    Postgres refuses NUL characters in text, and nothing needs a kilobyte-long key lookup."""
    identity: str = request.path_params["identity"]
    if len(identity) > MAX_IDENTITY or not identity.isprintable():
        raise HTTPException(404, "charger not found")
    return identity


async def _charger_row(session: AsyncSession, cpo_id: int, identity: str) -> Any:
    row = (
        await session.execute(select(*_COLUMNS).where(ChargerRow.cpo_id == cpo_id, ChargerRow.identity == identity))
    ).one_or_none()
    if row is None:
        raise HTTPException(404, f"charger {identity!r} not found in CPO {cpo_id}")
    return row


async def _evse_uids(session: AsyncSession, cpo_id: int, identities: list[str]) -> dict[str, list[str]]:
    """Each charger's EVSE uids in OCPP EVSE order (the charger_route primary key order)."""
    out: dict[str, list[str]] = defaultdict(list)
    if not identities:
        return out
    routes = await session.execute(
        select(ChargerRoute.identity, ChargerRoute.evse_uid)
        .where(ChargerRoute.cpo_id == cpo_id, ChargerRoute.identity.in_(identities))  # type: ignore[attr-defined]
        .order_by(ChargerRoute.identity, ChargerRoute.ocpp_evse_id)
    )
    for identity, evse_uid in routes:
        out[identity].append(evse_uid)
    return out


def _charger(row: Any, evse_uids: list[str]) -> Charger:
    return Charger(
        identity=row.identity,
        location_id=row.location_id,
        evse_uids=evse_uids,
        vendor=row.vendor,
        model=row.model,
        ocpp_version=row.ocpp_version,
        state=row.status,
        last_boot_at=as_utc(row.last_boot_at),
        last_seen_at=as_utc(row.last_seen_at),
    )


def _log_entry(row: OcppLogRow) -> OcppLogEntry:
    assert row.id is not None
    return OcppLogEntry(
        id=row.id,
        timestamp=as_utc(row.timestamp),  # type: ignore[arg-type]
        direction=row.direction,  # type: ignore[arg-type]
        message_type=row.message_type,
        message_id=row.message_id,
        action=row.action,
        payload=frame_payload(row.payload),
    )


def frame_payload(text: str) -> Any:
    """The stored frame as JSON when it parses (bounded nesting), else its text (e.g. cut by the writer)."""
    if json_too_deep(text.encode(), PAYLOAD_MAX_DEPTH):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
