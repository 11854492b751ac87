"""OCPI Tariffs module, Sender interface: the CPO's generated tariffs (one per power class), paginated.

Connectors reference them by id (`tariff_ids` in 2.2.1, `tariff_id` in 2.1.1). A CPO has a handful
of tariffs, so they are rendered per request; no cache needed.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.ocpi import render
from app.ocpi.pagination import date_conditions, paginated, parse_page
from app.ocpi.transport import OcpiContext, ocpi_route
from app.store.tables import Tariff

MAX_LIMIT = 100

T = cast(Table, Tariff.__table__)


async def list_tariffs(request: Request, ctx: OcpiContext) -> Response:
    params = parse_page(request, MAX_LIMIT)
    where = [T.c.cpo_id == ctx.cpo_id, *date_conditions(T.c.last_updated, params)]
    page_stmt = select(T).where(*where).order_by(T.c.id).offset(params.offset).limit(params.limit)
    db = ctx.db or request.app.state.db
    async with db.engine.connect() as conn:
        rows = (await conn.execute(page_stmt)).all()
        total = (await conn.execute(select(func.count()).select_from(T).where(*where))).scalar_one()
    items = [render.tariff(row._mapping, ctx.version) for row in rows]
    return paginated(request, items, total, params, MAX_LIMIT)


routes: list[BaseRoute] = [
    ocpi_route("/ocpi/peer/{cpo_id:int}/{version}/tariffs", list_tariffs, methods=["GET"], module="tariffs"),
]
