"""Outgoing OCPI calls from a CPO to a peer (credentials callbacks, pushes, command results).

Every call carries fresh X-Request-ID, the caller's X-Correlation-ID, the peer's Token B (base64
for 2.2.1, raw for 2.1.1) and, on functional modules, routing headers; every call is logged ("out").
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import httpx

from app.ocpi import log as traffic
from app.store.db import Database, utcnow

# Shorter than any sane peer timeout: the credentials callbacks run inside the peer's own POST.
DEFAULT_TIMEOUT_S = 5.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def http_client() -> httpx.AsyncClient:
    """One pooled client per event loop (keep-alive to the peer makes the handshake cheap)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient(
            timeout=DEFAULT_TIMEOUT_S,
            follow_redirects=False,  # a redirect drops Authorization on many stacks; treat as failure
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
    return client


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


async def call(
    db: Database,
    *,
    cpo_id: int,
    method: str,
    url: str,
    token: str,
    version: str,
    body: Any = None,
    correlation_id: str | None = None,
    routing: Routing | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> CallResult:
    """One OCPI request to a peer. Never raises for transport or protocol problems: `error` says what
    went wrong (non-2xx, not an envelope, status_code outside 1xxx, network), for the log and caller."""
    request_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    headers = {
        "Authorization": auth_header(token, version),
        "X-Request-ID": request_id,
        "X-Correlation-ID": correlation_id,
        **(routing.headers() if routing and version != "2.1.1" else {}),
    }
    content = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        content = json.dumps(body, separators=(",", ":"))
    at = utcnow()
    started = time.perf_counter()
    result = await _send(method, url, headers, content, timeout)
    traffic.record(
        db,
        cpo_id=cpo_id,
        timestamp=at,
        direction="out",
        method=method,
        url=url,
        duration_ms=(time.perf_counter() - started) * 1000,
        http_status=result.http_status,
        ocpi_status_code=result.ocpi_status_code,
        request_id=request_id,
        correlation_id=correlation_id,
        error=result.error,
    )
    return result


async def _send(method: str, url: str, headers: dict[str, str], content: str | None, timeout: float) -> CallResult:
    try:
        resp = await http_client().request(method, url, headers=headers, content=content, timeout=timeout)
    except httpx.HTTPError as exc:
        return CallResult(None, None, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    except ValueError as exc:  # malformed URL
        return CallResult(None, None, None, f"bad URL {url!r}: {exc}")
    try:
        envelope = resp.json()
    except ValueError:
        envelope = None
    status_code = envelope.get("status_code") if isinstance(envelope, dict) else None
    status_code = status_code if isinstance(status_code, int) else None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    error = None
    if not 200 <= resp.status_code < 300:
        error = f"HTTP {resp.status_code}"
    elif status_code is None:
        error = "response is not an OCPI envelope"
    elif not 1000 <= status_code < 2000:
        error = f"OCPI status {status_code}"
    if error and isinstance(envelope, dict) and envelope.get("status_message"):
        error += f": {envelope['status_message']}"
    return CallResult(resp.status_code, status_code, data, error, resp.headers)
