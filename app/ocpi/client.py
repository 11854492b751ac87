"""Outgoing OCPI calls from a CPO to a peer (credentials callbacks, pushes, command results).

Every call carries fresh X-Request-ID, the caller's X-Correlation-ID, the peer's Token B (base64
for 2.2.1, raw for 2.1.1) and, on functional modules, routing headers; every call is logged ("out").

Peers are untrusted (anyone holding a Token A picks the URLs), so each call is bounded:
- the egress policy (app.ocpi.egress) vets the URL and every resolved address, and the connection
  goes to the vetted address (TLS still verifies the certificate and sends SNI for the URL's host);
- one deadline (`outbound_timeout`) covers waiting for a slot, DNS, connect, headers and body;
- the body is read as a stream and capped (`outbound_max_body`) after decompression, which
  app.ocpi.body does with a bounded inflater (a gzip bomb stops at the cap, not after 64 MiB);
- at most `outbound_per_cpo` calls of one CPO are in flight, so a tenant whose peers are slow only
  slows itself; the shared pool is sized well above what the per-CPO slots can hold at once;
- no cookie jar (nothing a peer sets is ever sent again, to it or to anyone else), no redirects,
  no proxy or certificate settings from the environment;
- error strings say what failed and carry at most a short, printable excerpt of what the peer said.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpcore
import httpx

from app.observability.metrics import count_ocpi_call
from app.ocpi import log as traffic
from app.ocpi.body import BodyRejected, excerpt, parse_json, read_body
from app.ocpi.egress import EgressPolicy, EgressRefused, UnresolvableHost, UrlRefused, check_url, redact
from app.settings import Settings, get_settings
from app.store.db import Database, utcnow

logger = logging.getLogger("cpolab.ocpi.client")

# Connections of one process across all CPOs. Far above what the per-CPO slots hold at once for
# a realistic number of live CPOs, so no tenant ever waits on the pool because of another one.
POOL_CONNECTIONS = 1000


@dataclass
class CallResult:
    http_status: int | None
    ocpi_status_code: int | None
    data: Any
    error: str | None
    headers: httpx.Headers | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Routing:
    from_country_code: str
    from_party_id: str
    to_country_code: str | None
    to_party_id: str | None

    def headers(self) -> dict[str, str]:
        out = {"OCPI-from-country-code": self.from_country_code, "OCPI-from-party-id": self.from_party_id}
        if self.to_country_code and self.to_party_id:
            out |= {"OCPI-to-country-code": self.to_country_code, "OCPI-to-party-id": self.to_party_id}
        return out


def auth_header(token: str, version: str) -> str:
    """2.2.1 sends base64(token); 2.1.1 predates that rule and sends the token raw."""
    if version == "2.1.1":
        return f"Token {token}"
    return "Token " + base64.b64encode(token.encode()).decode()


def join_url(base: str, *parts: str) -> str:
    """Exactly one slash between segments; the advertised base URL is otherwise left untouched."""
    url = base
    for part in parts:
        url = url.rstrip("/") + "/" + part.lstrip("/")
    return url


# ---- the pinned transport ---------------------------------------------------------------------------


class _VettedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer, connecting only to addresses the egress policy returned."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.resolve(host, port)
        except UnresolvableHost as exc:  # httpx reports it like any other connect failure
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception | None = None
        for address in addresses:
            try:  # the IP, not the name: no second DNS answer between the check and the connect
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # resolve() never returns an empty list
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no public parameter for the network backend: swap in a pool built on ours.
        # TLS keeps using the URL's host for SNI and certificate checks (httpcore's origin host).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=POOL_CONNECTIONS,
            max_keepalive_connections=100,
            keepalive_expiry=5.0,
            network_backend=_VettedBackend(policy),
        )


class _NoCookies(CookieJar):
    """Peers' cookies are dropped: one jar per process would carry tenant A's cookies to tenant B."""

    def set_cookie(self, cookie: Cookie) -> None:
        return

    def extract_cookies(self, response: Any, request: Any) -> None:
        return


def _new_client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=_PinnedTransport(EgressPolicy(settings)),
        timeout=settings.outbound_timeout,  # per operation; the overall deadline is in _exchange
        follow_redirects=False,  # a redirect drops Authorization on many stacks; reported as a failure
        cookies=_NoCookies(),
        trust_env=False,  # an HTTP(S)_PROXY would connect for us, past the egress policy
    )


@dataclass
class _Slots:
    sem: asyncio.Semaphore
    users: int = 0


@dataclass
class _LoopState:
    """What an event loop owns: its clients (one per settings) and the per-CPO slots."""

    clients: dict[Settings, httpx.AsyncClient] = field(default_factory=dict)
    slots: dict[int, _Slots] = field(default_factory=dict)

    def client(self, settings: Settings) -> httpx.AsyncClient:
        client = self.clients.get(settings)
        if client is None or client.is_closed:
            client = self.clients[settings] = _new_client(settings)
        return client

    @asynccontextmanager
    async def slot(self, cpo_id: int, limit: int) -> AsyncIterator[None]:
        slots = self.slots.get(cpo_id)
        if slots is None:
            slots = self.slots[cpo_id] = _Slots(asyncio.Semaphore(limit))
        slots.users += 1
        try:
            async with slots.sem:
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:  # idle CPOs cost nothing
                self.slots.pop(cpo_id, None)


_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()


def _state() -> _LoopState:
    loop = asyncio.get_running_loop()
    state = _states.get(loop)
    if state is None:
        state = _states[loop] = _LoopState()
    return state


# ---- one call ---------------------------------------------------------------------------------------


async def call(
    db: Database,
    *,
    cpo_id: int,
    method: str,
    url: str,
    token: str,
    version: str,
    module: str,
    body: Any = None,
    correlation_id: str | None = None,
    routing: Routing | None = None,
    settings: Settings | None = None,
) -> CallResult:
    """One OCPI request to a peer (`module`: the OCPI module called, a metrics label). Never raises
    for transport or protocol problems: `error` says what
    went wrong (refused URL or address, deadline, size, non-2xx, not an envelope, status_code outside
    1xxx, network), for the log and the caller."""
    settings = settings or get_settings()
    request_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    headers = {
        "Authorization": auth_header(token, version),
        "X-Request-ID": request_id,
        "X-Correlation-ID": correlation_id,
        "Accept-Encoding": "gzip, deflate",  # the only codings read_body inflates (bounded)
        **(routing.headers() if routing and version != "2.1.1" else {}),
    }
    content = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(body, separators=(",", ":"))
    at = utcnow()
    started = time.perf_counter()
    result = await _exchange(settings, cpo_id, method, url, headers, content)
    count_ocpi_call(module, result.error)
    traffic.record(
        db,
        cpo_id=cpo_id,
        timestamp=at,
        direction="out",
        method=method,
        url=redact(url),
        duration_ms=(time.perf_counter() - started) * 1000,
        http_status=result.http_status,
        ocpi_status_code=result.ocpi_status_code,
        request_id=request_id,
        correlation_id=correlation_id,
        error=result.error,
    )
    return result


class _Failed(Exception):
    """A call that ended without a usable body; the message is the CallResult error."""


async def _exchange(
    settings: Settings, cpo_id: int, method: str, url: str, headers: dict[str, str], content: str | None
) -> CallResult:
    try:
        check_url(url)
    except UrlRefused as exc:
        return CallResult(None, None, None, f"URL refused: {exc}")
    state = _state()
    status: int | None = None
    stage = f"a free outbound slot (this CPO already has {settings.outbound_per_cpo} calls in flight)"
    try:
        async with asyncio.timeout(settings.outbound_timeout):
            async with state.slot(cpo_id, settings.outbound_per_cpo):
                stage = "a response"
                async with state.client(settings).stream(method, url, headers=headers, content=content) as resp:
                    status, stage = resp.status_code, "the rest of the response body"
                    if resp.is_redirect:
                        raise _Failed(f"HTTP {status}: the peer redirected; redirects are not followed")
                    raw = await read_body(resp, settings.outbound_max_body)
                    resp_headers = resp.headers
    except (_Failed, BodyRejected) as exc:
        return CallResult(status, None, None, str(exc))
    except (TimeoutError, httpx.TimeoutException):
        message = f"timeout: no complete answer within {settings.outbound_timeout:g} s (still waiting for {stage})"
        return CallResult(status, None, None, message)
    except EgressRefused as exc:
        return CallResult(None, None, None, f"refused by the egress policy: {exc}")
    except httpx.HTTPError as exc:
        return CallResult(status, None, None, _network_message(exc))
    except (OSError, ValueError) as exc:  # below httpx's mapping (a socket quirk): still the peer's failure
        logger.warning("outbound call of CPO %s failed unexpectedly", cpo_id, exc_info=True)
        return CallResult(status, None, None, f"network error: {excerpt(type(exc).__name__)}")
    return _interpret(status, resp_headers, raw, settings.max_json_depth)


def _network_message(exc: httpx.HTTPError) -> str:
    kind = {
        httpx.ConnectError: "could not connect",
        httpx.RemoteProtocolError: "the peer broke the HTTP protocol",
        httpx.ReadError: "the connection failed while reading",
        httpx.WriteError: "the connection failed while sending",
    }.get(type(exc), "network error")
    detail = excerpt(exc) if str(exc) else type(exc).__name__
    return f"{kind}: {detail}"


# ---- what came back ---------------------------------------------------------------------------------


def _interpret(status: int, headers: httpx.Headers, raw: bytes, max_depth: int) -> CallResult:
    envelope, problem = parse_json(raw, max_depth)
    if not isinstance(envelope, dict):
        envelope = None
        problem = problem or "body is not a JSON object"
    status_code = envelope.get("status_code") if envelope else None
    status_code = status_code if isinstance(status_code, int) and not isinstance(status_code, bool) else None
    data = envelope.get("data") if envelope else None
    if not 200 <= status < 300:
        error = f"HTTP {status}" + (" (server error)" if status >= 500 else "")
    elif envelope is None:
        error = f"response is not an OCPI envelope ({problem})"
    elif status_code is None:
        error = "response is not an OCPI envelope (no integer status_code)"
    elif not 1000 <= status_code < 2000:
        error = f"OCPI status {status_code}"
    else:
        return CallResult(status, status_code, data, None, headers)
    message = envelope.get("status_message") if envelope else None
    if message:
        error += f": {excerpt(message)}"
    return CallResult(status, status_code, data, error, headers)
