"""OCPI transport shared by every module: envelope, DateTimes, auth, headers, errors, traffic log.

A handler is `async def endpoint(request, ctx: OcpiContext) -> Response` registered with `ocpi_route`;
the wrapper resolves the CPO, checks the version and the token, echoes the message ids, adds routing
headers on functional modules, turns `OcpiError` into an envelope and logs the exchange (only
when it carried a valid token of the CPO; other requests are just counted, see app.ocpi.log).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from app.lifecycle.models import GONE, workflow_id
from app.observability.logging import bind
from app.ocpi import log as traffic
from app.ocpi.resolve import CpoInfo, Credential, resolve
from app.store.db import Database, utcnow
from app.store.ocpi_tables import OcpiPeer
from app.web.http import MAX_ID
from app.web.limits import json_too_deep, too_deep_message
from app.web.urls import ocpi_root

logger = logging.getLogger("cpolab.ocpi")

# Modules that carry OCPI routing headers (configuration modules never do).
FUNCTIONAL_MODULES = frozenset({"locations", "sessions", "cdrs", "tariffs", "tokens", "commands", "chargingprofiles"})
MAX_ID_HEADER = 255


class OcpiError(Exception):
    """Raise anywhere in a handler: becomes an envelope with this OCPI status code and HTTP status."""

    def __init__(self, status_code: int, message: str, http_status: int = 200) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.http_status = http_status


# ---- DateTime ------------------------------------------------------------------------------------

_DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|z)?$")


def ocpi_datetime(dt: datetime) -> str:
    """UTC, whole seconds, `Z` designator (the spec forbids `+00:00`)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ocpi_datetime(value: str) -> datetime:
    """The three spec forms: `…Z`, no designator (UTC) and fractional seconds. Raises ValueError."""
    m = _DATETIME_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"not an OCPI DateTime: {value!r}")
    date, clock, frac, _ = m.groups()
    micros = (frac or ".0")[1:7].ljust(6, "0")
    return datetime.fromisoformat(f"{date}T{clock}.{micros}").replace(tzinfo=UTC)


# ---- envelope ------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return ocpi_datetime(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class OcpiResponse(Response):
    media_type = "application/json"
    ocpi_status_code: int | None = None


def ocpi_response(
    data: Any = None,
    *,
    status_code: int = 1000,
    status_message: str | None = None,
    http_status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The OCPI envelope; `timestamp` is taken now, per response. `data` is left out when None."""
    body: dict[str, Any] = {}
    if data is not None:
        body["data"] = data
    body["status_code"] = status_code
    if status_message is not None:
        body["status_message"] = status_message
    body["timestamp"] = ocpi_datetime(utcnow())
    content = json.dumps(body, default=_json_default, separators=(",", ":"), ensure_ascii=False)
    response = OcpiResponse(content, status_code=http_status, headers=dict(headers) if headers else None)
    response.ocpi_status_code = status_code
    return response


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise OcpiError(2001, "request body is missing", http_status=400)
    depth = request.app.state.settings.max_json_depth
    if json_too_deep(raw, depth):  # before json.loads, which would raise RecursionError
        raise OcpiError(2001, too_deep_message(depth), http_status=400)
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise OcpiError(2001, f"request body is not valid JSON: {exc}", http_status=400) from exc


# ---- context and auth ------------------------------------------------------------------------------


@dataclass
class OcpiContext:
    cpo: CpoInfo
    cpo_id: int
    version: str  # the CPO's OCPI version
    token_kind: str  # "A" or "C"
    peer_id: int | None  # None for Token A
    root_url: str  # absolute f"{base}/ocpi/peer/{cpo_id}"
    peer_country_code: str | None
    peer_party_id: str | None
    # Extras for handlers (credentials GET echoes the presented token; callbacks reuse the ids).
    db: Database | None = None
    peer: OcpiPeer | None = None  # the full row, loaded only for routes registered with needs_peer
    token: str = ""
    request_id: str = ""
    correlation_id: str = ""

    @property
    def version_url(self) -> str:
        return f"{self.root_url}/{self.version}"


def token_candidates(header: str | None) -> list[str]:
    """Tokens a header may carry, best guess first: base64-decoded (trailing newline stripped), raw."""
    if not header:
        return []
    value = header.strip()
    if value[:6].lower() == "token ":
        value = value[6:].strip()
    if not value:
        return []
    candidates: list[str] = []
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii").rstrip()
        if decoded and decoded.isprintable() and " " not in decoded:
            candidates.append(decoded)
    except (binascii.Error, ValueError):
        pass
    if value not in candidates:
        candidates.append(value)
    return candidates


def _message_id(request: Request, name: str) -> str:
    value = request.headers.get(name, "").strip()
    return value[:MAX_ID_HEADER] if value and value.isprintable() else str(uuid.uuid4())


Endpoint = Callable[[Request, OcpiContext], Awaitable[Response]]


class _Exchange:
    """Per-request state the wrapper needs for headers and the log, whatever happens in between."""

    def __init__(self, request: Request) -> None:
        self.started = time.perf_counter()
        self.at = utcnow()
        self.request_id = _message_id(request, "x-request-id")
        self.correlation_id = _message_id(request, "x-correlation-id")
        bind(correlation_id=self.correlation_id)
        self.cpo: CpoInfo | None = None
        self.cred: Credential | None = None
        self.authenticated = False  # a live token of this CPO was presented (even if refused here)


def _error(status_code: int, message: str, http_status: int, headers: Mapping[str, str] | None = None) -> Response:
    return ocpi_response(status_code=status_code, status_message=message, http_status=http_status, headers=headers)


async def _dispatch(request: Request, ex: _Exchange, endpoint: Endpoint, route: _RouteSpec) -> Response:
    cpo_id = request.path_params["cpo_id"]
    if cpo_id > MAX_ID:
        return _error(2000, f"no OCPI platform for CPO {cpo_id}", 404)
    db: Database = request.app.state.db
    cpo, cred = await resolve(db, cpo_id, token_candidates(request.headers.get("authorization")))
    if cpo is None or cpo.status in GONE:
        return _error(2000, f"no OCPI platform for CPO {cpo_id}", 404)
    ex.cpo = cpo
    bind(cpo_id=cpo_id, workflow_id=workflow_id(cpo_id))
    ex.authenticated = cred is not None
    version = request.path_params.get("version")
    if version is not None and version != cpo.ocpi_version:
        return _error(3002, f"unsupported version {version}; this CPO speaks OCPI {cpo.ocpi_version}", 404)
    if request.method not in route.methods:
        allow = ", ".join(sorted(route.methods))
        return _error(2000, f"method {request.method} not allowed on {route.module}", 405, {"Allow": allow})
    if cred is None:
        return _error(2000, "missing or unknown token", 401, {"WWW-Authenticate": "Token"})
    if cred.kind == "A" and not route.token_a:
        return _error(2000, f"Token A only opens versions and credentials, not {route.module}", 401)
    ex.cred = cred
    peer = None
    if route.needs_peer and cred.peer_id is not None:
        async with db.session() as session:
            peer = await session.get(OcpiPeer, cred.peer_id)
    ctx = OcpiContext(
        cpo=cpo,
        cpo_id=cpo_id,
        version=cpo.ocpi_version,
        token_kind=cred.kind,
        peer_id=cred.peer_id,
        root_url=ocpi_root(request, cpo_id),
        peer_country_code=cred.peer_country_code,
        peer_party_id=cred.peer_party_id,
        db=db,
        peer=peer,
        token=cred.token,
        request_id=ex.request_id,
        correlation_id=ex.correlation_id,
    )
    return await endpoint(request, ctx)


def _finish(request: Request, ex: _Exchange, response: Response, module: str) -> Response:
    response.headers["X-Request-ID"] = ex.request_id
    response.headers["X-Correlation-ID"] = ex.correlation_id
    cpo = ex.cpo
    if module in FUNCTIONAL_MODULES and cpo is not None and cpo.ocpi_version != "2.1.1":
        # Peer to peer the response swaps the request's roles: FROM = this CPO, TO = the caller.
        peer_ids = ex.cred is not None and ex.cred.peer_id is not None
        to_cc = ex.cred.peer_country_code if peer_ids else request.headers.get("ocpi-from-country-code")
        to_pid = ex.cred.peer_party_id if peer_ids else request.headers.get("ocpi-from-party-id")
        response.headers["OCPI-from-country-code"] = cpo.country_code
        response.headers["OCPI-from-party-id"] = cpo.party_id
        if to_cc and to_pid:
            response.headers["OCPI-to-country-code"] = to_cc
            response.headers["OCPI-to-party-id"] = to_pid
    if cpo is None:
        return response
    if not ex.authenticated:
        traffic.reject(request.app.state.db, cpo.id, ex.at)  # counted, never logged: see app.ocpi.log
    else:
        traffic.record(
            request.app.state.db,
            cpo_id=cpo.id,
            timestamp=ex.at,
            direction="in",
            method=request.method,
            url=str(request.url),
            duration_ms=(time.perf_counter() - ex.started) * 1000,
            http_status=response.status_code,
            ocpi_status_code=getattr(response, "ocpi_status_code", None),
            request_id=ex.request_id,
            correlation_id=ex.correlation_id,
            error=getattr(response, "ocpi_error", None),
        )
    return response


Wrapper = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class _RouteSpec:
    methods: frozenset[str]
    module: str
    token_a: bool  # Token A opens it (versions, credentials)
    needs_peer: bool  # the handler reads the full peer row (ctx.peer); others get its routing ids only


def _wrap(endpoint: Endpoint, route: _RouteSpec) -> Wrapper:
    async def wrapper(request: Request) -> Response:
        ex = _Exchange(request)
        try:
            response = await _dispatch(request, ex, endpoint, route)
        except OcpiError as exc:
            response = _error(exc.status_code, exc.message, exc.http_status)
        except Exception as exc:
            logger.exception("OCPI %s %s failed", request.method, request.url.path)
            response = _error(3000, "internal server error", 500)
            response.ocpi_error = f"{type(exc).__name__}: {exc}"  # type: ignore[attr-defined]
        if response.status_code >= 400 and not getattr(response, "ocpi_error", None):
            response.ocpi_error = _status_message(response)  # type: ignore[attr-defined]
        return _finish(request, ex, response, route.module)

    wrapper.__name__ = getattr(endpoint, "__name__", "ocpi_endpoint")
    return wrapper


def _status_message(response: Response) -> str | None:
    try:
        return json.loads(response.body).get("status_message")
    except (ValueError, AttributeError):
        return None


class OcpiRoute(Route):
    """Answers the path with and without a trailing slash (no redirects: clients drop POSTs and auth
    on a 307), and answers a wrong method itself with a 405 envelope."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, methods: list[str], name: str) -> None:
        super().__init__(path, endpoint, methods=methods, name=name)
        self.path_regex = re.compile(self.path_regex.pattern.removesuffix("$").rstrip("/") + "/?$")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)  # the wrapper checks the method (envelope 405)


def ocpi_route(
    path: str,
    endpoint: Endpoint,
    *,
    methods: list[str],
    module: str,
    token_a: bool = False,
    needs_peer: bool = False,
) -> Route:
    allowed = frozenset(m.upper() for m in methods) | ({"HEAD"} if "GET" in (m.upper() for m in methods) else set())
    wrapper = _wrap(endpoint, _RouteSpec(allowed, module, token_a, needs_peer))
    return OcpiRoute(path, wrapper, methods=sorted(allowed), name=f"ocpi_{module}_{wrapper.__name__}")


async def not_found(request: Request) -> Response:
    """Catch-all under /ocpi/peer/: an envelope 404 rather than the control plane's JSON."""
    response = _error(2000, f"no OCPI endpoint at {request.url.path}", 404)
    response.headers["X-Request-ID"] = _message_id(request, "x-request-id")
    response.headers["X-Correlation-ID"] = _message_id(request, "x-correlation-id")
    return response


class _CatchAll(Route):
    """Envelope 404 for any other path under /ocpi/peer/. It only ever matches PARTIAL, so a real
    route that matched the path with another method still wins (and answers 405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        return (Match.PARTIAL, child) if match != Match.NONE else (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def catch_all_route() -> Route:
    return _CatchAll("/ocpi/peer/{rest:path}", not_found, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
