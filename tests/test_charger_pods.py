"""Live chargers on the real stack: pods on a sim worker, booting against the API's CSMS.

READY only once every charger booted; a SIGKILLed sim worker's pod moves to another sim worker and
its chargers come back without duplicates; continue-as-new leaves the pods alone; teardown stops
every pod and every connection; a charger that cannot come online fails the CPO at its step.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.worker import Worker

from activities.charger_pods import PodActivities
from activities.provisioning import ProvisioningActivities
from app.lifecycle.pods import pod_workflow_id
from app.store.db import Database
from tests.databases import DatabaseFactory
from tests.emsp_peer import EmspPeer, OcpiClient, ok, register
from tests.stack import Stack, wait_status
from tests.test_workflow_faults import insert_cpo, start_cpo, workflow_input
from workflows.charger_pod import ChargerPodWorkflow
from workflows.cpo import CpoWorkflow

BODY = {"template": "small-urban-ac", "country_code": "NL", "party_id": "LIV", "name_prefix": "live"}


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, databases: DatabaseFactory) -> AsyncIterator[Stack]:
    """A stack of its own: the tests count the sim worker's sockets, so no other file's CPOs may live on it."""
    s = Stack(Path(tmp_path_factory.mktemp("pods-stack")), database=databases.new("charger_pods"))
    try:
        await s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[Database]:
    database = Database(stack.database_url)
    yield database
    await database.dispose()


def sockets_to(pid: int, port: int) -> int:
    """Established TCP connections process `pid` holds to local `port` (its chargers' WebSockets)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and remote_port == port and fields[9] in inodes:
                count += 1
    return count


def charger_states(stack: Stack, cpo_id: int) -> dict[str, tuple[str, object]]:
    rows = stack.query("SELECT identity, status, pod_generation FROM charger WHERE cpo_id = ?", cpo_id)
    return {str(r[0]): (str(r[1]), r[2]) for r in rows}


async def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_ready_only_once_every_charger_booted_and_teardown_disconnects_them(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    resp = await client.post("/ocpi/cpos", json=BODY)
    assert resp.status_code == 202, resp.text
    cpo_id = resp.json()["cpo_id"]
    seen_online: list[int] = []
    while True:
        status = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
        if status["progress"]:
            seen_online.append(status["progress"]["chargers_online"])
        if status["status"] != "PROVISIONING" and status["status"] != "PENDING":
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "READY", status
    assert status["progress"]["chargers_online"] == 6
    assert seen_online == sorted(seen_online)  # counts up, never back
    states = charger_states(stack, cpo_id)
    assert {s for s, _ in states.values()} == {"ONLINE"}, states
    assert stack.query("SELECT count(*) FROM charger WHERE cpo_id = ? AND last_boot_at IS NULL", cpo_id) == [(0,)]
    (sim,) = stack.sim_workers
    assert sockets_to(sim.pid, stack.api_port) == 6

    temporal = await Client.connect(stack.temporal_address)
    pod = temporal.get_workflow_handle(pod_workflow_id(cpo_id, 0))
    assert (await pod.describe()).status == WorkflowExecutionStatus.RUNNING

    assert (await client.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 202
    await wait_status(client, cpo_id, {"DESTROYED"})
    # Teardown waited for the pod to end: its chargers had disconnected before the rows went.
    assert (await pod.describe()).status == WorkflowExecutionStatus.CANCELED
    assert sockets_to(sim.pid, stack.api_port) == 0
    assert stack.count("charger", cpo_id) == 0


async def test_teardown_asks_every_pod_to_stop_before_it_waits_for_one(stack: Stack, client: httpx.AsyncClient) -> None:
    """A pod learns of its cancellation only at its next heartbeat (up to 5 s): teardown cancels
    every pod first and then waits for all, so a many-pod CPO pays about one such wait, not one per
    pod. Read from the pods' own histories: every cancel request precedes the first pod's close."""
    body = {**BODY, "party_id": "LVP", "overrides": {"locations": 17, "chargers_per_location": 30}}
    resp = await client.post("/ocpi/cpos", json=body)  # 510 chargers: pods of 16 locations and 1
    assert resp.status_code == 202, resp.text
    cpo_id = resp.json()["cpo_id"]
    assert (await wait_status(client, cpo_id, {"READY", "FAILED"}, timeout=120))["status"] == "READY"
    temporal = await Client.connect(stack.temporal_address)
    pods = [temporal.get_workflow_handle(pod_workflow_id(int(cpo_id), n)) for n in range(2)]
    assert [(await pod.describe()).status for pod in pods] == [WorkflowExecutionStatus.RUNNING] * 2

    assert (await client.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 202
    await wait_status(client, cpo_id, {"DESTROYED"}, timeout=120)
    asked, closed = [], []
    for pod in pods:
        for event in (await pod.fetch_history()).events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                asked.append(event.event_time.ToDatetime())
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
                closed.append(event.event_time.ToDatetime())
    assert len(asked) == len(closed) == 2
    assert max(asked) < min(closed)
    assert stack.count("charger", int(cpo_id)) == 0


async def test_a_killed_sim_worker_hands_its_pod_to_another_and_the_emsp_sees_it(
    stack: Stack, client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer
) -> None:
    """The eMSP registered with the CPO sees the EVSEs go UNKNOWN when their charger drops (a PATCH
    from the outbox) and AVAILABLE again once the pod runs on the other sim worker; its own pull of
    the Location agrees with what was pushed."""
    stack.start_sim_worker()
    resp = await client.post("/ocpi/cpos", json={**BODY, "party_id": "KIL"})
    created = resp.json()
    cpo_id = created["cpo_id"]
    await wait_status(client, cpo_id, {"READY"})
    token_c = ok((await register(http, created, peer))[0])["token"]
    before = charger_states(stack, cpo_id)
    holder, other = sorted(stack.sim_workers, key=lambda p: -sockets_to(p.pid, stack.api_port))[:2]
    assert sockets_to(holder.pid, stack.api_port) == 6 and sockets_to(other.pid, stack.api_port) == 0
    location_id, evse_uid = map(str, stack.query("SELECT location_id, uid FROM evse WHERE cpo_id = ?", cpo_id)[0])
    patches_of_evse = f"/locations/NL/KIL/{location_id}/{evse_uid}"
    already = len(peer.received)

    def pushed(status: str):
        return lambda r: r.method == "PATCH" and r.path.endswith(patches_of_evse) and r.body["status"] == status

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # The CSMS sees the sockets drop; the pod's heartbeat timeout (20 s) hands it to the other worker.
    await wait_for("chargers offline", lambda: "OFFLINE" in {s for s, _ in charger_states(stack, cpo_id).values()}, 15)
    unknown = await peer.wait_for(pushed("UNKNOWN"), timeout=15)
    took = await wait_for(
        "chargers back online",
        lambda: {s for s, _ in charger_states(stack, cpo_id).values()} == {"ONLINE"},
        60,
    )
    print(f"\nfailover of 6 chargers: online again {took:.1f} s after they went offline")
    available = await peer.wait_for(pushed("AVAILABLE"), timeout=15)
    assert peer.received.index(unknown) < peer.received.index(available) and peer.received.index(unknown) >= already
    assert available.body["last_updated"] > unknown.body["last_updated"]
    after = charger_states(stack, cpo_id)
    assert all(after[i][1] > before[i][1] for i in before)  # a newer pod generation holds each one
    assert sockets_to(other.pid, stack.api_port) == 6  # one connection per charger, no duplicates
    assert (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()["status"] == "READY"
    # The eMSP's pull agrees with the last push.
    base = created["ocpi_peer_url"].removesuffix("/versions")
    pulled = ok(await OcpiClient(http, token_c).request("GET", f"{base}/2.2.1/locations/{location_id}/{evse_uid}"))
    assert (pulled["status"], pulled["last_updated"]) == ("AVAILABLE", available.body["last_updated"])


async def test_continue_as_new_leaves_the_pods_running(stack: Stack, db: Database) -> None:
    cpo_id = await insert_cpo(db, "CAN")
    temporal = await Client.connect(stack.temporal_address)
    inp = workflow_input(cpo_id, "CAN", None)
    inp.max_history_events = 10  # READY's first wait already continues as new
    handle = await start_cpo(temporal, inp)
    await wait_for("online", lambda: {s for s, _ in charger_states(stack, cpo_id).values()} == {"ONLINE"}, 60)
    first_run = handle.first_execution_run_id
    connections = stack.query("SELECT identity, connection_id FROM charger WHERE cpo_id = ?", cpo_id)

    async def continued() -> bool:
        return (await temporal.get_workflow_handle(handle.id).describe()).run_id != first_run

    deadline = time.monotonic() + 30
    while not await continued():
        assert time.monotonic() < deadline, "the CPO workflow never continued as new"
        await asyncio.sleep(0.2)
    pod = temporal.get_workflow_handle(pod_workflow_id(cpo_id, 0))
    assert (await pod.describe()).status == WorkflowExecutionStatus.RUNNING
    assert stack.query("SELECT identity, connection_id FROM charger WHERE cpo_id = ?", cpo_id) == connections
    await temporal.get_workflow_handle(handle.id).signal(CpoWorkflow.request_destroy)
    await wait_for("pod stopped", lambda: stack.count("charger", cpo_id) == 0, 60)
    assert (await pod.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_chargers_that_cannot_come_online_fail_the_cpo_at_their_step(
    stack: Stack, db: Database, client: httpx.AsyncClient
) -> None:
    """Rows written under another password key: every charger is refused at the upgrade (401)."""
    cpo_id = await insert_cpo(db, "OFF")
    temporal = await Client.connect(stack.temporal_address)
    queue = "wrong-key"
    acts = ProvisioningActivities(db, b"not-the-servers-charger-key")
    pods = PodActivities(db, temporal)
    worker = Worker(
        temporal,
        task_queue=queue,
        workflows=[CpoWorkflow, ChargerPodWorkflow],
        activities=[
            acts.record_status,
            acts.provision_small_network,
            acts.teardown_network,
            pods.plan_pod,
            pods.await_chargers_online,
            pods.stop_charger_pods,
        ],
    )
    async with worker:
        inp = workflow_input(cpo_id, "OFF", timedelta(hours=1))
        inp.online_timeout_seconds = 6
        handle = await start_cpo(temporal, inp, queue)
        body = await wait_status(client, cpo_id, {"FAILED"}, timeout=60)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    error = body["error"]
    assert error["step"] == "wait_chargers_online", error
    assert error["code"] == "ChargersOffline" and not error["retryable"]
    assert "6 of 6 chargers did not come online within 6 s" in error["message"]
    assert "fault-0001-01" in error["message"]  # names the chargers that are missing
    assert stack.count("charger", cpo_id) == 0  # compensated: nothing left, pods stopped
    pod = temporal.get_workflow_handle(pod_workflow_id(cpo_id, 0))
    assert (await pod.describe()).status == WorkflowExecutionStatus.CANCELED
