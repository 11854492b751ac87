"""A CPO is always either live with a running workflow, or torn down (issue: zombie CPOs).

Every reproduction is run against the real stack: Temporal cancel and terminate of READY and
PROVISIONING CPOs, kill -9 of an API process in the middle of a burst of creates followed by the
reconciler, a workflow id already taken in Temporal, and PATCH while no worker polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from datetime import timedelta

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.provisioning import ProvisioningActivities
from app.lifecycle.models import RECONCILER_SCHEDULE_ID, CpoStatus, ReconcileInput, ReconcileReport, StatusRecord
from app.store.db import Database, utcnow
from tests.rows import cpo_row
from tests.stack import Stack, api_command, free_port, wait_http, wait_status
from workflows.cpo import CpoWorkflow
from workflows.reconciler import ReconcilerWorkflow

TINY = {
    "template": "small-urban-ac",
    "country_code": "BE",
    "name_prefix": "zombie",
    "overrides": {"locations": 1, "chargers_per_location": 1},
}
OWNED = ("location", "evse", "connector", "charger", "charger_route", "tariff", "credential_token", "party_reservation")


@pytest.fixture
async def temporal(stack: Stack) -> Client:
    return await Client.connect(stack.temporal_address)


def owned_rows(stack: Stack, cpo_id: int) -> dict[str, int]:
    return {t: stack.count(t, cpo_id) for t in OWNED}


async def create(c: httpx.AsyncClient, party: str, **extra: object) -> str:
    resp = await c.post("/ocpi/cpos", json={**TINY, "party_id": party, **extra})
    assert resp.status_code == 202, resp.text
    return resp.json()["cpo_id"]


async def run_reconciler(temporal: Client, grace: int = 0) -> ReconcileReport:
    return await temporal.execute_workflow(
        ReconcilerWorkflow.run,
        ReconcileInput(grace_seconds=grace),
        id=f"test-reconcile-{time.monotonic_ns()}",
        task_queue="provisioning",
        execution_timeout=timedelta(seconds=60),
    )


async def assert_torn_down(stack: Stack, c: httpx.AsyncClient, cpo_id: str, party: str) -> None:
    final = await wait_status(c, cpo_id, {"DESTROYED", "FAILED"}, timeout=60)
    assert final["status"] == "DESTROYED", final
    assert set(owned_rows(stack, int(cpo_id)).values()) == {0}
    # The party id is free again: the same request gets the same party back.
    again = (await c.post("/ocpi/cpos", json={**TINY, "party_id": party})).json()
    assert again["party"]["party_id"] == party
    assert (await c.delete(f"/ocpi/cpos/{again['cpo_id']}")).status_code == 202


@pytest.mark.parametrize("moment", ["READY", "PROVISIONING"])
async def test_temporal_cancel_tears_down(stack: Stack, temporal: Client, moment: str) -> None:
    party = "CN1" if moment == "READY" else "CN2"
    async with stack.client(org="cancel-org") as c:
        overrides = {"locations": 40, "chargers_per_location": 25} if moment == "PROVISIONING" else None
        cpo_id = await create(c, party, **({"overrides": overrides} if overrides else {}))
        await wait_status(c, cpo_id, {moment})
        await temporal.get_workflow_handle(f"cpo-{cpo_id}").cancel()
        await assert_torn_down(stack, c, cpo_id, party)
        desc = await temporal.get_workflow_handle(f"cpo-{cpo_id}").describe()
        assert desc.status == WorkflowExecutionStatus.COMPLETED  # it ended by itself, after the teardown
        # DELETE after the fact: 200, already gone.
        gone = await c.delete(f"/ocpi/cpos/{cpo_id}")
        assert gone.status_code == 200 and gone.json()["status"] == "DESTROYED"


async def test_terminated_ready_cpo_is_torn_down_by_delete(stack: Stack, temporal: Client) -> None:
    async with stack.client(org="term-org") as c:
        cpo_id = await create(c, "TR1")
        await wait_status(c, cpo_id, {"READY"})
        await temporal.get_workflow_handle(f"cpo-{cpo_id}").terminate("test: terminate cannot run code")
        resp = await c.delete(f"/ocpi/cpos/{cpo_id}")
        assert resp.status_code == 202 and resp.json()["status"] == "DESTROYING", resp.text
        await assert_torn_down(stack, c, cpo_id, "TR1")


async def test_terminated_provisioning_cpo_is_torn_down_by_status(stack: Stack, temporal: Client) -> None:
    async with stack.client(org="term-org") as c:
        cpo_id = await create(c, "TR2", overrides={"locations": 40, "chargers_per_location": 25})
        await wait_status(c, cpo_id, {"PROVISIONING"})
        await temporal.get_workflow_handle(f"cpo-{cpo_id}").terminate("test")
        # No DELETE: polling status alone notices the closed workflow and starts the teardown.
        await assert_torn_down(stack, c, cpo_id, "TR2")


async def test_workflow_id_already_taken_undoes_the_insert(stack: Stack, temporal: Client) -> None:
    """An app database reset under a kept Temporal namespace: `cpo-N` exists already."""
    next_id = stack.database.last_cpo_id() + 1
    await temporal.start_workflow(
        CpoWorkflow.run, id=f"cpo-{next_id}", task_queue="nobody-polls-this", args=[None]
    )  # never runs: only its id matters
    try:
        async with stack.client(org="dup-org") as c:
            resp = await c.post("/ocpi/cpos", json={**TINY, "party_id": "DUP"})
            assert resp.status_code == 503, resp.text
            assert resp.json()["code"] == "workflow_id_conflict"
            assert stack.query("SELECT count(*) FROM cpo WHERE id = ?", next_id) == [(0,)]
            assert set(owned_rows(stack, next_id).values()) == {0}
            # The id is never reused, so the next create works.
            assert (await c.post("/ocpi/cpos", json={**TINY, "party_id": "DUP"})).status_code == 202
    finally:
        await temporal.get_workflow_handle(f"cpo-{next_id}").terminate("test cleanup")


async def test_patch_without_worker_is_503_then_attaches_by_idempotency_key(stack: Stack, temporal: Client) -> None:
    async with stack.client(org="patch-org") as c:
        cpo_id = await create(c, "PT1")
        await wait_status(c, cpo_id, {"READY"})
        stack.kill_workers()
        try:
            started = time.monotonic()
            resp = await c.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 7200}, headers={"Idempotency-Key": "k1"})
            elapsed = time.monotonic() - started
            assert resp.status_code == 503, resp.text
            assert resp.json()["code"] == "workflow_backend_unavailable"
            assert elapsed <= float(stack.env["CPOLAB_TEMPORAL_RPC_TIMEOUT"]) + 1, elapsed
        finally:
            stack.start_worker()
        # The client retries with the same key (503s while the new worker starts and the sticky queue
        # times out): every retry attaches to the update admitted first, never a second one.
        deadline = time.monotonic() + 60
        answers = []
        while len(answers) < 2 or answers[-1] != 200:
            resp = await c.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 7200}, headers={"Idempotency-Key": "k1"})
            answers.append(resp.status_code)
            assert resp.status_code in (200, 503), resp.text
            assert time.monotonic() < deadline, answers
        assert (
            await c.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 7200}, headers={"Idempotency-Key": "k1"})
        ).status_code == 200
        history = await temporal.get_workflow_handle(f"cpo-{cpo_id}").fetch_history()
        accepted = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
        assert len(accepted) == 1
        bad = await c.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 7200}, headers={"Idempotency-Key": "x" * 200})
        assert bad.status_code == 422


async def test_api_killed_mid_burst_then_reconciler_leaves_no_zombie(stack: Stack, temporal: Client) -> None:
    """kill -9 of an API process during a burst of creates: after the reconciler every row of the
    burst is READY with a running workflow, or gone with its Token A and party reservation."""
    port = free_port()
    api = stack._spawn(
        "api-burst",
        api_command(port),
    )
    await wait_http(f"http://127.0.0.1:{port}/healthz")
    headers = stack.headers("burst-org")

    async def one(i: int) -> None:
        body = {**TINY, "party_id": f"B{i // 36 % 10}{'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'[i % 36]}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as c:
            with contextlib.suppress(httpx.TransportError):  # the API died under us
                await c.post("/ocpi/cpos", json=body)

    burst = [asyncio.create_task(one(i)) for i in range(60)]
    await asyncio.sleep(0.4)
    api.send_signal(signal.SIGKILL)
    api.wait()
    await asyncio.gather(*burst)
    # The exact gap the reconciler exists for, made certain: a row committed, its start never sent.
    orphan = _insert_orphan(stack)
    rows = stack.query("SELECT id FROM cpo WHERE org = 'burst-org'")
    assert rows, "the burst created nothing before the kill"

    report = await run_reconciler(temporal)
    assert orphan in report.orphans_removed
    for (cpo_id,) in rows:
        status = stack.query("SELECT status FROM cpo WHERE id = ?", cpo_id)
        if not status:
            assert set(owned_rows(stack, cpo_id).values()) == {0}, cpo_id
            continue
        try:
            desc = await temporal.get_workflow_handle(f"cpo-{cpo_id}").describe()
        except RPCError:
            pytest.fail(f"CPO {cpo_id} kept its row ({status}) without a workflow")
        assert desc.status == WorkflowExecutionStatus.RUNNING or status[0][0] in ("DESTROYING", "DESTROYED")
    async with stack.client(org="burst-org") as c:
        for (cpo_id,) in stack.query("SELECT id FROM cpo WHERE org = 'burst-org'"):
            await wait_status(c, str(cpo_id), {"READY", "DESTROYED"})


async def test_reconciler_destroys_a_started_create_that_never_answered(stack: Stack, temporal: Client) -> None:
    """The API died after starting the workflow, before recording its run id (and so before its 202):
    nobody holds the CPO's id or Token A, so the reconciler destroys it; a recorded one is left alone."""
    async with stack.client(org="unanswered-org") as c:
        lost, kept = await create(c, "UNA"), await create(c, "UNB")
        await wait_status(c, lost, {"READY"})
        await wait_status(c, kept, {"READY"})
        stack.query("UPDATE cpo SET workflow_run_id = NULL WHERE id = ?", int(lost))  # what the dead API left
        report = await run_reconciler(temporal, grace=3600)
        assert report.unanswered_destroyed == []  # started within the grace: the API may still record it
        report = await run_reconciler(temporal)
        assert int(lost) in report.unanswered_destroyed and int(kept) not in report.unanswered_destroyed
        await assert_torn_down(stack, c, lost, "UNA")
        assert (await c.get(f"/ocpi/cpos/{kept}/status")).json()["status"] == "READY"


async def _delaying_proxy(target_port: int, slow: asyncio.Event, delay: float) -> tuple[asyncio.Server, int]:
    """A TCP relay to Temporal that holds every client chunk for `delay` seconds while `slow` is set."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, lag: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                if lag and slow.is_set():
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
        dst.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_create_outlasting_the_grace_answers_503_not_a_202_for_a_removed_row(
    stack: Stack, temporal: Client
) -> None:
    """Temporal so slow that the reconciler removes the PENDING row as an orphan before the start
    lands: the create must not answer 202 for a CPO that no longer exists."""
    slow = asyncio.Event()
    server, port = await _delaying_proxy(stack.temporal_port, slow, delay=3.0)
    api_port = free_port()
    env = {**stack.env, "CPOLAB_TEMPORAL_ADDRESS": f"127.0.0.1:{port}", "CPOLAB_TEMPORAL_RPC_TIMEOUT": "30"}
    api = stack._spawn("api-slow", api_command(api_port), env)
    try:
        await wait_http(f"http://127.0.0.1:{api_port}/healthz")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers=stack.headers("slow-org"), timeout=60
        ) as c:
            await create(c, "SL1")  # connects to Temporal while it is fast
            slow.set()
            post = asyncio.create_task(c.post("/ocpi/cpos", json={**TINY, "party_id": "SL2"}))
            deadline = time.monotonic() + 10
            while not (rows := stack.query("SELECT id FROM cpo WHERE org = 'slow-org' AND party_id = 'SL2'")):
                assert time.monotonic() < deadline and not post.done()
                await asyncio.sleep(0.05)
            cpo_id = int(rows[0][0])
            report = await run_reconciler(temporal)  # the start is still held in the relay
            assert report.orphans_removed == [cpo_id]
            resp = await post
            assert resp.status_code == 503 and resp.json()["code"] == "workflow_backend_unavailable", resp.text
            slow.clear()
        assert stack.query("SELECT count(*) FROM cpo WHERE id = ?", cpo_id) == [(0,)]
        assert set(owned_rows(stack, cpo_id).values()) == {0}
        handle = temporal.get_workflow_handle(f"cpo-{cpo_id}")
        deadline = time.monotonic() + 30
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            assert time.monotonic() < deadline, "the started workflow of the removed row kept running"
            await asyncio.sleep(0.2)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=15)
        server.close()


def _insert_orphan(stack: Stack) -> int:
    now = utcnow() - timedelta(minutes=5)
    (cpo_id,) = stack.query(
        "INSERT INTO cpo (org, country_code, party_id, requested_party_id, role, name_prefix, template,"
        " template_version, seed, ocpi_version, status, locations, chargers, evses, connectors, created_at,"
        " updated_at) VALUES ('burst-org', 'BE', 'ORF', 'ORF', 'CPO', 'orphan', 'small-urban-ac', 1, 1,"
        " '2.2.1', 'PENDING', 1, 1, 1, 1, ?, ?) RETURNING id",
        now,
        now,
    )[0]
    stack.query(
        "INSERT INTO party_reservation (org, country_code, party_id, cpo_id) VALUES ('burst-org', 'BE', 'ORF', ?)",
        cpo_id,
    )
    stack.query(
        "INSERT INTO credential_token (cpo_id, token_hash, kind, created_at) VALUES (?, ?, 'A', ?)",
        cpo_id,
        f"orphan-{cpo_id}",
        now,
    )
    return int(cpo_id)


async def test_reconciler_schedule_exists(stack: Stack, temporal: Client) -> None:
    desc = await temporal.get_schedule_handle(RECONCILER_SCHEDULE_ID).describe()
    assert desc.schedule.spec.intervals[0].every == timedelta(seconds=60)
    assert desc.schedule.action.workflow == "ReconcilerWorkflow"  # type: ignore[union-attr]


async def _blackhole() -> tuple[asyncio.Server, int]:
    """A Temporal address that accepts connections and never answers (a hung server, not a dead one)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("outage", ["refused", "hung"])
async def test_temporal_down_bounds_hold_end_to_end(stack: Stack, outage: str) -> None:
    """POST 503 ≤ 3 s leaving nothing behind, status from the DB ≤ 1 s, PATCH and DELETE 503 ≤ 3 s."""
    org = f"down-{outage}"
    async with stack.client(org=org) as c:
        live = await create(c, "DWN")
        await wait_status(c, live, {"READY"})
    server, port = await _blackhole() if outage == "hung" else (None, free_port())
    api_port = free_port()
    env = {**stack.env, "CPOLAB_TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
    env.pop("CPOLAB_TEMPORAL_RPC_TIMEOUT")  # the bounds under test are the product's defaults
    api = stack._spawn(
        f"api-{outage}",
        api_command(api_port),
        env=env,
    )
    try:
        await wait_http(f"http://127.0.0.1:{api_port}/healthz")
        before = stack.query("SELECT count(*) FROM cpo WHERE org = ?", org)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers=stack.headers(org), timeout=30
        ) as c:

            async def timed(method: str, url: str, **kw: object) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                resp = await c.request(method, url, **kw)  # type: ignore[arg-type]
                return resp, time.monotonic() - started

            resp, took = await timed("POST", "/ocpi/cpos", json={**TINY, "party_id": "DWX"})
            print(f"{outage}: POST 503 in {took:.2f} s")
            assert resp.status_code == 503 and resp.json()["code"] == "workflow_backend_unavailable", resp.text
            assert took <= 3.0
            assert stack.query("SELECT count(*) FROM cpo WHERE org = ?", org) == before
            assert stack.query("SELECT count(*) FROM party_reservation WHERE org = ? AND party_id = 'DWX'", org) == [
                (0,)
            ]
            resp, took = await timed("GET", f"/ocpi/cpos/{live}/status")
            print(f"{outage}: status from the DB in {took:.2f} s")
            assert resp.status_code == 200 and resp.json()["status"] == "READY"
            assert took <= 1.0
            for method, kw in (("PATCH", {"json": {"ttl_seconds": 600}}), ("DELETE", {})):
                resp, took = await timed(method, f"/ocpi/cpos/{live}", **kw)
                print(f"{outage}: {method} 503 in {took:.2f} s")
                assert resp.status_code == 503, resp.text
                assert took <= 3.0
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=15)
        if server is not None:
            server.close()


@pytest.mark.sqlite_only
async def test_a_write_waiting_on_the_sqlite_lock_is_not_retried_on_top_of_itself(
    stack: Stack, temporal: Client
) -> None:
    """The DB activities heartbeat while they wait: holding SQLite's write lock for longer than the
    10 s heartbeat timeout delays provisioning but never makes Temporal start a second attempt."""
    async with stack.client(org="lock-org") as c:
        cpo_id = await create(c, "LCK", overrides={"locations": 40, "chargers_per_location": 25})
        await wait_status(c, cpo_id, {"PROVISIONING"})
        with sqlite3.connect(stack.database.url.split(":///", 1)[1], timeout=30) as conn:
            conn.execute("BEGIN IMMEDIATE")  # the write lock; WAL readers (status) carry on
            await asyncio.sleep(15)
            conn.rollback()
        final = await wait_status(c, cpo_id, {"READY", "FAILED"}, timeout=120)
        assert final["status"] == "READY", final
    history = await temporal.get_workflow_handle(f"cpo-{cpo_id}").fetch_history()
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert attempts and set(attempts) == {1}, attempts


async def test_status_writes_never_move_a_row_out_of_teardown(stack: Stack) -> None:
    """A late READY write (a retried record, or extend_ttl racing a DELETE) finds the row DESTROYING
    or DESTROYED and changes nothing; DESTROYING may still become DESTROYED."""
    db = Database(stack.database_url)
    acts = ProvisioningActivities(db, b"test-charger-key")
    try:
        async with db.session() as session, session.begin():
            row = cpo_row("guard-org", "GRD", "DESTROYING")
            session.add(row)
        assert row.id is not None
        later = utcnow() + timedelta(hours=5)
        await acts.record_status(
            StatusRecord(cpo_id=row.id, status=CpoStatus.READY, expires_at=later, set_expires_at=True)
        )
        assert stack.query("SELECT status, expires_at FROM cpo WHERE id = ?", row.id) == [("DESTROYING", None)]
        await acts.record_status(StatusRecord(cpo_id=row.id, status=CpoStatus.DESTROYED))
        await acts.record_status(StatusRecord(cpo_id=row.id, status=CpoStatus.READY))
        await acts.record_status(StatusRecord(cpo_id=row.id, status=CpoStatus.FAILED))
        assert stack.query("SELECT status FROM cpo WHERE id = ?", row.id) == [("DESTROYED",)]
    finally:
        await db.dispose()
