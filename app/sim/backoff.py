"""Reconnect waits: jittered exponential backoff, deterministic per (seed, identity, attempt).

A hash instead of a `random.Random` per charger: 10,000 Mersenne Twister states would cost ~25 MB,
a counter costs nothing, and a test replays the same waits.
"""

from __future__ import annotations

import hashlib

from app.sim.config import Tunables


def unit_jitter(seed: int, identity: str, attempt: int) -> float:
    """A number in [0, 1), the same for the same inputs on any machine and in any process."""
    digest = hashlib.blake2b(f"{seed}\x00{identity}\x00{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def reconnect_wait(t: Tunables, failures: int, jitter: float, *, refused: bool) -> float:
    """Seconds to wait before the next connection attempt after `failures` consecutive failures
    (0 = the first reconnect after a drop)."""
    wait = t.backoff_min * 2 ** min(failures, t.backoff_doublings) + jitter * t.backoff_range
    return max(wait, t.refused_wait + jitter * t.backoff_range) if refused else wait
