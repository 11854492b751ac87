"""The OCPI outbox: pushes recorded in the change's transaction (app.ocpi.push / app.store.outbox) and
delivered by app.ocpi.outbox's dispatcher, against a real eMSP on loopback and a real database
(SQLite, or Postgres with `--db postgres`). Dispatchers run in-process on the test database, one
of them inside a real API process that gets SIGKILLed mid-send."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import Response

from app.ocpi import log as traffic
from app.ocpi import push
from app.ocpi.outbox import Dispatcher, OutboxConfig
from app.settings import Settings
from app.store import outbox as store
from app.store.db import Database, delete_owned_rows, utcnow
from app.store.ocpi_tables import OcpiLogRow, OcpiPeer
from app.store.tables import OutboxRow
from tests.databases import DatabaseFactory
from tests.emsp_peer import RECEIVERS, EmspPeer, Received, b64, envelope
from tests.hostile_peer import HostilePeer
from tests.rows import cpo_row
from tests.stack import QUIET, ROOT, SECRET, api_command, free_port, wait_http

TIMEOUT = 1.0  # the outbound deadline of the in-process dispatchers (lease: 2 × 1 + 1 = 3 s)


class ScriptedPeer(EmspPeer):
    """The test eMSP whose receivers follow a script per profile (the first path segment): each
    request takes the next action of its profile, `ok` once the script is used up. Actions: `ok`,
    `hang` (no answer until the test ends), `http:NNN` (that HTTP status), `ocpi:NNNN` (HTTP 200
    with that OCPI status_code). `delays[profile]` slows every answer of a profile."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.delays: dict[str, float] = {}
        self.release = asyncio.Event()

    def script(self, profile: str, *actions: str) -> None:
        self.scripts[profile].extend(actions)

    def got(self, profile: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(f"/{profile}/")]

    async def stop(self) -> None:
        self.release.set()
        await super().stop()

    async def _receiver(self, request: Request) -> Response:
        profile, version = request.path_params["profile"], request.path_params["version"]
        token = self._authorized(request, version)
        await self._record(request, token)
        if token is None:
            return envelope(None, 2000, 401)
        action = self.scripts[profile].popleft() if self.scripts[profile] else "ok"
        await asyncio.sleep(self.delays.get(profile, 0))
        if action == "hang":
            await self.release.wait()
        kind, _, code = action.partition(":")
        if kind == "http":
            return envelope(None, 2000 if int(code) < 500 else 3000, int(code))
        if kind == "ocpi":
            return envelope(None, int(code))
        if request.path_params["module"] == "cdrs" and request.method == "POST":
            return envelope(None, http=201, Location=f"{self.base}/{profile}/{version}/cdrs/1")
        return envelope()


@pytest.fixture(scope="module")
async def peer() -> AsyncIterator[ScriptedPeer]:
    p = await ScriptedPeer().start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    async with databases.opened("outbox") as database:
        yield database
        await traffic.flush(database)


def settings(timeout: float = TIMEOUT) -> Settings:
    return Settings(jwt_secret=SECRET, egress_allow_loopback=True, outbound_timeout=timeout)


@asynccontextmanager
async def dispatching(
    db: Database, s: Settings | None = None, *, grace: float = 1.0, **config: Any
) -> AsyncIterator[Dispatcher]:
    """A running dispatcher, fast to poll and retry unless told otherwise."""
    s = s or settings()
    base = OutboxConfig.from_settings(s)
    dispatcher = Dispatcher(db, s, dataclasses.replace(base, **{"poll_interval": 0.05, "retry_base": 0.1, **config}))
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop(grace)


# ---- setup and observation ----------------------------------------------------------------------


_parties = iter(f"Q{i:02d}" for i in range(100))


@dataclasses.dataclass
class Tenant:
    """A CPO row with a registered eMSP whose receiver endpoints live under one profile."""

    cpo_id: int
    party_id: str
    emsp: OcpiPeer


async def registered_cpo(
    db: Database,
    peer: ScriptedPeer,
    profile: str,
    version: str = "2.2.1",
    endpoints: list[dict[str, str]] | None = None,
) -> Tenant:
    now = utcnow()
    base = f"{peer.base}/{profile}/{version}"
    if endpoints is None:
        endpoints = [{"identifier": m, "role": "RECEIVER", "url": f"{base}/{m}"} for m in RECEIVERS]
        if version == "2.1.1":  # 2.1.1 endpoints carry no role
            endpoints = [{"identifier": e["identifier"], "url": e["url"]} for e in endpoints]
    party = next(_parties)
    async with db.session() as session:
        cpo = cpo_row("outbox-tests", party, status="READY", ocpi_version=version)
        session.add(cpo)
        await session.flush()
        assert cpo.id is not None
        emsp = OcpiPeer(
            cpo_id=cpo.id,
            version=version,
            token_b=peer.new_token(),
            versions_url=f"{peer.base}/{profile}/versions",
            version_url=base,
            endpoints=endpoints,
            roles=[],
            country_code="NL",
            party_id="EMS",
            created_at=now,
            updated_at=now,
        )
        session.add(emsp)
        await session.commit()
        return Tenant(cpo.id, party, emsp)


async def record(db: Database, write: Callable[[Any], Awaitable[Any]]) -> None:
    """One transaction that enqueues, as a change of state would."""
    async with db.session() as session:
        await write(session)
        await session.commit()


async def status(db: Database, cpo_id: int, evse: str, value: str, at: str = "2024-06-01T12:00:00Z") -> None:
    await record(db, lambda s: push.evse_status(s, cpo_id, "LOC1", evse, value, at))


async def enqueue_patches(s: Any, cpo_id: int, session_ids: list[str], count: int) -> None:
    """`count` numbered Session PATCHes of each session, interleaved, enqueued as pushes that never
    coalesce (push.session_patch merges a PATCH into a pending one): one row each, delivered in order."""
    for seq in range(count):
        for sid in session_ids:
            body = {"seq": seq, "last_updated": "2024-06-01T12:00:00Z"}
            await store.enqueue(
                s, cpo_id=cpo_id, object_key=f"session:{sid}", module="sessions", method="PATCH", path=[sid], body=body
            )


async def patches(db: Database, cpo_id: int, session_ids: list[str], count: int) -> None:
    """`enqueue_patches` in a transaction of its own."""
    await record(db, lambda s: enqueue_patches(s, cpo_id, session_ids, count))


async def outbox_rows(db: Database, cpo_id: int | None = None) -> list[Any]:
    table = OutboxRow.__table__  # type: ignore[attr-defined]
    stmt = select(table).order_by(table.c.id)
    if cpo_id is not None:
        stmt = stmt.where(table.c.cpo_id == cpo_id)
    async with db.engine.connect() as conn:
        return list((await conn.execute(stmt)).all())


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "a condition") -> float:
    """Seconds it took for `predicate` to hold."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def drained(db: Database, cpo_id: int, timeout: float = 10.0) -> float:
    async def empty() -> bool:
        return not await outbox_rows(db, cpo_id)

    return await until(empty, timeout, f"the outbox of CPO {cpo_id} to drain")


def tail(received: Received) -> str:
    """The path after `/{profile}/{version}/`."""
    return received.path.split("/", 3)[3]


def seqs_by_session(received: list[Received]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in received:
        out[r.path.rsplit("/", 1)[1]].append(r.body["seq"])
    return out


# ---- what is sent, where ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.2.1", "2.1.1"])
async def test_every_kind_of_push_reaches_the_receiver_endpoint(db: Database, peer: ScriptedPeer, version: str):
    profile = f"kinds{version.replace('.', '')}"
    t = await registered_cpo(db, peer, profile, version)
    at = datetime(2024, 6, 1, 12, tzinfo=UTC)

    async def everything(s: Any) -> None:
        await push.evse_status(s, t.cpo_id, "LOC1", "LOC1-1", "CHARGING", at)
        await push.session_put(s, t.cpo_id, {"id": "S9", "status": "ACTIVE"})
        await push.session_patch(s, t.cpo_id, "S9", {"kwh": 1.5, "last_updated": "2024-06-01T12:05:00Z"})
        with pytest.raises(ValueError, match="last_updated"):
            await push.session_patch(s, t.cpo_id, "S9", {"kwh": 2.0})
        await push.cdr(s, t.cpo_id, {"id": "CDR9"})
        await push.tariff_put(s, t.cpo_id, {"id": "T1"})
        await push.tariff_deleted(s, t.cpo_id, "T1")

    await record(db, everything)
    assert len(await outbox_rows(db, t.cpo_id)) == 6  # recorded, not sent: no dispatcher runs yet
    await asyncio.sleep(0.2)
    assert peer.got(profile) == []
    async with dispatching(db):
        await drained(db, t.cpo_id)
    got = peer.got(profile)
    p = t.party_id
    assert sorted((r.method, tail(r)) for r in got) == sorted(
        [
            ("PATCH", f"locations/DE/{p}/LOC1/LOC1-1"),
            ("PUT", f"sessions/DE/{p}/S9"),
            ("PATCH", f"sessions/DE/{p}/S9"),
            ("POST", "cdrs"),  # a CDR is created at the bare endpoint
            ("PUT", f"tariffs/DE/{p}/T1"),
            ("DELETE", f"tariffs/DE/{p}/T1"),
        ]
    )
    # One object's pushes keep their order: the Session PUT before its PATCH, the tariff PUT before its DELETE.
    assert [r.method for r in got if r.path.endswith("/S9")] == ["PUT", "PATCH"]
    assert [r.method for r in got if r.path.endswith("/T1")] == ["PUT", "DELETE"]
    evse = next(r for r in got if r.path.endswith("/LOC1-1"))
    assert evse.body == {"status": "CHARGING", "last_updated": "2024-06-01T12:00:00Z"}
    assert next(r for r in got if r.method == "DELETE").body is None
    for r in got:
        assert r.token == t.emsp.token_b
        if version == "2.2.1":
            assert r.headers["authorization"] == f"Token {b64(t.emsp.token_b)}"
            assert r.headers["ocpi-from-party-id"] == p and r.headers["ocpi-to-party-id"] == "EMS"
        else:  # 2.1.1: the token raw, no routing headers
            assert r.headers["authorization"] == f"Token {t.emsp.token_b}" and "ocpi-from-party-id" not in r.headers
    # Every call is in the CPO's traffic log: the six answered ones, plus any attempt that failed before
    # reaching the peer (a loaded box can blow the 1 s deadline on connect), logged with its error.
    await traffic.flush(db)
    async with db.engine.connect() as conn:
        logged = (
            await conn.execute(
                select(OcpiLogRow.http_status, OcpiLogRow.error).where(
                    OcpiLogRow.cpo_id == t.cpo_id, OcpiLogRow.direction == "out"
                )
            )
        ).all()
    answered = [row for row in logged if row.error is None]
    assert len(answered) == 6 and all(row.http_status in (200, 201) for row in answered)
    assert all(row.http_status is None for row in logged if row.error is not None), logged


async def test_order_per_object_holds_while_objects_go_in_parallel(db: Database, peer: ScriptedPeer):
    t = await registered_cpo(db, peer, "order")
    # The first sends fail: a later push of the same object must wait for the retry, not overtake it.
    peer.script("order", "http:500", "http:500", "http:503", "ok", "ok", "http:500")
    await patches(db, t.cpo_id, ["A", "B", "C"], 8)
    async with dispatching(db):
        await drained(db, t.cpo_id)
    got = peer.got("order")
    assert len(got) == 3 * 8 + 4
    retried = {
        sid: [seq for i, seq in enumerate(seqs) if i == 0 or seqs[i - 1] != seq]
        for sid, seqs in seqs_by_session(got).items()
    }
    assert retried == {sid: list(range(8)) for sid in "ABC"}


async def test_coalescing_sends_the_latest_status_in_order(db: Database, peer: ScriptedPeer):
    t = await registered_cpo(db, peer, "coalesce")
    peer.delays["coalesce"] = 0.5  # a slow eMSP
    # A poll interval far beyond the test: every send below comes from the wake-up after a commit.
    async with dispatching(db, poll_interval=30):
        await status(db, t.cpo_id, "E1", "AVAILABLE", "2024-06-01T12:00:01Z")
        await peer.wait_for(lambda r: r.path.startswith("/coalesce/"), timeout=2)  # in flight, slowly
        await status(db, t.cpo_id, "E1", "CHARGING", "2024-06-01T12:00:02Z")
        await status(db, t.cpo_id, "E1", "BLOCKED", "2024-06-01T12:00:03Z")
        rows = await outbox_rows(db, t.cpo_id)
        assert len(rows) == 2 and rows[1].body["status"] == "BLOCKED"  # the second change was replaced
        await status(db, t.cpo_id, "E2", "OUTOFORDER")  # another object is not held up by E1
        await peer.wait_for(lambda r: r.path.endswith("/E2"), timeout=1)
        await drained(db, t.cpo_id)
    got = [r.body for r in peer.got("coalesce") if r.path.endswith("/E1")]
    assert [b["status"] for b in got] == ["AVAILABLE", "BLOCKED"]
    assert [b["last_updated"] for b in got] == sorted(b["last_updated"] for b in got)


# ---- failures ---------------------------------------------------------------------------------------


async def test_transient_failures_are_retried_with_backoff_then_delivered(db: Database, peer: ScriptedPeer):
    t = await registered_cpo(db, peer, "flaky")
    peer.script("flaky", "http:500", "http:408", "hang", "http:429")  # "hang": past the 1 s deadline
    await status(db, t.cpo_id, "E1", "CHARGING")
    async with dispatching(db, retry_base=0.2):
        await peer.wait_for(lambda r: r.path.startswith("/flaky/"), timeout=2)

        seen = []

        async def released_after_a_failure() -> bool:
            # Caught between a failure and the retry's claim (a loaded box may miss the first window).
            seen[:] = await outbox_rows(db, t.cpo_id)
            return bool(seen) and seen[0].attempts >= 1 and seen[0].claimed_until is None

        await until(released_after_a_failure, 5, "a failed push to be released until its retry")
        [row] = seen
        assert row.next_attempt_at > row.created_at and row.last_error
        if row.attempts == 1:
            assert row.last_error == "HTTP 500 (server error)"
        await drained(db, t.cpo_id, timeout=15)
    got = peer.got("flaky")
    assert len(got) == 5 and all(r.body == got[0].body for r in got)
    # One correlation id for every attempt of one push, a fresh request id each time.
    assert len({r.headers["x-correlation-id"] for r in got}) == 1
    assert len({r.headers["x-request-id"] for r in got}) == 5


def test_backoff_doubles_with_jitter_up_to_the_cap():
    config = dataclasses.replace(OutboxConfig.from_settings(settings()), retry_base=1.0, retry_cap=300.0)
    for attempts, full in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (500, 300)]:
        delays = [config.backoff(attempts).total_seconds() for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), (attempts, min(delays), max(delays))
        assert max(delays) - min(delays) > full / 10  # jittered, not all at once


@pytest.mark.parametrize("action", ["http:400", "http:404", "http:401", "ocpi:2001", "http:302"])
async def test_permanent_failures_are_dropped_and_the_stream_goes_on(
    db: Database, peer: ScriptedPeer, action: str, caplog: pytest.LogCaptureFixture
):
    profile = "perm" + action.replace(":", "")
    t = await registered_cpo(db, peer, profile)
    peer.script(profile, action)
    await patches(db, t.cpo_id, ["S1"], 2)
    with caplog.at_level(logging.WARNING, logger="cpolab.ocpi.outbox"):
        async with dispatching(db):
            await drained(db, t.cpo_id)
    assert [r.body["seq"] for r in peer.got(profile)] == [0, 1]  # seq 0 refused once, never again
    assert any("dropped PATCH sessions 'session:S1'" in m for m in caplog.messages), caplog.messages


async def test_no_receiver_endpoint_drops_the_push(db: Database, peer: ScriptedPeer, caplog: pytest.LogCaptureFixture):
    only_sessions = [{"identifier": "sessions", "role": "RECEIVER", "url": f"{peer.base}/noloc/2.2.1/sessions"}]
    t = await registered_cpo(db, peer, "noloc", endpoints=only_sessions)
    await status(db, t.cpo_id, "E1", "CHARGING")
    await patches(db, t.cpo_id, ["S1"], 1)
    with caplog.at_level(logging.WARNING, logger="cpolab.ocpi.outbox"):
        async with dispatching(db):
            await drained(db, t.cpo_id)
    assert [tail(r) for r in peer.got("noloc")] == [f"sessions/DE/{t.party_id}/S1"]
    assert any("no locations receiver endpoint" in m for m in caplog.messages), caplog.messages


async def test_a_push_still_failing_after_the_max_age_is_dropped(db: Database, peer: ScriptedPeer):
    t = await registered_cpo(db, peer, "expire")
    peer.script("expire", *["http:500"] * 100)
    await status(db, t.cpo_id, "E1", "CHARGING")
    async with dispatching(db, max_age=timedelta(0)):
        await drained(db, t.cpo_id)
    assert len(peer.got("expire")) == 1


# ---- several dispatchers, crashes, shutdown ---------------------------------------------------------


async def test_two_dispatchers_never_send_a_row_twice_and_keep_order(
    db: Database, databases: DatabaseFactory, peer: ScriptedPeer
):
    t = await registered_cpo(db, peer, "pair")
    peer.delays["pair"] = 0.01
    sessions = [f"S{i}" for i in range(12)]
    await patches(db, t.cpo_id, sessions, 6)
    other = Database(str(db.engine.url.render_as_string(hide_password=False)))  # its own pool: another process's view
    try:
        # The product's 5 s deadline (lease 11 s): at the suite's 1 s (lease 3 s) a loaded box once took
        # longer than the lease between a claim and its delete, and a lapsed lease is re-sent by design.
        async with dispatching(db, settings(timeout=5.0)), dispatching(other, settings(timeout=5.0)):
            await drained(db, t.cpo_id, timeout=20)
    finally:
        await other.dispose()
    got = peer.got("pair")
    assert len(got) == len(sessions) * 6  # nothing twice
    assert seqs_by_session(got) == {sid: list(range(6)) for sid in sessions}


async def test_a_killed_api_process_s_row_is_sent_by_another_after_its_lease(db: Database, peer: ScriptedPeer):
    """The dispatcher inside a real API process (started by its lifespan) claims the row and is
    SIGKILLed mid-send; once its lease lapses, another dispatcher delivers the row."""
    t = await registered_cpo(db, peer, "killed")
    peer.script("killed", "hang")
    await status(db, t.cpo_id, "E1", "CHARGING")
    port = free_port()
    env = {
        **os.environ,
        "CPOLAB_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
        "CPOLAB_JWT_SECRET": SECRET,
        "CPOLAB_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # not needed: nothing here talks to Temporal
        "CPOLAB_EGRESS_ALLOW_LOOPBACK": "1",
        # lease: 2 × 3 + 1 = 7 s; the send must still be hanging when the kill lands on a loaded box
        "CPOLAB_OUTBOUND_TIMEOUT": "3",
        "CPOLAB_OUTBOX_POLL_INTERVAL": "0.1",
        "PYTHONPATH": str(ROOT),
    }
    api = subprocess.Popen(
        [*api_command(port), *QUIET], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        await peer.wait_for(lambda r: r.path.startswith("/killed/"), timeout=10)
        api.send_signal(signal.SIGKILL)
        api.wait()
        [row] = await outbox_rows(db, t.cpo_id)
        assert row.claimed_until is not None and row.attempts == 0  # still held by the dead process
        async with dispatching(db):
            await asyncio.sleep(0.5)
            assert len(peer.got("killed")) == 1  # the lease still holds
            waited = await drained(db, t.cpo_id, timeout=15)
        assert waited < 8
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    got = peer.got("killed")
    assert len(got) == 2 and got[1].body == got[0].body


async def test_stop_hands_in_flight_rows_back(db: Database, peer: ScriptedPeer):
    t = await registered_cpo(db, peer, "stopping")
    peer.script("stopping", "hang")
    await status(db, t.cpo_id, "E1", "CHARGING")
    async with dispatching(db, grace=0.1):
        await peer.wait_for(lambda r: r.path.startswith("/stopping/"), timeout=2)
    [row] = await outbox_rows(db, t.cpo_id)
    assert row.claimed_until is None and row.attempts == 0  # released, not counted as a failure
    async with dispatching(db):
        assert await drained(db, t.cpo_id) < 1  # taken at once, no lease to wait for
    assert len(peer.got("stopping")) == 2


# ---- tenants, peers, teardown -----------------------------------------------------------------------


async def test_a_hostile_peer_does_not_stall_other_cpos(db: Database, peer: ScriptedPeer):
    hostile = await HostilePeer(drip_interval=0.1).start()
    try:
        tenants = []
        for behaviour in ("drip-body", "drip-head", "huge"):
            url = hostile.url(behaviour, "2.2.1/locations")
            tenants.append(
                await registered_cpo(db, peer, behaviour, endpoints=[{"identifier": "locations", "url": url}])
            )
        good = await registered_cpo(db, peer, "neighbour")
        for t, objects in zip(tenants, (10, 10, 3), strict=True):
            for i in range(objects):
                await status(db, t.cpo_id, f"E{i}", "CHARGING")
        async with dispatching(db, settings(timeout=6.0), concurrency=16, retry_base=0.5):

            async def all_busy() -> bool:
                return hostile.open >= 2 * 4  # the two dripping tenants hold all their slots

            await until(all_busy, 3, "every hostile tenant to use its outbound slots")
            for i in range(10):
                await status(db, good.cpo_id, f"E{i}", "AVAILABLE")
            # Not behind the dripping tenants' 6 s deadlines (unloaded it takes ~0.2 s).
            assert await drained(db, good.cpo_id) < 3.0
            assert len(peer.got("neighbour")) == 10
            for t in tenants:
                assert await outbox_rows(db, t.cpo_id)  # still trying
            assert hostile.max_open <= 3 * 4  # each CPO at most `outbound_per_cpo` calls at once
    finally:
        await hostile.stop()


async def test_unregistered_peer_s_rows_are_dropped(db: Database, peer: ScriptedPeer):
    t = await registered_cpo(db, peer, "gone")
    await patches(db, t.cpo_id, ["S1", "S2"], 3)
    async with db.session() as session:  # what credentials DELETE does
        await session.execute(update(OcpiPeer).where(OcpiPeer.id == t.emsp.id).values(registered=False))
        await session.commit()
    await record(db, lambda s: push.session_patch(s, t.cpo_id, "S1", {"last_updated": "2024-06-01T12:00:00Z"}))
    assert len(await outbox_rows(db, t.cpo_id)) == 6  # nothing new is recorded for an unregistered peer
    async with dispatching(db):
        await drained(db, t.cpo_id)
    assert peer.got("gone") == []


async def test_teardown_removes_the_rows_and_a_row_in_flight_does_no_harm(db: Database, peer: ScriptedPeer):
    t = await registered_cpo(db, peer, "teardown")
    peer.delays["teardown"] = 0.5
    await patches(db, t.cpo_id, ["S1"], 3)
    async with dispatching(db) as dispatcher:
        await peer.wait_for(lambda r: r.path.startswith("/teardown/"), timeout=2)
        async with db.session() as session:  # teardown while seq 0 is being sent
            await delete_owned_rows(session, t.cpo_id)
            await session.commit()
        assert await outbox_rows(db, t.cpo_id) == []
        # A row left behind for a CPO that is gone (peer row deleted too) is dropped, not retried.
        # The row and the peer's removal commit together: written apart, the running dispatcher may
        # deliver the row in between (CI saw it do so).
        orphan = await registered_cpo(db, peer, "orphan")

        async def orphaned_row(s: Any) -> None:
            await enqueue_patches(s, orphan.cpo_id, ["S1"], 1)
            await s.execute(OcpiPeer.__table__.delete().where(OcpiPeer.id == orphan.emsp.id))  # type: ignore[attr-defined]

        await record(db, orphaned_row)
        await drained(db, orphan.cpo_id)
        # The loop is alive: another CPO's push still goes.
        other = await registered_cpo(db, peer, "afterwards")
        await status(db, other.cpo_id, "E1", "CHARGING")
        await drained(db, other.cpo_id)
        assert dispatcher._runner is not None and not dispatcher._runner.done()
    assert len(peer.got("teardown")) == 1 and peer.got("orphan") == [] and len(peer.got("afterwards")) == 1


async def test_a_hung_database_does_not_hang_the_shutdown():
    """A database port that accepts but never answers: polls hang, yet stop() returns promptly."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hung = Database(f"postgresql+asyncpg://cpolab:pw@127.0.0.1:{silent.getsockname()[1]}/cpolab")
    try:
        dispatcher = Dispatcher(hung, settings())
        dispatcher.start()
        await asyncio.sleep(0.3)  # the first poll is stuck connecting
        started = time.monotonic()
        await dispatcher.stop()
        assert time.monotonic() - started < 3
    finally:
        await hung.dispose()
        silent.close()
