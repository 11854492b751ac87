"""Group commit of the CSMS's per-connection writes (claims, boots and connector statuses) in one API
process.

A write is queued and its caller waits for the commit; while one transaction runs, the next writes
gather, and all of them go into the following transaction: the claims of new connections (two
executemany UPDATEs, one check of who holds the rows, the claimed chargers' layout in three reads),
one fencing UPDATE per charger state, one executemany of connector statuses, the EVSE changes of
the whole batch (app.network.evse_state). A transaction costs about the same for one write as for
hundreds, so under load the batches grow instead of the queue. A charger still gets its answer (or
its socket) only after its write committed.

A write whose connection lost its row fails with ConnectionLost and writes nothing. When a batch
fails as a whole (a database error, a deadlock between processes on Postgres), its writes are
retried one transaction each, so one bad write cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from app.csms.connections import Claim, ConnectionLost, ConnectionTable, Fence, Layout
from app.network import evse_state
from app.store.db import utcnow

log = logging.getLogger("cpolab.csms")

MAX_BATCH = 500


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


@dataclass
class ChargerWrite:
    fence: Fence
    report: evse_state.ConnectorReport | None = None
    done: asyncio.Future[None] = field(default_factory=_future)


@dataclass
class ClaimWrite:
    claim: Claim
    done: asyncio.Future[Layout | None] = field(default_factory=_future)


Write = ChargerWrite | ClaimWrite


class WriteBatcher:
    def __init__(self, table: ConnectionTable) -> None:
        self.table = table
        self.pending: list[Write] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, write: ChargerWrite) -> None:
        """Queue the write and wait for its commit (raises ConnectionLost, or the database error)."""
        self._enqueue(write)
        await write.done

    async def claim(self, claim: Claim) -> Layout | None:
        """Take the charger's row for a new connection: its layout once committed, or None when a
        newer pod generation holds the row (or the row is gone)."""
        write = ClaimWrite(claim)
        self._enqueue(write)
        return await write.done

    def _enqueue(self, write: Write) -> None:
        self.pending.append(write)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # Runs while there is something to write, then exits; the next write starts it again.
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

    async def _commit(self, batch: list[Write]) -> None:
        claims = [w for w in batch if isinstance(w, ClaimWrite)]
        writes = [w for w in batch if isinstance(w, ChargerWrite)]
        async with self.table.transaction() as session:
            now = utcnow()
            layouts = await self.table.claim(session, [w.claim for w in claims], now)
            held = await self.table.fence(session, (w.fence for w in writes), now) if writes else set()
            reports = [w.report for w in writes if w.report is not None and w.fence.connection_id in held]
            await evse_state.apply_reports(session, reports, now)
        evse_state.settle(reports)
        for claim in claims:
            if not claim.done.done():  # else its upgrade was abandoned meanwhile (the touch releases the row)
                claim.done.set_result(layouts.get(claim.claim.connection_id))
        for write in writes:
            if write.done.done():
                continue  # its handler was cancelled meanwhile
            if write.fence.connection_id in held:
                write.done.set_result(None)
            else:
                write.done.set_exception(ConnectionLost("this connection no longer holds the charger"))


def _fail(write: Write, exc: Exception) -> None:
    if not write.done.done():
        write.done.set_exception(exc)
