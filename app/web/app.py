"""Builds the Starlette application: control plane, OpenAPI/docs, ops endpoints (health, metrics),
error handlers, lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from app.control import openapi
from app.control import routes as control_plane
from app.control.temporal_gateway import TemporalGateway
from app.csms import runtime as csms
from app.csms.commands import CommandWorker
from app.lifecycle import temporal_client
from app.observability.logging import configure_logging
from app.ocpi import log as ocpi_log
from app.ocpi import outbox as ocpi_outbox
from app.ocpi import reads as ocpi_reads
from app.ocpi import routes as ocpi_routes
from app.ocpi.cdr_builder import CdrBuilder
from app.ocpi.transport import ocpi_response
from app.settings import ConfigurationError, Settings, get_settings
from app.store.db import Database
from app.tools.open_files import raise_open_files_limit
from app.web import health, metrics
from app.web.limits import RequestLimits

log = logging.getLogger("cpolab.api")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = f"method {request.method} not allowed on {request.url.path}" if exc.status_code == 405 else exc.detail
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _unhandled(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


async def home(request: Request) -> Response:
    return RedirectResponse("/docs", status_code=307)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    try:
        settings.require_secrets()  # no public default: a missing or weak secret lets anyone mint tokens
        temporal_client.tls_config(settings)  # an unreadable certificate stops the API now, not at a request
    except ConfigurationError as exc:
        raise SystemExit(f"cpolab API refuses to start: {exc}") from None
    configure_logging(settings.log_format, settings.log_level)
    csms.install_denial_log_filter()
    raise_open_files_limit()  # one descriptor per charger WebSocket

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.settings = settings
        # No schema work here: `python -m app.store.migrate upgrade` owns it (/readyz reports a lag).
        app.state.db = Database(settings.database_url)
        app.state.temporal = TemporalGateway(settings)
        app.state.cpo_counts = metrics.CpoCounts()
        app.state.outbox = ocpi_outbox.Dispatcher(app.state.db, settings)
        if settings.outbox_dispatch:
            app.state.outbox.start()
        app.state.cdrs = CdrBuilder(app.state.db, settings)
        app.state.cdrs.start()
        app.state.csms = csms.Csms(app.state.db, settings)
        app.state.csms.start()
        app.state.command_worker = CommandWorker(app.state.csms, settings)  # task queue csms-{api_instance}
        app.state.command_worker.start()
        try:
            yield
        finally:
            await app.state.command_worker.stop()  # calls in flight finish while their sockets are open
            await app.state.csms.stop()  # chargers released (OFFLINE) and their last frames logged
            await app.state.cdrs.stop()  # a CDR half-built keeps its marker: built again later
            await app.state.outbox.stop()  # in-flight pushes finish or go back to the outbox
            await ocpi_log.flush(app.state.db)  # the last buffered OCPI exchanges, before the pool goes
            await ocpi_reads.dispose(app.state.db)
            await app.state.db.dispose()

    routes = [
        Route("/", home, methods=["GET"]),
        # Ops endpoints, not part of the public API (no OpenAPI entry); README "Operations".
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        *([Route("/metrics", metrics.metrics, methods=["GET"])] if settings.metrics_enabled else []),
        *control_plane.routes,
        *openapi.routes,
        *ocpi_routes.routes,
        *csms.routes,  # WebSocket /ocpp/{cpo_id}/{identity}: the chargers' CSMS
    ]
    limits = Middleware(
        RequestLimits,
        max_body=settings.max_body,
        max_json_depth=settings.max_json_depth,
        ocpi_prefix="/ocpi/peer/",
        ocpi_envelope=ocpi_response,
    )
    return Starlette(
        routes=routes,
        # Outermost first: every request is counted and gets a log context, even a 413 of the limits.
        middleware=[Middleware(metrics.HttpMetrics), limits],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unhandled},
    )
