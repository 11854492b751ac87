"""A charging session as the OCPI Session its eMSP sees: rendered (2.2.1 or 2.1.1, the CPO's
version), stored in `ocpi_session` for GET, and pushed through the outbox, all in the caller's
transaction (app.csms.transactions commits it with the change it reports).

- The first publication of a session is a PUT of the whole object; later ones are PATCHes with
  `kwh`, `status`, `last_updated`, the charging periods closed since (which the receiver appends),
  and `end_date_time` / `authorization_reference` when they appear.
- PATCHes are throttled: one per `push_interval` seconds per session at most, except a change of
  status or a closed period, which go at once. GET always shows the latest state.
- `last_updated` never moves backwards (max(now, previous + 1 µs)).
- A session with no known token (refused, or a 2.0.1 transaction before its token) has no OCPI
  Session: there is no cdr_token to bill, and no eMSP to tell.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.ocpi import push, render
from app.ocpi.transport import ocpi_datetime
from app.store.charging_tables import ChargingSession
from app.store.db import as_utc
from app.store.ocpi_tables import OcpiSession
from app.store.tables import Connector, Cpo, Evse, Location

V211 = "2.1.1"
_ONE_MICROSECOND = timedelta(microseconds=1)


def period_json(period: dict[str, Any]) -> dict[str, Any]:
    """A charging period from app.charging.sessions as OCPI ChargingPeriod JSON (both versions)."""
    return {"start_date_time": ocpi_datetime(period["start_date_time"]), "dimensions": period["dimensions"]}


async def _location_211(session: AsyncSession, cs: ChargingSession) -> dict[str, Any]:
    """2.1.1 Sessions embed the Location with only the session's EVSE and connector."""
    location = (
        await session.execute(select(Location).where(Location.cpo_id == cs.cpo_id, Location.id == cs.location_id))
    ).scalar_one()
    evse = (await session.execute(select(Evse).where(Evse.cpo_id == cs.cpo_id, Evse.uid == cs.evse_uid))).scalar_one()
    connectors = (
        (
            await session.execute(
                select(Connector).where(
                    Connector.cpo_id == cs.cpo_id, Connector.evse_uid == cs.evse_uid, Connector.id == cs.connector_id
                )
            )
        )
        .scalars()
        .all()
    )
    return render.location(
        location.model_dump(), [evse.model_dump()], {evse.uid: [c.model_dump() for c in connectors]}, V211
    )


async def _full(
    session: AsyncSession, cs: ChargingSession, cpo: Cpo, periods: list[dict[str, Any]], stamp: datetime
) -> dict[str, Any]:
    start = cast(datetime, as_utc(cs.start_at))
    if cpo.ocpi_version == V211:
        data: dict[str, Any] = {
            "id": cs.session_id,
            "start_datetime": ocpi_datetime(start),
            "kwh": cs.kwh,
            "auth_id": cs.contract_id,
            "auth_method": "AUTH_REQUEST" if cs.auth_method == "COMMAND" else cs.auth_method,  # no COMMAND in 2.1.1
            "location": await _location_211(session, cs),
            "currency": cs.currency,
            "charging_periods": periods,
            "status": cs.status,
        }
        if cs.end_at is not None:
            data["end_datetime"] = ocpi_datetime(cast(datetime, as_utc(cs.end_at)))
    else:
        data = {
            "country_code": cpo.country_code,
            "party_id": cpo.party_id,
            "id": cs.session_id,
            "start_date_time": ocpi_datetime(start),
            "kwh": cs.kwh,
            "cdr_token": {
                "country_code": cs.token_country_code,
                "party_id": cs.token_party_id,
                "uid": cs.token_uid,
                "type": cs.token_type,
                "contract_id": cs.contract_id,
            },
            "auth_method": cs.auth_method,
            "location_id": cs.location_id,
            "evse_uid": cs.evse_uid,
            "connector_id": cs.connector_id,
            "currency": cs.currency,
            "charging_periods": periods,
            "status": cs.status,
        }
        if cs.authorization_reference:
            data["authorization_reference"] = cs.authorization_reference
        if cs.end_at is not None:
            data["end_date_time"] = ocpi_datetime(cast(datetime, as_utc(cs.end_at)))
    data["last_updated"] = ocpi_datetime(stamp)
    return data


def _changes(old: dict[str, Any], new: dict[str, Any], periods: list[dict[str, Any]]) -> dict[str, Any]:
    """The PATCH body from the stored Session to the new one."""
    changes = {k: v for k, v in new.items() if k not in ("charging_periods", "last_updated") and old.get(k) != v}
    if periods:
        changes["charging_periods"] = periods
    return changes


async def publish(
    session: AsyncSession,
    cs: ChargingSession,
    closed_periods: list[dict[str, Any]],
    now: datetime,
    *,
    push_interval: float,
) -> None:
    """Store the session's OCPI Session and record its push (see the module docstring)."""
    if cs.token_uid is None:
        return
    cpo = await session.get(Cpo, cs.cpo_id)
    if cpo is None:
        return  # torn down meanwhile
    periods = [period_json(p) for p in closed_periods]
    row = (
        await session.execute(
            select(OcpiSession).where(OcpiSession.cpo_id == cs.cpo_id, OcpiSession.id == cs.session_id)
        )
    ).scalar_one_or_none()
    if row is None:
        data = await _full(session, cs, cpo, periods, now)
        session.add(
            OcpiSession(
                cpo_id=cs.cpo_id, id=cs.session_id, status=cs.status, data=data, created_at=now, last_updated=now
            )
        )
        await session.flush()  # the object's row first, then its push (outbox order)
        await push.session_put(session, cs.cpo_id, data)
        cs.pushed_at = now
        return
    stamp = max(now, cast(datetime, as_utc(row.last_updated)) + _ONE_MICROSECOND)
    old: dict[str, Any] = row.data
    fresh = await _full(session, cs, cpo, [], stamp) if cpo.ocpi_version != V211 else _update_211(old, cs, stamp)
    fresh["charging_periods"] = [*old.get("charging_periods", []), *periods]
    changes = _changes(old, fresh, periods)
    if not changes:
        return
    urgent = bool(periods) or "status" in changes or "authorization_reference" in changes
    # kwh and status always travel: a throttled update stored their latest values without a push.
    changes |= {"kwh": fresh["kwh"], "status": fresh["status"]}
    row.data, row.status, row.last_updated = fresh, cs.status, stamp
    await session.flush()
    pushed = as_utc(cs.pushed_at)
    due = pushed is None or (now - pushed).total_seconds() >= push_interval
    if due or urgent:
        await push.session_patch(session, cs.cpo_id, cs.session_id, {**changes, "last_updated": ocpi_datetime(stamp)})
        cs.pushed_at = now


def _update_211(old: dict[str, Any], cs: ChargingSession, stamp: datetime) -> dict[str, Any]:
    """The stored 2.1.1 Session with the fields a transaction changes (its Location stays frozen)."""
    fresh = {**old, "kwh": cs.kwh, "status": cs.status, "last_updated": ocpi_datetime(stamp)}
    if cs.end_at is not None:
        fresh["end_datetime"] = ocpi_datetime(cast(datetime, as_utc(cs.end_at)))
    return fresh
