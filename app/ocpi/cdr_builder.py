"""Turns completed sessions into priced CDRs: every API process runs one `CdrBuilder`.

A session that completes leaves a `cdr_pending` row, written in the transaction that completes it
(app.charging.sessions.on_session_completed). The builder prices the session outside any write
transaction (pricing is CPU; it runs in a thread so the CSMS's event loop keeps answering), then,
in one transaction, deletes the marker, stores the CDR (served by the cdrs Sender module) and
records its POST to the eMSP in the outbox (delivered with retries and backoff for up to
`CPOLAB_OUTBOX_MAX_AGE`). So:

- a crash before that commit leaves the marker: the CDR is built again by any process;
- two processes building the same CDR race on deleting the marker: only the one that deleted it
  writes, so a CDR is stored and pushed exactly once (a redelivery carries the same CDR id);
- a session that cannot be priced (a malformed tariff) keeps its marker, is logged, and is tried
  again after `RETRY_FAILED_S` (a fixed tariff or a new release can still bill it).

The builder wakes when a transaction that recorded an outbox push commits (a completed session
always records its Session PATCH) and polls every `CPOLAB_CDR_POLL_INTERVAL` seconds otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

from sqlalchemy import Table, delete, select

from app.charging.cdrs import price_session
from app.charging.pricing import PricingInputError, TariffError
from app.charging.sessions import samples_of
from app.ocpi import cdr_render, push, render
from app.settings import Settings, get_settings
from app.store import outbox as store
from app.store.charging_tables import CdrPending, ChargingSession
from app.store.db import Database, as_utc, utcnow
from app.store.ocpi_tables import OcpiCdr
from app.store.tables import Connector, Cpo, Evse, Location, Tariff, tariff_ids

log = logging.getLogger(__name__)

PENDING = cast(Table, CdrPending.__table__)
BATCH = 20  # markers read per poll
RETRY_FAILED_S = 60.0
STOP_TIMEOUT_S = 5.0


class CdrBuilder:
    """Builds the CDRs of completed sessions until stopped. `start()` / `stop()` from the API lifespan."""

    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failed: dict[tuple[int, str], float] = {}  # marker → when pricing it last failed

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._runner = self._loop.create_task(self._run(), name="cdr-builder")
        store.subscribe(self.wake)

    def wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def stop(self) -> None:
        """Stop building; a CDR half-built is simply built again later (its marker stays)."""
        store.unsubscribe(self.wake)
        self._stopping = True
        self._wakeup.set()
        if self._runner is not None:
            await asyncio.wait({self._runner}, timeout=STOP_TIMEOUT_S)
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            full = False
            try:
                full = await self.build_pending()
            except Exception as exc:  # the database is down or not migrated: keep polling
                log.warning("building CDRs failed: %s: %s", type(exc).__name__, exc)
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.settings.cdr_poll_interval)

    async def build_pending(self) -> bool:
        """Build the CDRs of up to BATCH pending sessions; True when a full batch was read (more may wait)."""
        async with self.db.session() as session:
            markers = (
                await session.execute(
                    select(PENDING.c.cpo_id, PENDING.c.session_id, PENDING.c.charging_session_id)
                    .order_by(PENDING.c.created_at)
                    .limit(BATCH)
                )
            ).all()
        now = time.monotonic()
        for cpo_id, session_id, charging_session_id in markers:
            if self._stopping:
                break
            failed_at = self._failed.get((cpo_id, session_id))
            if failed_at is not None and now - failed_at < RETRY_FAILED_S:
                continue
            try:
                await build_one(self.db, cpo_id, session_id, charging_session_id)
                self._failed.pop((cpo_id, session_id), None)
            except (TariffError, PricingInputError) as exc:
                self._failed[(cpo_id, session_id)] = now
                log.error("CDR of session %s of CPO %s cannot be priced (retried later): %s", session_id, cpo_id, exc)
            except Exception:  # one bad session must not hold up the others' CDRs
                self._failed[(cpo_id, session_id)] = now
                log.exception("building the CDR of session %s of CPO %s failed (retried later)", session_id, cpo_id)
        return len(markers) == BATCH


async def build_one(db: Database, cpo_id: int, session_id: str, charging_session_id: int) -> bool:
    """Price one completed session and record its CDR and push; False when there was nothing to do
    (another process built it, or the CPO is gone and its marker was dropped)."""
    async with db.session() as session:
        cs = await session.get(ChargingSession, charging_session_id)
        cpo = await session.get(Cpo, cpo_id)
        if cs is None or cpo is None:
            return await _drop_marker(db, cpo_id, session_id)
        location = await _row(session, Location, Location.cpo_id == cpo_id, Location.id == cs.location_id)
        evse = await _row(session, Evse, Evse.cpo_id == cpo_id, Evse.uid == cs.evse_uid)
        connector = await _row(
            session,
            Connector,
            Connector.cpo_id == cpo_id,
            Connector.evse_uid == cs.evse_uid,
            Connector.id == cs.connector_id,
        )
        if location is None or evse is None or connector is None:
            return await _drop_marker(db, cpo_id, session_id)
        tariff = None
        regular = tariff_ids(connector["tariff_id"])[:1]  # sessions with a token pay the REGULAR tariff
        if regular:
            tariff = await _row(session, Tariff, Tariff.cpo_id == cpo_id, Tariff.id == regular[0])
        rows = await samples_of(session, charging_session_id)
    start, end = as_utc(cs.start_at), as_utc(cs.end_at or cs.start_at)
    assert start is not None and end is not None
    try:
        served_tariff = None if tariff is None else render.tariff(tariff, "2.2.1")
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise TariffError(f"tariff {regular[0]!r} is malformed: {type(exc).__name__}: {exc}") from exc
    priced = await asyncio.to_thread(
        price_session,
        served_tariff,
        rows,
        currency=cs.currency,
        start=start,
        end=end,
        time_zone=location["data"].get("time_zone") or "UTC",
    )
    now = utcnow()
    data = cdr_render.cdr(cs, cpo, priced, location=location, evse=evse, connector=connector, tariff=tariff, now=now)
    async with db.session() as session, session.begin():
        taken = await session.execute(
            delete(PENDING).where(PENDING.c.cpo_id == cpo_id, PENDING.c.session_id == session_id)
        )
        if taken.rowcount != 1:
            return False  # another process built it meanwhile
        if await session.get(OcpiCdr, (cpo_id, data["id"])) is not None:
            return False
        session.add(OcpiCdr(cpo_id=cpo_id, id=data["id"], data=data, created_at=now, last_updated=now))
        await session.flush()  # the object's row first, then its push (outbox order)
        await push.cdr(session, cpo_id, data)
    log.info("CDR %s of CPO %s: %s %s", data["id"], cpo_id, data["total_cost"], cs.currency)
    return True


async def _row(session: Any, table: type, *where: Any) -> dict[str, Any] | None:
    row = (await session.execute(select(table).where(*where))).scalar_one_or_none()
    return None if row is None else row.model_dump()


async def _drop_marker(db: Database, cpo_id: int, session_id: str) -> bool:
    async with db.session() as session, session.begin():
        await session.execute(delete(PENDING).where(PENDING.c.cpo_id == cpo_id, PENDING.c.session_id == session_id))
    return False
