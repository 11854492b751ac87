"""GET /ocpi/cpos/{cpo_id}/ocpi-log: a CPO's OCPI traffic (the buffer itself lives in app.ocpi.log)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from app.control.common import cpo_call, owned_cpo
from app.ocpi import log as traffic_log
from app.store.db import Database, as_utc
from app.store.ocpi_tables import OcpiLogRow, OcpiRejectedCount
from app.web.auth import READ
from app.web.http import model_response, page_query, unprocessable


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
    # Requests to this CPO's OCPI platform without a valid token of it: counted, not logged.
    rejected_unauthenticated: int = 0
    rejected_last_at: datetime | None = None


async def get_ocpi_log(request: Request) -> Response:
    """The CPO's OCPI traffic, newest first by start time (same org scoping as every control-plane route)."""
    call = cpo_call(request, READ)
    cpo_id = call.cpo_id
    page, limit, problems = page_query(request)
    if problems:
        return unprocessable(problems)
    await owned_cpo(request, call.principal, cpo_id)
    db: Database = request.app.state.db
    await traffic_log.flush(db)  # what this process buffered so far is part of the answer
    where, max_rows = traffic_log.retained(db, cpo_id)
    offset = (page - 1) * limit
    async with db.session() as session:
        total = (await session.execute(select(func.count()).select_from(OcpiLogRow).where(where))).scalar_one()
        rows = (
            await session.execute(
                select(OcpiLogRow)
                .where(where)
                # By start time: several processes buffer entries, so ids are not chronological.
                .order_by(OcpiLogRow.timestamp.desc(), OcpiLogRow.id.desc())  # type: ignore[attr-defined]
                .offset(offset)
                .limit(max(0, min(limit, max_rows - offset)))  # the retention, before the flush prunes
            )
        ).scalars()
        data = [OcpiLogEntry.model_validate({**row.model_dump(), "timestamp": as_utc(row.timestamp)}) for row in rows]
        rejected = await session.get(OcpiRejectedCount, cpo_id)
    return model_response(
        OcpiLogPage(
            data=data,
            total=min(total, max_rows),
            page=page,
            limit=limit,
            rejected_unauthenticated=rejected.rejected if rejected else 0,
            rejected_last_at=as_utc(rejected.last_at) if rejected else None,
        )
    )
