"""An independent eMSP test peer: a small Starlette app served by uvicorn on loopback, in-process.

Written from the OCPI 2.2.1 text, not from our CPO code. Its behaviour is picked per registration by
a path segment ("profile"), so tests sharing one server never interfere:
  ok          versions 2.1.1 + 2.2.1, details with RECEIVER endpoints, receivers answer 1000
  nocommon    versions lists only 2.0
  fail401     versions answers HTTP 401
  fail500     versions answers HTTP 500
  badjson     versions answers 200 with a non-JSON body
  baddetails  versions fine, details answer OCPI 2000 without data
  down        receivers answer HTTP 503 (pushes fail, real-time authorization too)
Real-time authorization (`POST …/tokens/{uid}/authorize`) answers what `authorizations[uid]` scripts
(AuthorizationInfo, optionally after a delay); a uid not scripted is unknown (HTTP 404, 2004).
A test may also make single paths fail for a while (`failing`: HTTP 503 while listed).
Every request it gets is recorded (with the decoded token and routing headers) for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.stack import free_port

Z_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
ROUTING = ("ocpi-from-country-code", "ocpi-from-party-id", "ocpi-to-country-code", "ocpi-to-party-id")
RECEIVERS = ("locations", "sessions", "cdrs", "tariffs")
SENDERS = ("tokens", "commands")
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def envelope(data: Any = None, status_code: int = 1000, http: int = 200, **headers: str) -> JSONResponse:
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"data": data, "status_code": status_code, "timestamp": ts}
    return JSONResponse(body, status_code=http, headers=headers or None)


def b64(token: str) -> str:
    return base64.b64encode(token.encode()).decode()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    token: str | None  # the token as the peer understood it (decoded for 2.2.1)
    http_status: int = 200  # what the peer answered (503 while the path was in `failing`)
    at: float = field(default_factory=time.monotonic)  # when it arrived (benchmarks time pushes with it)
    wall_at: float = field(default_factory=time.time)  # the same on the wall clock (push lag: vs last_updated)


@dataclass(frozen=True)
class Authorization:
    """A scripted real-time authorization answer."""

    allowed: str  # OCPI AllowedType
    authorization_reference: str | None = None
    delay: float = 0.0  # seconds before answering (a slow eMSP)


@dataclass
class EmspPeer:
    country_code: str = "NL"
    party_id: str = "EMS"
    port: int = field(default_factory=free_port)
    tokens_b: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    authorizations: dict[str, Authorization] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)  # request paths answered HTTP 503 while listed

    def __post_init__(self) -> None:
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/{profile}/versions", self._versions, methods=["GET"]),
                Route("/{profile}/{version}", self._details, methods=["GET"]),
                Route("/{profile}/{version}/{module}/{rest:path}", self._receiver, methods=ALL_METHODS),
                Route("/{profile}/{version}/{module}", self._receiver, methods=ALL_METHODS),
            ]
        )

    # ---- lifecycle ---------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def versions_url(self, profile: str = "ok") -> str:
        return f"{self.base}/{profile}/versions"

    async def start(self) -> EmspPeer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        deadline = time.monotonic() + 10
        while not self._server.started:
            if self._task.done() or time.monotonic() > deadline:
                raise RuntimeError("eMSP peer did not start")
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)

    # ---- helpers for tests -------------------------------------------------------------------------

    def new_token(self) -> str:
        token = "B-" + secrets.token_hex(16)
        self.tokens_b.add(token)
        return token

    def credentials(self, token_b: str, profile: str = "ok", version: str = "2.2.1") -> dict[str, Any]:
        business = {"name": "Test eMSP"}
        if version == "2.1.1":
            return {
                "token": token_b,
                "url": self.versions_url(profile),
                "business_details": business,
                "country_code": self.country_code,
                "party_id": self.party_id,
            }
        role = {"role": "EMSP", "business_details": business, "country_code": self.country_code}
        return {"token": token_b, "url": self.versions_url(profile), "roles": [{**role, "party_id": self.party_id}]}

    def response_url(self, profile: str = "ok", version: str = "2.2.1") -> str:
        return f"{self.base}/{profile}/{version}/commands/result/{secrets.token_hex(4)}"

    async def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 5.0) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            for item in self.received:
                if predicate(item):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the eMSP peer did not receive the expected request")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # ---- the eMSP's own OCPI endpoints ----------------------------------------------------------------

    def _authorized(self, request: Request, version: str) -> str | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Token "):
            return None
        value = header[6:]
        if version != "2.1.1":  # 2.2.1 requires base64; 2.1.1 peers send the token raw
            try:
                value = base64.b64decode(value, validate=True).decode()
            except ValueError:
                return None
        return value if value in self.tokens_b else None

    async def _record(self, request: Request, token: str | None) -> None:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.received.append(Received(request.method, request.url.path, dict(request.headers), body, token))
        self._changed.set()

    async def _versions(self, request: Request) -> Response:
        profile = request.path_params["profile"]
        token = self._authorized(request, "2.2.1") or self._authorized(request, "2.1.1")
        await self._record(request, token)
        if token is None or profile == "fail401":
            return envelope(None, 2000, 401)
        if profile == "fail500":
            return PlainTextResponse("boom", status_code=500)
        if profile == "badjson":
            return PlainTextResponse("this is not json", status_code=200)
        versions = ["2.0"] if profile == "nocommon" else ["2.1.1", "2.2.1"]
        return envelope([{"version": v, "url": f"{self.base}/{profile}/{v}"} for v in versions])

    async def _details(self, request: Request) -> Response:
        profile, version = request.path_params["profile"], request.path_params["version"]
        token = self._authorized(request, version)
        await self._record(request, token)
        if token is None:
            return envelope(None, 2000, 401)
        if profile == "baddetails":
            return envelope(None, 2000)
        base = f"{self.base}/{profile}/{version}"
        endpoints = [{"identifier": "credentials", "role": "SENDER", "url": f"{base}/credentials"}]
        endpoints += [{"identifier": m, "role": "RECEIVER", "url": f"{base}/{m}"} for m in RECEIVERS]
        endpoints += [{"identifier": m, "role": "SENDER", "url": f"{base}/{m}"} for m in SENDERS]
        if version == "2.1.1":
            endpoints = [{"identifier": e["identifier"], "url": e["url"]} for e in endpoints[:5]]
        return envelope({"version": version, "endpoints": endpoints})

    async def _receiver(self, request: Request) -> Response:
        profile, version = request.path_params["profile"], request.path_params["version"]
        token = self._authorized(request, version)
        await self._record(request, token)
        if token is None:
            return envelope(None, 2000, 401)
        if profile == "down" or request.url.path in self.failing:
            self.received[-1].http_status = 503
            return envelope(None, 3000, 503)
        rest = request.path_params.get("rest", "")
        if request.path_params["module"] == "tokens" and request.method == "POST" and rest.endswith("/authorize"):
            return await self._authorize(request, rest.removesuffix("/authorize"))
        if request.path_params["module"] == "cdrs" and request.method == "POST":
            return envelope(None, http=201, Location=f"{self.base}/{profile}/{version}/cdrs/{secrets.token_hex(4)}")
        return envelope()

    async def _authorize(self, request: Request, uid: str) -> Response:
        script = self.authorizations.get(uid)
        if script is None:
            return envelope(None, 2004, 404)
        if script.delay:
            await asyncio.sleep(script.delay)
        token = {
            "country_code": self.country_code,
            "party_id": self.party_id,
            "uid": uid,
            "type": request.query_params.get("type", "RFID"),
            "contract_id": f"{self.country_code}-{self.party_id}-{uid}"[:36],
            "issuer": "Test eMSP",
            "valid": True,
            "whitelist": "ALLOWED",
            "last_updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        info: dict[str, Any] = {"allowed": script.allowed, "token": token}
        if script.authorization_reference:
            info["authorization_reference"] = script.authorization_reference
        return envelope(info)


class OcpiClient:
    """What an eMSP uses to call the CPO: Token in the 2.2.1 form (base64) unless told raw."""

    def __init__(self, http: httpx.AsyncClient, token: str, *, raw: bool = False) -> None:
        self.http = http
        self.token = token
        self.raw = raw

    def headers(self, **extra: str) -> dict[str, str]:
        value = self.token if self.raw else b64(self.token)
        return {"Authorization": f"Token {value}", **extra}

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers(), **kw.pop("headers", {})}
        return await self.http.request(method, url, headers=headers, **kw)


def ok(resp: httpx.Response, http_status: int = 200, status_code: int = 1000) -> Any:
    assert resp.status_code == http_status, resp.text
    body = resp.json()
    assert body["status_code"] == status_code, body
    assert Z_TIMESTAMP.match(body["timestamp"]), body
    return body.get("data")


def err(resp: httpx.Response, http_status: int, status_code: int | None = None) -> dict[str, Any]:
    assert resp.status_code == http_status, resp.text
    body = resp.json()
    assert Z_TIMESTAMP.match(body["timestamp"]) and body.get("data") is None, body
    if status_code is not None:
        assert body["status_code"] == status_code, body
    else:
        assert 2000 <= body["status_code"] < 3000, body
    return body


# ---- flows shared by the OCPI tests and the benchmark -----------------------------------------------

CPO_BODY = {"template": "small-urban-ac", "country_code": "DE", "party_id": "OCP", "name_prefix": "ocpi-test"}


async def new_cpo(control: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """POST /ocpi/cpos; returns the 202 body."""
    resp = await control.post("/ocpi/cpos", json={**CPO_BODY, **overrides})
    assert resp.status_code == 202, resp.text
    return resp.json()


def credentials_url(cpo: dict[str, Any], version: str = "2.2.1") -> str:
    return cpo["ocpi_peer_url"].removesuffix("/versions") + f"/{version}/credentials"


async def register(
    http: httpx.AsyncClient, cpo: dict[str, Any], peer: EmspPeer, profile: str = "ok", version: str = "2.2.1"
) -> tuple[httpx.Response, str]:
    """The eMSP side of the registration POST with Token A; returns (response, token B sent)."""
    token_b = peer.new_token()
    client = OcpiClient(http, cpo["token_a"], raw=version == "2.1.1")
    resp = await client.request("POST", credentials_url(cpo, version), json=peer.credentials(token_b, profile, version))
    return resp, token_b
