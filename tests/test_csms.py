"""The CSMS endpoint `/ocpp/{cpo_id}/{identity}`: upgrade checks, the OCPP handlers of both versions,
the OCPP → OCPI status mapping, outbox rows, hostile frames, the OCPP log.

A real API process (uvicorn, no Temporal) on a database seeded with a generated network
(tests/network_rows.py); the chargers are OCPP-J clients written on `websockets` (tests/csms_support.py).
The connection table (replacement, fencing, crashes) is in test_csms_connections.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from app.csms import frames
from app.csms.upgrade import basic_credentials, parse_generation
from app.network.status import OCPP16_TO_OCPI, OCPP201_TO_OCPI, evse_status, ocpi_status
from tests.csms_support import CsmsApi, OcppClient, basic, eventually, open_charger, upgrade_refused
from tests.databases import DatabaseFactory
from tests.network_rows import SeededCharger, SeededCpo, add_connector, register_peer, seed_cpo

_parties = itertools.count()


def _party() -> str:
    n = next(_parties)
    return "Q" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n // 26 % 26] + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n % 26]


@pytest.fixture(scope="module")
async def api(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CsmsApi]:
    csms = CsmsApi(Path(tmp_path_factory.mktemp("csms")), databases.new("csms"))
    try:
        yield await csms.start()
    finally:
        csms.stop()


def new_cpo(api: CsmsApi, **kw: object) -> SeededCpo:
    return seed_cpo(api.database, party_id=_party(), **kw)  # type: ignore[arg-type]


def charger_row(api: CsmsApi, cpo: SeededCpo, charger: SeededCharger) -> tuple[object, ...]:
    return api.database.query(
        "SELECT status, api_instance, connection_id, last_boot_at, last_seen_at FROM charger"
        " WHERE cpo_id = ? AND identity = ?",
        cpo.cpo_id,
        charger.identity,
    )[0]


def evse_statuses(api: CsmsApi, cpo: SeededCpo, charger: SeededCharger) -> dict[str, str]:
    rows = api.database.query(
        "SELECT uid, status FROM evse WHERE cpo_id = ? AND charger_identity = ?", cpo.cpo_id, charger.identity
    )
    return dict(rows)  # type: ignore[arg-type]


def connector_statuses(api: CsmsApi, cpo: SeededCpo, evse_uid: str) -> dict[str, str | None]:
    rows = api.database.query(
        "SELECT id, ocpp_status FROM connector WHERE cpo_id = ? AND evse_uid = ?", cpo.cpo_id, evse_uid
    )
    return dict(rows)  # type: ignore[arg-type]


def _json(value: object) -> Any:
    """A JSON column as SQLite (text) or Postgres (parsed) hands it back."""
    return json.loads(value) if isinstance(value, str) else value


def first(cpo: SeededCpo, ocpp_version: str) -> SeededCharger:
    return cpo.of_version(ocpp_version)[0]


async def connected(api: CsmsApi, cpo: SeededCpo, charger: SeededCharger) -> OcppClient:
    return OcppClient(await open_charger(api.ws_url, cpo.cpo_id, charger))


# ---- pure parts: the status mapping, frame checks, upgrade header parsing --------------------------


def test_ocpp_16_statuses_map_as_the_reference_says() -> None:
    assert OCPP16_TO_OCPI == {
        "Available": "AVAILABLE",
        "Preparing": "CHARGING",
        "Charging": "CHARGING",
        "SuspendedEV": "CHARGING",
        "SuspendedEVSE": "CHARGING",
        "Finishing": "CHARGING",
        "Reserved": "RESERVED",
        "Unavailable": "INOPERATIVE",
        "Faulted": "OUTOFORDER",
    }
    assert ocpi_status("1.6", None) == "UNKNOWN"


def test_ocpp_201_statuses_map_as_the_reference_says() -> None:
    assert OCPP201_TO_OCPI == {
        "Available": "AVAILABLE",
        "Occupied": "CHARGING",
        "Reserved": "RESERVED",
        "Unavailable": "INOPERATIVE",
        "Faulted": "OUTOFORDER",
    }
    with pytest.raises(ValueError, match="unknown OCPP version"):
        ocpi_status("1.5", "Available")


@pytest.mark.parametrize(
    ("version", "connectors", "expected"),
    [
        ("1.6", ["Available", "Charging"], "CHARGING"),  # any in use
        ("1.6", ["Faulted", "Finishing"], "CHARGING"),
        ("2.0.1", ["Available", "Occupied"], "CHARGING"),  # 2.0.1 Occupied counts as in use
        ("2.0.1", ["Reserved", "Available"], "RESERVED"),  # else any reserved
        ("1.6", ["Unavailable", "Available"], "AVAILABLE"),  # else any available
        ("2.0.1", ["Faulted", "Unavailable"], "INOPERATIVE"),  # else any unavailable
        ("1.6", ["Faulted", "Faulted"], "OUTOFORDER"),  # else any faulted
        ("1.6", [None, "Faulted"], "OUTOFORDER"),  # a connector that never reported does not count
        ("2.0.1", [None, None], "UNKNOWN"),
        ("1.6", [], "UNKNOWN"),
    ],
)
def test_connectors_of_one_evse_aggregate(version: str, connectors: list[str | None], expected: str) -> None:
    assert evse_status(version, connectors) == expected


@pytest.mark.parametrize(
    ("text", "version", "reply"),
    [
        ("not json", "1.6", [4, "-1", "FormationViolation"]),
        ("not json", "2.0.1", [4, "-1", "FormatViolation"]),
        ('{"a": 1}', "1.6", [4, "-1", "FormationViolation"]),
        ("[]", "2.0.1", [4, "-1", "FormatViolation"]),
        ('[9, "id1", "Heartbeat", {}]', "2.0.1", [4, "id1", "MessageTypeNotSupported"]),
        ('[9, "id1", "Heartbeat", {}]', "1.6", [4, "id1", "FormationViolation"]),
        ('["2", "id1", "Heartbeat", {}]', "2.0.1", [4, "id1", "MessageTypeNotSupported"]),
        ('[true, "id1", "Heartbeat", {}]', "2.0.1", [4, "id1", "MessageTypeNotSupported"]),
        ('[2, 17, "Heartbeat", {}]', "1.6", [4, "-1", "FormationViolation"]),
        ('[2, "", "Heartbeat", {}]', "1.6", [4, "-1", "FormationViolation"]),
        ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', "2.0.1", [4, "-1", "FormatViolation"]),
        ('[2, "id1", "Heartbeat"]', "1.6", [4, "id1", "FormationViolation"]),
        ('[2, "id1", "Heartbeat", {}, {}]', "2.0.1", [4, "id1", "FormatViolation"]),
        ('[2, "id1", 5, {}]', "2.0.1", [4, "id1", "FormatViolation"]),
        ('[2, "id1", "Heartbeat", []]', "1.6", [4, "id1", "FormationViolation"]),
        ('[2, "id1", "Heartbeat", null]', "2.0.1", [4, "id1", "FormatViolation"]),
        ("[" * 5000 + "]" * 5000, "1.6", [4, "-1", "FormationViolation"]),  # nesting the parser refuses
    ],
)
def test_malformed_frames_get_a_callerror(text: str, version: str, reply: list[object]) -> None:
    with pytest.raises(frames.FrameError) as bad:
        frames.parse(text, version, 65536)
    assert bad.value.reply is not None
    assert json.loads(bad.value.reply)[:3] == reply


def test_an_oversized_frame_is_refused_unparsed_with_its_id_when_readable() -> None:
    big = '[2, "big-1", "DataTransfer", {"vendorId": "x", "data": "' + "y" * 70000 + '"}]'
    with pytest.raises(frames.FrameError) as bad:
        frames.parse(big, "2.0.1", 65536)
    assert json.loads(bad.value.reply or "")[:3] == [4, "big-1", "FormatViolation"]
    # Multi-byte characters count as bytes: 30,000 × 3 bytes is over 64 KiB.
    wide = '[2, "w", "DataTransfer", {"vendorId": "' + "€" * 30000 + '"}]'
    with pytest.raises(frames.FrameError):
        frames.parse(wide, "1.6", 65536)


def test_malformed_responses_are_dropped_without_an_answer() -> None:
    for text in ('[3, "id1"]', '[3, "id1", []]', '[4, "id1", "GenericError"]', '[4, "id1", 1, "x", {}]'):
        with pytest.raises(frames.FrameError) as bad:
            frames.parse(text, "1.6", 65536)
        assert bad.value.reply is None


def test_well_formed_frames_parse() -> None:
    assert frames.parse('[2,"a","Heartbeat",{}]', "1.6", 65536) == frames.Frame(2, "a", "Heartbeat", {})
    assert frames.parse('[3,"a",{"x":1}]', "1.6", 65536) == frames.Frame(3, "a", None, {"x": 1})
    assert frames.parse('[4,"a","NotImplemented","",{}]', "2.0.1", 65536) == frames.Frame(4, "a", None, {})


def test_library_error_codes_get_the_16_spelling() -> None:
    assert json.loads(frames.fix_error_spelling('[4,"a","FormatViolation","x",{}]', "1.6"))[2] == "FormationViolation"
    text = '[4,"a","OccurrenceConstraintViolation","x",{}]'
    assert json.loads(frames.fix_error_spelling(text, "1.6"))[2] == "OccurenceConstraintViolation"
    assert frames.fix_error_spelling(text, "2.0.1") == text
    assert frames.fix_error_spelling('[3,"a",{}]', "1.6") == '[3,"a",{}]'


@pytest.mark.parametrize(
    ("message_type", "frame", "secret"),
    [
        (2, [2, "a", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "s3cr3t-s3cr3t-s3cr3t"}], "s3cr3t"),
        (
            2,
            [
                2,
                "a",
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "attributeValue": "s3cr3t-password-xyz",
                            "component": {"name": "SecurityCtrlr"},
                            "variable": {"name": "BasicAuthPassword"},
                        }
                    ]
                },
            ],
            "s3cr3t",
        ),
        (
            3,
            [3, "a", {"configurationKey": [{"key": "AuthorizationKey", "readonly": False, "value": "s3cr3t-value"}]}],
            "s3cr3t",
        ),
        (
            3,
            [
                3,
                "a",
                {
                    "getVariableResult": [
                        {
                            "attributeStatus": "Accepted",
                            "attributeValue": "s3cr3t-pw",
                            "component": {"name": "SecurityCtrlr"},
                            "variable": {"name": "BasicAuthPassword"},
                        }
                    ]
                },
            ],
            "s3cr3t",
        ),
    ],
)
def test_secret_configuration_values_are_masked(message_type: int, frame: list[object], secret: str) -> None:
    masked = frames.redacted(message_type, json.dumps(frame))
    assert secret not in masked
    assert frames.REDACTED in masked
    # Other configuration passes untouched.
    plain = json.dumps([2, "b", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}])
    assert frames.redacted(2, plain) == plain
    # A frame we cannot read that names a secret key keeps nothing.
    assert frames.redacted(0, '{"AuthorizationKey": "s3cr3t') == frames.REDACTED


def test_basic_credentials_parse() -> None:
    assert basic_credentials(basic("cp-1", "pw:with:colons")) == ("cp-1", "pw:with:colons")
    assert basic_credentials("basic " + basic("a", "b").split()[1]) == ("a", "b")
    for bad in (None, "", "Bearer abc", "Basic", "Basic !!!", "Basic " + "QUJD", "Basic " + "x" * 2000):
        assert basic_credentials(bad) is None


def test_pod_generation_header_parses() -> None:
    assert parse_generation(None) is None
    assert parse_generation(" 17 ") == 17
    for bad in ("-1", "1.5", "x", "", "٣", str(2**63)):
        assert getattr(parse_generation(bad), "status", None) == 400


# ---- boot and status ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_boot_then_status_makes_a_charger_online(api: CsmsApi, version: str) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, version)
    client = await connected(api, cpo, charger)
    try:
        assert client.ws.subprotocol == f"ocpp{version}"
        assert charger_row(api, cpo, charger)[0] == "BOOTING"  # connected, not booted yet
        answer = await client.boot(version)
        assert answer[0] == 3 and answer[2]["status"] == "Accepted" and answer[2]["interval"] == 300
        assert answer[2]["currentTime"].endswith("Z")
        status, api_instance, connection_id, last_boot_at, last_seen_at = charger_row(api, cpo, charger)
        assert (status, last_boot_at is not None) == ("BOOTING", True)  # booted, no status yet
        assert api_instance and connection_id and last_seen_at
        ocpp_evse_id, evse_uid, _ = charger.evses[0]
        status_name = "Occupied" if version == "2.0.1" else "Charging"
        connector_number = 1  # 1.6: the first connectorId of the charger; 2.0.1: the first within the EVSE
        assert await client.status(version, ocpp_evse_id, connector_number, status_name) == [3, "m2", {}]
        assert charger_row(api, cpo, charger)[0] == "ONLINE"
        assert evse_statuses(api, cpo, charger)[evse_uid] == "CHARGING"
        assert connector_statuses(api, cpo, evse_uid) == {"1": status_name}
        heartbeat = await client.heartbeat()
        assert heartbeat[0] == 3 and set(heartbeat[2]) == {"currentTime"}
    finally:
        await client.ws.close()


async def test_16_connector_ids_run_across_the_charger(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = next(c for c in cpo.of_version("1.6") if len(c.evses) == 2)
    client = await connected(api, cpo, charger)
    try:
        await client.boot("1.6")
        await client.status("1.6", 0, 1, "Available")
        await client.status("1.6", 0, 2, "Faulted")
        (_, first_uid, _), (_, second_uid, _) = sorted(charger.evses)
        assert evse_statuses(api, cpo, charger) == {first_uid: "AVAILABLE", second_uid: "OUTOFORDER"}
        # Connector 0 is the charger as a whole: acknowledged, no EVSE changes (OCPP 1.6 §4.9).
        assert await client.status("1.6", 0, 0, "Unavailable") == [3, "m4", {}]
        assert evse_statuses(api, cpo, charger) == {first_uid: "AVAILABLE", second_uid: "OUTOFORDER"}
        # A connector the charger does not have.
        answer = await client.status("1.6", 0, 3, "Available")
        assert answer[:3] == [4, "m5", "PropertyConstraintViolation"]
        assert (await client.heartbeat())[0] == 3
    finally:
        await client.ws.close()


@pytest.mark.parametrize(
    ("version", "table"), [("1.6", OCPP16_TO_OCPI), ("2.0.1", OCPP201_TO_OCPI)], ids=["1.6", "2.0.1"]
)
async def test_every_ocpp_status_lands_as_its_ocpi_status(api: CsmsApi, version: str, table: dict[str, str]) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, version)
    ocpp_evse_id, evse_uid, _ = charger.evses[0]
    client = await connected(api, cpo, charger)
    try:
        await client.boot(version)
        for ocpp_status, ocpi in table.items():
            assert (await client.status(version, ocpp_evse_id, 1, ocpp_status))[0] == 3
            assert evse_statuses(api, cpo, charger)[evse_uid] == ocpi, ocpp_status
            assert connector_statuses(api, cpo, evse_uid)["1"] == ocpp_status
    finally:
        await client.ws.close()


async def test_201_evse_and_connector_numbers_are_checked(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, "2.0.1")
    client = await connected(api, cpo, charger)
    try:
        await client.boot("2.0.1")
        for evse_id, connector_id in ((99, 1), (charger.evses[0][0], 2), (0, 1)):
            answer = await client.status("2.0.1", evse_id, connector_id, "Available")
            assert answer[2] == "PropertyConstraintViolation", answer
        assert set(evse_statuses(api, cpo, charger).values()) == {"UNKNOWN"}
    finally:
        await client.ws.close()


async def test_two_connectors_of_one_evse_aggregate_live(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, "2.0.1")
    ocpp_evse_id, evse_uid, _ = charger.evses[0]
    add_connector(api.database, cpo.cpo_id, charger, evse_uid, "2")
    client = await connected(api, cpo, charger)
    try:
        await client.boot("2.0.1")
        steps = [
            (1, "Available", "AVAILABLE"),
            (2, "Occupied", "CHARGING"),  # any in use
            (1, "Reserved", "CHARGING"),
            (2, "Available", "RESERVED"),
            (1, "Faulted", "AVAILABLE"),
            (2, "Unavailable", "INOPERATIVE"),
            (2, "Faulted", "OUTOFORDER"),
        ]
        for connector_id, status, expected in steps:
            assert (await client.status("2.0.1", ocpp_evse_id, connector_id, status))[0] == 3
            assert evse_statuses(api, cpo, charger)[evse_uid] == expected, (connector_id, status)
    finally:
        await client.ws.close()


async def test_an_evse_change_writes_one_outbox_row_per_peer_and_coalesces(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    peers = [register_peer(api.database, cpo.cpo_id), register_peer(api.database, cpo.cpo_id)]
    charger = first(cpo, "1.6")
    _, evse_uid, _ = charger.evses[0]
    location = charger.location_id
    client = await connected(api, cpo, charger)

    def outbox() -> list[tuple[object, ...]]:
        return api.database.query(
            "SELECT peer_id, object_key, module, method, path, body, coalescible FROM ocpi_outbox"
            " WHERE cpo_id = ? ORDER BY peer_id, id",
            cpo.cpo_id,
        )

    try:
        await client.boot("1.6")
        await client.status("1.6", 0, 1, "Available")
        rows = outbox()
        assert [r[0] for r in rows] == peers
        _, key, module, method, path, body, coalescible = rows[0]
        assert (key, module, method) == (f"evse:{location}/{evse_uid}", "locations", "PATCH")
        assert _json(path) == [location, evse_uid]
        body = _json(body)
        assert body["status"] == "AVAILABLE" and body["last_updated"].endswith("Z")
        assert coalescible in (True, 1)
        # The same OCPI status again (Preparing → Charging are both CHARGING): no new push.
        await client.status("1.6", 0, 1, "Preparing")
        await client.status("1.6", 0, 1, "Charging")
        rows = outbox()
        assert len(rows) == 2
        # Coalesced into the undelivered row: the peer gets only the latest status, in order.
        assert all(_json(r[5])["status"] == "CHARGING" for r in rows)
        # A delivery in flight (claimed) is not rewritten: the next change gets a row of its own.
        claimed = datetime(2999, 1, 1, tzinfo=UTC)
        api.database.query("UPDATE ocpi_outbox SET claimed_until = ? WHERE cpo_id = ?", claimed, cpo.cpo_id)
        await client.status("1.6", 0, 1, "Finishing")  # still CHARGING: nothing
        await client.status("1.6", 0, 1, "Available")
        rows = outbox()
        assert len(rows) == 4
        assert [_json(r[5])["status"] for r in rows] == [
            "CHARGING",
            "AVAILABLE",
            "CHARGING",
            "AVAILABLE",
        ]
    finally:
        await client.ws.close()


async def test_an_evse_change_bumps_its_location(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, "1.6")
    _, evse_uid, _ = charger.evses[0]

    def stamps() -> tuple[object, object]:
        evse = api.database.query("SELECT last_updated FROM evse WHERE cpo_id = ? AND uid = ?", cpo.cpo_id, evse_uid)
        location = api.database.query(
            "SELECT last_updated FROM location WHERE cpo_id = ? AND id = ?", cpo.cpo_id, charger.location_id
        )
        return evse[0][0], location[0][0]

    before = stamps()
    client = await connected(api, cpo, charger)
    try:
        await client.boot("1.6")
        await client.status("1.6", 0, 1, "Available")
        evse_stamp, location_stamp = stamps()
        assert evse_stamp == location_stamp and str(location_stamp) > str(before[1])
    finally:
        await client.ws.close()


# ---- refused upgrades ----------------------------------------------------------------------------


async def test_refused_upgrades_accept_nothing(api: CsmsApi) -> None:
    cpo, other = new_cpo(api), new_cpo(api)
    charger = first(cpo, "1.6")
    foreign = first(other, "1.6")
    gone = {status: new_cpo(api, status=status) for status in ("DESTROYING", "DESTROYED", "FAILED")}
    url = api.ws_url

    async def refused(**kw: object) -> tuple[int, dict[str, str], bytes]:
        return await upgrade_refused(open_charger(url, cpo.cpo_id, charger, **kw))  # type: ignore[arg-type]

    status, headers, _ = await refused(password="wrong-password-0123456789")
    assert status == 401 and headers.get("www-authenticate", "").startswith("Basic")
    assert (await refused(auth=False))[0] == 401
    assert (await refused(username=foreign.identity))[0] == 401  # right password, wrong username
    assert (await refused(password=foreign.password))[0] == 401  # another charger's password
    assert (await refused(auth=False, headers={"Authorization": "Basic !!!"}))[0] == 401
    assert (await refused(auth=False, headers={"Authorization": "Bearer x"}))[0] == 401
    # The identity of another CPO under this CPO's id, and the reverse: unknown here.
    assert (await upgrade_refused(open_charger(url, cpo.cpo_id, foreign)))[0] == 404
    assert (await upgrade_refused(open_charger(url, other.cpo_id, charger)))[0] == 404
    unknown = SeededCharger("nobody-here", "1.6", charger.password, charger.location_id, ())
    assert (await upgrade_refused(open_charger(url, cpo.cpo_id, unknown)))[0] == 404
    assert (await upgrade_refused(open_charger(url, 10**9, charger)))[0] == 404
    too_long = SeededCharger("x" * 300, "1.6", "pw", "L", ())
    assert (await upgrade_refused(open_charger(url, cpo.cpo_id, too_long)))[0] == 404
    for status_name, dead in gone.items():
        dead_charger = first(dead, "1.6")
        assert (await upgrade_refused(open_charger(url, dead.cpo_id, dead_charger)))[0] == 404, status_name
    # A CPO id that is no number never matches a charger.
    assert (await upgrade_refused(open_charger(url, "abc", charger)))[0] == 404  # type: ignore[arg-type]
    # Nothing was accepted: the charger's row is untouched and it logged no frame.
    assert charger_row(api, cpo, charger)[:3] == ("OFFLINE", None, None)
    assert api.database.query("SELECT count(*) FROM ocpp_log WHERE cpo_id = ?", cpo.cpo_id)[0][0] == 0
    # Each refusal is one INFO line; none is reported as a server error (uvicorn's spurious
    # "returned without completing handshake" after a denial response is filtered).
    log = (api.stack.workdir / "api.log").read_text()
    assert log.count("refused OCPP connection") >= 15
    assert "without completing handshake" not in log, log[-2000:]


async def test_the_subprotocol_must_be_the_chargers_version(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, "1.6")
    status, _, body = await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger, subprotocols=["ocpp2.0.1"]))
    assert status == 400 and b"ocpp1.6" in body
    assert (await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger, subprotocols=[])))[0] == 400
    # Offered among others (any order): accepted with the charger's own.
    ws = await open_charger(api.ws_url, cpo.cpo_id, charger, subprotocols=["ocpp2.0.1", "ocpp1.6"])
    try:
        assert ws.subprotocol == "ocpp1.6"
    finally:
        await ws.close()
    assert charger_row(api, cpo, charger)[0] in ("OFFLINE", "BOOTING")


async def test_a_malformed_pod_generation_is_refused(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, "1.6")
    headers = {"X-Cpolab-Pod-Generation": "soon"}
    assert (await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger, headers=headers)))[0] == 400


# ---- hostile frames ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_hostile_frames_get_callerrors_and_the_connection_survives(api: CsmsApi, version: str) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, version)
    format_violation = "FormationViolation" if version == "1.6" else "FormatViolation"
    unknown_type = "FormationViolation" if version == "1.6" else "MessageTypeNotSupported"
    client = await connected(api, cpo, charger)
    try:
        await client.boot(version)
        cases: list[tuple[str | bytes, list[object]]] = [
            ("garbage", [4, "-1", format_violation]),
            ('{"not": "a list"}', [4, "-1", format_violation]),
            ("[]", [4, "-1", format_violation]),
            ('[7, "t1", "Heartbeat", {}]', [4, "t1", unknown_type]),
            ('[2, 12, "Heartbeat", {}]', [4, "-1", format_violation]),
            ('[2, "t2", "Heartbeat"]', [4, "t2", format_violation]),
            ('[2, "t3", "Heartbeat", "payload"]', [4, "t3", format_violation]),
            (b"\x00\x01binary", [4, "-1", format_violation]),
            ('[2, "t4", "FooBar", {}]', [4, "t4", "NotSupported"]),  # not an action of the version
            ('[2, "t5", "DataTransfer", {"vendorId": "x"}]', [4, "t5", "NotImplemented"]),  # not handled
            ('[2, "t9", "Authorize", {}]', [4, "t9", "ProtocolError"]),  # handled; schema: required fields
            ('[2, "t6", "Heartbeat", {"unexpected": 1}]', [4, "t6", format_violation]),  # schema: no extra fields
            ('[2, "t7", "StatusNotification", {}]', [4, "t7", "ProtocolError"]),  # schema: required fields
            ('[2, "t8", "' + "A" * 80 + '", {}]', [4, "t8", format_violation]),
        ]
        for frame, expected in cases:
            answer = await client.raw(frame)
            assert answer[: len(expected)] == expected, (frame, answer)
            assert isinstance(answer[3], str) and answer[4] is not None
        # A response nobody asked for is logged and dropped: no answer, and the next CALL still works.
        await client.ws.send('[3, "unsolicited", {}]')
        await client.ws.send('[4, "unsolicited", "GenericError", "", {}]')
        answer = await client.heartbeat()
        assert answer[0] == 3, answer
    finally:
        await client.ws.close()


async def test_oversized_frames(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, "2.0.1")
    client = await connected(api, cpo, charger)
    try:
        await client.boot("2.0.1")
        # Over the app's frame limit (64 KiB): a CALLERROR, unparsed, and the connection stays.
        big = json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "y" * 100_000}])
        assert (await client.raw(big))[:3] == [4, "big", "FormatViolation"]
        assert (await client.heartbeat())[0] == 3
        # Over uvicorn's hard cap (1 MiB): the socket is closed (1009, message too big).
        await client.ws.send(json.dumps([2, "huge", "DataTransfer", {"vendorId": "x", "data": "y" * 1_200_000}]))
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        await client.ws.close()
    await eventually(lambda: charger_row(api, cpo, charger)[0] == "OFFLINE")


async def test_a_flooding_charger_does_not_starve_another(api: CsmsApi) -> None:
    """A charger that pipelines hundreds of CALLs is read at the per-connection rate (50/s, bursts of
    100), so all of its answers take seconds; another charger's calls are answered at once meanwhile."""
    cpo = new_cpo(api)
    flooder_charger, quiet_charger = cpo.of_version("1.6")[:2]
    flooder = await connected(api, cpo, flooder_charger)
    quiet = await connected(api, cpo, quiet_charger)
    try:
        await quiet.boot("1.6")
        started = time.monotonic()
        await asyncio.gather(*(flooder.ws.send(json.dumps([2, f"f{i}", "Heartbeat", {}])) for i in range(400)))

        async def drain() -> float:
            """Seconds until all 400 are answered: the rate bound makes it ≥ (400 - 100) / 50 = 6 s.
            A loaded box only makes it longer, so the lower bound cannot fail for the wrong reason."""
            async with asyncio.timeout(60):
                for _ in range(400):
                    await flooder.recv()
            return time.monotonic() - started

        async def meanwhile() -> list[float]:
            latencies = []
            for _ in range(10):
                t = time.perf_counter()
                assert (await quiet.heartbeat())[0] == 3
                latencies.append(time.perf_counter() - t)
            return latencies

        took, latencies = await asyncio.gather(drain(), meanwhile())
        assert max(latencies) < 1.0, latencies  # not queued behind the flood
        assert took >= 5.0, took  # read at the per-connection rate, not all at once
    finally:
        await flooder.ws.close()
        await quiet.ws.close()


# ---- the OCPP log --------------------------------------------------------------------------------


async def test_the_ocpp_log_keeps_both_directions_and_no_secret(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = first(cpo, "1.6")
    client = await connected(api, cpo, charger)
    try:
        await client.boot("1.6")
        await client.raw("garbage")
        # A charger has no business sending ChangeConfiguration, but if it does, the key stays out of the log.
        frame = [2, "cfg", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "leaked-key-0123456789"}]
        assert (await client.raw(json.dumps(frame)))[:3] == [4, "cfg", "NotImplemented"]
    finally:
        await client.ws.close()

    def rows() -> list[tuple[object, ...]]:
        return api.database.query(
            "SELECT direction, message_type, message_id, action, payload FROM ocpp_log"
            " WHERE cpo_id = ? AND identity = ? ORDER BY id",
            cpo.cpo_id,
            charger.identity,
        )

    logged = await eventually(lambda: len(rows()) == 6 and rows())
    assert [r[:4] for r in logged] == [
        ("in", 2, "m1", "BootNotification"),
        ("out", 3, "m1", "BootNotification"),
        ("in", 0, None, None),
        ("out", 4, "-1", None),
        ("in", 2, "cfg", "ChangeConfiguration"),
        ("out", 4, "cfg", "ChangeConfiguration"),
    ]
    assert json.loads(str(logged[0][4]))[2] == "BootNotification"
    assert logged[2][4] == "garbage"
    everything = " ".join(str(r[4]) for r in logged)
    assert "leaked-key" not in everything and frames.REDACTED in everything
    assert charger.password not in everything
    # Nor does the API's own log hold the password (or its Basic header).
    log_text = (api.stack.workdir / "api.log").read_text(errors="replace")
    assert charger.password not in log_text and basic(charger.identity, charger.password) not in log_text


async def test_the_ocpp_log_keeps_a_bounded_tail_per_charger(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With CPOLAB_OCPP_LOG_MAX_ROWS=10: the table holds at most about 1.5 × that per charger, the
    newest frames among them, whatever the charger sends."""
    csms = CsmsApi(
        Path(tmp_path_factory.mktemp("csms-log")), databases.new("csms_log"), env={"CPOLAB_OCPP_LOG_MAX_ROWS": "10"}
    )
    await csms.start()
    try:
        cpo = seed_cpo(csms.database, party_id=_party())
        noisy, quiet = cpo.of_version("1.6")[:2]
        client = OcppClient(await open_charger(csms.ws_url, cpo.cpo_id, noisy))
        other = OcppClient(await open_charger(csms.ws_url, cpo.cpo_id, quiet))
        try:
            await other.heartbeat()
            for _ in range(40):  # 80 frames
                await client.heartbeat()
                await asyncio.sleep(0.01)
        finally:
            await client.ws.close()
            await other.ws.close()

        def count(charger: SeededCharger) -> int:
            sql = "SELECT count(*) FROM ocpp_log WHERE cpo_id = ? AND identity = ?"
            return int(csms.database.query(sql, cpo.cpo_id, charger.identity)[0][0])

        def newest() -> list[object]:
            sql = "SELECT message_id FROM ocpp_log WHERE cpo_id = ? AND identity = ? ORDER BY id DESC LIMIT 2"
            return [r[0] for r in csms.database.query(sql, cpo.cpo_id, noisy.identity)]

        # Flushed to the last frame, and pruned.
        await eventually(lambda: newest() == ["m40", "m40"] and count(noisy) <= 15, timeout=5)
        assert count(noisy) >= 10  # never below what readers must see
        assert count(quiet) == 2  # another charger's tail is its own
    finally:
        csms.stop()
