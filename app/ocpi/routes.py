"""Starlette routes of the per-CPO OCPI platforms (mounted by app.web.app). Order matters: specific
module paths first, version details, then the catch-all 404."""

from starlette.routing import BaseRoute

from app.ocpi import cdrs, commands, credentials, locations, sessions, tariffs, tokens, versions
from app.ocpi.transport import catch_all_route

routes: list[BaseRoute] = [
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
