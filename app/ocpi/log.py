"""OCPI traffic log: every request in and every call out, per CPO.

Hot paths only append to an in-memory buffer; a lazily started per-process task inserts the buffer
in one statement every ~100 ms (a handshake or a page of locations never waits on a log INSERT).
Readers call `flush` first, so what a request wrote is visible once its response has been sent.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert

from app.store.db import Database
from app.store.ocpi_tables import OcpiLogRow

log = logging.getLogger("cpolab.ocpi.log")

FLUSH_INTERVAL_S = 0.1
MAX_URL = 2048
MAX_ERROR = 1000


class _Writer:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.pending: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    def add(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # Runs while there is something to write, then exits; the next `add` starts it again.
        while self.pending:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        async with self.lock:
            rows, self.pending = self.pending, []
            if not rows:
                return
            try:
                async with self.db.session() as session, session.begin():
                    await session.execute(insert(OcpiLogRow), rows)
            except Exception:  # the log must never break OCPI traffic
                log.exception("dropping %d OCPI log entries", len(rows))


_writers: weakref.WeakKeyDictionary[Database, _Writer] = weakref.WeakKeyDictionary()


def _writer(db: Database) -> _Writer:
    writer = _writers.get(db)
    if writer is None:
        writer = _writers[db] = _Writer(db)
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


async def flush(db: Database) -> None:
    await _writer(db).flush()
