"""Delivery of the OCPI outbox (app.store.outbox records pushes, this sends them) from every API
process: in order per object, retried with backoff, through the one outbound client
(app.ocpi.client: egress policy, deadline, size limits, traffic log, per-CPO slots).

- Eligible: the oldest row of its (CPO, peer, object) stream, due, and not held by a live lease.
  A dispatcher claims a batch with one conditional UPDATE that the database re-checks (SQLite has
  one writer at a time; on Postgres READ COMMITTED a concurrent claim re-reads the row and finds
  the lease), so one process sends a row. The lease outlasts the client's deadline: it lapses only
  when its holder died (or hung), and the row is claimable again.
- Every write that ends a delivery is fenced by the lease it claimed with, so a holder whose lease
  lapsed, or whose row got a newer coalesced body meanwhile, never deletes what it did not send.
- Delivered (HTTP 2xx, OCPI 1xxx): the row is deleted. Transient failure: attempts + 1, next try
  after an exponential backoff with jitter, lease released. Permanent failure (HTTP 3xx, 4xx other
  than 408/429, OCPI 2xxx, a URL the egress policy refuses, no receiver endpoint, peer unregistered
  or gone, CPO gone) or still failing after `outbox_max_age`: dropped with a log line. The eMSP
  catches up by pulling (the spec's offline rules); the traffic log has every exchange.
- Fair and bounded: at most `outbox_concurrency` rows in flight per process and at most
  `outbound_per_cpo` of one CPO, so a CPO with a slow or hostile peer only delays itself.
- Writers never wait: the dispatcher polls every `outbox_poll_interval`, and a commit in this
  process that enqueued wakes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, cast

from sqlalchemy import Table, delete, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from app.observability.metrics import OCPI_OUTBOX_PUSHES, OCPI_OUTBOX_ROWS, outcome_of
from app.ocpi import client, push
from app.ocpi.body import excerpt
from app.settings import Settings, get_settings
from app.store import outbox as store
from app.store.db import Database, as_utc, utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import Cpo, OutboxRow

log = logging.getLogger("cpolab.ocpi.outbox")

OUTBOX = cast(Table, OutboxRow.__table__)
_OLDER = aliased(OUTBOX)
CANDIDATES_PER_SLOT = 4  # rows read per free slot: room to skip CPOs at their in-flight cap
DEPTH_INTERVAL_S = 10.0  # how often a process counts the outbox for the depth gauge
STOP_TIMEOUT_S = 2.0  # for each database step of a shutdown: a hung database must not hang it
FAILURE_LOG_INTERVAL_S = 60.0  # a database that keeps failing is logged once a minute, not per poll
MAX_ERROR = 500
_CORRELATION = uuid.UUID("6f1f5c1e-8a43-4c36-9b8e-0c2f4b8a7d10")  # namespace: one X-Correlation-ID per row


@dataclass(frozen=True)
class OutboxConfig:
    poll_interval: float
    concurrency: int
    per_cpo: int
    lease: timedelta
    max_age: timedelta
    retry_base: float = 1.0  # seconds before the first retry, doubled per attempt
    retry_cap: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxConfig:
        return cls(
            poll_interval=settings.outbox_poll_interval,
            concurrency=settings.outbox_concurrency,
            per_cpo=settings.outbound_per_cpo,
            # Twice the call's whole deadline plus a second for the writes around it.
            lease=timedelta(seconds=2 * settings.outbound_timeout + 1),
            max_age=timedelta(seconds=settings.outbox_max_age),
        )

    def backoff(self, attempts: int) -> timedelta:
        """Delay after the `attempts`-th failure: base · 2^(n-1), capped, times a jitter of 0.5–1
        (peers that failed together do not all come back at once)."""
        delay = min(self.retry_cap, self.retry_base * 2 ** min(attempts - 1, 30))
        return timedelta(seconds=delay * random.uniform(0.5, 1.0))


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retried"
    DROP = "dropped"


def verdict(result: client.CallResult) -> Verdict:
    """What a call's result means for its row."""
    if result.ok:
        return Verdict.DELIVERED
    status, code = result.http_status, result.ocpi_status_code
    if outcome_of(result.error) == "refused":  # the URL or its addresses: refused every time
        return Verdict.DROP
    if status is not None and (300 <= status < 400 or (400 <= status < 500 and status not in (408, 429))):
        return Verdict.DROP  # redirects are never followed; the peer refused this request
    if status is not None and 200 <= status < 300 and code is not None and 2000 <= code < 3000:
        return Verdict.DROP  # OCPI client error: the same body gets the same answer
    return Verdict.RETRY


@dataclass(frozen=True)
class Claim:
    """A claimed row and the lease it was claimed with (the fence of every write that ends it)."""

    id: int
    cpo_id: int
    peer_id: int
    object_key: str
    module: str
    method: str
    path: list[str]
    body: dict[str, Any] | None
    attempts: int
    created_at: datetime
    lease: datetime

    @classmethod
    def of(cls, row: Any, lease: datetime) -> Claim:
        m = row._mapping
        created_at = as_utc(m["created_at"])
        assert created_at is not None  # NOT NULL
        path = list(m["path"])
        fields = (m["id"], m["cpo_id"], m["peer_id"], m["object_key"], m["module"], m["method"], path, m["body"])
        return cls(*fields, attempts=m["attempts"], created_at=created_at, lease=lease)


def _claimable(now: datetime) -> Any:
    return (OUTBOX.c.next_attempt_at <= now) & or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < now)


def _candidates(now: datetime, busy: list[int], limit: int) -> Any:
    """Due, unheld rows that are the oldest of their object (uses ix_ocpi_outbox_due, then
    ix_ocpi_outbox_object for the predecessor check), skipping CPOs at their in-flight cap."""
    older = exists().where(
        _OLDER.c.cpo_id == OUTBOX.c.cpo_id,
        _OLDER.c.peer_id == OUTBOX.c.peer_id,
        _OLDER.c.object_key == OUTBOX.c.object_key,
        _OLDER.c.id < OUTBOX.c.id,
    )
    stmt = select(OUTBOX.c.id, OUTBOX.c.cpo_id).where(_claimable(now), ~older)
    if busy:
        stmt = stmt.where(OUTBOX.c.cpo_id.not_in(busy))
    return stmt.order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id).limit(limit)


class Dispatcher:
    """Delivers due outbox rows until stopped. `start()` / `stop()` from the API lifespan."""

    def __init__(self, db: Database, settings: Settings | None = None, config: OutboxConfig | None = None) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self.config = config or OutboxConfig.from_settings(self.settings)
        self._inflight: dict[asyncio.Task[None], Claim] = {}
        self._per_cpo: Counter[int] = Counter()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Task[None] | None = None
        self._counted_at = float("-inf")
        self._failing_logged_at = float("-inf")

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._runner = self._loop.create_task(self._run(), name="ocpi-outbox")
        store.subscribe(self.wake)

    def wake(self) -> None:
        """Look for due rows now (safe from any thread)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; give deliveries in flight `grace` seconds (default: the client's deadline),
        then cancel them and release their rows for another process."""
        store.unsubscribe(self.wake)
        self._stopping = True
        self._wakeup.set()
        if self._runner is not None:  # a poll stuck on a hung database must not hold up the shutdown
            await asyncio.wait({self._runner}, timeout=STOP_TIMEOUT_S)
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._inflight:
            _, pending = await asyncio.wait(
                list(self._inflight), timeout=self.settings.outbound_timeout if grace is None else grace
            )
            unfinished = [self._inflight[task] for task in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if unfinished:
                await self._release(unfinished)

    # ---- the loop ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            try:
                full = await self._poll()
            except Exception as exc:  # the database is down or not migrated: keep polling
                self._log_failure("polling the outbox failed", exc)
                full = False
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.config.poll_interval)

    async def _poll(self) -> bool:
        """Claim and start what fits; True when every free slot got a row (more may be due: the next
        poll follows at once, and waits for a slot once none is free)."""
        free = self.config.concurrency - len(self._inflight)
        if free <= 0:
            return False
        claimed = await self._claim(free)
        for claim in claimed:
            task = asyncio.get_running_loop().create_task(self._deliver(claim))
            self._inflight[task] = claim
            self._per_cpo[claim.cpo_id] += 1
        await self._count_depth()
        return len(claimed) == free

    async def _claim(self, free: int) -> list[Claim]:
        now = utcnow()
        busy = [cpo for cpo, n in self._per_cpo.items() if n >= self.config.per_cpo]
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(_candidates(now, busy, free * CANDIDATES_PER_SLOT))).all()
        picked: list[int] = []
        taken: Counter[int] = Counter()
        for row_id, cpo_id in rows:
            if self._per_cpo[cpo_id] + taken[cpo_id] < self.config.per_cpo:
                picked.append(row_id)
                taken[cpo_id] += 1
                if len(picked) == free:
                    break
        if not picked:
            return []
        # Read and claim in separate transactions: the UPDATE re-checks everything that matters, and
        # SQLite must not upgrade a read transaction to a write one (that fails rather than waits).
        now = utcnow()
        lease = now + self.config.lease
        async with self.db.engine.begin() as conn:
            claim = update(OUTBOX).where(OUTBOX.c.id.in_(picked), _claimable(now)).values(claimed_until=lease)
            result = await conn.execute(claim.returning(*OUTBOX.c))
            return [Claim.of(row, lease) for row in result.all()]

    async def _count_depth(self) -> None:
        if time.monotonic() - self._counted_at < DEPTH_INTERVAL_S:
            return
        self._counted_at = time.monotonic()
        async with self.db.engine.connect() as conn:
            OCPI_OUTBOX_ROWS.set((await conn.execute(select(func.count()).select_from(OUTBOX))).scalar_one())

    # ---- one delivery ------------------------------------------------------------------------------

    async def _deliver(self, claim: Claim) -> None:
        try:
            await self._attempt(claim)
        except Exception as exc:  # our bug or the database: the lease lapses and the row comes back
            log.warning("outbox row %s of CPO %s failed: %s", claim.id, claim.cpo_id, type(exc).__name__, exc_info=True)
        finally:
            self._inflight.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._per_cpo[claim.cpo_id] -= 1
            if self._per_cpo[claim.cpo_id] <= 0:
                del self._per_cpo[claim.cpo_id]
            self._wakeup.set()  # a slot is free

    async def _attempt(self, claim: Claim) -> None:
        async with self.db.session() as session:
            peer = await session.get(OcpiPeer, claim.peer_id)
            cpo = await session.get(Cpo, claim.cpo_id)
        if cpo is None or peer is None or not peer.registered or peer.cpo_id != claim.cpo_id:
            await self._drop_peer(claim, "the CPO or its peer is gone, or the peer unregistered")
            return
        base = push.receiver_url(peer, claim.module)
        if base is None:
            await self._drop(claim, f"the peer has no {claim.module} receiver endpoint")
            return
        result = await client.call(
            self.db,
            cpo_id=claim.cpo_id,
            method=claim.method,
            url=push.target_url(base, cpo.country_code, cpo.party_id, claim.method, claim.path),
            token=peer.token_b,
            version=peer.version,
            module=claim.module,
            body=claim.body,
            correlation_id=str(uuid.uuid5(_CORRELATION, f"{claim.cpo_id}/{claim.id}")),  # the same on every retry
            routing=client.Routing(cpo.country_code, cpo.party_id, peer.country_code, peer.party_id),
            settings=self.settings,
        )
        outcome = verdict(result)
        error = excerpt(result.error or "", MAX_ERROR)
        if outcome is Verdict.DELIVERED:
            await self._finish(claim, delete(OUTBOX))
            OCPI_OUTBOX_PUSHES.labels("delivered").inc()
        elif outcome is Verdict.DROP:
            await self._drop(claim, error)
        elif utcnow() - claim.created_at >= self.config.max_age:
            await self._finish(claim, delete(OUTBOX))
            OCPI_OUTBOX_PUSHES.labels("expired").inc()
            log.warning("outbox: gave up %s after %d attempts: %s", _what(claim), claim.attempts + 1, error)
        else:
            attempts = claim.attempts + 1
            retry = update(OUTBOX).values(
                attempts=attempts,
                next_attempt_at=utcnow() + self.config.backoff(attempts),
                last_error=error,
                claimed_until=None,
            )
            await self._finish(claim, retry)
            OCPI_OUTBOX_PUSHES.labels("retried").inc()

    async def _finish(self, claim: Claim, stmt: Any) -> None:
        """Run `stmt` (a DELETE or UPDATE of the table) on the row if we still hold it."""
        async with self.db.engine.begin() as conn:
            await conn.execute(stmt.where(OUTBOX.c.id == claim.id, OUTBOX.c.claimed_until == claim.lease))

    async def _drop(self, claim: Claim, reason: str) -> None:
        await self._finish(claim, delete(OUTBOX))
        OCPI_OUTBOX_PUSHES.labels("dropped").inc()
        log.warning("outbox: dropped %s after %d attempts: %s", _what(claim), claim.attempts + 1, reason)

    async def _drop_peer(self, claim: Claim, reason: str) -> None:
        """Every row of that peer goes: none of them can be delivered any more."""
        async with self.db.engine.begin() as conn:
            gone = (await conn.execute(delete(OUTBOX).where(OUTBOX.c.peer_id == claim.peer_id))).rowcount or 0
        OCPI_OUTBOX_PUSHES.labels("dropped").inc(gone)
        log.info("outbox: dropped %d row(s) of CPO %s for peer %s: %s", gone, claim.cpo_id, claim.peer_id, reason)

    async def _release(self, claims: list[Claim]) -> None:
        """Hand rows back unsent (shutdown): another process may claim them at once."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S), self.db.engine.begin() as conn:
                for claim in claims:
                    await conn.execute(
                        update(OUTBOX)
                        .where(OUTBOX.c.id == claim.id, OUTBOX.c.claimed_until == claim.lease)
                        .values(claimed_until=None)
                    )
        except Exception as exc:  # their leases lapse instead
            self._log_failure("releasing outbox rows failed", exc)

    def _log_failure(self, what: str, exc: Exception) -> None:
        if time.monotonic() - self._failing_logged_at >= FAILURE_LOG_INTERVAL_S:
            self._failing_logged_at = time.monotonic()
            log.warning("%s: %s: %s", what, type(exc).__name__, excerpt(exc))


def _what(claim: Claim) -> str:
    return f"{claim.method} {claim.module} {claim.object_key!r} of CPO {claim.cpo_id} to peer {claim.peer_id}"
