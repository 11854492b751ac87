"""Scale-out under chaos on one machine (issue 7, item 7).

Postgres, the Temporal dev server, two API processes on two ports and two workers, all real
processes. 50 tiny CPOs of three orgs (a few party ids each, so collisions are mangled) are created
at once, spread over both APIs, while a random worker is SIGKILLed and restarted every few seconds
and one API is SIGKILLed once in the middle of the burst. A create that lost its connection is
retried on the other API with the same body: the API has no create idempotency key, so the lost
attempt may have left a row, which only the reconciler can clean (its 202, and so its cpo_id and
Token A, never reached the client).

Checked exactly: every CPO that answered 202 reaches READY with the row counts of its plan (re-derived
here from the seed), one Token A and one party reservation; every row that answered no 202 and never
got its run id is removed or destroyed by the reconciler (one whose 202 was lost in transit after the
run id was recorded is indistinguishable from a delivered one: the client DELETEs it, as its owner
would after listing); then every CPO goes by TTL or DELETE (chaos still on for part of it) and nothing
is left: no row in any cpo_id-keyed table, every cpo row DESTROYED, no CPO or teardown workflow running
in Temporal. Costs 3-3.5 min (the TTL, 150 s so that a loaded box reaches READY first, dominates), so
it runs with `--db postgres` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlmodel import SQLModel
from temporalio.client import Client
from temporalio.service import RPCError

from app.lifecycle.models import teardown_workflow_id, workflow_id
from app.network.blueprint import resolve_blueprint
from app.network.generator import GENERATOR_VERSION, NetworkSpec, generate_locations, generate_tariffs
from tests.databases import AppDatabase, DatabaseFactory
from tests.stack import QUIET, Stack, api_command, free_port, wait_http

N_CPOS = 50
ORGS = ("scale-a", "scale-b", "scale-c")
PARTIES = ("SCA", "SCB", "SCC", "SCD")  # per org and country: later creates collide and are mangled
TEMPLATES = (("small-urban-ac", "BE"), ("highway-dc", "NL"), ("mixed-depot", "DE"))
TTL_S = 150  # the API accepts >= 60; margin for a loaded box to reach READY (checked while READY) first
RECONCILE = {"CPOLAB_RECONCILE_INTERVAL": "2", "CPOLAB_RECONCILE_GRACE": "10"}
WORKER_KILL_EVERY_S = (2.0, 4.0)  # after the previous replacement polls
CPO_TABLES = [t for t in SQLModel.metadata.sorted_tables if "cpo_id" in t.c]
NETWORK = ("location", "evse", "connector", "charger", "charger_route", "tariff")


@dataclass
class Create:
    """One logical create of the test's client: its body, its attempts, and the 202 if one came."""

    index: int
    org: str
    body: dict[str, object]
    delete: bool  # else it goes by TTL
    attempts: list[str] = field(default_factory=list)
    accepted: dict[str, object] | None = None

    @property
    def cpo_id(self) -> int:
        assert self.accepted is not None
        return int(str(self.accepted["cpo_id"]))


def plan(n: int) -> list[Create]:
    creates = []
    for i in range(n):
        template, country = TEMPLATES[i % len(TEMPLATES)]
        body: dict[str, object] = {
            "template": template,
            "country_code": country,
            "party_id": PARTIES[(i // len(ORGS)) % len(PARTIES)],
            "name_prefix": f"scale{i}",
            "seed": 7000 + i,
            "overrides": {"locations": 1 + i % 2, "chargers_per_location": 1 + (i // 2) % 2},
        }
        ttl = i % 3 == 0
        body["ttl_seconds"] = TTL_S if ttl else 3600
        creates.append(Create(index=i, org=ORGS[i % len(ORGS)], body=body, delete=not ttl))
    return creates


def expected_rows(body: dict[str, object], party_id: str) -> dict[str, int]:
    """Row counts of the network this create asks for, re-derived from its seed (not the app's shape)."""
    overrides = body["overrides"]
    assert isinstance(overrides, dict)
    spec = NetworkSpec(
        template=str(body["template"]),
        seed=int(str(body["seed"])),
        country_code=str(body["country_code"]),
        party_id=party_id,
        name_prefix=str(body["name_prefix"]),
        locations=overrides["locations"],
        chargers_per_location=overrides["chargers_per_location"],
        generator_version=GENERATOR_VERSION,  # what the API gives a new CPO
    )
    bp = resolve_blueprint(spec.template, spec.country_code)
    assert bp is not None
    locations = generate_locations(spec, bp, 0, spec.locations or 0)
    evses = [e for loc in locations for e in loc.evses]
    return {
        "location": len(locations),
        "evse": len(evses),
        "connector": sum(len(e.connectors) for e in evses),
        "charger": sum(len(loc.chargers) for loc in locations),
        "charger_route": len(evses),  # one route per (charger identity, OCPP EVSE)
        "tariff": len(generate_tariffs(spec, bp)),
    }


class ScaleStack(Stack):
    """The shared Stack with quotas raised, a fast reconciler and a second API process."""

    def __init__(self, workdir: Path, database: AppDatabase) -> None:
        super().__init__(workdir, database=database)
        self.api2_port = free_port()
        self.api2_url = f"http://127.0.0.1:{self.api2_port}"
        self.api2: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        # The chargers reach the CSMS of API 2 (there is no load balancer here): API 1's kill hits
        # creates; the sim worker kill below hits chargers.
        csms = {"CPOLAB_CSMS_URL": f"ws://127.0.0.1:{self.api2_port}/ocpp"}
        return {**super().env, "CPOLAB_QUOTA_LIVE_CPOS": "1000", **RECONCILE, **csms}

    async def start_api2(self) -> None:
        self.api2 = self._spawn(
            "api2",
            [*api_command(self.api2_port), *QUIET],
        )
        await wait_http(f"{self.api2_url}/healthz")

    def stop(self) -> None:
        if self.api2 is not None and self.api2.poll() is None:
            self.api2.send_signal(signal.SIGTERM)
            self.api2.wait(timeout=15)
        super().stop()


class WorkerChaos:
    """Every few seconds SIGKILLs a random worker and starts a fresh one; the next kill waits until
    the fresh one polls, so there is always work in flight to lose but the stack still progresses."""

    def __init__(self, stack: Stack, live: list[subprocess.Popen[bytes]]) -> None:
        self.stack = stack
        self.live = live
        self.kills = 0
        self.stop = asyncio.Event()
        self.rng = random.Random(7)

    async def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.rng.uniform(*WORKER_KILL_EVERY_S))
                return
            slot = self.rng.randrange(len(self.live))
            victim = self.live[slot]
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            self.kills += 1
            self.live[slot] = await self.restart()

    async def restart(self, timeout: float = 120) -> subprocess.Popen[bytes]:
        """A fresh worker, once it polls: its INFO log says so (the task queue's poller list only
        shows the pollers of one partition, so it may never show this worker)."""
        name = f"worker-{len(self.stack.workers)}"
        proc = self.stack._spawn(name, [sys.executable, "worker.py", "--log-level", "INFO"])
        self.stack.workers.append(proc)
        log = self.stack.workdir / f"{name}.log"
        deadline = time.monotonic() + timeout
        while b"worker polling" not in log.read_bytes():
            assert proc.poll() is None, f"{name} exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"{name} not polling after {timeout} s"
            await asyncio.sleep(0.2)
        return proc


async def create_with_retry(apis: list[str], headers: dict[str, str], create: Create, deadline: float) -> None:
    """POST on this create's API; a lost connection or a 503 is retried on the other one."""
    turn = create.index % 2
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        while create.accepted is None:
            assert time.monotonic() < deadline, f"create {create.index} never got a 202: {create.attempts}"
            url = apis[turn]
            try:
                resp = await client.post(f"{url}/ocpi/cpos", json=create.body)
            except httpx.TransportError as exc:
                create.attempts.append(f"{url}: {type(exc).__name__}")
                turn = 1 - turn
                await asyncio.sleep(0.2)
                continue
            create.attempts.append(f"{url}: {resp.status_code}")
            if resp.status_code == 202:
                create.accepted = resp.json()
            else:
                # 503 (Temporal slow to answer on a loaded box) leaves nothing behind: retry. Anything
                # else is a bug.
                assert resp.status_code == 503, resp.text
                turn = 1 - turn
                await asyncio.sleep(0.5)


def assert_network(stack: Stack, c: Create) -> None:
    """Exactly the rows of the CPO's plan, one Token A, one reservation of the party it was given."""
    assert c.accepted is not None
    party = c.accepted["party"]
    assert isinstance(party, dict)
    want = expected_rows(c.body, str(party["party_id"]))
    got = {t: stack.count(t, c.cpo_id) for t in NETWORK}
    assert got == want, (c.cpo_id, c.body, got, want)
    tokens = stack.query("SELECT kind, count(*) FROM credential_token WHERE cpo_id = ? GROUP BY kind", c.cpo_id)
    assert tokens == [("A", 1)], (c.cpo_id, tokens)
    reservation = stack.query("SELECT org, country_code, party_id FROM party_reservation WHERE cpo_id = ?", c.cpo_id)
    assert reservation == [(c.org, c.body["country_code"], party["party_id"])], (c.cpo_id, reservation)


def statuses(db: AppDatabase, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db.query(f"SELECT id, status FROM cpo WHERE id IN ({', '.join(str(i) for i in ids)})")
    return {int(r[0]): str(r[1]) for r in rows}


async def wait_until(
    what: str, check: Callable[[], dict[int, str]], timeout: float, temporal: Client | None = None
) -> float:
    """Poll `check()` (the CPOs still pending) until it is empty; on timeout say where they hang."""
    started = time.monotonic()
    pending: dict[int, str] = {}
    while time.monotonic() - started < timeout:
        pending = check()
        if not pending:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    where = await pending_activities(temporal, list(pending)[:5]) if temporal else ""
    pytest.fail(f"{what} not reached in {timeout} s: {pending}{where}")


async def pending_activities(temporal: Client, ids: list[int]) -> str:
    lines = []
    for cpo_id in ids:
        try:
            desc = await temporal.get_workflow_handle(workflow_id(cpo_id)).describe()
        except RPCError as exc:
            lines.append(f"cpo-{cpo_id}: {exc}")
            continue
        acts = [
            f"{a.activity_type.name} attempt {a.attempt} state {a.state} last failure {a.last_failure.message!r}"
            for a in desc.raw_description.pending_activities
        ]
        lines.append(f"cpo-{cpo_id}: {desc.status.name if desc.status else '?'} pending {acts}")
    return "\n" + "\n".join(lines)


async def reconciler_destroyed(temporal: Client, cpo_id: int) -> bool:
    """Its workflow got request_destroys this test never sent (one per reconciler pass until the
    teardown marks the row DESTROYING: several while workers die), or the reconciler ran its teardown."""
    try:
        history = await temporal.get_workflow_handle(workflow_id(cpo_id)).fetch_history()
    except RPCError:  # never started: only the reconciler's teardown workflow can have run
        history = None
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        for e in (history.events if history else [])
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    if signals and set(signals) == {"request_destroy"}:
        return True
    try:
        await temporal.get_workflow_handle(teardown_workflow_id(cpo_id)).describe()
    except RPCError:
        return False
    return True


async def running_workflows(temporal: Client) -> list[str]:
    query = (
        "ExecutionStatus = 'Running' AND WorkflowType IN ('CpoWorkflow', 'CpoTeardownWorkflow', 'ChargerPodWorkflow')"
    )
    return [wf.id async for wf in temporal.list_workflows(query)]


async def test_fifty_cpos_under_worker_and_api_kills(
    tmp_path: Path, databases: DatabaseFactory, request: pytest.FixtureRequest
) -> None:
    if request.config.getoption("--db") != "postgres":
        pytest.skip("~2 min: runs on the scale-out backend only (--db postgres)")
    stack = ScaleStack(tmp_path / "stack", databases.new("scale_out"))
    db = stack.database
    chaos_task: asyncio.Task[None] | None = None
    try:
        await stack.start_temporal()
        live = [stack.start_worker(), stack.start_worker()]
        stack.start_sim_worker()
        stack.start_sim_worker()
        await stack.start_api()
        await stack.start_api2()
        temporal = await Client.connect(stack.temporal_address)
        apis = [stack.api_url, stack.api2_url]
        creates = plan(N_CPOS)
        chaos = WorkerChaos(stack, live)
        chaos_task = asyncio.create_task(chaos.run())
        t0 = time.monotonic()

        # ---- the burst, with API 1 killed once in the middle of it ----
        deadline = t0 + 180
        burst = [asyncio.create_task(create_with_retry(apis, stack.headers(c.org), c, deadline)) for c in creates]
        while sum(c.accepted is not None for c in creates) < N_CPOS // 5:  # noqa: ASYNC110 — polls the tasks' results
            await asyncio.sleep(0.02)
        in_flight = sum(c.accepted is None for c in creates)
        assert stack.api is not None
        stack.api.send_signal(signal.SIGKILL)
        stack.api.wait()
        api_killed_at = time.monotonic() - t0
        await asyncio.gather(*burst)
        burst_s = time.monotonic() - t0
        print(f"\n{burst_s:.1f} s: burst answered (API 1 killed at {api_killed_at:.1f} s)")
        await stack.start_api()  # API 1 back on its port: both serve the rest of the test
        # A sim worker SIGKILLed once: its pods move to the other one (heartbeat timeout) and their
        # chargers boot again; a CPO waiting for them gets READY late, a READY one stays READY.
        sim_victim = stack.sim_workers[0]
        sim_victim.send_signal(signal.SIGKILL)
        sim_victim.wait()
        sim_killed_at = time.monotonic() - t0
        stack.start_sim_worker()
        accepted = {c.cpo_id: c for c in creates}
        assert len(accepted) == N_CPOS
        lost = [c for c in creates if any("Error" in a for a in c.attempts)]
        assert lost, "the API kill hit no create in flight: the test exercised nothing"

        # ---- rows nobody got a 202 for (the API that made them is dead): the reconciler's ----
        unanswered = [
            (int(r[0]), r[1])
            for r in stack.query("SELECT id, workflow_run_id FROM cpo ORDER BY id")
            if int(r[0]) not in accepted
        ]
        # A row whose run id was recorded may have had its 202 lost in transit (sent, never read):
        # the server cannot tell it from a delivered one, so it stays live; its owner finds it in
        # GET /ocpi/cpos and deletes it, as this client does below.
        lost_in_transit = [cpo_id for cpo_id, run_id in unanswered if run_id is not None]
        half_created = [cpo_id for cpo_id, run_id in unanswered if run_id is None]

        # ---- every 202 reaches READY with exactly its plan's rows ----
        ids = sorted(accepted)

        verified: set[int] = set()

        def verify_ready() -> dict[int, str]:
            """Checks each CPO's rows as soon as it is READY (the TTL ones expire TTL_S after their create)."""
            pending = {}
            rows = statuses(db, ids)
            assert set(rows) == set(ids), f"rows of 202'd CPOs vanished: {set(ids) - set(rows)}"
            for cpo_id, status in rows.items():
                if cpo_id in verified:
                    continue
                assert status in ("PENDING", "PROVISIONING", "READY"), (cpo_id, status)
                if status == "READY":
                    assert_network(stack, accepted[cpo_id])
                    verified.add(cpo_id)
                else:
                    pending[cpo_id] = status
            return pending

        await wait_until("all READY", verify_ready, 180, temporal)
        ready_s = time.monotonic() - t0

        def not_online() -> dict[int, str]:
            rows = stack.query("SELECT cpo_id, identity, status FROM charger WHERE status != 'ONLINE'")
            return {int(r[0]): f"{r[1]} {r[2]}" for r in rows if int(r[0]) in accepted}

        online_s = await wait_until("every charger online again after the sim worker kill", not_online, 120, temporal)
        print(f"\n{ready_s:.1f} s: all {N_CPOS} READY and checked ({chaos.kills} worker kills so far)")

        # The reconciler removes or tears down the half-created ones (it may have begun already).
        def not_reconciled() -> dict[int, str]:
            return {i: s for i, s in statuses(db, half_created).items() if s != "DESTROYED"}

        reconciled_s = await wait_until("half-created rows reconciled", not_reconciled, 120, temporal)
        orphans_removed = len(half_created) - len(statuses(db, half_created))
        for cpo_id in statuses(db, half_created):  # the rows left went by the reconciler, not a TTL
            assert await reconciler_destroyed(temporal, cpo_id), cpo_id

        # ---- destroy: DELETE the rest (chaos on), TTL takes the others ----
        delete_ids = [cpo_id for cpo_id, c in accepted.items() if c.delete] + lost_in_transit
        owners = {cpo_id: c.org for cpo_id, c in accepted.items()}
        owners.update({i: str(stack.query("SELECT org FROM cpo WHERE id = ?", i)[0][0]) for i in lost_in_transit})
        for n, cpo_id in enumerate(delete_ids):
            async with httpx.AsyncClient(base_url=apis[n % 2], headers=stack.headers(owners[cpo_id])) as client:
                resp = await client.delete(f"/ocpi/cpos/{cpo_id}")
                assert resp.status_code == 202, resp.text
        await asyncio.sleep(8)  # workers keep dying while the teardowns run
        chaos.stop.set()
        await chaos_task

        all_ids = sorted(ids + lost_in_transit)

        def not_destroyed() -> dict[int, str]:
            return {i: s for i, s in statuses(db, all_ids).items() if s != "DESTROYED"}

        await wait_until("all DESTROYED", not_destroyed, 180, temporal)
        destroyed_s = time.monotonic() - t0

        # ---- nothing left behind ----
        assert {str(r[0]) for r in stack.query("SELECT DISTINCT status FROM cpo")} == {"DESTROYED"}
        for table in CPO_TABLES:
            assert stack.query(f"SELECT count(*) FROM {table.name}") == [(0,)], table.name

        async def open_workflows() -> list[str]:
            return await running_workflows(temporal)

        # Visibility trails the closes by a moment.
        for _ in range(40):
            still = await open_workflows()
            if not still:
                break
            await asyncio.sleep(0.5)
        assert not still, still

        print(
            f"\nscale-out: {N_CPOS} CPOs accepted ({sum(len(c.attempts) for c in creates)} POSTs, "
            f"{len(lost)} retried after the API kill at {api_killed_at:.1f} s with {in_flight} in flight), "
            f"burst {burst_s:.1f} s; {chaos.kills} worker kills; sim worker killed at {sim_killed_at:.1f} s; "
            f"all READY at {ready_s:.1f} s, every charger online {online_s:.1f} s later; "
            f"unanswered rows: {len(half_created)} half-created ({orphans_removed} removed, "
            f"{len(half_created) - orphans_removed} torn down, reconciled {reconciled_s:.1f} s after READY), "
            f"{len(lost_in_transit)} with a 202 lost in transit; "
            f"{len(delete_ids)} DELETEd, {N_CPOS - len(delete_ids) + len(lost_in_transit)} by TTL; "
            f"all DESTROYED at {destroyed_s:.1f} s"
        )
    finally:
        if chaos_task is not None and not chaos_task.done():  # a failed assertion: no restarts while stopping
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, AssertionError):
                await chaos_task
        stack.stop()
