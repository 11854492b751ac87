"""Starlette routes of the per-CPO OCPI platforms (mounted by app.web.app), plus the control-plane
traffic log. Order matters: specific module paths first, version details, then the catch-all 404."""

from starlette.routing import BaseRoute, Route

from app.ocpi import cdrs, commands, credentials, locations, sessions, tariffs, tokens, versions
from app.ocpi.log import get_ocpi_log
from app.ocpi.transport import catch_all_route

routes: list[BaseRoute] = [
    Route("/ocpi/cpos/{cpo_id}/ocpi-log", get_ocpi_log, methods=["GET"]),
    *credentials.routes,
    *locations.routes,
    *tariffs.routes,
    *sessions.routes,
    *cdrs.routes,
    *tokens.routes,
    *commands.routes,
    *versions.routes,
    catch_all_route(),
]
