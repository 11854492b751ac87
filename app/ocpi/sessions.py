"""Sessions module, CPO = Sender: paginated list of the OCPI Sessions app.ocpi.session_push stores.

`date_from` is marked required by the spec for this list only; like most CPOs we accept it absent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.ocpi.pagination import date_conditions, paginated, parse_page
from app.ocpi.transport import OcpiContext, ocpi_datetime, ocpi_route
from app.store.ocpi_tables import OcpiCdr, OcpiSession

MAX_LIMIT = 100


async def list_rows(request: Request, ctx: OcpiContext, table: type[OcpiSession | OcpiCdr], max_limit: int) -> Response:
    """One page of a CPO-owned object table, in creation order (stable while objects update)."""
    params = parse_page(request, max_limit)
    where = [table.cpo_id == ctx.cpo_id, *date_conditions(table.last_updated, params)]
    assert ctx.db is not None
    async with ctx.db.session() as session:
        total = (await session.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        rows = (
            await session.execute(
                select(table.data, table.last_updated)
                .where(*where)
                .order_by(table.created_at, table.id)
                .offset(params.offset)
                .limit(params.limit)
            )
        ).all()
    items: list[dict[str, Any]] = [{**data, "last_updated": ocpi_datetime(updated)} for data, updated in rows]
    return paginated(request, items, total, params, max_limit)


async def list_sessions(request: Request, ctx: OcpiContext) -> Response:
    return await list_rows(request, ctx, OcpiSession, MAX_LIMIT)


routes: list[BaseRoute] = [
    ocpi_route("/ocpi/peer/{cpo_id:int}/{version}/sessions", list_sessions, methods=["GET"], module="sessions")
]
