"""Per-org quotas (app.control.quotas) against a real SQLite database."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from app.control.quotas import quota_problem
from app.settings import Settings
from app.store.db import Database
from tests.databases import DatabaseFactory
from tests.rows import cpo_row
from tests.stack import Stack, api_command, free_port, wait_http, wait_status

SETTINGS = Settings(quota_live_cpos=3, quota_live_chargers=100)


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    async with databases.opened("quota") as database:
        yield database


async def add_cpo(db: Database, org: str, status: str, chargers: int) -> int:
    async with db.session() as session, session.begin():
        cpo = cpo_row(org, "QUO", status, name_prefix="Quota", template="city-small", chargers=chargers)
        session.add(cpo)
        await session.flush()
        assert cpo.id is not None
        return cpo.id


async def problem(db: Database, org: str, new_chargers: int, exclude: int | None = None) -> dict | None:
    async with db.session() as session:
        resp = await quota_problem(session, SETTINGS, org, new_chargers, exclude_cpo_id=exclude)
    if resp is None:
        return None
    assert resp.status_code == 429
    return json.loads(resp.body)


async def test_only_live_cpos_of_the_org_count(db: Database):
    # Terminal CPOs and other orgs' CPOs never count, whatever their size.
    for status in ("FAILED", "DESTROYED"):
        await add_cpo(db, "acme", status, 1000)
    await add_cpo(db, "other", "READY", 1000)
    assert await problem(db, "acme", 100) is None
    await add_cpo(db, "acme", "PENDING", 10)
    await add_cpo(db, "acme", "DESTROYING", 10)  # still holds its rows: live
    assert await problem(db, "acme", 80) is None


async def test_live_cpo_quota(db: Database):
    for status in ("PENDING", "PROVISIONING", "READY"):
        await add_cpo(db, "acme", status, 1)
    got = await problem(db, "acme", 1)
    assert got is not None
    assert got["code"] == "quota_exceeded"
    assert got["quota"] == "live_cpos"
    assert got["limit"] == 3
    assert "3 live CPOs" in got["detail"]
    assert await problem(db, "other", 1) is None


async def test_live_charger_quota(db: Database):
    await add_cpo(db, "acme", "READY", 60)
    assert await problem(db, "acme", 40) is None  # exactly at the quota
    got = await problem(db, "acme", 41)
    assert got == {
        "detail": got["detail"],
        "code": "quota_exceeded",
        "quota": "live_chargers",
        "limit": 100,
    }
    assert "41" in got["detail"] and "60" in got["detail"]
    # A single CPO bigger than the whole quota is refused too.
    got = await problem(db, "fresh-org", 101)
    assert got is not None and got["quota"] == "live_chargers"


async def test_the_row_being_inserted_is_not_counted_twice(db: Database):
    await add_cpo(db, "acme", "READY", 50)
    await add_cpo(db, "acme", "READY", 0)
    new_id = await add_cpo(db, "acme", "PENDING", 50)  # as create does: INSERT first, then the check
    assert await problem(db, "acme", 50, exclude=new_id) is None
    got = await problem(db, "acme", 51, exclude=new_id)
    assert got is not None and got["quota"] == "live_chargers"
    await add_cpo(db, "acme", "READY", 0)
    got = await problem(db, "acme", 0, exclude=new_id)
    assert got is not None and got["quota"] == "live_cpos"


async def test_create_answers_429_naming_the_quota(stack: Stack) -> None:
    """The quota wired into POST /ocpi/cpos on a real API process: a clear 429, nothing left behind."""
    port = free_port()
    env = {**stack.env, "CPOLAB_QUOTA_LIVE_CPOS": "2", "CPOLAB_QUOTA_LIVE_CHARGERS": "10"}
    api = stack._spawn("api-quota", api_command(port), env=env)
    tiny = {"template": "small-urban-ac", "country_code": "IE", "name_prefix": "quota"}
    one = {"locations": 1, "chargers_per_location": 1}
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=stack.headers("quota-org"), timeout=30
        ) as c:
            big = await c.post("/ocpi/cpos", json={**tiny, "party_id": "QBG", "overrides": {**one, "locations": 11}})
            assert big.status_code == 429, big.text
            assert big.json() | {"detail": ""} == {
                "detail": "",
                "code": "quota_exceeded",
                "quota": "live_chargers",
                "limit": 10,
            }
            ids = []
            for party in ("QA1", "QA2"):
                resp = await c.post("/ocpi/cpos", json={**tiny, "party_id": party, "overrides": one})
                assert resp.status_code == 202, resp.text
                ids.append(resp.json()["cpo_id"])
            third = await c.post("/ocpi/cpos", json={**tiny, "party_id": "QA3", "overrides": one})
            assert third.status_code == 429 and third.json()["quota"] == "live_cpos", third.text
            assert "2" in third.json()["detail"]
            assert stack.query("SELECT count(*) FROM cpo WHERE org = 'quota-org'") == [(2,)]
            assert stack.query("SELECT count(*) FROM party_reservation WHERE org = 'quota-org'") == [(2,)]
            # A destroyed CPO no longer counts.
            assert (await c.delete(f"/ocpi/cpos/{ids[0]}")).status_code == 202
            await wait_status(c, ids[0], {"DESTROYED"})
            assert (await c.post("/ocpi/cpos", json={**tiny, "party_id": "QA3", "overrides": one})).status_code == 202
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=15)


async def test_concurrent_creates_cannot_squeeze_past_the_quota(stack: Stack) -> None:
    """12 simultaneous creates of one org over two API processes, quota 3: exactly 3 accepted. On
    Postgres this needs the per-org lock (no single-writer database to serialize them)."""
    ports = [free_port(), free_port()]
    env = {**stack.env, "CPOLAB_QUOTA_LIVE_CPOS": "3"}
    apis = [
        stack._spawn(
            f"api-race-{i}",
            api_command(port),
            env=env,
        )
        for i, port in enumerate(ports)
    ]
    tiny = {"template": "small-urban-ac", "country_code": "IE", "name_prefix": "race"}
    one = {"locations": 1, "chargers_per_location": 1}
    try:
        for port in ports:
            await wait_http(f"http://127.0.0.1:{port}/healthz")
        clients = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", headers=stack.headers("race-org"), timeout=30)
            for p in ports
        ]
        try:
            answers = await asyncio.gather(
                *[
                    clients[i % 2].post("/ocpi/cpos", json={**tiny, "party_id": "RCA", "overrides": one})
                    for i in range(12)
                ]
            )
        finally:
            for c in clients:
                await c.aclose()
        codes = sorted(r.status_code for r in answers)
        assert codes == [202] * 3 + [429] * 9, [r.text for r in answers]
        assert stack.query("SELECT count(*) FROM cpo WHERE org = 'race-org'") == [(3,)]
        parties = stack.query("SELECT party_id FROM party_reservation WHERE org = 'race-org' ORDER BY party_id")
        assert len({p for (p,) in parties}) == 3  # each got its own mangled party id
    finally:
        for api in apis:
            api.send_signal(signal.SIGTERM)
            api.wait(timeout=15)
