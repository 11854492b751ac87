"""`detach` / `attach` on the whole stack (CONTRACT §3): the simulated charger lets go of its identity,
the CSMS refuses our pods while it is DETACHED and serves the user's own OCPP client (written here on
`websockets`, not app/sim), whose statuses reach OCPI like any charger's; `attach` closes that client
and the simulator takes the charger back. Also the 409s and 422s, a location's fan-out, and a CPO
teardown that closes the external client too.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.lifecycle.pods import pod_workflow_id
from tests.charging_support import LiveCpo, live_cpo
from tests.csms_support import OcppClient, basic, upgrade_refused
from tests.emsp_peer import EmspPeer, new_cpo, ok
from tests.stack import Stack, wait_status
from tests.test_charger_pods import sockets_to, wait_for

DETACHED_CLOSE = 4002  # app.csms.runtime.DETACHED
ATTACHED_CLOSE = 4003  # app.csms.runtime.ATTACHED
ATTACH_BOUND_S = 15.0  # Retry-After 5 s + the pod's jitter ≤ 5 s + handshake and statuses, with slack


@pytest.fixture(scope="module")
async def cpo(stack: Stack, peer: EmspPeer) -> AsyncIterator[LiveCpo]:
    async with live_cpo(stack, peer, party_id="DET", seed=11) as cpo:
        yield cpo


def row(stack: Stack, cpo_id: int, identity: str) -> tuple[str, object]:
    (status, connection_id), *_ = stack.query(
        "SELECT status, connection_id FROM charger WHERE cpo_id = ? AND identity = ?", cpo_id, identity
    )
    return str(status), connection_id


def pod_sockets(stack: Stack) -> int:
    """The sim workers' WebSockets to the API (their chargers' connections)."""
    return sum(sockets_to(p.pid, stack.api_port) for p in stack.sim_workers if p.poll() is None)


def pod_connections(stack: Stack, cpo_id: int | None = None) -> int:
    """Chargers (of one CPO, or of every CPO on the stack) that the CSMS holds a pod's connection for."""
    query = "SELECT COUNT(*) FROM charger WHERE connection_id IS NOT NULL AND status != 'DETACHED'"
    [(count,)] = stack.query(query) if cpo_id is None else stack.query(f"{query} AND cpo_id = ?", cpo_id)
    return int(count)  # type: ignore[call-overload]


async def pods_settled(stack: Stack) -> None:
    """Until the pods' sockets match the connections the CSMS holds: no socket without its charger's
    connection, none twice. The stack is shared, so its totals move with other tests' CPOs (a torn-down
    or expired CPO's pods close their sockets a heartbeat, 5 s, after its rows are gone): this test
    counts its own CPO's connections, never a stack-wide total against an earlier one."""
    await wait_for("the pods' sockets to match the CSMS's", lambda: pod_sockets(stack) == pod_connections(stack), 30)


async def pod_stats(stack: Stack, cpo_id: int) -> dict[str, int]:
    """The pod's last heartbeat details (app.sim.pod.Pod.stats)."""
    temporal = await Client.connect(stack.temporal_address)
    desc = await temporal.get_workflow_handle(pod_workflow_id(cpo_id, 0)).describe()
    (activity,) = desc.raw_description.pending_activities
    (stats,) = await temporal.data_converter.decode(activity.heartbeat_details.payloads)
    return stats


async def external_client(stack: Stack, cpo_id: int, identity: str, password: str, version: str) -> ClientConnection:
    """The user's own OCPP client: the charger's credentials, no pod generation header."""
    return await connect(
        f"{stack.api_url.replace('http://', 'ws://')}/ocpp/{cpo_id}/{identity}",
        subprotocols=[Subprotocol(f"ocpp{version}")],
        additional_headers={"Authorization": basic(identity, password)},
        open_timeout=10,
    )


async def evse_status(cpo: LiveCpo, location_id: str, evse_uid: str) -> str:
    return str(ok(await cpo.ocpi.request("GET", f"{cpo.base}/locations/{location_id}/{evse_uid}"))["status"])


async def test_detach_hands_the_identity_to_an_external_client_and_attach_takes_it_back(
    stack: Stack, cpo: LiveCpo
) -> None:
    async with stack.client() as control:
        listed = (await control.get(f"/ocpi/cpos/{cpo.id}/chargers")).json()["data"]
        charger = next(c for c in listed if c["ocpp_version"] == "1.6" and c["state"] == "ONLINE")
        identity, location_id, evse_uid = charger["identity"], charger["location_id"], charger["evse_uids"][0]
        detail = (await control.get(f"/ocpi/cpos/{cpo.id}/chargers/{identity}")).json()
        password = detail["connection"]["password"]
        base = f"/ocpi/cpos/{cpo.id}/chargers/{identity}/actions"
        await pods_settled(stack)
        held = pod_connections(stack, cpo.id)
        refused_before = (await pod_stats(stack, cpo.id))["failed_connects"]

        resp = await control.post(f"{base}/detach", json={})
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "ACCEPTED" and "connection closed" in resp.json()["message"]
        # The pod's socket is gone at once; the charger reads DETACHED with no connection.
        assert pod_connections(stack, cpo.id) == held - 1 and pod_sockets(stack) == pod_connections(stack)
        assert row(stack, cpo.id, identity) == ("DETACHED", None)
        detached = (await control.get(f"/ocpi/cpos/{cpo.id}/chargers", params={"state": "DETACHED"})).json()
        assert [c["identity"] for c in detached["data"]] == [identity]
        assert await evse_status(cpo, location_id, evse_uid) == "UNKNOWN"

        again = await control.post(f"{base}/detach")
        assert again.status_code == 409 and "already detached" in again.json()["detail"]
        # An action the simulator would play needs it attached.
        assert (await control.post(f"{base}/plug", json={})).status_code == 409

        # Our pods are refused (409 + Retry-After), whatever their generation; the pod keeps trying.
        code, headers, body = await upgrade_refused(
            connect(
                f"{stack.api_url.replace('http://', 'ws://')}/ocpp/{cpo.id}/{identity}",
                subprotocols=[Subprotocol("ocpp1.6")],
                additional_headers={"Authorization": basic(identity, password), "X-Cpolab-Pod-Generation": str(2**62)},
            )
        )
        assert (code, headers["retry-after"]) == (409, "5") and b"detached" in body
        deadline = time.monotonic() + 20
        while (await pod_stats(stack, cpo.id))["failed_connects"] <= refused_before:
            assert time.monotonic() < deadline, "the pod never tried to reconnect"
            await asyncio.sleep(0.5)
        assert row(stack, cpo.id, identity) == ("DETACHED", None)

        # The user's client boots with the password; its status reaches OCPI; the charger stays DETACHED.
        ws = await external_client(stack, cpo.id, identity, password, "1.6")
        ocpp = OcppClient(ws)
        booted = await ocpp.boot("1.6")
        assert booted[2]["status"] == "Accepted", booted
        assert (await ocpp.status("1.6", 1, 1, "Faulted"))[0] == 3
        assert await evse_status(cpo, location_id, evse_uid) == "OUTOFORDER"
        status, connection_id = row(stack, cpo.id, identity)
        assert status == "DETACHED" and connection_id is not None
        shown = (await control.get(f"/ocpi/cpos/{cpo.id}/chargers/{identity}")).json()
        assert shown["state"] == "DETACHED" and shown["last_boot_at"] is not None

        started = time.monotonic()
        resp = await control.post(f"{base}/attach", json={"evse_uid": evse_uid})
        assert resp.status_code == 202, resp.text
        assert "external client's connection closed" in resp.json()["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await ocpp.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == ATTACHED_CLOSE
        took = await wait_for("the pod's charger online again", lambda: row(stack, cpo.id, identity)[0] == "ONLINE", 30)
        print(f"\nattach → ONLINE in {time.monotonic() - started:.1f} s")
        assert took < ATTACH_BOUND_S
        await pods_settled(stack)
        assert pod_connections(stack, cpo.id) == held
        # The simulator reports its own connector status again.
        deadline = time.monotonic() + 10
        while await evse_status(cpo, location_id, evse_uid) != "AVAILABLE":
            assert time.monotonic() < deadline, "the simulator's status never reached OCPI"
            await asyncio.sleep(0.2)
        again = await control.post(f"{base}/attach")
        assert again.status_code == 409 and "not detached" in again.json()["detail"]


async def test_action_errors(stack: Stack, cpo: LiveCpo) -> None:
    async with stack.client() as control:
        identity = (await control.get(f"/ocpi/cpos/{cpo.id}/chargers")).json()["data"][0]["identity"]
        base = f"/ocpi/cpos/{cpo.id}/chargers/{identity}/actions"
        for path, body, code in (
            (f"{base}/detach", {"colour": "red"}, 422),
            (f"{base}/attach", {"duration_s": -1}, 422),
            (f"{base}/detach", {"evse_uid": "NOPE"}, 404),
            (f"/ocpi/cpos/{cpo.id}/chargers/nobody/actions/detach", {}, 404),
            (f"/ocpi/cpos/{cpo.id}/locations/NOPE/actions/attach", {}, 404),
        ):
            resp = await control.post(path, json=body)
            assert resp.status_code == code, (path, body, resp.text)
        assert (await control.post(f"{base}/detach", content=b"{not json")).status_code == 422
        # Nothing changed.
        assert row(stack, cpo.id, identity)[0] == "ONLINE"


async def test_a_location_detaches_and_attaches_every_charger_and_teardown_closes_the_external_client(
    stack: Stack,
) -> None:
    async with stack.client() as control:
        body = await new_cpo(control, party_id="DEL", seed=12)
        cpo_id = int(body["cpo_id"])
        assert (await wait_status(control, cpo_id, {"READY", "FAILED"}, timeout=120))["status"] == "READY"
        listed = (await control.get(f"/ocpi/cpos/{cpo_id}/chargers")).json()["data"]
        location_id, _ = Counter(c["location_id"] for c in listed).most_common(1)[0]  # the most chargers
        here = sorted(c["identity"] for c in listed if c["location_id"] == location_id)
        url = f"/ocpi/cpos/{cpo_id}/locations/{location_id}/actions"

        resp = await control.post(f"{url}/detach")
        assert resp.status_code == 202, resp.text
        results = resp.json()["data"]
        assert sorted(r["identity"] for r in results) == here  # once per charger, not per EVSE
        assert {r["status"] for r in results} == {"ACCEPTED"}
        assert {row(stack, cpo_id, i) for i in here} == {("DETACHED", None)}
        others = {c["identity"] for c in listed} - set(here)
        assert {row(stack, cpo_id, i)[0] for i in others} <= {"ONLINE"}
        again = (await control.post(f"{url}/detach")).json()["data"]
        assert {r["status"] for r in again} == {"REJECTED"} and "already detached" in again[0]["message"]

        # The user's client takes one of them; teardown later must close it too.
        charger = next(c for c in listed if c["identity"] == here[0])
        detail = (await control.get(f"/ocpi/cpos/{cpo_id}/chargers/{here[0]}")).json()
        ws = await external_client(stack, cpo_id, here[0], detail["connection"]["password"], charger["ocpp_version"])
        assert (await OcppClient(ws).boot(charger["ocpp_version"]))[2]["status"] == "Accepted"

        resp = await control.post(f"{url}/attach")
        assert {r["status"] for r in resp.json()["data"]} == {"ACCEPTED"}
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        await wait_for("all online", lambda: {row(stack, cpo_id, i)[0] for i in here} == {"ONLINE"}, 30)

        # Detached again, with an external client connected: the teardown closes it.
        assert (await control.post(f"/ocpi/cpos/{cpo_id}/chargers/{here[0]}/actions/detach")).status_code == 202
        ws = await external_client(stack, cpo_id, here[0], detail["connection"]["password"], charger["ocpp_version"])
        assert (await OcppClient(ws).boot(charger["ocpp_version"]))[2]["status"] == "Accepted"
        assert (await control.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 202
        await wait_status(control, cpo_id, {"DESTROYED"})
        # The row is gone: the API process notices at its next touch (≤ CPOLAB_CSMS_TOUCH_INTERVAL).
        async with asyncio.timeout(40):
            with pytest.raises(ConnectionClosed):
                await ws.recv()
