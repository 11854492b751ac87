"""kill -9 during charging sessions: the CDR still reaches the eMSP exactly once.

A stack of real processes: Temporal, a provisioning worker, two sim workers, two API processes (A
and B) on one database, the simulated chargers reaching the CSMS through a TCP balancer (A first,
then B), and an eMSP registered through the credentials handshake that pushed its token. The control
plane and OCPI go to B; the chargers are on A.

A mixed-depot CPO: 4 AC chargers on OCPP 1.6, 2 DC chargers on 2.0.1.

- Session 1 (OCPP 1.6): started by START_SESSION; during it the provisioning worker and then API
  process A (holding the charger's WebSocket) are SIGKILLed. The charger reconnects through the
  balancer to B and keeps its transaction (a reconnect is not a reboot); STOP_SESSION through B ends
  it; B's CdrBuilder and outbox deliver the CDR.
- Session 2 (OCPP 2.0.1): started the same way; the sim worker running the charger's pod is
  SIGKILLed. The other sim worker takes the pod over and the charger boots afresh: a simulated
  charger keeps nothing across a pod failover (as a real one that loses power without persistent
  storage), so it reports its connector Available with no transaction. The CSMS then ends the
  session it still had open there (COMPLETED, at the last meter reading it applied) and bills it.

For each session: exactly one CDR id at the eMSP (redeliveries of that id carry the same body), the
Session ends COMPLETED, and the CDR's energy is the session's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.charging_support import push_rfid_token, set_tariff
from tests.databases import DatabaseFactory
from tests.emsp_peer import EmspPeer, OcpiClient, Received, new_cpo, ok, register
from tests.stack import Stack, wait_status
from tests.tcp_balancer import Balancer
from tests.test_charger_pods import sockets_to

PARTY = "DUR"
TARIFF = [{"price_components": [{"type": "ENERGY", "price": 0.5, "step_size": 1, "vat": 19.0}]}]
SETTINGS = {"CPOLAB_COMMAND_TIMEOUT": "20"}


@dataclass
class Env:
    stack: Stack  # Temporal, worker, sim workers, API process A
    survivor: Stack  # API process B
    balancer: Balancer
    peer: EmspPeer
    ocpi: OcpiClient
    cpo_id: int
    base: str  # the CPO's OCPI 2.2.1 base URL (on B)
    token: dict[str, Any]


@pytest.fixture(scope="module")
async def env(
    databases: DatabaseFactory, peer: EmspPeer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    workdir = Path(tmp_path_factory.mktemp("durable"))
    stack = Stack(workdir, database=databases.new("durable"), env=SETTINGS)
    survivor = Stack(workdir / "api-b", database=stack.database)
    balancer = await Balancer([stack.api_port, survivor.api_port]).start()
    stack.extra_env["CPOLAB_CSMS_URL"] = f"ws://127.0.0.1:{balancer.port}/ocpp"
    try:
        await stack.start_temporal()
        stack.start_worker()
        stack.start_sim_worker()
        stack.start_sim_worker()  # the one that takes the pod over
        # Five processes start at once: on a loaded box an API's imports alone can take half a minute.
        await asyncio.gather(stack.start_api(timeout=90), survivor.start_api(stack.env, timeout=90))
        async with survivor.client() as control, httpx.AsyncClient(timeout=30) as http:
            body = await new_cpo(control, template="mixed-depot", party_id=PARTY, seed=21)
            status = await wait_status(control, body["cpo_id"], {"READY", "FAILED"}, timeout=120)
            assert status["status"] == "READY", status
            resp, _ = await register(http, body, peer)
            ocpi = OcpiClient(http, ok(resp)["token"])
            base = body["ocpi_peer_url"].removesuffix("/versions") + "/2.2.1"
            uid = "DUR00000000000000000000000000001"
            token = await push_rfid_token(ocpi, base, uid, contract_id="NL-EMS-C00000021-X", whitelist="ALLOWED")
            yield Env(stack, survivor, balancer, peer, ocpi, int(body["cpo_id"]), base, token)
    finally:
        survivor.stop()
        stack.stop()
        await balancer.stop()


def from_us(r: Received, what: str) -> bool:
    return r.headers.get("ocpi-from-party-id") == PARTY and what in r.path


async def charger_of(env: Env, version: str) -> dict[str, Any]:
    async with env.survivor.client() as control:
        listed = (await control.get(f"/ocpi/cpos/{env.cpo_id}/chargers")).json()["data"]
    charger = next(c for c in listed if c["ocpp_version"] == version)
    for (connector_id,) in env.stack.query(
        "SELECT id FROM connector WHERE cpo_id = ? AND evse_uid = ?", env.cpo_id, charger["evse_uids"][0]
    ):
        set_tariff(env.stack.database, env.cpo_id, charger["evse_uids"][0], str(connector_id), TARIFF)
    return charger


async def command(env: Env, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a command to B; returns its CommandResult at the eMSP."""
    url = env.peer.response_url()
    resp = await env.ocpi.request("POST", f"{env.base}/commands/{name}", json={**body, "response_url": url})
    assert ok(resp)["result"] == "ACCEPTED", resp.text
    path = url.split(str(env.peer.port), 1)[1]
    return (await env.peer.wait_for(lambda r: r.path == path, 40)).body


async def start_session(env: Env, charger: dict[str, Any]) -> str:
    """Plug a car in and START_SESSION; returns the OCPI Session id, ACTIVE at the eMSP."""
    identity, evse_uid = charger["identity"], charger["evse_uids"][0]
    async with env.survivor.client() as control:
        plugged = await control.post(f"/ocpi/cpos/{env.cpo_id}/chargers/{identity}/actions/plug", json={})
        assert plugged.status_code == 202, plugged.text
    already = len(env.peer.received)
    start = {"token": env.token, "location_id": charger["location_id"], "evse_uid": evse_uid}
    assert (await command(env, "START_SESSION", start))["result"] == "ACCEPTED"

    def activated(r: Received) -> bool:
        return from_us(r, "/sessions/") and r.method == "PUT" and r.body["evse_uid"] == evse_uid

    put = await env.peer.wait_for(lambda r: env.peer.received.index(r) >= already and activated(r), 30)
    assert put.body["status"] == "ACTIVE", put.body
    return str(put.body["id"])


async def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.2)


def charger_row(env: Env, identity: str) -> tuple[str, str | None, str | None]:
    [(status, api_instance, connection_id)] = env.stack.query(
        "SELECT status, api_instance, connection_id FROM charger WHERE cpo_id = ? AND identity = ?",
        env.cpo_id,
        identity,
    )
    return str(status), api_instance, connection_id  # type: ignore[return-value]


async def billed_once(env: Env, session_id: str) -> dict[str, Any]:
    """The session's CDR, after checking it arrived exactly once (by id) and agrees with the session."""

    def of_session(r: Received) -> bool:
        return from_us(r, "/cdrs") and r.method == "POST" and r.body["session_id"] == session_id

    def session_push(r: Received) -> bool:
        return from_us(r, f"/sessions/DE/{PARTY}/{session_id}")

    await env.peer.wait_for(of_session, 40)
    # The Session's pushes can lag its CDR (another object, another stream): a push that a killed API
    # process had claimed stays leased for 2 × outbound_timeout + 1 s, and the later ones queue behind it.
    await env.peer.wait_for(lambda r: session_push(r) and r.body["status"] == "COMPLETED", 40)
    await asyncio.sleep(3)  # room for a duplicate (or a push out of order) to show up
    posts = [r for r in env.peer.received if of_session(r) and r.http_status == 200]
    assert len({r.body["id"] for r in posts}) == 1, [r.body["id"] for r in posts]
    cdr = posts[0].body
    if len(posts) > 1:  # a redelivery (the sender could not know the first one arrived): the same CDR
        print(f"CDR {cdr['id']} delivered {len(posts)} times")
        assert all(r.body == cdr for r in posts[1:])
    pushes = [r.body for r in env.peer.received if session_push(r)]
    assert pushes[-1]["status"] == "COMPLETED", pushes[-1]
    [(status, kwh)] = env.stack.query(
        "SELECT status, kwh FROM charging_session WHERE cpo_id = ? AND session_id = ?", env.cpo_id, session_id
    )
    assert status == "COMPLETED"
    kwh = float(kwh)  # type: ignore[arg-type]
    assert abs(cdr["total_energy"] - kwh) < 1e-4 and abs(pushes[-1]["kwh"] - kwh) < 1e-9, (cdr, pushes[-1], kwh)
    stored = env.stack.query("SELECT id, data FROM ocpi_cdr WHERE cpo_id = ?", env.cpo_id)
    of_session = [
        i for i, data in stored if (json.loads(data) if isinstance(data, str) else data)["session_id"] == session_id
    ]
    assert of_session == [cdr["id"]], stored  # one CDR stored for the session, the one the eMSP got
    return cdr


async def test_worker_and_api_killed_during_a_session(env: Env) -> None:
    charger = await charger_of(env, "1.6")
    identity = charger["identity"]
    assert env.stack.api is not None
    status, holder, connection = charger_row(env, identity)
    assert status == "ONLINE" and connection is not None
    session_id = await start_session(env, charger)

    worker = env.stack.workers[0]  # (a) the provisioning worker (commands run on it)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    env.stack.start_worker()

    env.stack.api.send_signal(signal.SIGKILL)  # (c) API process A, holding the charger's WebSocket
    env.stack.api.wait()
    await wait_until(
        "the charger back on B",
        lambda: (row := charger_row(env, identity))[0] == "ONLINE" and row[1] != holder and row[2] != connection,
        40,
    )
    await asyncio.sleep(2)  # the car charges on
    result = await command(env, "STOP_SESSION", {"session_id": session_id})
    assert result["result"] == "ACCEPTED", result  # the charger still had the transaction
    cdr = await billed_once(env, session_id)
    [(reason,)] = env.stack.query(
        "SELECT stop_reason FROM charging_session WHERE cpo_id = ? AND session_id = ?", env.cpo_id, session_id
    )
    assert reason == "Remote" and cdr["total_energy"] > 0 and cdr["total_cost"]["excl_vat"] > 0


async def test_sim_worker_killed_during_a_session(env: Env) -> None:
    charger = await charger_of(env, "2.0.1")
    identity = charger["identity"]
    session_id = await start_session(env, charger)
    await asyncio.sleep(2)
    holder, other = sorted(env.stack.sim_workers, key=lambda p: -sockets_to(p.pid, env.balancer.port))
    assert sockets_to(holder.pid, env.balancer.port) > 0 and sockets_to(other.pid, env.balancer.port) == 0
    _, _, connection = charger_row(env, identity)
    holder.send_signal(signal.SIGKILL)  # (b) the sim worker running the charger's pod
    holder.wait()
    # The pod's heartbeat timeout (20 s) hands it to the other sim worker; the charger boots afresh.
    await wait_until(
        "the charger back from the other sim worker",
        lambda: (row := charger_row(env, identity))[0] == "ONLINE" and row[2] != connection,
        60,
    )
    cdr = await billed_once(env, session_id)  # billed to the last reading applied, so maybe 0 kWh
    [(reason, end_at)] = env.stack.query(
        "SELECT stop_reason, end_at FROM charging_session WHERE cpo_id = ? AND session_id = ?", env.cpo_id, session_id
    )
    assert reason == "Reboot" and end_at is not None and cdr["end_date_time"] >= cdr["start_date_time"]
    assert sockets_to(other.pid, env.balancer.port) == 6  # every charger of the CPO, once
    # Stopping it now is too late: the charger no longer has the transaction, and nothing is billed twice.
    posts = [r for r in env.peer.received if from_us(r, "/cdrs") and r.body["session_id"] == session_id]
    assert (await command(env, "STOP_SESSION", {"session_id": session_id}))["result"] != "ACCEPTED"
    await asyncio.sleep(1)
    assert [r for r in env.peer.received if from_us(r, "/cdrs") and r.body["session_id"] == session_id] == posts
