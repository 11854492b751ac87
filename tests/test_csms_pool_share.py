"""The CSMS's write transactions hold a bounded part of the API process's database pool: a storm of
them (a big CPO's chargers disconnecting at teardown, a sim worker's failover) leaves connections
for every other request of the process. Fresh-clone CI on Postgres once saw a 2,000-charger
teardown's releases hold all 30 connections while another tenant's credentials handshake waited
~4 s for one.
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

        async def csms_write() -> None:
            nonlocal holding, peak
            async with table.transaction() as session:
                await session.execute(text("SELECT 1"))  # a connection of the pool is checked out
                holding += 1
                peak = max(peak, holding)
                await go_on.wait()
                holding -= 1

        storm = [asyncio.create_task(csms_write()) for _ in range(40)]  # more than the pool holds
        try:
            await asyncio.sleep(0.3)
            writers = 1 if db.engine.dialect.name == "sqlite" else PG_CSMS_WRITERS
            assert peak == writers
            # Another tenant's request gets a connection at once, not after the storm.
            async with asyncio.timeout(2), db.session() as session:
                assert (await session.execute(text("SELECT 1"))).scalar() == 1
        finally:
            go_on.set()
            await asyncio.gather(*storm)
        assert holding == 0 and peak == writers
