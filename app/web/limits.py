"""Inbound request limits: a body-size cap for every HTTP route and a JSON nesting limit.

`RequestLimits` is an ASGI middleware. It answers 413 as soon as a declared Content-Length or the
bytes received so far pass `max_body`, without reading the rest (one client must not make the
server buffer or parse megabytes). Under the OCPI prefix the answers are OCPI envelopes; the
nesting check of OCPI bodies happens in `app.ocpi.transport.json_body` (OCPI 2001 there).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OcpiEnvelope = Callable[..., Response]

# A JSON string with its escapes: brackets inside strings are data, not nesting.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")


def json_too_deep(raw: bytes, limit: int) -> bool:
    """True when a JSON text nests arrays/objects deeper than `limit`.

    A pre-scan before any parser runs: json.loads raises RecursionError (and deeply nested values
    overflow recursive validators) long before it could report a clean error. Linear in the size
    of the body, with the string skipping and bracket filtering done in C.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep at all
    depth = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def too_deep_message(limit: int) -> str:
    return f"request body nests JSON arrays/objects deeper than {limit} levels"


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # malformed: the server already refused it
    return None


class RequestLimits:
    """Body cap (413) on every HTTP request; JSON nesting limit (422) on control-plane bodies.

    The body (at most `max_body` bytes) is read here, then replayed to the application in one
    message; later `receive` calls (disconnect detection) go to the server as before.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        max_json_depth: int,
        ocpi_prefix: str,
        ocpi_envelope: OcpiEnvelope,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_json_depth = max_json_depth
        self.ocpi_prefix = ocpi_prefix
        self.ocpi_envelope = ocpi_envelope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ocpi = scope["path"].startswith(self.ocpi_prefix)
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body:
            await self._too_large(ocpi, scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(ocpi, scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if not ocpi and body and json_too_deep(bytes(body), self.max_json_depth):
            issue = {"loc": ["body"], "msg": too_deep_message(self.max_json_depth), "type": "json_too_deep"}
            await JSONResponse({"detail": [issue]}, status_code=422)(scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, ocpi: bool, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body is larger than {self.max_body} bytes"
        # No `Connection: close`: uvicorn then reads and discards the unread rest (no buffering, no
        # parsing) so a client still writing its upload gets this answer instead of a reset.
        response: Response
        if ocpi:
            response = self.ocpi_envelope(status_code=2000, status_message=message, http_status=413)
        else:
            response = JSONResponse({"detail": message}, status_code=413)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        message: dict[str, Any] = {"type": "http.request", "body": body, "more_body": False}
        return message

    return replay
