"""Charging sessions end to end: OCPP transactions (1.6 and 2.0.1, raw frames on `websockets`) on a
real API process → typed rows, the OCPI Session pushed to a real eMSP (PUT, throttled PATCHes,
COMPLETED) and served by GET, real-time authorization at that eMSP, resends after a reconnect.

The API delivers its outbox (dispatch on) with a 30 s PATCH throttle, so a running session's
meter-only updates are not pushed while a closed charging period or a status change is, at once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from app.charging.authorization import id_tag_for
from app.store.charging_tables import RemoteStart
from app.store.db import utcnow
from tests.charging_support import Emsp, at, event_201, meter_16, meter_201, register_emsp
from tests.csms_support import CsmsApi, OcppClient, eventually, open_charger
from tests.databases import DatabaseFactory
from tests.emsp_peer import Authorization, EmspPeer
from tests.network_rows import SeededCharger, SeededCpo, seed_cpo

_parties = itertools.count()
ENV = {
    "CPOLAB_OUTBOX_DISPATCH": "true",
    "CPOLAB_SESSION_PUSH_INTERVAL": "30",
    "CPOLAB_AUTHORIZE_TIMEOUT": "1",
}


def _party() -> str:
    n = next(_parties)
    return "S" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n // 26 % 26] + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n % 26]


@pytest.fixture(scope="module")
async def api(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CsmsApi]:
    csms = CsmsApi(Path(tmp_path_factory.mktemp("sessions")), databases.new("sessions"), ENV)
    try:
        yield await csms.start()
    finally:
        csms.stop()


async def setup(api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient, profile: str = "ok") -> tuple[SeededCpo, Emsp]:
    party = _party()
    cpo = seed_cpo(api.database, party_id=party, chargers_per_location=6)
    return cpo, register_emsp(api.database, http, api.url, peer, cpo.cpo_id, party, profile)


async def online(api: CsmsApi, cpo: SeededCpo, charger: SeededCharger) -> OcppClient:
    client = OcppClient(await open_charger(api.ws_url, cpo.cpo_id, charger))
    assert (await client.boot(charger.ocpp_version))[0] == 3
    return client


def result(answer: list[Any]) -> dict[str, Any]:
    assert answer[0] == 3, answer
    return answer[2]  # type: ignore[no-any-return]


def rows(api: CsmsApi, sql: str, *args: object) -> list[tuple[Any, ...]]:
    return api.database.query(sql, *args)


def periods_pushed(emsp: Emsp, session_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for push in emsp.pushes(session_id):
        out += push.body.get("charging_periods", [])
    return out


async def completed(emsp: Emsp, session_id: str) -> list[Any]:
    """The session's pushes once the COMPLETED one arrived."""
    await eventually(lambda: any((p.body or {}).get("status") == "COMPLETED" for p in emsp.pushes(session_id)))
    return emsp.pushes(session_id)


# ---- 1.6 -------------------------------------------------------------------------------------------


async def test_16_transaction_end_to_end(api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient) -> None:
    cpo, emsp = await setup(api, peer, http)
    await emsp.push_token("RFID0001", whitelist="ALWAYS")
    charger = cpo.of_version("1.6")[0]
    client = await online(api, cpo, charger)
    try:
        assert result(await client.call("Authorize", {"idTag": "RFID0001"})) == {"idTagInfo": {"status": "Accepted"}}
        started = result(
            await client.call(
                "StartTransaction", {"connectorId": 1, "idTag": "RFID0001", "meterStart": 10_000, "timestamp": at(0)}
            )
        )
        assert started["idTagInfo"] == {"status": "Accepted"} and started["transactionId"] >= 1
        tx = started["transactionId"]
        session_id = str(tx)
        put = await peer.wait_for(lambda r: r.path.endswith(f"/sessions/NL/{cpo.party_id}/{session_id}"))
        assert put.method == "PUT" and put.body["status"] == "ACTIVE" and put.body["auth_method"] == "WHITELIST"
        assert put.body["cdr_token"]["uid"] == "RFID0001" and put.body["kwh"] == 0
        assert (put.body["location_id"], put.body["evse_uid"]) == (charger.location_id, charger.evses[0][1])
        # Charging for 3 minutes (meter-only updates: throttled), then the car stops drawing (a period
        # closes: pushed at once), then the stop with its transaction data.
        for seconds, wh, w in ((60, 10_120, 7200), (120, 10_240, 7200), (180, 10_360, 7200), (240, 10_360, 0)):
            body = {"connectorId": 1, "transactionId": tx, "meterValue": [meter_16(seconds, wh, w)]}
            assert result(await client.call("MeterValues", body)) == {}
        stop = {
            "transactionId": tx,
            "meterStop": 10_360,
            "timestamp": at(300),
            "reason": "EVDisconnected",
            "transactionData": [meter_16(290, 10_360, 0)],
        }
        assert result(await client.call("StopTransaction", stop)) == {}
        pushes = await completed(emsp, session_id)
        assert pushes[0].method == "PUT" and {p.method for p in pushes[1:]} == {"PATCH"}
        assert 1 <= len(pushes) - 1 <= 2  # the period PATCH and the COMPLETED one (merged if both waited)
        final = pushes[-1].body
        assert final["kwh"] == 0.36 and final["end_date_time"] == "2026-03-02T09:05:00Z"
        listed = {s["id"]: s for s in await emsp.sessions()}
        got = listed[session_id]
        assert got["status"] == "COMPLETED" and got["kwh"] == 0.36
        assert got["charging_periods"] == periods_pushed(emsp, session_id)
        kinds = [[d["type"] for d in p["dimensions"]] for p in got["charging_periods"]]
        assert kinds == [["ENERGY", "TIME", "MAX_POWER"], ["ENERGY", "PARKING_TIME"]]
        energy = sum(d["volume"] for p in got["charging_periods"] for d in p["dimensions"] if d["type"] == "ENERGY")
        assert round(energy, 6) == 0.36
        # Its CDR is built from it (tests/test_cdrs.py checks the price): the marker is consumed.
        await eventually(lambda: rows(api, "SELECT id FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id) == [(session_id,)])
        assert rows(api, "SELECT count(*) FROM cdr_pending WHERE cpo_id = ?", cpo.cpo_id) == [(0,)]
        samples = rows(api, "SELECT count(*) FROM charging_meter_sample WHERE cpo_id = ?", cpo.cpo_id)[0][0]
        assert samples == 7  # start, 4 meter values, transaction data, stop
    finally:
        await client.ws.close()


async def test_16_resends_after_a_reconnect_create_nothing_twice(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    cpo, emsp = await setup(api, peer, http)
    await emsp.push_token("RFID0002", whitelist="ALWAYS")
    charger = cpo.of_version("1.6")[0]
    start = {"connectorId": 1, "idTag": "RFID0002", "meterStart": 500, "timestamp": at(0)}
    stop = {"transactionId": 0, "meterStop": 1500, "timestamp": at(600)}
    answers = []
    for _ in range(2):  # the charger lost the answers and resends everything on a new connection
        client = await online(api, cpo, charger)
        try:
            answers.append(result(await client.call("StartTransaction", start)))
            stop["transactionId"] = answers[-1]["transactionId"]
            assert result(await client.call("StopTransaction", stop)) == {}
        finally:
            await client.ws.close()
    assert answers[0] == answers[1]
    session_id = str(answers[0]["transactionId"])
    pushes = await completed(emsp, session_id)
    await asyncio.sleep(0.5)  # nothing more comes
    assert [p.method for p in emsp.pushes(session_id)] == [p.method for p in pushes]
    assert pushes[0].method == "PUT" and sum(p.method == "PUT" for p in pushes) == 1
    assert rows(api, "SELECT count(*) FROM charging_session WHERE cpo_id = ?", cpo.cpo_id) == [(1,)]
    await eventually(lambda: rows(api, "SELECT count(*) FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id) == [(1,)])
    # A new start (another timestamp) gets a new, larger transactionId.
    client = await online(api, cpo, charger)
    try:
        again = result(await client.call("StartTransaction", {**start, "timestamp": at(900)}))
        assert again["transactionId"] > answers[0]["transactionId"]
    finally:
        await client.ws.close()


async def test_a_36_character_uid_round_trips_through_a_16_idtag(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    cpo, emsp = await setup(api, peer, http)
    uid = "0f8c3b1e-6a2d-4c59-9e71-b2d4a6c8e013"
    await emsp.push_token(uid, whitelist="ALWAYS", type="APP_USER")
    id_tag = id_tag_for(uid)
    assert len(id_tag) == 20 and id_tag == id_tag_for(uid) and id_tag != id_tag_for(uid[:-1] + "4")
    assert rows(api, "SELECT id_tag, uid FROM ocpp_id_tag WHERE cpo_id = ?", cpo.cpo_id) == [(id_tag, uid)]
    client = await online(api, cpo, cpo.of_version("1.6")[0])
    try:
        assert result(await client.call("Authorize", {"idTag": id_tag}))["idTagInfo"]["status"] == "Accepted"
        start = {"connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": at(0)}
        tx = result(await client.call("StartTransaction", start))["transactionId"]
        put = await peer.wait_for(lambda r: r.path.endswith(f"/sessions/NL/{cpo.party_id}/{tx}"))
        assert put.body["cdr_token"] == {
            "country_code": "NL",
            "party_id": "EMS",
            "uid": uid,
            "type": "APP_USER",
            "contract_id": f"NL-EMS-C{uid}"[:36],
        }
        # The 36-character uid itself is no valid 1.6 idTag: the charger's frame is refused by schema.
        answer = await client.call("Authorize", {"idTag": uid})
        assert answer[0] == 4
    finally:
        await client.ws.close()


# ---- 2.0.1 -----------------------------------------------------------------------------------------


async def test_201_transaction_end_to_end_with_realtime_authorization(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    cpo, emsp = await setup(api, peer, http)
    uid = "ISO0201"
    peer.authorizations[uid] = Authorization("ALLOWED", authorization_reference="REF-201")
    charger = cpo.of_version("2.0.1")[0]
    client = await online(api, cpo, charger)
    tx = "station-tx-1"
    try:
        # Plugged in before any token: a transaction, but no OCPI Session yet.
        started = event_201("Started", 0, tx, 0, "CablePluggedIn", meter=[meter_201(0, 1000, 0, "Transaction.Begin")])
        assert result(await client.call("TransactionEvent", started)) == {}
        authorized = event_201("Updated", 1, tx, 5, "Authorized", id_token=uid, chargingState="EVConnected")
        assert result(await client.call("TransactionEvent", authorized)) == {"idTokenInfo": {"status": "Accepted"}}
        calls = emsp.authorize_calls(uid)
        assert len(calls) == 1 and calls[0].body == {
            "location_id": charger.location_id,
            "evse_uids": [charger.evses[0][1]],
        }
        session_id = rows(api, "SELECT session_id FROM charging_session WHERE cpo_id = ?", cpo.cpo_id)[0][0]
        put = await peer.wait_for(lambda r: r.path.endswith(f"/{session_id}"))
        assert put.method == "PUT" and put.body["status"] == "ACTIVE"
        assert (put.body["auth_method"], put.body["authorization_reference"]) == ("AUTH_REQUEST", "REF-201")
        charging = event_201(
            "Updated", 2, tx, 65, "ChargingStateChanged", chargingState="Charging", meter=[meter_201(65, 1000, 11000)]
        )
        assert result(await client.call("TransactionEvent", charging)) == {}
        periodic = event_201("Updated", 3, tx, 665, "MeterValuePeriodic", meter=[meter_201(665, 2800, 11000)])
        assert result(await client.call("TransactionEvent", periodic)) == {}
        # A resend after a reconnect: the same answer, nothing applied twice.
        await client.ws.close()
        client = await online(api, cpo, charger)
        assert result(await client.call("TransactionEvent", authorized)) == {"idTokenInfo": {"status": "Accepted"}}
        assert result(await client.call("TransactionEvent", periodic)) == {}
        assert len(emsp.authorize_calls(uid)) == 1
        ended = event_201(
            "Ended", 4, tx, 700, "EVDeparted", stoppedReason="EVDisconnected", meter=[meter_201(700, 2900, 0)]
        )
        assert result(await client.call("TransactionEvent", ended)) == {}
        pushes = await completed(emsp, session_id)
        assert sum(p.method == "PUT" for p in pushes) == 1
        got = {s["id"]: s for s in await emsp.sessions()}[session_id]
        assert got["status"] == "COMPLETED" and got["kwh"] == 1.9 and got["authorization_reference"] == "REF-201"
        assert got["charging_periods"] == periods_pushed(emsp, session_id)
        assert [p["dimensions"][1]["type"] for p in got["charging_periods"]] == ["PARKING_TIME", "TIME"]
        assert rows(api, "SELECT count(*) FROM charging_session WHERE cpo_id = ?", cpo.cpo_id) == [(1,)]
        assert rows(api, "SELECT seq_no, status FROM charging_session WHERE cpo_id = ?", cpo.cpo_id) == [
            (4, "COMPLETED")
        ]
    finally:
        await client.ws.close()


async def test_201_started_with_a_token_resent_after_a_reconnect(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    cpo, emsp = await setup(api, peer, http)
    await emsp.push_token("ISO0202", whitelist="ALWAYS")
    charger = cpo.of_version("2.0.1")[0]
    started = event_201("Started", 0, "tx-2", 0, "Authorized", id_token="ISO0202", meter=[meter_201(0, 0)])
    for _ in range(2):
        client = await online(api, cpo, charger)
        try:
            assert result(await client.call("TransactionEvent", started)) == {"idTokenInfo": {"status": "Accepted"}}
        finally:
            await client.ws.close()
    await asyncio.sleep(0.5)
    assert rows(api, "SELECT count(*) FROM charging_session WHERE cpo_id = ?", cpo.cpo_id) == [(1,)]
    session_id = rows(api, "SELECT session_id FROM charging_session WHERE cpo_id = ?", cpo.cpo_id)[0][0]
    assert [p.method for p in emsp.pushes(session_id)] == ["PUT"]


# ---- authorization ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "script", "profile", "expected", "asked"),
    [
        (("ALWAYS", True), None, "ok", "Accepted", False),
        (("ALWAYS", False), None, "ok", "Blocked", False),  # valid=false: blocked without asking
        (("ALLOWED", True), Authorization("BLOCKED"), "ok", "Blocked", True),  # the eMSP's word wins
        (("ALLOWED", True), None, "down", "Accepted", True),  # whitelisted: allowed while it is down
        (("ALLOWED_OFFLINE", True), Authorization("NO_CREDIT"), "ok", "Invalid", True),
        (("ALLOWED_OFFLINE", True), None, "down", "Accepted", True),
        (("NEVER", True), Authorization("ALLOWED"), "ok", "Accepted", True),
        (("NEVER", True), None, "down", "Invalid", True),
        (None, Authorization("ALLOWED"), "ok", "Accepted", True),  # unknown token, the eMSP vouches
        (None, Authorization("EXPIRED"), "ok", "Expired", True),
        (None, None, "ok", "Invalid", True),  # the eMSP does not know it either (404 / 2004)
        (None, Authorization("ALLOWED", delay=3), "ok", "Invalid", True),  # too slow: nobody vouches
        (None, None, "down", "Invalid", True),
    ],
)
async def test_whitelist_types_and_realtime_authorization(
    api: CsmsApi,
    peer: EmspPeer,
    http: httpx.AsyncClient,
    token: tuple[str, bool] | None,
    script: Authorization | None,
    profile: str,
    expected: str,
    asked: bool,
) -> None:
    cpo, emsp = await setup(api, peer, http, profile)
    uid = f"TOK{cpo.cpo_id:05d}"
    if token is not None:
        await emsp.push_token(uid, whitelist=token[0], valid=token[1])
    if script is not None:
        peer.authorizations[uid] = script
    client = await online(api, cpo, cpo.of_version("1.6")[0])
    try:
        began = time.monotonic()
        answer = result(await client.call("Authorize", {"idTag": uid}))
        assert answer == {"idTagInfo": {"status": expected}}
        assert time.monotonic() - began < 2.5  # bounded by CPOLAB_AUTHORIZE_TIMEOUT (1 s), never the eMSP's pace
        assert bool(emsp.authorize_calls(uid)) == asked
    finally:
        await client.ws.close()


async def test_a_refused_start_makes_an_invalid_session(api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient) -> None:
    cpo, emsp = await setup(api, peer, http)
    await emsp.push_token("BLOCKED1", whitelist="ALWAYS", valid=False)
    client = await online(api, cpo, cpo.of_version("1.6")[0])
    try:
        start = {"connectorId": 1, "idTag": "BLOCKED1", "meterStart": 0, "timestamp": at(0)}
        answer = result(await client.call("StartTransaction", start))
        assert answer["idTagInfo"] == {"status": "Blocked"}
        stop = {"transactionId": answer["transactionId"], "meterStop": 0, "timestamp": at(5), "reason": "DeAuthorized"}
        assert result(await client.call("StopTransaction", stop)) == {}
        session_id = str(answer["transactionId"])
        await eventually(lambda: len(emsp.pushes(session_id)) == 2)  # PUT INVALID, PATCH with the end
        put, patch = emsp.pushes(session_id)
        assert (put.method, put.body["status"]) == ("PUT", "INVALID")
        assert (patch.method, patch.body["status"], patch.body["end_date_time"]) == ("PATCH", "INVALID", at(5))
        assert rows(api, "SELECT count(*) FROM cdr_pending WHERE cpo_id = ?", cpo.cpo_id) == [(0,)]
        assert rows(api, "SELECT count(*) FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id) == [(0,)]
    finally:
        await client.ws.close()


# ---- bad frames ------------------------------------------------------------------------------------


async def test_bad_transaction_frames_get_callerrors(api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient) -> None:
    cpo, _ = await setup(api, peer, http)
    c16 = await online(api, cpo, cpo.of_version("1.6")[0])
    c201 = await online(api, cpo, cpo.of_version("2.0.1")[0])
    try:
        start = {"connectorId": 99, "idTag": "X", "meterStart": 0, "timestamp": at(0)}
        assert (await c16.call("StartTransaction", start))[2] == "PropertyConstraintViolation"
        assert (await c16.call("StartTransaction", {"connectorId": 1}))[0] == 4  # required fields missing
        bad_time = {"connectorId": 1, "idTag": "X", "meterStart": 0, "timestamp": "yesterday"}
        assert (await c16.call("StartTransaction", bad_time))[2] in ("FormatViolation", "FormationViolation")
        garbage = {
            "connectorId": 1,
            "transactionId": 424242,
            "meterValue": [{"timestamp": at(0), "sampledValue": [{"value": "n/a"}]}],
        }
        assert result(await c16.call("MeterValues", garbage)) == {}  # unusable values are ignored, not refused
        unknown_stop = {"transactionId": 987654, "meterStop": 1, "timestamp": at(0)}
        assert result(await c16.call("StopTransaction", unknown_stop)) == {}  # a stop is never refused
        event = event_201("Started", 0, "tx-bad", 0, "CablePluggedIn", evse=(42, 1))
        assert (await c201.call("TransactionEvent", event))[2] == "PropertyConstraintViolation"
        assert (await c201.call("TransactionEvent", {"eventType": "Started"}))[0] == 4
        assert result(await c16.call("Heartbeat", {}))  # both connections survive
        assert result(await c201.call("Heartbeat", {}))
    finally:
        await c16.ws.close()
        await c201.ws.close()


# ---- START_SESSION correlation, OCPI 2.1.1 ---------------------------------------------------------


async def test_a_remote_start_gives_the_session_its_authorization_reference(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    cpo, emsp = await setup(api, peer, http)
    charger = cpo.of_version("1.6")[0]
    uid = "5d9b2f4c-1e3a-4b7d-8c6f-0a2e4c6b8d01"  # an APP_USER uid: 36 characters, sent as its idTag
    with Session(api.database.engine()) as session:  # what the START_SESSION command records
        session.add(
            RemoteStart(
                cpo_id=cpo.cpo_id,
                identity=charger.identity,
                id_tag=id_tag_for(uid),
                token_uid=uid,
                token_type="APP_USER",
                token_country_code="NL",
                token_party_id="EMS",
                contract_id="NL-EMS-C00042",
                authorization_reference="AUTH-REF-42",
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )
        session.commit()
    client = await online(api, cpo, charger)
    try:
        start = {"connectorId": 1, "idTag": id_tag_for(uid), "meterStart": 0, "timestamp": at(0)}
        answer = result(await client.call("StartTransaction", start))
        assert answer["idTagInfo"] == {"status": "Accepted"}  # no token pushed, nobody asked: the command vouches
        put = await peer.wait_for(lambda r: r.path.endswith(f"/sessions/NL/{cpo.party_id}/{answer['transactionId']}"))
        assert (put.body["auth_method"], put.body["authorization_reference"]) == ("COMMAND", "AUTH-REF-42")
        assert put.body["cdr_token"]["uid"] == uid and not emsp.authorize_calls(uid)
        used = rows(api, "SELECT used_by FROM charging_remote_start WHERE cpo_id = ?", cpo.cpo_id)
        assert used[0][0] is not None
    finally:
        await client.ws.close()


async def test_a_211_cpo_pushes_211_sessions(api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient) -> None:
    party = _party()
    cpo = seed_cpo(api.database, party_id=party, chargers_per_location=6)
    with api.database.engine().begin() as conn:
        conn.execute(text("UPDATE cpo SET ocpi_version = '2.1.1' WHERE id = :id"), {"id": cpo.cpo_id})
    emsp = register_emsp(api.database, http, api.url, peer, cpo.cpo_id, party, version="2.1.1")
    await emsp.push_token("RFID0211", whitelist="ALWAYS")
    charger = cpo.of_version("1.6")[0]
    client = await online(api, cpo, charger)
    try:
        start = {"connectorId": 1, "idTag": "RFID0211", "meterStart": 0, "timestamp": at(0)}
        tx = result(await client.call("StartTransaction", start))["transactionId"]
        stop = {"transactionId": tx, "meterStop": 2500, "timestamp": at(1800)}
        assert result(await client.call("StopTransaction", stop)) == {}
        pushes = await completed(emsp, str(tx))
        put = pushes[0].body
        assert pushes[0].method == "PUT" and put["auth_id"] == "NL-EMS-CRFID0211" and put["start_datetime"] == at(0)
        assert put["location"]["id"] == charger.location_id and "cdr_token" not in put
        assert [e["uid"] for e in put["location"]["evses"]] == [charger.evses[0][1]]
        assert pushes[-1].body["end_datetime"] == at(1800) and pushes[-1].body["kwh"] == 2.5
        listed = {s["id"]: s for s in await emsp.sessions()}[str(tx)]
        assert listed["status"] == "COMPLETED" and listed["location"] == put["location"]
    finally:
        await client.ws.close()


async def test_a_transaction_the_charger_lost_in_a_reboot_ends_at_its_last_reading(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    """A charger that boots again and reports the connector Available no longer has the transaction
    (a simulated charger's pod failed over): the session ends COMPLETED at the last reading applied,
    reason Reboot, and is billed. Available on a connection that did not reboot changes nothing."""
    cpo, emsp = await setup(api, peer, http)
    await emsp.push_token("RFID0009", whitelist="ALWAYS")
    charger = cpo.of_version("1.6")[0]
    client = await online(api, cpo, charger)
    try:
        start = {"connectorId": 1, "idTag": "RFID0009", "meterStart": 1000, "timestamp": at(0)}
        session_id = str(result(await client.call("StartTransaction", start))["transactionId"])
        meter = {"connectorId": 1, "transactionId": int(session_id), "meterValue": [meter_16(60, 1500, 7200)]}
        assert result(await client.call("MeterValues", meter)) == {}
        assert result(await client.status("1.6", 0, 1, "Available")) == {}  # not a reboot: still charging
        await asyncio.sleep(0.5)
        assert rows(api, "SELECT status FROM charging_session WHERE cpo_id = ?", cpo.cpo_id) == [("ACTIVE",)]
    finally:
        await client.ws.close()
    client = await online(api, cpo, charger)  # booted afresh: its memory is gone
    try:
        assert result(await client.status("1.6", 0, 1, "Available")) == {}
        final = (await completed(emsp, session_id))[-1].body
        assert final["kwh"] == 0.5 and final["end_date_time"] == at(60)
        [(status, reason)] = rows(api, "SELECT status, stop_reason FROM charging_session WHERE cpo_id = ?", cpo.cpo_id)
        assert (status, reason) == ("COMPLETED", "Reboot")
        await eventually(lambda: rows(api, "SELECT id FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id) == [(session_id,)])
        assert result(await client.status("1.6", 0, 1, "Available")) == {}  # nothing left to end
    finally:
        await client.ws.close()
