"""Heartbeats for as long as an activity works, so its heartbeat timeout measures liveness.

A DB activity may legitimately wait (SQLite lets a writer wait 30 s for the lock); beating from a
side task while it awaits keeps a slow-but-alive worker from being retried on top of itself, and a
killed worker is still noticed within the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from temporalio import activity

INTERVAL_S = 2.0


@asynccontextmanager
async def heartbeating(interval: float = INTERVAL_S) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
