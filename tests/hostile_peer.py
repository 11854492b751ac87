"""A hostile "eMSP" for the outbound-safety tests: a raw asyncio HTTP/1.1 server on loopback.

Raw sockets rather than a framework, so it can misbehave at the byte level. The first path segment
picks the behaviour (the rest is ignored), so one server serves every test:
  ok           versions / details envelopes (a well-behaved peer), `/ok/versions` and `/ok/2.2.1`
  slow         like ok, but versions answers after `drip_interval` seconds (holds a race window open)
  cookie       a valid versions envelope plus Set-Cookie headers (a session cookie and a flood)
  drip-body    headers at once, then the body one byte per `drip_interval` seconds
  drip-head    the status line and headers one byte per `drip_interval` seconds
  gzip-bomb    ~0.5 MB of gzip that inflates to 512 MiB of zeros
  nested       200 with `[[[[…]]]]` 100,000 levels deep
  deep         a valid envelope whose data is nested 40 levels deep (parses, but over the limit)
  huge         a 2 MiB JSON envelope
  gzip, deflate  a valid versions envelope, compressed (must decode fine)
  brotli       a body with Content-Encoding: br (not accepted)
  badgzip      Content-Encoding: gzip over bytes that are not gzip
  empty        200 with an empty body
  nostatus     200 with a JSON object that has no status_code
  redirect     302 to `/redirect-target` (which must never be requested)
  internal     500 text/html that names an internal service (must not be echoed)
  chatty       502 envelope with a 5,000-character status_message full of control characters
  userinfo     versions whose 2.2.1 URL carries user:password@
  badendpoint  details whose locations endpoint URL carries user:password@
Every request is recorded (path and headers); `connections` counts accepted connections and
`open` / `max_open` the concurrent ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

TS = "2024-01-01T00:00:00Z"


def envelope(data: object = None, status_code: int = 1000, **extra: object) -> bytes:
    return json.dumps({"data": data, "status_code": status_code, "timestamp": TS, **extra}).encode()


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """A valid gzip member inflating to 512 MiB of zeros. Built from one repeated deflate block (a
    full flush resets the window, so every 1 MiB block compresses to the same bytes): 0.2 s, not 3 s."""
    chunk = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = deflate.flush()
    crc = 0
    for _ in range(512):
        crc = zlib.crc32(chunk, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + block * 512 + end + struct.pack("<II", crc, (512 << 20) & 0xFFFFFFFF)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HostilePeer:
    drip_interval: float = 0.3
    ssl_context: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0  # accepted so far
    open: int = 0
    max_open: int = 0

    def __post_init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def base(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def url(self, profile: str, rest: str = "versions") -> str:
        return f"{self.base}/{profile}/{rest}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    async def start(self) -> HostilePeer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # dripping connections end now, not at their deadline
                writer.close()
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # ---- server -------------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = dict((k.strip().lower(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines[1:] if ln))
            if int(headers.get("content-length", 0) or 0):
                await reader.readexactly(int(headers["content-length"]))
            self.seen.append(Seen(method, path, headers))
            await self._respond(path.split("/")[1], path, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            pass
        finally:
            self.open -= 1
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    async def _send(
        self, writer: asyncio.StreamWriter, status: str, body: bytes, headers: list[tuple[str, str]] | None = None
    ) -> None:
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers or []]
        if not any(k.lower() == "content-type" for k, _ in headers or []):
            head.append("Content-Type: application/json")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    async def _hung_up(self, reader: asyncio.StreamReader) -> bool:
        """Waits one drip interval; True as soon as the client closed the connection."""
        try:
            return await asyncio.wait_for(reader.read(1), self.drip_interval) == b""
        except TimeoutError:
            return False

    async def _respond(
        self, profile: str, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        versions_path = path.endswith("/versions")
        if profile == "slow":
            await asyncio.sleep(self.drip_interval)
            profile = "ok"
        if profile in ("ok", "cookie", "badendpoint") and not versions_path:
            endpoints = [{"identifier": "credentials", "role": "SENDER", "url": self.url(profile, "2.2.1/credentials")}]
            loc = self.url(profile, "2.2.1/locations")
            if profile == "badendpoint":
                loc = loc.replace("://", "://user:secret@")
            endpoints.append({"identifier": "locations", "role": "RECEIVER", "url": loc})
            return await self._send(writer, "200 OK", envelope({"version": "2.2.1", "endpoints": endpoints}))
        if profile in ("ok", "badendpoint"):
            versions = [{"version": "2.2.1", "url": self.url(profile, "2.2.1")}]
            return await self._send(writer, "200 OK", envelope(versions))
        if profile == "cookie":
            cookies = [("Set-Cookie", "session=tenant-a-secret; Path=/")]
            cookies += [("Set-Cookie", f"flood{i}={'x' * 40}; Path=/") for i in range(300)]
            body = envelope([{"version": "2.2.1", "url": self.url(profile, "2.2.1")}])
            return await self._send(writer, "200 OK", body, cookies)
        if profile == "userinfo":
            url = self.url("ok", "2.2.1").replace("://", "://user:secret@")
            return await self._send(writer, "200 OK", envelope([{"version": "2.2.1", "url": url}]))
        if profile == "drip-body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            await writer.drain()
            while True:
                writer.write(b" ")
                await writer.drain()
                if await self._hung_up(reader):
                    return
        if profile == "drip-head":
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"y" * 100000:
                writer.write(bytes([byte]))
                await writer.drain()
                if await self._hung_up(reader):
                    return
        if profile == "gzip-bomb":
            return await self._send(writer, "200 OK", gzip_bomb(), [("Content-Encoding", "gzip")])
        if profile == "nested":
            return await self._send(writer, "200 OK", b"[" * 100_000 + b"]" * 100_000)
        if profile == "deep":
            data: object = "bottom"
            for _ in range(40):
                data = {"x": data}
            return await self._send(writer, "200 OK", envelope(data))
        if profile == "huge":
            return await self._send(writer, "200 OK", envelope("x" * (2 << 20)))
        if profile in ("gzip", "deflate"):
            plain = envelope([{"version": "2.2.1", "url": self.url("ok", "2.2.1")}])
            packed = zlib.compress(plain, wbits=31 if profile == "gzip" else zlib.MAX_WBITS)
            return await self._send(writer, "200 OK", packed, [("Content-Encoding", profile)])
        if profile == "brotli":
            return await self._send(writer, "200 OK", b"\x0b\x02\x80{}\x03", [("Content-Encoding", "br")])
        if profile == "badgzip":
            return await self._send(writer, "200 OK", b"\x1f\x8b not gzip at all", [("Content-Encoding", "gzip")])
        if profile == "empty":
            return await self._send(writer, "200 OK", b"")
        if profile == "nostatus":
            return await self._send(writer, "200 OK", b'{"data": []}')
        if profile == "redirect":
            return await self._send(writer, "302 Found", b"", [("Location", self.url("redirect-target"))])
        if profile == "internal":
            page = b"<html><head><title>Temporal Web UI</title></head><body>internal admin</body></html>"
            return await self._send(writer, "500 Internal Server Error", page, [("Content-Type", "text/html")])
        if profile == "chatty":
            message = ("\x1b[31mboom\x00\n" * 500)[:5000]
            return await self._send(writer, "502 Bad Gateway", envelope(None, 3000, status_message=message))
        await self._send(writer, "404 Not Found", envelope(None, 2000))
