"""Prometheus metrics of the API: HTTP requests and latency by route template, CPOs by state.

`GET /metrics` (text exposition format) is an ops endpoint like /healthz: unauthenticated, not in
the OpenAPI document, off with `CPOLAB_METRICS_ENABLED=0`. Keep it off the public path (the proxy
in front should not route it). It also serves what the process records elsewhere (OCPI outbound
calls, app.observability.metrics) and prometheus_client's process/GC collectors.

Cardinality is bounded: `route` is the matched route's template (`/ocpi/cpos/{cpo_id}`), never
the raw path; requests answered before routing (unknown paths, 413) are `<unrouted>`; `method`
is one of the HTTP methods or `OTHER`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import lru_cache
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.lifecycle.models import CpoStatus
from app.observability.logging import log_scope
from app.store.tables import Cpo

log = logging.getLogger("cpolab.metrics")

UNROUTED = "<unrouted>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CPO_COUNT_TTL_S = 5.0  # scrapes within this reuse the last count (many replicas, many scrapers)
CPO_COUNT_TIMEOUT_S = 2.0  # a slow database must not hang the scrape

HTTP_REQUESTS = Counter(
    "cpolab_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "cpolab_http_request_duration_seconds",
    "Time from request to the last byte of the answer, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CPOS = Gauge(
    "cpolab_cpos",
    "CPO rows by state, counted in the database (the same in every API replica: use max, not sum).",
    ["state"],
)
CPOS_COUNTED_AT = Gauge("cpolab_cpos_counted_at_seconds", "Unix time of the last successful count of cpolab_cpos.")
CPO_COUNT_FAILURES = Counter("cpolab_cpo_count_failures", "Scrapes whose count of CPOs by state failed or timed out.")


class HttpMetrics:
    """ASGI middleware: counts and times every HTTP request, and opens its log context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with log_scope():
                await self.app(scope, receive, send_and_note)
        finally:
            # The router stores the matched route in the scope it was handed (this same dict).
            route = getattr(scope.get("route"), "path", None) or UNROUTED
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            counter, latency = _series(method, route, status)
            counter.inc()
            latency.observe(time.perf_counter() - started)


@lru_cache(maxsize=4096)  # the label sets are bounded; .labels() costs more than the update itself
def _series(method: str, route: str, status: int) -> tuple[Any, Any]:
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_LATENCY.labels(method, route)


class CpoCounts:
    """The CPOs-by-state gauge, recounted at most every CPO_COUNT_TTL_S, one count at a time."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._counted = float("-inf")

    async def refresh(self, db: Any) -> None:
        async with self._lock:
            if time.monotonic() - self._counted < CPO_COUNT_TTL_S:
                return
            try:
                async with asyncio.timeout(CPO_COUNT_TIMEOUT_S), db.session() as session:
                    rows = (await session.execute(select(Cpo.status, func.count()).group_by(Cpo.status))).all()
            except Exception as exc:  # the gauge keeps its last values; counted_at shows how old they are
                CPO_COUNT_FAILURES.inc()
                log.warning("counting CPOs by state failed: %s", type(exc).__name__)
                return
            counts = {str(status): int(n) for status, n in rows}
            for state in {*CpoStatus, *counts}:
                CPOS.labels(str(state)).set(counts.get(str(state), 0))
            CPOS_COUNTED_AT.set(time.time())
            self._counted = time.monotonic()


async def metrics(request: Request) -> Response:
    await request.app.state.cpo_counts.refresh(request.app.state.db)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
