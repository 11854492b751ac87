"""OCPI commands end to end: a real Temporal dev server, a provisioning worker, two API processes on
one database, an eMSP peer registered through the real credentials handshake, and chargers that are
OCPP-J clients written on `websockets` (tests/csms_support.py), answering the CSMS's calls as a
test tells them. Commands go to API process A; the charger is held by A or by B.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Replayer

from app.charging.authorization import id_tag_for
from app.network.topology import ocpp_connectors
from app.ocpi.command_models import command_workflow_id, ocpp_reservation_id
from app.security.tokens import hash_token
from app.store.charging_tables import ChargingSession
from app.store.db import utcnow
from app.store.tables import CredentialToken, Evse
from tests.csms_support import FAST_TABLE, OcppClient, open_charger
from tests.databases import DatabaseFactory
from tests.emsp_peer import EmspPeer, OcpiClient, err, ok, register
from tests.network_rows import SeededCharger, SeededCpo, seed_cpo
from tests.stack import Stack
from workflows.ocpi_command import OcpiCommandWorkflow

COMMAND_TIMEOUT = 20  # room for a killed worker to be replaced while the result waits
CHARGER_TIMEOUT = 3
SETTINGS = {
    **FAST_TABLE,
    "CPOLAB_COMMAND_TIMEOUT": str(COMMAND_TIMEOUT),
    "CPOLAB_COMMAND_CHARGER_TIMEOUT": str(CHARGER_TIMEOUT),
    # The seeded CPO has no CPO workflow: the reconciler must not take it for an orphan meanwhile.
    "CPOLAB_RECONCILE_INTERVAL": "86400",
    "CPOLAB_RECONCILE_GRACE": "86400",
}
NO_ANSWER = object()
ACCEPTED = {"status": "Accepted"}


class Env:
    def __init__(self, stack: Stack, other: Stack, cpo: SeededCpo, peer: EmspPeer, ocpi: OcpiClient) -> None:
        self.stack, self.other, self.cpo, self.peer, self.ocpi = stack, other, cpo, peer, ocpi
        self.base = f"{stack.api_url}/ocpi/peer/{cpo.cpo_id}/2.2.1/commands"

    def ws(self, api: Stack) -> str:
        return api.api_url.replace("http://", "ws://")


async def start_api(stack: Stack, workdir: Path, env: dict[str, str]) -> Stack:
    """Another API process on the stack's database and Temporal."""
    api = Stack(workdir, database=stack.database)
    await api.start_api({**env, "CPOLAB_CSMS_URL": f"ws://127.0.0.1:{api.api_port}/ocpp"})
    return api


@pytest.fixture(scope="module")
async def env(
    databases: DatabaseFactory, peer: EmspPeer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    workdir = Path(tmp_path_factory.mktemp("commands"))
    database = databases.new("commands")
    cpo = seed_cpo(database, party_id="CMD", locations=3, chargers_per_location=6)
    token_a = "A-" + secrets.token_hex(16)
    with Session(database.engine()) as session:
        session.add(CredentialToken(cpo_id=cpo.cpo_id, token_hash=hash_token(token_a), kind="A", created_at=utcnow()))
        session.commit()
    stack = Stack(workdir, database=database, env=SETTINGS)
    other: Stack | None = None
    try:
        await stack.start_temporal()
        stack.start_worker()
        await stack.start_api()
        other = await start_api(stack, workdir / "api-b", stack.env)
        async with httpx.AsyncClient(timeout=30) as http:
            cpo_json = {"token_a": token_a, "ocpi_peer_url": f"{stack.api_url}/ocpi/peer/{cpo.cpo_id}/versions"}
            resp, _ = await register(http, cpo_json, peer)
            token_c = ok(resp)["token"]
            yield Env(stack, other, cpo, peer, OcpiClient(http, token_c))
    finally:
        if other is not None:
            other.stop()
        stack.stop()


class Charger:
    """An OCPP-J charger on one API process: boots, reports its connectors, then answers the CSMS's
    CALLs from `answers` (action → payload, a list of payloads taken in turn, or NO_ANSWER)."""

    def __init__(self, client: OcppClient, charger: SeededCharger) -> None:
        self.client = client
        self.charger = charger
        self.answers: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, ws_url: str, cpo: SeededCpo, charger: SeededCharger) -> Charger:
        client = OcppClient(await open_charger(ws_url, cpo.cpo_id, charger))
        version = charger.ocpp_version
        assert (await client.boot(version))[2]["status"] == "Accepted"
        for connector in ocpp_connectors(version, charger.evses):
            answer = await client.status(version, connector.ocpp_evse_id, connector.ocpp_connector_id, "Available")
            assert answer[0] == 3, answer
        self = cls(client, charger)
        self._task = asyncio.get_running_loop().create_task(self._serve())
        return self

    async def _serve(self) -> None:
        async for text in self.client.ws:
            frame = json.loads(text)
            if frame[0] != 2:
                continue
            _, message_id, action, payload = frame
            self.calls.append((action, payload))
            answer = self.answers.get(action, ACCEPTED)
            if isinstance(answer, list):
                answer = answer.pop(0) if len(answer) > 1 else answer[0]
            if answer is NO_ANSWER:
                continue
            if isinstance(answer, tuple):  # (error code, description): a CALLERROR
                await self.client.ws.send(json.dumps([4, message_id, answer[0], answer[1], {}]))
            else:
                await self.client.ws.send(json.dumps([3, message_id, answer]))

    def of(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.calls if a == action]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.ws.close()


def pick(cpo: SeededCpo, version: str, n: int = 0) -> SeededCharger:
    return cpo.of_version(version)[n]


async def post(env: Env, command: str, body: dict[str, Any], api: Stack | None = None) -> tuple[httpx.Response, str]:
    """POST a command (to API process A unless told); returns the response and the response_url."""
    url = body.get("response_url") or env.peer.response_url()
    base = env.base if api is None else env.base.replace(env.stack.api_url, api.api_url)
    resp = await env.ocpi.request("POST", f"{base}/{command}", json={**body, "response_url": url})
    return resp, url


def path_of(env: Env, url: str) -> str:
    return url.split(str(env.peer.port), 1)[1]


async def result(env: Env, url: str, timeout: float = COMMAND_TIMEOUT + 3) -> dict[str, Any]:
    path = path_of(env, url)
    got = await env.peer.wait_for(lambda r: r.path == path and r.http_status == 200, timeout)
    return got.body


def token(uid: str = "0123ABCD", **changes: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": uid,
        "type": "RFID",
        "contract_id": "NL-EMS-C12345678-X",
        "issuer": "Test eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2024-05-01T10:00:00Z",
        **changes,
    }


def start_body(charger: SeededCharger, evse: int = 0, **changes: Any) -> dict[str, Any]:
    _, evse_uid, connectors = charger.evses[evse]
    body = {"token": token(), "location_id": charger.location_id, "evse_uid": evse_uid, "connector_id": connectors[0]}
    return {**body, **changes}


def make_reservable(env: Env, evse_uid: str) -> None:
    with Session(env.stack.database.engine()) as session:
        evse = session.get(Evse, (env.cpo.cpo_id, evse_uid))
        assert evse is not None
        evse.data = {**evse.data, "capabilities": [*evse.data.get("capabilities", []), "RESERVABLE"]}
        session.add(evse)
        session.commit()


def add_session(env: Env, seeded: SeededCharger, transaction_id: str, status: str = "ACTIVE") -> str:
    """A running transaction of `seeded` on its first EVSE, as the CSMS records it; returns its
    OCPI Session id."""
    now = utcnow()
    ocpp_evse, evse_uid, connectors = seeded.evses[0]
    session_id = f"S-{seeded.identity}-{transaction_id}"
    with Session(env.stack.database.engine()) as session:
        session.add(
            ChargingSession(
                cpo_id=env.cpo.cpo_id,
                session_id=session_id,
                identity=seeded.identity,
                ocpp_version=seeded.ocpp_version,
                transaction_id=transaction_id,
                location_id=seeded.location_id,
                evse_uid=evse_uid,
                connector_id=connectors[0],
                ocpp_evse_id=0 if seeded.ocpp_version == "1.6" else ocpp_evse,
                ocpp_connector_id=ocpp_evse if seeded.ocpp_version == "1.6" else 1,
                start_at=now,
                status=status,
                currency="EUR",
                created_at=now,
                last_updated=now,
            )
        )
        session.commit()
    return session_id


# ---- every command reaches the charger; the answer reaches response_url ---------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_each_command_reaches_the_charger_and_its_answer_the_emsp(env: Env, version: str) -> None:
    seeded = pick(env.cpo, version)
    charger = await Charger.connect(env.ws(env.stack), env.cpo, seeded)
    ocpp_evse, evse_uid, connectors = seeded.evses[0]
    try:
        resp, url = await post(env, "START_SESSION", start_body(seeded))
        assert ok(resp) == {"result": "ACCEPTED", "timeout": COMMAND_TIMEOUT}
        got = await result(env, url)
        assert got["result"] == "ACCEPTED" and "Accepted" in got["message"][0]["text"]
        if version == "1.6":
            assert charger.of("RemoteStartTransaction") == [{"idTag": "0123ABCD", "connectorId": ocpp_evse}]
        else:
            [start] = charger.of("RequestStartTransaction")
            assert start["idToken"] == {"idToken": "0123ABCD", "type": "ISO14443"} and start["evseId"] == ocpp_evse
            assert isinstance(start["remoteStartId"], int)

        session_id = add_session(env, seeded, "4711" if version == "1.6" else "tx-201-a")
        resp, url = await post(env, "STOP_SESSION", {"session_id": session_id})
        assert ok(resp)["result"] == "ACCEPTED"
        assert (await result(env, url))["result"] == "ACCEPTED"
        stop_action = "RemoteStopTransaction" if version == "1.6" else "RequestStopTransaction"
        assert charger.of(stop_action) == [{"transactionId": 4711 if version == "1.6" else "tx-201-a"}]

        unlock = {"location_id": seeded.location_id, "evse_uid": evse_uid, "connector_id": connectors[0]}
        charger.answers["UnlockConnector"] = {"status": "Unlocked"}
        resp, url = await post(env, "UNLOCK_CONNECTOR", unlock)
        assert (await result(env, url))["result"] == "ACCEPTED"
        expected = {"connectorId": ocpp_evse} if version == "1.6" else {"evseId": ocpp_evse, "connectorId": 1}
        assert charger.of("UnlockConnector") == [expected]

        make_reservable(env, evse_uid)
        reservation = f"R-{version}"
        reserve = {
            "token": token(),
            "expiry_date": "2030-01-01T00:00:00Z",
            "reservation_id": reservation,
            "location_id": seeded.location_id,
            "evse_uid": evse_uid,
        }
        resp, url = await post(env, "RESERVE_NOW", reserve)
        assert (await result(env, url))["result"] == "ACCEPTED"
        [sent] = charger.of("ReserveNow")
        if version == "1.6":
            assert sent == {
                "connectorId": ocpp_evse,
                "expiryDate": "2030-01-01T00:00:00Z",
                "idTag": "0123ABCD",
                "reservationId": ocpp_reservation_id(reservation),
            }
        else:
            assert sent["id"] == ocpp_reservation_id(reservation) and sent["evseId"] == ocpp_evse
            assert sent["expiryDateTime"] == "2030-01-01T00:00:00Z"

        resp, url = await post(env, "CANCEL_RESERVATION", {"reservation_id": reservation})
        assert ok(resp)["result"] == "ACCEPTED"
        assert (await result(env, url))["result"] == "ACCEPTED"
        assert charger.of("CancelReservation") == [{"reservationId": ocpp_reservation_id(reservation)}]
    finally:
        await charger.close()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_the_chargers_refusals_map_to_command_results(env: Env, version: str) -> None:
    seeded = pick(env.cpo, version, 1)
    charger = await Charger.connect(env.ws(env.stack), env.cpo, seeded)
    _, evse_uid, connectors = seeded.evses[0]
    start = "RemoteStartTransaction" if version == "1.6" else "RequestStartTransaction"
    try:
        for answer, expected in [
            ({"status": "Rejected"}, "REJECTED"),
            (("NotImplemented", "no remote start here"), "NOT_SUPPORTED"),
            (("InternalError", "boom"), "FAILED"),
        ]:
            charger.answers[start] = answer
            resp, url = await post(env, "START_SESSION", start_body(seeded))
            assert ok(resp)["result"] == "ACCEPTED"
            assert (await result(env, url))["result"] == expected, answer

        unlock = {"location_id": seeded.location_id, "evse_uid": evse_uid, "connector_id": connectors[0]}
        charger.answers["UnlockConnector"] = {"status": "UnlockFailed"}
        _, url = await post(env, "UNLOCK_CONNECTOR", unlock)
        assert (await result(env, url))["result"] == "FAILED"

        make_reservable(env, evse_uid)
        for status, expected in [("Occupied", "EVSE_OCCUPIED"), ("Faulted", "EVSE_INOPERATIVE")]:
            charger.answers["ReserveNow"] = {"status": status}
            reserve = {
                "token": token(),
                "expiry_date": "2030-01-01T00:00:00Z",
                "reservation_id": f"{status}-{version}",
                "location_id": seeded.location_id,
                "evse_uid": evse_uid,
            }
            _, url = await post(env, "RESERVE_NOW", reserve)
            assert (await result(env, url))["result"] == expected
        # Not accepted, so not a reservation: the charger is not even asked.
        _, url = await post(env, "CANCEL_RESERVATION", {"reservation_id": f"Occupied-{version}"})
        assert (await result(env, url))["result"] == "UNKNOWN_RESERVATION"
        assert charger.of("CancelReservation") == []
    finally:
        await charger.close()


async def test_no_answer_is_timeout_within_the_advertised_timeout(env: Env) -> None:
    seeded = pick(env.cpo, "2.0.1", 2)
    charger = await Charger.connect(env.ws(env.stack), env.cpo, seeded)
    charger.answers["RequestStartTransaction"] = NO_ANSWER
    try:
        started = time.monotonic()
        resp, url = await post(env, "START_SESSION", start_body(seeded))
        timeout = ok(resp)["timeout"]
        got = await result(env, url, timeout)
        elapsed = time.monotonic() - started
        assert got["result"] == "TIMEOUT" and "did not answer" in got["message"][0]["text"]
        assert CHARGER_TIMEOUT <= elapsed < timeout, elapsed
        assert len(charger.of("RequestStartTransaction")) == 1  # never sent twice
    finally:
        await charger.close()


async def test_a_charger_not_connected_fails(env: Env) -> None:
    seeded = pick(env.cpo, "1.6", 3)
    resp, url = await post(env, "START_SESSION", start_body(seeded))
    assert ok(resp)["result"] == "ACCEPTED"
    got = await result(env, url)
    assert got["result"] == "FAILED" and "is not connected" in got["message"][0]["text"]


async def test_a_command_reaches_a_charger_held_by_the_other_api_process(env: Env) -> None:
    seeded = pick(env.cpo, "1.6", 4)
    charger = await Charger.connect(env.ws(env.other), env.cpo, seeded)
    try:
        resp, url = await post(env, "START_SESSION", start_body(seeded))  # to process A
        assert ok(resp)["result"] == "ACCEPTED"
        assert (await result(env, url))["result"] == "ACCEPTED"
        assert len(charger.of("RemoteStartTransaction")) == 1
    finally:
        await charger.close()


async def test_a_command_follows_a_charger_that_moved_after_its_api_process_died(
    env: Env, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The connection table still names the killed process C when the command starts: the call is
    not taken there (schedule-to-start timeout), the route is read again and the call goes to B."""
    seeded = pick(env.cpo, "1.6", 7)
    victim = await start_api(env.stack, Path(tmp_path_factory.mktemp("api-moved")), env.stack.env)
    first = await Charger.connect(env.ws(victim), env.cpo, seeded)
    moved: Charger | None = None
    try:
        assert victim.api is not None
        victim.api.send_signal(signal.SIGKILL)
        victim.api.wait()
        resp, url = await post(env, "START_SESSION", start_body(seeded))
        assert ok(resp)["result"] == "ACCEPTED"
        await asyncio.sleep(0.5)
        moved = await Charger.connect(env.ws(env.other), env.cpo, seeded)
        got = await result(env, url)
        assert got["result"] == "ACCEPTED", got
        assert len(moved.of("RemoteStartTransaction")) == 1 and first.of("RemoteStartTransaction") == []
        # Two sends: one offered to C's queue (never taken), one taken by B.
        [(peer_id,)] = env.stack.query("SELECT id FROM ocpi_peer WHERE cpo_id = ?", env.cpo.cpo_id)
        client = await Client.connect(env.stack.temporal_address)
        workflow_id = command_workflow_id(env.cpo.cpo_id, int(peer_id), "START_SESSION", url)  # type: ignore[arg-type]
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        queues = [
            e.activity_task_scheduled_event_attributes.task_queue.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == "send_ocpp_call"
        ]
        assert len(queues) == 2 and queues[0] != queues[1], queues
    finally:
        for charger in (first, moved):
            if charger is not None:
                with contextlib.suppress(Exception):
                    await charger.close()
        victim.stop()


async def test_an_emsp_retry_of_the_same_command_is_sent_once(env: Env) -> None:
    seeded = pick(env.cpo, "2.0.1", 3)
    charger = await Charger.connect(env.ws(env.stack), env.cpo, seeded)
    try:
        body = {**start_body(seeded), "response_url": env.peer.response_url()}
        first, url = await post(env, "START_SESSION", body)
        again, _ = await post(env, "START_SESSION", body, api=env.other)
        assert ok(first)["result"] == ok(again)["result"] == "ACCEPTED"
        assert (await result(env, url))["result"] == "ACCEPTED"
        late, _ = await post(env, "START_SESSION", body)  # after the result: still not sent again
        assert ok(late)["result"] == "ACCEPTED"
        await asyncio.sleep(1)
        assert len(charger.of("RequestStartTransaction")) == 1
        assert sum(r.path == path_of(env, url) for r in env.peer.received) == 1
    finally:
        await charger.close()


async def test_start_session_result_latency(env: Env) -> None:
    """POST START_SESSION → CommandResult at response_url, charger answering at once (figures for
    README; the bound is loose: a shared CI box)."""
    seeded = pick(env.cpo, "2.0.1", 5)
    charger = await Charger.connect(env.ws(env.other), env.cpo, seeded)
    took: list[float] = []
    try:
        for _ in range(10):
            started = time.monotonic()
            _, url = await post(env, "START_SESSION", start_body(seeded))
            assert (await result(env, url))["result"] == "ACCEPTED"
            took.append(time.monotonic() - started)
    finally:
        await charger.close()
    took.sort()
    print(f"START_SESSION → CommandResult: p50 {took[4] * 1000:.0f} ms, max {took[-1] * 1000:.0f} ms")
    assert took[4] < 3.0, took


async def test_long_token_uids_become_20_character_id_tags_on_16(env: Env) -> None:
    seeded = pick(env.cpo, "1.6", 5)
    charger = await Charger.connect(env.ws(env.stack), env.cpo, seeded)
    uid = "0f8b7a3e-5c1d-4e2f-9a6b-1c2d3e4f5a6b"  # an APP_USER uid of 36 characters
    try:
        _, url = await post(env, "START_SESSION", start_body(seeded, token=token(uid, type="APP_USER")))
        assert (await result(env, url))["result"] == "ACCEPTED"
        [sent] = charger.of("RemoteStartTransaction")
        assert sent["idTag"] == id_tag_for(uid) and len(sent["idTag"]) == 20
    finally:
        await charger.close()


async def test_the_result_is_retried_until_the_emsp_takes_it(env: Env) -> None:
    seeded = pick(env.cpo, "2.0.1", 4)
    charger = await Charger.connect(env.ws(env.other), env.cpo, seeded)
    url = env.peer.response_url()
    path = path_of(env, url)
    env.peer.failing.add(path)
    try:
        resp, _ = await post(env, "START_SESSION", {**start_body(seeded), "response_url": url})
        assert ok(resp)["result"] == "ACCEPTED"
        await env.peer.wait_for(lambda r: r.path == path and r.http_status == 503, COMMAND_TIMEOUT)
        await asyncio.sleep(1.5)  # a couple of refused attempts
        env.peer.failing.discard(path)
        assert (await result(env, url))["result"] == "ACCEPTED"
        await asyncio.sleep(2)
        answers = [r.http_status for r in env.peer.received if r.path == path]
        assert answers.count(200) == 1 and answers.count(503) >= 2 and answers[-1] == 200, answers
    finally:
        env.peer.failing.discard(path)
        await charger.close()


async def test_sigkill_of_the_api_process_and_worker_before_the_post_loses_nothing(
    env: Env, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The charger answers through API process C, which took the command's POST too; C and the
    worker are killed -9 while the eMSP refuses the result: it still arrives, once."""
    seeded = pick(env.cpo, "1.6", 6)
    victim = await start_api(env.stack, Path(tmp_path_factory.mktemp("api-c")), env.stack.env)
    charger = await Charger.connect(env.ws(victim), env.cpo, seeded)
    url = env.peer.response_url()
    path = path_of(env, url)
    env.peer.failing.add(path)
    try:
        resp, _ = await post(env, "START_SESSION", {**start_body(seeded), "response_url": url}, api=victim)
        assert ok(resp)["result"] == "ACCEPTED"
        await env.peer.wait_for(lambda r: r.path == path and r.http_status == 503, COMMAND_TIMEOUT)
        assert len(charger.of("RemoteStartTransaction")) == 1
        assert victim.api is not None
        victim.api.send_signal(signal.SIGKILL)
        victim.api.wait()
        env.stack.kill_workers()
        env.stack.start_worker()
        await asyncio.sleep(1)
        env.peer.failing.discard(path)
        assert (await result(env, url, 30))["result"] == "ACCEPTED"
        await asyncio.sleep(3)
        answers = [r.http_status for r in env.peer.received if r.path == path]
        assert answers.count(200) == 1, answers
    finally:
        env.peer.failing.discard(path)
        await charger.close()
        victim.stop()


# ---- refused before any charger is asked -------------------------------------------------------------------


async def test_reservations_only_on_reservable_evses(env: Env) -> None:
    seeded = pick(env.cpo, "2.0.1", 5)  # a model without RESERVABLE (made reservable: 0 and 1 only)
    _, evse_uid, _ = seeded.evses[-1]
    reserve = {
        "token": token(),
        "expiry_date": "2030-01-01T00:00:00Z",
        "reservation_id": 42,  # 2.1.1's integer form is taken too
        "location_id": seeded.location_id,
        "evse_uid": evse_uid,
    }
    resp, _ = await post(env, "RESERVE_NOW", reserve)
    body = resp.json()
    assert body["status_code"] == 1000 and body["data"]["result"] == "REJECTED", body
    assert "RESERVABLE" in body["data"]["message"][0]["text"]


async def test_stop_of_an_unknown_session(env: Env) -> None:
    resp, _ = await post(env, "STOP_SESSION", {"session_id": "no-such-session"})
    assert ok(resp)["result"] == "UNKNOWN_SESSION"


def _bad_bodies() -> list[tuple[str, dict[str, Any], str]]:
    start = {"token": token(), "location_id": "LOC00001"}
    reserve = {**start, "reservation_id": "R1", "expiry_date": "2030-01-01T00:00:00Z"}
    return [
        ("START_SESSION", {**start, "token": token(type="CARD")}, "token.type"),
        ("START_SESSION", {**start, "token": token(uid="x" * 37)}, "token.uid"),
        ("START_SESSION", {**start, "token": token(last_updated="yesterday")}, "token.last_updated"),
        ("START_SESSION", {**start, "token": {"uid": "ABC", "type": "RFID"}}, "token.contract_id"),
        ("START_SESSION", {**start, "location_id": "L" * 37}, "location_id"),
        ("START_SESSION", {**start, "connector_id": "1"}, "evse_uid is required"),
        ("START_SESSION", {**start, "authorization_reference": "a" * 37}, "authorization_reference"),
        ("RESERVE_NOW", {**reserve, "expiry_date": "2030-01-01 00:00"}, "expiry_date"),
        ("RESERVE_NOW", {**reserve, "expiry_date": "2001-01-01T00:00:00Z"}, "not in the future"),
        ("RESERVE_NOW", {**reserve, "reservation_id": "r" * 37}, "reservation_id"),
        ("RESERVE_NOW", {**reserve, "reservation_id": True}, "reservation_id"),
        ("CANCEL_RESERVATION", {"reservation_id": None}, "reservation_id"),
        ("STOP_SESSION", {"session_id": ""}, "session_id"),
        ("UNLOCK_CONNECTOR", {"location_id": "LOC00001", "evse_uid": "E"}, "connector_id"),
        ("STOP_SESSION", {"session_id": "S", "response_url": "ftp://example.com/x"}, "response_url"),
    ]


@pytest.mark.parametrize(("command", "body", "fragment"), _bad_bodies())
async def test_bad_bodies_are_2001(env: Env, command: str, body: dict[str, Any], fragment: str) -> None:
    url = body.pop("response_url", None) or env.peer.response_url()
    resp = await env.ocpi.request("POST", f"{env.base}/{command}", json={**body, "response_url": url})
    assert fragment in err(resp, 200, 2001)["status_message"]


async def test_the_recorded_command_histories_replay(env: Env) -> None:
    """Every command workflow this module ran (reroutes, timeouts, retried POSTs, a killed worker)
    replays against today's workflow code: it is deterministic. (Run alone, it replays its own.)"""
    seeded = pick(env.cpo, "1.6", 8)
    charger = await Charger.connect(env.ws(env.other), env.cpo, seeded)
    try:
        _, url = await post(env, "START_SESSION", start_body(seeded))
        assert (await result(env, url))["result"] == "ACCEPTED"
    finally:
        await charger.close()
    client = await Client.connect(env.stack.temporal_address)
    runs: list[Any] = []
    deadline = time.monotonic() + 10
    while not any(wf.status == WorkflowExecutionStatus.COMPLETED for wf in runs) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # visibility lags the history a little
        runs = [wf async for wf in client.list_workflows("WorkflowType = 'OcpiCommandWorkflow'")]
    runs = [wf for wf in runs if wf.status == WorkflowExecutionStatus.COMPLETED]
    assert runs
    histories = [await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history() for wf in runs]
    replayer = Replayer(workflows=[OcpiCommandWorkflow])
    for history in histories:
        await replayer.replay_workflow(history)
