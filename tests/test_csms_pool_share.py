"""The CSMS's write transactions hold a bounded part of the API process's database pool: a storm of
them (a big CPO's chargers disconnecting at teardown, a sim worker's failover) leaves connections
for every other request of the process. Fresh-clone CI on Postgres once saw a torn-down CPO's
releases hold the pool's connections while another tenant's credentials handshake waited ~4 s.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from app.csms.connections import PG_CSMS_WRITERS, ConnectionTable
from tests.databases import DatabaseFactory


async def test_a_storm_of_csms_writes_leaves_the_pool_to_other_requests(databases: DatabaseFactory) -> None:
    async with databases.opened("csms_pool_share") as db:
        table = ConnectionTable(db, "api-test")
        holding = 0
        peak = 0
        go_on = asyncio.Event()
        writers = 1 if db.engine.dialect.name == "sqlite" else PG_CSMS_WRITERS
        bound_reached = asyncio.Event()

        async def csms_write() -> None:
            nonlocal holding, peak
            async with table.transaction() as session:
                await session.execute(text("SELECT 1"))  # a connection of the pool is checked out
                holding += 1
                peak = max(peak, holding)
                if holding >= writers:
                    bound_reached.set()
                await go_on.wait()
                holding -= 1

        storm = [asyncio.create_task(csms_write()) for _ in range(40)]  # more than the pool holds
        try:
            # Each writer opens a connection of its own: slow on a loaded box.
            await asyncio.wait_for(bound_reached.wait(), 15)
            await asyncio.sleep(0.3)  # room for one more to get in, were the bound not kept
            assert peak == writers
            # Another tenant's request gets a connection now, not after the storm (unbounded, the
            # storm holds all 30 and this waits for the pool's 30 s timeout).
            async with asyncio.timeout(5), db.session() as session:
                assert (await session.execute(text("SELECT 1"))).scalar() == 1
        finally:
            go_on.set()
            await asyncio.gather(*storm)
        assert holding == 0 and peak == writers
