"""Versions list and version details of one CPO's platform (Token A or C)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.ocpi.transport import OcpiContext, ocpi_response, ocpi_route

# (module, InterfaceRole) this CPO publishes. Credentials' role is meaningless; SENDER by convention.
ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("credentials", "SENDER"),
    ("locations", "SENDER"),
    ("tariffs", "SENDER"),
    ("sessions", "SENDER"),
    ("cdrs", "SENDER"),
    ("tokens", "RECEIVER"),
    ("commands", "RECEIVER"),
)


def endpoints(ctx: OcpiContext) -> list[dict[str, str]]:
    base = ctx.version_url
    if ctx.version == "2.1.1":  # no InterfaceRole before 2.2
        return [{"identifier": module, "url": f"{base}/{module}"} for module, _ in ENDPOINTS]
    return [{"identifier": module, "role": role, "url": f"{base}/{module}"} for module, role in ENDPOINTS]


async def get_versions(request: Request, ctx: OcpiContext) -> Response:
    # Only the CPO's own version: a peer must not pick one this platform does not serve.
    return ocpi_response([{"version": ctx.version, "url": ctx.version_url}])


async def get_version_details(request: Request, ctx: OcpiContext) -> Response:
    return ocpi_response({"version": ctx.version, "endpoints": endpoints(ctx)})


routes: list[BaseRoute] = [
    ocpi_route("/ocpi/peer/{cpo_id:int}/versions", get_versions, methods=["GET"], module="versions", token_a=True),
    ocpi_route(
        "/ocpi/peer/{cpo_id:int}/{version}", get_version_details, methods=["GET"], module="versions", token_a=True
    ),
]
