"""Group commit of the CSMS's per-message writes (boots and connector statuses) in one API process.

A write is queued and its handler waits for the commit; while one transaction runs, the next writes
gather, and all of them go into the following transaction: one fencing UPDATE per charger state,
one executemany of connector statuses, the EVSE changes of the whole batch (app.network.evse_state).
A transaction costs about the same for one write as for hundreds, so under load the batches grow
instead of the queue. A charger still gets its answer only after its write committed.

A write whose connection lost its row fails with ConnectionLost and writes nothing. When a batch
fails as a whole (a database error), its writes are retried one transaction each, so one bad write
cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from app.csms.connections import ConnectionLost, ConnectionTable, Fence
from app.network import evse_state
from app.store.db import utcnow

log = logging.getLogger("cpolab.csms")

MAX_BATCH = 500


@dataclass
class ChargerWrite:
    fence: Fence
    report: evse_state.ConnectorReport | None = None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class WriteBatcher:
    def __init__(self, table: ConnectionTable) -> None:
        self.table = table
        self.pending: list[ChargerWrite] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, write: ChargerWrite) -> None:
        """Queue the write and wait for its commit (raises ConnectionLost, or the database error)."""
        self.pending.append(write)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        await write.done

    async def _run(self) -> None:
        # Runs while there is something to write, then exits; the next `submit` starts it again.
        while self.pending:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            try:
                await self._commit(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    continue
                log.warning("a batch of %d charger writes failed (%s); retrying them one by one", len(batch), exc)
                for write in batch:
                    try:
                        await self._commit([write])
                    except Exception as single:
                        _fail(write, single)

    async def _commit(self, batch: list[ChargerWrite]) -> None:
        async with self.table.transaction() as session:
            now = utcnow()
            held = await self.table.fence(session, (w.fence for w in batch), now)
            reports = [w.report for w in batch if w.report is not None and w.fence.connection_id in held]
            await evse_state.apply_reports(session, reports, now)
        evse_state.settle(reports)
        for write in batch:
            if write.done.done():
                continue  # its handler was cancelled meanwhile
            if write.fence.connection_id in held:
                write.done.set_result(None)
            else:
                write.done.set_exception(ConnectionLost("this connection no longer holds the charger"))


def _fail(write: ChargerWrite, exc: Exception) -> None:
    if not write.done.done():
        write.done.set_exception(exc)
