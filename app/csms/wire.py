"""The connection object `ocpp.ChargePoint` reads and writes (`recv()` / `send(text)`) over a
Starlette WebSocket, with what the library does not do itself:

- every frame is pre-parsed (app.csms.frames): a bad one is answered with our CALLERROR here and
  never reaches the library, so its receive loop only ever sees well-formed CALLs and results;
- CALLRESULT/CALLERROR frames arrive only while a CALL of ours is in flight (the library queues
  them without bound otherwise); unsolicited ones are logged and dropped;
- frames are read at most `rate` per second (bursts of twice that): with one frame handled at a
  time per connection, a flooding charger only slows itself;
- every frame, both ways, goes to the OCPP log (redacted).

A disconnect ends `recv()` with WebSocketDisconnect, which ends the library's `start()`.
"""

from __future__ import annotations

import asyncio
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.csms import frames
from app.csms.ocpp_log import FrameLogger


class TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = 2 * rate
        self.tokens = self.capacity
        self.at = time.monotonic()

    def wait(self) -> float:
        """Take a token: 0, or the seconds to sleep first (a plain call: no coroutine per frame)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        delay = (1 - self.tokens) / self.rate
        self.tokens, self.at = 0.0, now + delay  # the token that refills meanwhile is taken
        return delay


class OcppSocket:
    def __init__(
        self, websocket: WebSocket, *, ocpp_version: str, max_frame: int, rate: float, log_frame: FrameLogger
    ) -> None:
        self.websocket = websocket
        self.ocpp_version = ocpp_version
        self.max_frame = max_frame
        self.bucket = TokenBucket(rate)
        self.log_frame = log_frame
        self.answering: str | None = None  # the action of the CALL being answered
        # The CALL `recv` returned last, parsed, and its text (the ChargePoint routes it without
        # parsing it again); None after a result.
        self.frame: frames.Frame | None = None
        self.frame_text: str | None = None
        self.pending: dict[str, str] = {}  # message id → action of our CALLs in flight (set by the ChargePoint)

    async def recv(self) -> str:
        while True:
            delay = self.bucket.wait()
            if delay:
                await asyncio.sleep(delay)
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
            text = message.get("text")
            if text is None:
                data = message.get("bytes") or b""
                self.log_frame("in", 0, None, None, f"<binary frame, {len(data)} bytes>")
                self.answering = None
                await self.send(frames.call_error(self.ocpp_version, "-1", "FormatViolation", "OCPP-J frames are text"))
                continue
            try:
                frame = frames.parse(text, self.ocpp_version, self.max_frame)
            except frames.FrameError as bad:
                self.log_frame("in", 0, None, None, frames.redacted(0, text))
                self.answering = None
                if bad.reply is not None:
                    await self.send(bad.reply)
                continue
            if frame.message_type == frames.CALL:
                self.log_frame("in", frames.CALL, frame.message_id, frame.action, frames.redacted(frames.CALL, text))
                self.answering = frame.action
                self.frame, self.frame_text = frame, text
                return text
            self.frame = self.frame_text = None
            action = self.pending.get(frame.message_id)
            self.log_frame(
                "in", frame.message_type, frame.message_id, action, frames.redacted(frame.message_type, text)
            )
            if action is not None:
                return text

    async def send(self, text: str, message_type: int | None = None, message_id: str | None = None) -> None:
        """Send a frame. A caller that encoded a CALLRESULT itself passes its type and id; else they
        are read from the text's head (and a CALLERROR's code spelled the version's way)."""
        action = None
        if message_type is None:
            text = frames.fix_error_spelling(text, self.ocpp_version)
            message_type, message_id, action = frames.head(text)
        if message_type != frames.CALL:
            action = self.answering
        self.log_frame("out", message_type, message_id, action, frames.redacted(message_type, text))
        await self.websocket.send_text(text)
