"""CDRs module, CPO = Sender: paginated list of the CDRs app.ocpi.cdr_builder stores."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.ocpi.sessions import list_rows
from app.ocpi.transport import OcpiContext, ocpi_route
from app.store.ocpi_tables import OcpiCdr

MAX_LIMIT = 100


async def list_cdrs(request: Request, ctx: OcpiContext) -> Response:
    return await list_rows(request, ctx, OcpiCdr, MAX_LIMIT)


routes: list[BaseRoute] = [
    ocpi_route("/ocpi/peer/{cpo_id:int}/{version}/cdrs", list_cdrs, methods=["GET"], module="cdrs")
]
