"""Each charger's OCPP frames, both directions, with a retention per charger (the `ocpp_log` table).

Same approach as the OCPI traffic log (app.ocpi.log): the hot path appends to an in-memory buffer and
a lazily started per-process task inserts it in one statement every ~100 ms, so no OCPP response
waits on a log INSERT. Readers call `flush` first and filter with `retained`, which applies the
retention exactly. The writer prunes physically, per charger, once it has written
`ocpp_log_max_rows / 2` new rows for it (so about 1.5 × max_rows are stored) or PRUNE_AGE_INTERVAL_S has
passed since its last prune, so the table stays bounded without a DELETE per frame (a busy charger sends
thousands of frames an hour). Inserts and prunes are separate short transactions: on SQLite they hold
the one write lock the chargers' own writes wait for.

Payloads are cut to MAX_PAYLOAD characters and secret configuration values are masked
(app.csms.frames.redacted) before they reach the buffer. Credentials of the upgrade request are
never seen here.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Dialect, Table, and_, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.csms.connections import write_lock
from app.settings import get_settings
from app.store.db import Database, utcnow
from app.store.live import gone_cpos
from app.store.tables import OcppLogRow

log = logging.getLogger("cpolab.csms.log")

FLUSH_INTERVAL_S = 0.1
PRUNE_AGE_INTERVAL_S = 3600.0  # a charger with new rows is pruned at least this often (age limit)
PRUNES_PER_PASS = 4  # chargers pruned after each flush, one short transaction each
MAX_TRACKED = 100_000  # chargers whose prune bookkeeping a process keeps
MAX_PENDING = 50_000  # frames buffered between two flushes; beyond that (DB stalled) new ones are dropped
MAX_PAYLOAD = 4096

_row = cast(Table, OcppLogRow.__table__).c

ChargerKey = tuple[int, str]
# A buffered frame: the row's values in this order (a tuple costs less than a dict per frame; the
# rows are made at the flush).
COLUMNS = ("cpo_id", "identity", "timestamp", "direction", "message_type", "message_id", "action", "payload")
Entry = tuple[int, str, datetime, str, int, "str | None", "str | None", str]
FrameLogger = Callable[[Literal["in", "out"], int, "str | None", "str | None", str], None]


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
        self.pending: list[Entry] = []
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.due: dict[ChargerKey, None] = {}  # chargers to prune, oldest first
        self.added: dict[ChargerKey, int] = {}  # rows written since the charger's last prune
        self.pruned_at: dict[ChargerKey, float] = {}  # monotonic time of its last prune

    def add(self, entry: Entry) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.dropped += 1
        else:
            self.pending.append(entry)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # Runs while there is something to write or prune, then exits; the next `add` starts it again.
        while self.pending or self.due:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()
            await self._prune_some()

    async def flush(self) -> None:
        """Insert the buffered frames (one statement: a short hold of SQLite's write lock)."""
        async with self.lock:
            entries, self.pending = self.pending, []
            dropped, self.dropped = self.dropped, 0
            if dropped:
                log.warning("dropped %d OCPP log entries: the buffer was full", dropped)
            if not entries:
                return
            try:
                async with write_lock(self.db), self.db.session() as session, session.begin():
                    gone = await gone_cpos(session, {entry[0] for entry in entries})
                    if gone:  # frames of a torn-down CPO: not kept
                        entries = [entry for entry in entries if entry[0] not in gone]
                    if entries:
                        await _insert(await session.connection(), entries)
            except Exception:  # the log must never break OCPP traffic
                log.exception("dropping %d OCPP log entries", len(entries))
                return
            for key in self._due_for_pruning(entries):
                self.due[key] = None

    async def _prune_some(self) -> None:
        """A few due chargers, one transaction each, so the chargers' own writes get the lock between."""
        for key in list(self.due)[:PRUNES_PER_PASS]:
            del self.due[key]
            try:
                async with write_lock(self.db), self.db.session() as session, session.begin():
                    await _prune(session, key, self.retention)
            except Exception:  # retried when the charger is due again
                log.exception("pruning the OCPP log of charger %r of CPO %s failed", key[1], key[0])

    def _due_for_pruning(self, entries: list[Entry]) -> list[ChargerKey]:
        for entry in entries:
            key = (entry[0], entry[1])
            self.added[key] = self.added.get(key, 0) + 1
        now = time.monotonic()
        every = max(1, self.retention.max_rows // 2)
        due = [
            key
            for key, added in self.added.items()
            if added >= every or now - self.pruned_at.setdefault(key, now) >= PRUNE_AGE_INTERVAL_S
        ]
        for key in due:
            self.pruned_at[key] = now
            del self.added[key]
        if len(self.pruned_at) > MAX_TRACKED:  # forget chargers without new rows (gone ones included)
            self.pruned_at = {k: t for k, t in self.pruned_at.items() if k in self.added}
        return due


_driver_inserts: dict[str, tuple[str, tuple[int, ...], tuple[Any, ...]] | None] = {}


async def _insert(conn: AsyncConnection, entries: list[Entry]) -> None:
    """One executemany of the entries. SQLAlchemy's executemany builds each row's parameters through
    the compiled statement (~10 µs a row, and the log writes two rows per OCPP message: ~10 % of the
    API's CPU at 2,000 msg/s); here the INSERT is compiled once per dialect and the rows go to the
    driver as tuples, through the same bind processors (SQLite's DATETIME text)."""
    driver = _driver_insert(conn.dialect)
    if driver is None:  # a dialect with named parameters: SQLAlchemy's way
        await conn.execute(insert(OcppLogRow), [dict(zip(COLUMNS, entry, strict=True)) for entry in entries])
        return
    sql, order, processors = driver
    if any(processors):
        rows = [
            tuple(p(entry[i]) if p else entry[i] for i, p in zip(order, processors, strict=True)) for entry in entries
        ]
    else:
        rows = [tuple(entry[i] for i in order) for entry in entries]
    await conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]


def _driver_insert(dialect: Dialect) -> tuple[str, tuple[int, ...], tuple[Any, ...]] | None:
    """(SQL, entry index of each positional parameter, its bind processor or None), per dialect."""
    if dialect.name in _driver_inserts:
        return _driver_inserts[dialect.name]
    # inline: no RETURNING of the new ids (Postgres would add one to a single-row INSERT)
    stmt = insert(OcppLogRow).inline().values({name: bindparam(name, type_=_row[name].type) for name in COLUMNS})
    compiled = stmt.compile(dialect=dialect)
    driver = None
    if compiled.positiontup is not None:
        names = tuple(compiled.positiontup)
        processors = tuple(_row[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
        driver = (str(compiled), tuple(COLUMNS.index(name) for name in names), processors)
    _driver_inserts[dialect.name] = driver
    return driver


async def _prune(session: AsyncSession, key: ChargerKey, retention: Retention) -> None:
    """Drop the charger's entries older than the age limit and beyond its newest `max_rows`."""
    cpo_id, identity = key
    mine = and_(_row.cpo_id == cpo_id, _row.identity == identity)
    conn = await session.connection()
    await conn.execute(delete(OcppLogRow).where(mine, _row.timestamp < retention.cutoff()))
    newest_dropped = (
        select(_row.id).where(mine).order_by(_row.id.desc()).offset(retention.max_rows).limit(1).scalar_subquery()
    )
    await conn.execute(delete(OcppLogRow).where(mine, _row.id <= newest_dropped))


_writers: weakref.WeakKeyDictionary[Database, _Writer] = weakref.WeakKeyDictionary()


def _writer(db: Database) -> _Writer:
    writer = _writers.get(db)
    if writer is None:
        settings = get_settings()
        retention = Retention(settings.ocpp_log_max_rows, settings.ocpp_log_max_age)
        writer = _writers[db] = _Writer(db, retention)
    return writer


def frame_logger(db: Database, cpo_id: int, identity: str) -> FrameLogger:
    """What one connection calls for each frame: buffers it (non-blocking; needs a running event
    loop). The payload must be redacted."""
    add = _writer(db).add

    def record(
        direction: Literal["in", "out"], message_type: int, message_id: str | None, action: str | None, payload: str
    ) -> None:
        message_id = message_id[:36] if message_id else None
        action = action[:64] if action else None
        add((cpo_id, identity, utcnow(), direction, message_type, message_id, action, payload[:MAX_PAYLOAD]))

    return record


def retained(db: Database, cpo_id: int, identity: str) -> tuple[ColumnElement[bool], int]:
    """Filter and row cap of the charger's entries a reader may show (newest first, by id): exactly
    the retention, whether or not the flush has pruned yet."""
    retention = _writer(db).retention
    return (
        and_(_row.cpo_id == cpo_id, _row.identity == identity, _row.timestamp >= retention.cutoff()),
        retention.max_rows,
    )


async def flush(db: Database) -> None:
    await _writer(db).flush()
