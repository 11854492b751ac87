"""Pure parts of charging sessions: the authorization decision table, the 1.6 idTag mapping, OCPP
meter values in any unit, charging periods and kWh from readings, PATCH merging in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ocpp.exceptions import FormatViolationError

from app.charging.authorization import CachedToken, RealtimeAnswer, TokenRef, decide, id_tag_for, needs_realtime
from app.charging.sessions import ACTIVE, COMPLETED, INVALID, PERIOD_MAX, Reading, apply_readings, finish
from app.csms.meter import parse_time, reading, readings
from app.store.charging_tables import ChargingSession
from app.store.outbox import Push, merged

REF = TokenRef("NL", "EMS", "UID1", "RFID", "C1")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def cached(whitelist: str, valid: bool = True) -> CachedToken:
    return CachedToken(REF, valid, whitelist, peer_id=1)


ANSWERED = RealtimeAnswer("answered", "BLOCKED", None, "REF-9")
UNKNOWN = RealtimeAnswer("unknown")
DOWN = RealtimeAnswer("unreachable")


@pytest.mark.parametrize(
    ("token", "answer", "allowed", "method", "asks"),
    [
        (cached("ALWAYS"), None, "ALLOWED", "WHITELIST", False),
        (cached("ALWAYS", valid=False), None, "BLOCKED", "WHITELIST", False),
        (cached("NEVER", valid=False), None, "BLOCKED", "WHITELIST", False),
        (cached("ALLOWED"), ANSWERED, "BLOCKED", "AUTH_REQUEST", True),
        (cached("ALLOWED"), DOWN, "ALLOWED", "WHITELIST", True),
        (cached("ALLOWED_OFFLINE"), DOWN, "ALLOWED", "WHITELIST", True),
        (cached("NEVER"), DOWN, "NOT_ALLOWED", "AUTH_REQUEST", True),
        (cached("NEVER"), UNKNOWN, "UNKNOWN", "AUTH_REQUEST", True),
        (None, ANSWERED, "BLOCKED", "AUTH_REQUEST", True),
        (None, UNKNOWN, "UNKNOWN", "AUTH_REQUEST", True),
        (None, DOWN, "UNKNOWN", "AUTH_REQUEST", True),
    ],
)
def test_the_whitelist_decision_table(
    token: CachedToken | None, answer: RealtimeAnswer | None, allowed: str, method: str, asks: bool
) -> None:
    assert needs_realtime(token) == asks
    decision = decide(token, answer if asks else None)
    assert (decision.allowed, decision.auth_method) == (allowed, method)
    if answer is ANSWERED:
        assert decision.authorization_reference == "REF-9"
        assert decision.token == (token.ref if token else None)


def test_ocpp_statuses_per_version() -> None:
    for allowed, v16, v201 in [
        ("ALLOWED", "Accepted", "Accepted"),
        ("NO_CREDIT", "Invalid", "NoCredit"),
        ("NOT_ALLOWED", "Invalid", "NotAtThisLocation"),
        ("UNKNOWN", "Invalid", "Unknown"),
    ]:
        decision = decide(None, RealtimeAnswer("answered", allowed))
        assert (decision.ocpp16_status(), decision.ocpp201_status()) == (v16, v201)


def test_id_tags_for_long_uids_are_short_stable_and_distinct() -> None:
    assert id_tag_for("04A2B3C4D5E6F7") == "04A2B3C4D5E6F7"  # ≤ 20: itself
    assert id_tag_for("X" * 20) == "X" * 20
    uids = [f"0f8c3b1e-6a2d-4c59-9e71-b2d4a6c8e{n:03d}" for n in range(1000)]
    tags = {id_tag_for(uid) for uid in uids}
    assert len(tags) == 1000 and all(len(t) == 20 and t.isalnum() for t in tags)
    assert id_tag_for(uids[0]) == id_tag_for(uids[0].upper())  # CiString: case does not matter
    assert id_tag_for(uids[0]) == "2HIFTFMHFUCPVB2NPP5A"  # the same on every process and release


def test_meter_values_in_any_unit() -> None:
    v16 = {
        "timestamp": "2026-03-02T09:01:00Z",
        "sampled_value": [
            {"value": "12.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
            {"value": "2300", "measurand": "Power.Active.Import", "phase": "L1"},
            {"value": "2400", "measurand": "Power.Active.Import", "phase": "L2"},
            {"value": "10", "measurand": "Current.Import", "phase": "L1"},
            {"value": "11", "measurand": "Current.Import", "phase": "L2"},
            {"value": "231", "measurand": "Voltage"},
            {"value": "55", "measurand": "SoC", "location": "EV"},
            {"value": "n/a", "measurand": "Temperature"},
        ],
    }
    assert reading(v16) == Reading(T0 + timedelta(minutes=1), 12500.0, 4700.0, 11.0, 231.0, 55.0)
    v201 = {
        "timestamp": "2026-03-02T09:01:00+01:00",
        "sampled_value": [{"value": 7, "unit_of_measure": {"multiplier": 3}}],
    }
    assert reading(v201) == Reading(T0 - timedelta(minutes=59), register_wh=7000.0)
    assert readings([{"timestamp": "2026-03-02T09:01:00Z", "sampled_value": [{"value": "x"}]}]) == []
    assert readings([{"timestamp": "2026-03-02T09:01:00Z", "sampled_value": [{"value": "nan"}]}]) == []
    with pytest.raises(FormatViolationError):
        parse_time("yesterday")


def _session() -> ChargingSession:
    return ChargingSession(
        id=1, cpo_id=1, session_id="1", identity="CP", ocpp_version="1.6", transaction_id="1", location_id="L",
        evse_uid="E", connector_id="1", ocpp_evse_id=0, ocpp_connector_id=1, start_at=T0, status=ACTIVE,
        currency="EUR", created_at=T0, last_updated=T0,
    )  # fmt: skip


def test_kwh_and_charging_periods_from_readings() -> None:
    cs = _session()
    at = lambda m: T0 + timedelta(minutes=m)  # noqa: E731
    closed, samples = apply_readings(cs, [Reading(at(0), register_wh=1000.0)])
    assert (closed, cs.period_start_at) == ([], None)  # no state known yet
    closed, _ = apply_readings(cs, [Reading(at(10), 2000.0, 6000.0), Reading(at(5), 1500.0, 6000.0)])
    assert closed == [] and cs.kwh == 1.0 and cs.period_charging
    closed, _ = apply_readings(cs, [Reading(at(8), 9000.0)])  # late: ignored
    assert cs.kwh == 1.0
    closed, _ = apply_readings(cs, [Reading(at(12), 2000.0, 0.0)])  # the car stops drawing
    assert closed == [
        {
            "start_date_time": T0,
            "dimensions": [
                {"type": "ENERGY", "volume": 1.0},
                {"type": "TIME", "volume": 0.2},
                {"type": "MAX_POWER", "volume": 6.0},
            ],
        }
    ]
    closed, _ = apply_readings(cs, [Reading(at(12) + PERIOD_MAX, 2000.0, 0.0)])  # a long pause: one period
    assert [p["dimensions"][1] for p in closed] == [{"type": "PARKING_TIME", "volume": 0.25}]
    closed, samples = finish(cs, at(40), 2000.0, "Local")
    assert cs.status == COMPLETED and cs.meter_stop_wh == 2000.0 and len(samples) == 1
    assert [p["dimensions"][1]["type"] for p in closed] == ["PARKING_TIME"]
    refused = _session()
    refused.status = INVALID
    finish(refused, at(1), 1000.0, "DeAuthorized")
    assert refused.status == INVALID


def test_a_pending_patch_absorbs_the_next_one() -> None:
    patch = Push(
        1, "session:S", "sessions", "PATCH", ["S"], {"kwh": 2, "last_updated": "b"}, True, ("charging_periods",)
    )
    patch = Push(**{**patch.__dict__, "body": {"kwh": 2, "charging_periods": [{"n": 2}], "last_updated": "b"}})
    pending = {"kwh": 1, "status": "ACTIVE", "charging_periods": [{"n": 1}], "last_updated": "a"}
    assert merged(pending, patch) == {
        "kwh": 2,
        "status": "ACTIVE",
        "charging_periods": [{"n": 1}, {"n": 2}],
        "last_updated": "b",
    }
    replace = Push(1, "evse:L/E", "locations", "PATCH", ["L", "E"], {"status": "CHARGING"}, True)
    assert merged({"status": "AVAILABLE", "x": 1}, replace) == {"status": "CHARGING"}
