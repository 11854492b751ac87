"""A CPO's chargers counted by live state: one COUNT … GROUP BY status on ix_charger_cpo_status.

The status endpoint is polled every second by hundreds of clients, so its counts come through
`CountCache`: concurrent polls of one CPO share one in-flight count and its answer is reused for
COUNTS_TTL_S, i.e. about one count per CPO per second per API process, however many poll it.
"""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from app.control.schemas import ChargerCounts, ChargerState
from app.store.db import Database
from app.store.tables import Charger

COUNTS_TTL_S = 1.0  # a poller sees counts at most this old (the CSMS itself notices silence far later)
MAX_CACHED = 10_000  # CPOs remembered; beyond that, ones nobody polled lately are forgotten


async def charger_counts(session: AsyncSession, cpo_id: int) -> ChargerCounts:
    counted = dict(
        (
            await session.execute(
                select(Charger.status, func.count()).where(Charger.cpo_id == cpo_id).group_by(Charger.status)
            )
        ).all()
    )
    return ChargerCounts(**{state.lower(): counted.get(state, 0) for state in ChargerState})


class CountCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._counts: dict[int, tuple[float, ChargerCounts]] = {}
        self._inflight: dict[int, asyncio.Future[ChargerCounts]] = {}

    async def get(self, cpo_id: int) -> ChargerCounts:
        cached = self._counts.get(cpo_id)
        if cached is not None and time.monotonic() - cached[0] < COUNTS_TTL_S:
            return cached[1]
        task = self._inflight.get(cpo_id)
        if task is None:
            task = asyncio.ensure_future(self._count(cpo_id))
            self._inflight[cpo_id] = task
            task.add_done_callback(lambda done: self._remember(cpo_id, done))
        # Shielded: a poller that hangs up must not cancel the count the others wait for.
        return await asyncio.shield(task)

    async def _count(self, cpo_id: int) -> ChargerCounts:
        async with self.db.session() as session:
            return await charger_counts(session, cpo_id)

    def _remember(self, cpo_id: int, done: asyncio.Future[ChargerCounts]) -> None:
        self._inflight.pop(cpo_id, None)
        if done.cancelled() or done.exception() is not None:
            return  # the waiters got the error; the next poll counts again
        now = time.monotonic()
        if len(self._counts) > MAX_CACHED:
            self._counts = {k: v for k, v in self._counts.items() if now - v[0] < COUNTS_TTL_S}
        self._counts[cpo_id] = (now, done.result())


def count_cache(request: Request) -> CountCache:
    """The API process's cache, made on first use."""
    cache: CountCache | None = getattr(request.app.state, "charger_count_cache", None)
    if cache is None:
        cache = CountCache(request.app.state.db)
        request.app.state.charger_count_cache = cache
    return cache
