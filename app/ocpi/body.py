"""Reading an untrusted peer's response: bounded body, bounded decompression, bounded JSON.

httpx inflates a whole network chunk at once (64 KiB of a gzip bomb becomes 64 MiB), so the client
reads the raw stream and inflates here with an output limit: memory stays at the cap whatever the
ratio. JSON deeper than the limit is refused (a RecursionError is caught, never raised).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import httpx

MAX_EXCERPT = 200  # characters of a peer-supplied string quoted in an error


class BodyRejected(Exception):
    """The body is unusable; the message says why (too large, bad compression, unknown coding)."""


def excerpt(text: Any, limit: int = MAX_EXCERPT) -> str:
    """A peer-supplied string made safe to quote: printable characters only, short."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _inflater(encoding: str) -> Any:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise BodyRejected(f"unsupported Content-Encoding {excerpt(encoding, 40)!r} (gzip and deflate are accepted)")


async def read_body(resp: httpx.Response, limit: int) -> bytes:
    """The decoded body, at most `limit` bytes; never inflates more than limit + 1 bytes."""
    inflater = _inflater(resp.headers.get("content-encoding", "").strip().lower())
    too_large = BodyRejected(f"response too large: the body exceeds {limit} bytes (after decompression)")
    out = bytearray()
    received = 0
    try:
        async for chunk in resp.aiter_raw():
            received += len(chunk)
            if received > limit:  # compressed input is capped too (trailing garbage is not free)
                raise too_large
            if inflater is None:
                out += chunk
                continue
            out += inflater.decompress(chunk, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise too_large
        if inflater is not None:
            out += inflater.flush()
    except zlib.error:
        raise BodyRejected("the response body is not valid compressed data") from None
    if len(out) > limit:
        raise too_large
    return bytes(out)


def _nested_deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(raw: bytes, max_depth: int) -> tuple[Any, str | None]:
    """(value, None) or (None, why it is unusable)."""
    if not raw.strip():
        return None, "empty body"
    try:
        value = json.loads(raw)
    except RecursionError:
        return None, f"JSON nested deeper than {max_depth} levels"
    except ValueError:
        return None, "body is not JSON"
    if _nested_deeper_than(value, max_depth):
        return None, f"JSON nested deeper than {max_depth} levels"
    return value, None
