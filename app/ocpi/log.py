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

from pydantic import BaseModel
from sqlalchemy import func, insert, select
from starlette.requests import Request
from starlette.responses import Response

from app.control.cpos import owned_cpo
from app.store.db import Database, as_utc
from app.store.ocpi_tables import OcpiLogRow
from app.web.auth import READ, authenticate
from app.web.http import model_response, page_query, path_id, unprocessable

log = logging.getLogger("cpolab.ocpi.log")

FLUSH_INTERVAL_S = 0.1
MAX_URL = 2048
MAX_ERROR = 1000


class OcpiLogEntry(BaseModel):
    id: int
    timestamp: datetime
    direction: Literal["in", "out"]
    method: str
    url: str
    http_status: int | None
    ocpi_status_code: int | None
    duration_ms: float
    request_id: str | None
    correlation_id: str | None
    error: str | None


class OcpiLogPage(BaseModel):
    data: list[OcpiLogEntry]
    total: int
    page: int
    limit: int


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


# ---- control plane: GET /ocpi/cpos/{cpo_id}/ocpi-log ---------------------------------------------------


async def get_ocpi_log(request: Request) -> Response:
    """The CPO's OCPI traffic, newest first by start time (same org scoping as every control-plane route)."""
    principal = authenticate(request, READ)
    cpo_id = path_id(request)
    if isinstance(cpo_id, Response):
        return cpo_id
    page, limit, problems = page_query(request)
    if problems:
        return unprocessable(problems)
    await owned_cpo(request, principal, cpo_id)
    db: Database = request.app.state.db
    await flush(db)  # what this process buffered so far is part of the answer
    where = OcpiLogRow.cpo_id == cpo_id
    async with db.session() as session:
        total = (await session.execute(select(func.count()).select_from(OcpiLogRow).where(where))).scalar_one()
        rows = (
            await session.execute(
                select(OcpiLogRow)
                .where(where)
                # By start time: several processes buffer entries, so ids are not chronological.
                .order_by(OcpiLogRow.timestamp.desc(), OcpiLogRow.id.desc())  # type: ignore[attr-defined]
                .offset((page - 1) * limit)
                .limit(limit)
            )
        ).scalars()
        data = [OcpiLogEntry.model_validate({**row.model_dump(), "timestamp": as_utc(row.timestamp)}) for row in rows]
    return model_response(OcpiLogPage(data=data, total=total, page=page, limit=limit))
