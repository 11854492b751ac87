"""Charging sessions: the domain side of an OCPP transaction (no protocol code).

A `ChargingSession` row is created at a transaction's start (1.6 StartTransaction, 2.0.1
TransactionEvent), follows its meter readings and ends at its stop. Everything here runs in the
caller's database transaction; the caller (app.csms.transactions) publishes the OCPI Session in
the same transaction (app.ocpi.session_push) and, at the end, calls `on_session_completed`.

- `kwh` = (latest energy register − the register at the start) / 1000, and never decreases; a reading
  older than the newest one applied is late (a resend) and changes nothing.
- Charging periods (what the eMSP sees in the Session, and what a CDR is priced from): a new period
  starts at every change between charging and not charging (power > 0, or the 2.0.1 chargingState)
  and after `PERIOD_MAX` (OCPI's guidance: neither one per minute nor one per half hour). Each
  closed period carries ENERGY (kWh), TIME or PARKING_TIME (hours) and MAX_POWER (kW) when known.
- Meter samples (`charging_meter_sample`) keep what pricing needs; past `MAX_SAMPLES` per session
  every second sample is dropped (the first and the newest stay), so a session of any length costs
  a bounded number of rows while keeping its shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.charging_tables import CdrPending, ChargingSession, MeterSample, RemoteStart, TransactionCounter
from app.store.db import as_utc

PENDING, ACTIVE, COMPLETED, INVALID = "PENDING", "ACTIVE", "COMPLETED", "INVALID"
PERIOD_MAX = timedelta(minutes=15)
MAX_SAMPLES = 2000
CHARGING_POWER_W = 1.0  # below this the car is not drawing
_SESSION_IDS = uuid.UUID("0b5d7c2e-4f0a-4d8e-9a51-3c6f8e2d1a47")  # namespace of 2.0.1 Session ids

SAMPLES = cast(Table, MeterSample.__table__)
COUNTER = cast(Table, TransactionCounter.__table__)


@dataclass(frozen=True)
class Reading:
    """One meter reading, in Wh / W / A / V / %, whatever units the charger used."""

    at: datetime
    register_wh: float | None = None  # Energy.Active.Import.Register
    power_w: float | None = None
    current_a: float | None = None
    voltage_v: float | None = None
    soc_percent: float | None = None


def session_id_201(cpo_id: int, identity: str, transaction_id: str) -> str:
    """The OCPI Session id of a 2.0.1 transaction (the station's id is only unique per station and
    may be 36 characters already)."""
    return str(uuid.uuid5(_SESSION_IDS, f"{cpo_id}/{identity}/{transaction_id}"))


async def next_transaction_id(session: AsyncSession, cpo_id: int) -> int:
    """A new OCPP 1.6 transactionId for the CPO (≥ 1), unique across API processes: the counter row's
    UPDATE holds its lock until the caller commits."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    await session.execute(dialect.insert(COUNTER).on_conflict_do_nothing(), {"cpo_id": cpo_id, "last_id": 0})
    bump = update(COUNTER).where(COUNTER.c.cpo_id == cpo_id).values(last_id=COUNTER.c.last_id + 1)
    return int((await session.execute(bump.returning(COUNTER.c.last_id))).scalar_one())


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 6)


def _period(cs: ChargingSession, end: datetime, energy_wh: float) -> dict[str, Any] | None:
    """The open period of `cs` closed at `end` (None when it lasted no time and moved no energy)."""
    start = as_utc(cs.period_start_at)
    assert start is not None
    duration = end - start
    energy = max(0.0, energy_wh - cs.period_start_wh)
    if duration <= timedelta(0) and energy == 0:
        return None
    dimensions: list[dict[str, Any]] = [{"type": "ENERGY", "volume": round(energy / 1000, 6)}]
    dimensions.append({"type": "TIME" if cs.period_charging else "PARKING_TIME", "volume": _hours(duration)})
    if cs.period_max_power_w > 0:
        dimensions.append({"type": "MAX_POWER", "volume": round(cs.period_max_power_w / 1000, 3)})
    return {"start_date_time": start, "dimensions": dimensions}


def _open_period(cs: ChargingSession, at: datetime, energy_wh: float, charging: bool) -> None:
    cs.period_start_at, cs.period_start_wh, cs.period_charging, cs.period_max_power_w = at, energy_wh, charging, 0.0


def energy_wh(cs: ChargingSession) -> float:
    if cs.meter_start_wh is None or cs.meter_last_wh is None:
        return 0.0
    return max(0.0, cs.meter_last_wh - cs.meter_start_wh)


def apply_readings(
    cs: ChargingSession, readings: Sequence[Reading], charging_state: bool | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Apply readings in time order; returns (charging periods closed, sample rows to store)."""
    closed: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for reading in sorted(readings, key=lambda r: r.at):
        at = cast(datetime, as_utc(reading.at))
        last_at = as_utc(cs.meter_last_at)
        if last_at is not None and at <= last_at:
            continue  # late or repeated: already applied
        before = energy_wh(cs)
        if reading.register_wh is not None:
            if cs.meter_start_wh is None:
                cs.meter_start_wh = reading.register_wh
            cs.meter_last_wh = max(cs.meter_last_wh or reading.register_wh, reading.register_wh)
        now_wh = energy_wh(cs)
        power = reading.power_w
        if power is None and last_at is not None and reading.register_wh is not None:
            power = max(0.0, (now_wh - before) * 3600 / max((at - last_at).total_seconds(), 1e-3))
        charging = charging_state if charging_state is not None else (power or 0.0) >= CHARGING_POWER_W
        known = charging_state is not None or power is not None
        if cs.period_start_at is None and (known or at > cast(datetime, as_utc(cs.start_at))):
            # The first period starts with the session, in the first state a reading shows.
            _open_period(cs, cast(datetime, as_utc(cs.start_at)), 0.0, charging)
        start = as_utc(cs.period_start_at)
        if start is not None and (charging != cs.period_charging or at - start >= PERIOD_MAX):
            period = _period(cs, at, now_wh)
            if period is not None:
                closed.append(period)
            _open_period(cs, at, now_wh, charging)
        cs.period_max_power_w = max(cs.period_max_power_w, power or 0.0)
        cs.meter_last_at = at
        cs.power_w = power
        cs.kwh = max(cs.kwh, round(now_wh / 1000, 6))
        samples.append(
            {
                "cpo_id": cs.cpo_id,
                "charging_session_id": cs.id,
                "at": at,
                "energy_wh": now_wh,
                "power_w": power or 0.0,
                "current_a": reading.current_a,
                "voltage_v": reading.voltage_v,
                "soc_percent": reading.soc_percent,
            }
        )
    return closed, samples


def finish(
    cs: ChargingSession, end_at: datetime, meter_stop_wh: float | None, reason: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """End the transaction at `end_at` (the final register, if any, applied first); returns the
    periods closed and the sample rows to store, as `apply_readings`. ACTIVE becomes COMPLETED; a
    session that never became ACTIVE (refused, or a 2.0.1 transaction that never got a token) ends
    INVALID: nothing to bill."""
    end_at = cast(datetime, as_utc(end_at))
    closed: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    if meter_stop_wh is not None:
        closed, samples = apply_readings(cs, [Reading(end_at, register_wh=meter_stop_wh)])
    if cs.period_start_at is None and end_at > cast(datetime, as_utc(cs.start_at)) and cs.status == ACTIVE:
        _open_period(cs, cast(datetime, as_utc(cs.start_at)), 0.0, energy_wh(cs) > 0)  # no reading told
    if cs.period_start_at is not None:
        period = _period(cs, max(end_at, cast(datetime, as_utc(cs.period_start_at))), energy_wh(cs))
        if period is not None:
            closed.append(period)
        cs.period_start_at = None
    cs.meter_stop_wh = meter_stop_wh if meter_stop_wh is not None else cs.meter_last_wh
    cs.end_at = end_at
    cs.stop_reason = reason
    cs.status = COMPLETED if cs.status == ACTIVE else INVALID
    return closed, samples


async def record_samples(session: AsyncSession, cs: ChargingSession, samples: list[dict[str, Any]]) -> None:
    """Store samples (a repeated timestamp is ignored), thinning the session's samples past the cap."""
    if not samples or cs.id is None:
        return
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(SAMPLES).on_conflict_do_nothing()
    for row in samples:
        row["charging_session_id"] = cs.id
        cs.sample_count += (await session.execute(insert, row)).rowcount or 0
    if cs.sample_count <= MAX_SAMPLES:
        return
    ids = (
        await session.execute(select(SAMPLES.c.id).where(SAMPLES.c.charging_session_id == cs.id).order_by(SAMPLES.c.at))
    ).scalars()
    ordered = list(ids)
    dropped = ordered[1:-1:2]
    await session.execute(delete(SAMPLES).where(SAMPLES.c.id.in_(dropped)))
    cs.sample_count = len(ordered) - len(dropped)


async def samples_of(session: AsyncSession, charging_session_id: int) -> list[MeterSample]:
    """A session's samples in time order (what pricing reads)."""
    query = select(MeterSample).where(MeterSample.charging_session_id == charging_session_id).order_by(MeterSample.at)
    return list((await session.execute(query)).scalars())


# ---- remote starts (START_SESSION) -------------------------------------------------------------------


async def expect_remote_start(session: AsyncSession, start: RemoteStart) -> None:
    """Record a START_SESSION the charger accepted (its id_tag as sent over OCPP, the token, the
    authorization_reference, 2.0.1 remoteStartId, an expiry): the transaction it starts takes it."""
    session.add(start)
    await session.flush()


async def take_remote_start(
    session: AsyncSession,
    cs: ChargingSession,
    now: datetime,
) -> RemoteStart | None:
    """The pending remote start this new transaction answers (2.0.1: by remoteStartId; else the
    oldest unexpired one of the charger for the same idTag and EVSE/connector), marked used."""
    query = select(RemoteStart).where(
        RemoteStart.cpo_id == cs.cpo_id,
        RemoteStart.identity == cs.identity,
        RemoteStart.used_by.is_(None),  # type: ignore[union-attr]
        RemoteStart.expires_at > now,
    )
    if cs.remote_start_id is not None:
        query = query.where(RemoteStart.remote_start_id == cs.remote_start_id)
    elif cs.id_tag is not None:
        query = query.where(RemoteStart.id_tag == cs.id_tag)
    else:
        return None
    for start in (await session.execute(query.order_by(RemoteStart.id))).scalars():
        if start.ocpp_evse_id not in (None, cs.ocpp_evse_id) and cs.ocpp_version != "1.6":
            continue
        if start.ocpp_connector_id not in (None, cs.ocpp_connector_id) and cs.ocpp_version == "1.6":
            continue
        start.used_by = cs.id
        return start
    return None


# ---- the end of a session ----------------------------------------------------------------------------


async def on_session_completed(session: AsyncSession, cs: ChargingSession, now: datetime) -> None:
    """Hook called once per session, in the database transaction that makes it COMPLETED (and
    commits its final meter samples and OCPI Session push).

    Contract: it records a `cdr_pending` row (cpo_id, session_id, charging_session_id) in that same
    transaction and returns at once: nothing outbound runs here, and a crash after the commit cannot
    lose the CDR, because the row stays until a consumer has built and recorded it. The consumer
    (pricing → CDR, owned by the lead) reads the `charging_session` row (token, auth method,
    authorization_reference, location/EVSE/connector, start/end, currency) and its samples
    (`samples_of`), and deletes the `cdr_pending` row in the transaction that records the CDR and its
    outbox push. Idempotent: calling it twice for a session records one row. INVALID sessions (not
    billable) never reach it.
    """
    assert cs.id is not None and cs.status == COMPLETED
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    marker = {"cpo_id": cs.cpo_id, "session_id": cs.session_id, "charging_session_id": cs.id, "created_at": now}
    await session.execute(dialect.insert(CdrPending.__table__).on_conflict_do_nothing(), marker)  # type: ignore[arg-type]
