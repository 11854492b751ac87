"""The control plane's route table: /ocpi/cpos… (CONTRACT §1, chargers §3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.control import charger_actions, chargers, create, manage, read, traffic


def _by_method(**handlers: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """One Route per path, so a 405 lists every allowed method in its Allow header."""

    async def dispatch(request: Request) -> Response:
        return await handlers[request.method if request.method != "HEAD" else "GET"](request)

    return dispatch


routes = [
    Route("/ocpi/cpos", _by_method(GET=read.list_cpos, POST=create.create_cpo), methods=["GET", "POST"]),
    Route("/ocpi/cpos/templates", read.list_templates, methods=["GET"]),
    Route("/ocpi/templates/cpos", read.list_templates, methods=["GET"]),
    Route(
        "/ocpi/cpos/{cpo_id}",
        _by_method(GET=read.get_cpo, PATCH=manage.update_cpo, DELETE=manage.delete_cpo),
        methods=["GET", "PATCH", "DELETE"],
    ),
    Route("/ocpi/cpos/{cpo_id}/status", read.get_status, methods=["GET"]),
    Route("/ocpi/cpos/{cpo_id}/report", read.get_report, methods=["GET"]),
    Route("/ocpi/cpos/{cpo_id}/ocpi-log", traffic.get_ocpi_log, methods=["GET"]),
    Route("/ocpi/cpos/{cpo_id}/chargers", chargers.list_chargers, methods=["GET"]),
    Route("/ocpi/cpos/{cpo_id}/chargers/{identity}", chargers.get_charger, methods=["GET"]),
    Route("/ocpi/cpos/{cpo_id}/chargers/{identity}/ocpp-log", chargers.get_ocpp_log, methods=["GET"]),
    Route("/ocpi/cpos/{cpo_id}/chargers/{identity}/actions/{action}", charger_actions.charger_action, methods=["POST"]),
    Route(
        "/ocpi/cpos/{cpo_id}/locations/{location_id}/actions/{action}",
        charger_actions.location_action,
        methods=["POST"],
    ),
]
