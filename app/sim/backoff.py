"""Reconnect waits: jittered exponential backoff, deterministic per (seed, identity, attempt).

A hash instead of a `random.Random` per charger: 10,000 Mersenne Twister states would cost ~25 MB,
a counter costs nothing, and a test replays the same waits.
"""

from __future__ import annotations

import hashlib

from websockets.datastructures import Headers

from app.sim.config import Tunables


def unit_jitter(seed: int, identity: str, attempt: int) -> float:
    """A number in [0, 1), the same for the same inputs on any machine and in any process."""
    digest = hashlib.blake2b(f"{seed}\x00{identity}\x00{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def reconnect_wait(
    t: Tunables, failures: int, jitter: float, *, refused: bool, retry_after: float | None = None
) -> float:
    """Seconds to wait before the next connection attempt after `failures` consecutive failures
    (0 = the first reconnect after a drop). A refusal that says when to come back (`Retry-After`, e.g.
    a charger detached for a while) is retried then, never later than a plain refusal, never at once."""
    if refused and retry_after is not None:
        return min(max(retry_after, t.backoff_min), t.refused_wait) + jitter * t.backoff_range
    wait = t.backoff_min * 2 ** min(failures, t.backoff_doublings) + jitter * t.backoff_range
    return max(wait, t.refused_wait + jitter * t.backoff_range) if refused else wait


def retry_after(headers: Headers) -> float | None:
    """The delay-seconds form of an HTTP `Retry-After` header (the date form is not used here)."""
    value = headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() and len(value) <= 6 else None
