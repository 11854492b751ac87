"""OCPI traffic log: the authenticated requests in and every call out, per CPO, with a retention.

Hot paths only append to an in-memory buffer; a lazily started per-process task inserts the buffer
in one statement every ~100 ms (a handshake or a page of locations never waits on a log INSERT).
Readers call `flush` first, so what a request wrote is visible once its response has been sent.

Requests without a valid token of the CPO are not logged (anyone could fill a log or write chosen
ids into it): they only bump a per-CPO counter, added up in memory and written with the same flush.
Retention (`traffic_log_max_rows` per CPO, `traffic_log_max_age` seconds) is enforced by readers
(`retained`) exactly, and by the flush physically, per CPO at most every PRUNE_INTERVAL_S or every
`max_rows / 10` new rows, so the table stays bounded without a DELETE per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.settings import get_settings
from app.store.db import Database, utcnow
from app.store.live import of_live_cpos
from app.store.ocpi_tables import OcpiLogRow, OcpiRejectedCount

log = logging.getLogger("cpolab.ocpi.log")

FLUSH_INTERVAL_S = 0.1
PRUNE_INTERVAL_S = 10.0
MAX_PRUNES_PER_FLUSH = 20
MAX_TRACKED = 10_000  # CPOs whose last prune time a process remembers
MAX_PENDING = 10_000  # entries buffered between two flushes; beyond that (DB stalled) new ones are dropped
MAX_URL = 2048
MAX_ERROR = 1000

_row = OcpiLogRow.__table__.c  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Retention:
    max_rows: int
    max_age_s: int

    def cutoff(self) -> datetime:
        return utcnow() - timedelta(seconds=self.max_age_s)


class _Writer:
    def __init__(self, db: Database, retention: Retention) -> None:
        self.db = db
        self.retention = retention
        self.pending: list[dict[str, Any]] = []
        self.rejected: dict[int, tuple[int, datetime]] = {}  # cpo_id → (count, last time)
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        # Per CPO: monotonic time of the last prune and rows inserted since.
        self.pruned_at: dict[int, float] = {}
        self.added: dict[int, int] = {}

    def add(self, row: dict[str, Any]) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
        else:
            self.pending.append(row)
        self._wake()

    def reject(self, cpo_id: int, at: datetime) -> None:
        count, _ = self.rejected.get(cpo_id, (0, at))
        self.rejected[cpo_id] = (count + 1, at)
        self._wake()

    def _wake(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # Runs while there is something to write, then exits; the next `add` starts it again.
        while self.pending or self.rejected:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            rows, self.pending = self.pending, []
            rejected, self.rejected = self.rejected, {}
            dropped, self.dropped = self.dropped, 0
            if dropped:
                log.warning("dropped %d OCPI log entries: the buffer was full", dropped)
            if not rows and not rejected:
                return
            try:
                async with self.db.session() as session, session.begin():
                    rows = await of_live_cpos(session, rows)
                    if rows:
                        await session.execute(insert(OcpiLogRow), rows)
                    if rejected:
                        await self._count_rejected(session, rejected)
                    for cpo_id in self._due_for_pruning(rows):
                        await _prune(session, cpo_id, self.retention)
            except Exception:  # the log must never break OCPI traffic
                log.exception("dropping %d OCPI log entries", len(rows))

    async def _count_rejected(self, session: AsyncSession, rejected: dict[int, tuple[int, datetime]]) -> None:
        table = OcpiRejectedCount.__table__  # type: ignore[attr-defined]
        stmt = self.db.upsert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.cpo_id],
            set_={"rejected": table.c.rejected + stmt.excluded.rejected, "last_at": stmt.excluded.last_at},
        )
        params = [{"cpo_id": c, "rejected": n, "last_at": at} for c, (n, at) in rejected.items()]
        await session.execute(stmt, params)

    def _due_for_pruning(self, rows: list[dict[str, Any]]) -> list[int]:
        for row in rows:
            self.added[row["cpo_id"]] = self.added.get(row["cpo_id"], 0) + 1
        now = time.monotonic()
        every = max(1, self.retention.max_rows // 10)
        due = [
            cpo_id
            for cpo_id, added in self.added.items()
            if added >= every or now - self.pruned_at.get(cpo_id, float("-inf")) >= PRUNE_INTERVAL_S
        ][:MAX_PRUNES_PER_FLUSH]  # the others stay due for the next flush: one flush stays short
        for cpo_id in due:
            self.pruned_at[cpo_id] = now
            del self.added[cpo_id]
        if len(self.pruned_at) > MAX_TRACKED:  # forget CPOs that are due anyway (gone ones included)
            self.pruned_at = {c: t for c, t in self.pruned_at.items() if now - t < PRUNE_INTERVAL_S}
        return due


async def _prune(session: AsyncSession, cpo_id: int, retention: Retention) -> None:
    """Drop the CPO's entries older than the age limit and beyond the newest `max_rows`."""
    await session.execute(delete(OcpiLogRow).where(_row.cpo_id == cpo_id, _row.timestamp < retention.cutoff()))
    newest_dropped = (
        await session.execute(
            select(_row.timestamp, _row.id)
            .where(_row.cpo_id == cpo_id)
            .order_by(_row.timestamp.desc(), _row.id.desc())
            .offset(retention.max_rows)
            .limit(1)
        )
    ).first()
    if newest_dropped is not None:
        at, row_id = newest_dropped
        await session.execute(
            delete(OcpiLogRow).where(
                _row.cpo_id == cpo_id, or_(_row.timestamp < at, and_(_row.timestamp == at, _row.id <= row_id))
            )
        )


_writers: weakref.WeakKeyDictionary[Database, _Writer] = weakref.WeakKeyDictionary()


def _writer(db: Database) -> _Writer:
    writer = _writers.get(db)
    if writer is None:
        settings = get_settings()
        retention = Retention(settings.traffic_log_max_rows, settings.traffic_log_max_age)
        writer = _writers[db] = _Writer(db, retention)
    return writer


def record(
    db: Database,
    *,
    cpo_id: int,
    timestamp: datetime,
    direction: Literal["in", "out"],
    method: str,
    url: str,
    duration_ms: float,
    http_status: int | None = None,
    ocpi_status_code: int | None = None,
    request_id: str | None = None,
    correlation_id: str | None = None,
    error: str | None = None,
) -> None:
    """Buffer one entry (non-blocking; needs a running event loop)."""
    _writer(db).add(
        {
            "cpo_id": cpo_id,
            "timestamp": timestamp,
            "direction": direction,
            "method": method,
            "url": url[:MAX_URL],
            "http_status": http_status,
            "ocpi_status_code": ocpi_status_code,
            "duration_ms": round(duration_ms, 3),
            "request_id": request_id,
            "correlation_id": correlation_id,
            "error": error[:MAX_ERROR] if error else None,
        }
    )


def reject(db: Database, cpo_id: int, at: datetime) -> None:
    """Count one request to this CPO that had no valid token of it (non-blocking)."""
    _writer(db).reject(cpo_id, at)


def retained(db: Database, cpo_id: int) -> tuple[ColumnElement[bool], int]:
    """Filter and row cap of the CPO's entries a reader may show: exactly the retention, whether or
    not the flush has pruned yet."""
    retention = _writer(db).retention
    return and_(_row.cpo_id == cpo_id, _row.timestamp >= retention.cutoff()), retention.max_rows


async def flush(db: Database) -> None:
    await _writer(db).flush()
