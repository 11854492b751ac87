"""Charging rows on a real database (SQLite, and Postgres with `--db postgres`): 1.6 transactionIds
from the counter under concurrent transactions, meter samples kept under their cap, the CDR marker,
Session PATCHes merging in the outbox while they wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from app.charging import sessions
from app.ocpi import push
from app.store.charging_tables import CdrPending, ChargingSession, MeterSample
from app.store.db import Database, utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import OutboxRow
from tests.databases import DatabaseFactory

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _row(transaction_id: str) -> ChargingSession:
    return ChargingSession(
        cpo_id=1, session_id=transaction_id, identity="CP", ocpp_version="1.6", transaction_id=transaction_id,
        location_id="L", evse_uid="E", connector_id="1", ocpp_evse_id=0, ocpp_connector_id=1, start_at=T0,
        status=sessions.ACTIVE, currency="EUR", created_at=T0, last_updated=T0,
    )  # fmt: skip


async def _allocate(db: Database, cpo_id: int) -> int:
    async with db.session() as session:
        value = await sessions.next_transaction_id(session, cpo_id)
        await asyncio.sleep(0.01)  # hold the row a little: the others must wait, not reuse the value
        await session.commit()
        return value


async def test_transaction_ids_are_unique_under_concurrency(databases: DatabaseFactory) -> None:
    async with databases.opened("tx_ids") as db:
        first = await _allocate(db, 1)
        if db.engine.dialect.name == "postgresql":
            ids = await asyncio.gather(*(_allocate(db, 1) for _ in range(20)))
        else:  # one writer at a time: the CSMS serializes its writes (write_lock)
            ids = [await _allocate(db, 1) for _ in range(20)]
        assert first == 1 and sorted(ids) == list(range(2, 22))
        assert await _allocate(db, 2) == 1  # per CPO


async def test_samples_stay_under_the_cap_and_keep_the_shape(
    databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "MAX_SAMPLES", 40)
    async with databases.opened("samples") as db, db.session() as session:
        cs = _row("7")
        session.add(cs)
        await session.flush()
        for minute in range(1, 200):
            reading = sessions.Reading(T0 + timedelta(minutes=minute), register_wh=minute * 100.0, power_w=6000.0)
            _, samples = sessions.apply_readings(cs, [reading])
            await sessions.record_samples(session, cs, samples)
        await session.commit()
        kept = await sessions.samples_of(session, cs.id or 0)
        count = (await session.execute(select(func.count()).select_from(MeterSample))).scalar_one()
        assert count == cs.sample_count <= 40 and len(kept) == count
        assert kept[0].energy_wh == 0.0 and kept[-1].energy_wh == 19_800.0  # the first and the newest stay
        assert [s.energy_wh for s in kept] == sorted(s.energy_wh for s in kept)
        # A repeated timestamp is ignored (a resend), the count does not move.
        await sessions.record_samples(session, cs, [{**_sample(cs, kept[-1].at)}])
        assert cs.sample_count == count


def _sample(cs: ChargingSession, at: datetime) -> dict[str, object]:
    return {"cpo_id": cs.cpo_id, "charging_session_id": cs.id, "at": at, "energy_wh": 1.0, "power_w": 0.0}


async def test_a_completed_session_leaves_one_cdr_marker(databases: DatabaseFactory) -> None:
    async with databases.opened("cdr_marker") as db, db.session() as session:
        cs = _row("8")
        session.add(cs)
        await session.flush()
        sessions.finish(cs, T0 + timedelta(hours=1), 1000.0, "Local")
        await sessions.on_session_completed(session, cs, T0)
        await sessions.on_session_completed(session, cs, T0)  # idempotent
        await session.commit()
        markers = (await session.execute(select(CdrPending))).scalars().all()
        assert [(m.cpo_id, m.session_id, m.charging_session_id) for m in markers] == [(1, "8", cs.id)]


async def test_a_pending_session_patch_absorbs_the_next_and_a_claimed_one_does_not(databases: DatabaseFactory) -> None:
    async with databases.opened("patch_merge") as db:
        now = T0
        async with db.session() as session:
            session.add(
                OcpiPeer(
                    cpo_id=5, version="2.2.1", token_b="b", versions_url="http://x/v", version_url="http://x/v/2.2.1",
                    endpoints=[], roles=[], created_at=now, updated_at=now,
                )
            )  # fmt: skip
            await session.commit()

        async def patch(n: int) -> None:
            async with db.session() as session:
                body = {"kwh": n, "charging_periods": [{"n": n}], "last_updated": f"t{n}"}
                await push.session_patch(session, 5, "S1", body)
                await session.commit()

        async def bodies() -> list[dict[str, object]]:
            async with db.session() as session:
                return list((await session.execute(select(OutboxRow.body).order_by(OutboxRow.id))).scalars())

        await patch(1)
        await patch(2)
        assert await bodies() == [{"kwh": 2, "charging_periods": [{"n": 1}, {"n": 2}], "last_updated": "t2"}]
        async with db.session() as session:  # a dispatcher is sending it: the next PATCH queues behind
            await session.execute(update(OutboxRow).values(claimed_until=utcnow() + timedelta(minutes=1)))
            await session.commit()
        await patch(3)
        assert [b["charging_periods"] for b in await bodies()] == [[{"n": 1}, {"n": 2}], [{"n": 3}]]
