"""The pure rules of OCPI commands: answer → CommandResult, ids, the 1.6 idTag of a long uid, the
2.1.1 result form, body validation per version, and the timeout settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.ocpi.command_bodies import ReserveNow, parse_command
from app.ocpi.command_models import (
    OcppAnswer,
    command_result,
    command_workflow_id,
    ocpp_reservation_id,
    remote_start_id,
    reservation_workflow_id,
    result_body,
)
from app.ocpi.transport import OcpiError
from app.settings import Settings


@pytest.mark.parametrize(
    ("command", "status", "expected"),
    [
        ("START_SESSION", "Accepted", "ACCEPTED"),
        ("START_SESSION", "Rejected", "REJECTED"),
        ("STOP_SESSION", "Rejected", "REJECTED"),
        ("UNLOCK_CONNECTOR", "Unlocked", "ACCEPTED"),
        ("UNLOCK_CONNECTOR", "UnlockFailed", "FAILED"),
        ("UNLOCK_CONNECTOR", "NotSupported", "NOT_SUPPORTED"),
        ("UNLOCK_CONNECTOR", "UnknownConnector", "REJECTED"),
        ("UNLOCK_CONNECTOR", "OngoingAuthorizedTransaction", "EVSE_OCCUPIED"),
        ("RESERVE_NOW", "Occupied", "EVSE_OCCUPIED"),
        ("RESERVE_NOW", "Faulted", "EVSE_INOPERATIVE"),
        ("RESERVE_NOW", "Unavailable", "EVSE_INOPERATIVE"),
        ("RESERVE_NOW", "Rejected", "REJECTED"),
        ("CANCEL_RESERVATION", "Accepted", "ACCEPTED"),
        ("CANCEL_RESERVATION", "Rejected", "UNKNOWN_RESERVATION"),
        ("START_SESSION", "Whatever", "FAILED"),  # a status outside the schema's enum
    ],
)
def test_answers_map_as_the_reference_says(command: str, status: str, expected: str) -> None:
    result, message = command_result(command, OcppAnswer(status=status))
    assert result == expected and status in message


def test_call_errors_map_to_not_supported_or_failed() -> None:
    assert command_result("START_SESSION", OcppAnswer(error_code="NotImplemented"))[0] == "NOT_SUPPORTED"
    assert command_result("START_SESSION", OcppAnswer(error_code="NotSupported"))[0] == "NOT_SUPPORTED"
    result, message = command_result("START_SESSION", OcppAnswer(error_code="InternalError", error_description="x"))
    assert result == "FAILED" and "InternalError: x" in message


def test_211_results_use_the_values_211_knows() -> None:
    assert result_body("2.1.1", "EVSE_OCCUPIED", "m")["result"] == "REJECTED"
    assert result_body("2.1.1", "TIMEOUT", "m")["result"] == "TIMEOUT"
    assert result_body("2.2.1", "EVSE_OCCUPIED", "m") == {
        "result": "EVSE_OCCUPIED",
        "message": [{"language": "en", "text": "m"}],
    }


def test_reservation_ids_become_stable_ocpp_integers() -> None:
    assert ocpp_reservation_id("42") == 42
    for text in ("R1", "0", "99999999999", "a-b-c"):
        number = ocpp_reservation_id(text)
        assert 0 < number < 2**31 and number == ocpp_reservation_id(text)
    assert ocpp_reservation_id("R1") != ocpp_reservation_id("R2")


def test_workflow_ids_follow_the_command() -> None:
    a = command_workflow_id(1, 2, "START_SESSION", "https://emsp.example/r/1")
    assert a == command_workflow_id(1, 2, "START_SESSION", "https://emsp.example/r/1")
    assert a != command_workflow_id(1, 2, "START_SESSION", "https://emsp.example/r/2")
    assert a != command_workflow_id(1, 3, "START_SESSION", "https://emsp.example/r/1")
    assert reservation_workflow_id(1, 2, "R1") != reservation_workflow_id(1, 2, "R2")
    assert 0 < remote_start_id(a) < 2**31


TOKEN_211 = {
    "uid": "12345678",
    "type": "RFID",
    "auth_id": "NL-EMS-000001",
    "issuer": "Test eMSP",
    "valid": True,
    "whitelist": "ALLOWED",
    "last_updated": "2024-05-01T10:00:00Z",
}


def test_211_bodies_take_211_tokens_and_integer_reservation_ids() -> None:
    body = {
        "response_url": "https://emsp.example/r/1",
        "token": TOKEN_211,
        "expiry_date": "2099-01-01T00:00:00Z",
        "reservation_id": 17,
        "location_id": "LOC1",
    }
    cmd = parse_command("RESERVE_NOW", body, "2.1.1")
    assert isinstance(cmd, ReserveNow) and cmd.reservation_id == "17"
    with pytest.raises(OcpiError) as refused:  # a 2.1.1 token is not a 2.2.1 one
        parse_command("RESERVE_NOW", body, "2.2.1")
    assert refused.value.status_code == 2001 and "token.country_code" in refused.value.message
    with pytest.raises(OcpiError, match=r"token\.type"):
        parse_command("RESERVE_NOW", {**body, "token": {**TOKEN_211, "type": "APP_USER"}}, "2.1.1")


def test_command_timeouts_leave_room_for_the_result() -> None:
    with pytest.raises(ValidationError, match="command_charger_timeout"):
        Settings(command_timeout=10, command_charger_timeout=8)
    assert Settings(command_timeout=10, command_charger_timeout=7).command_charger_timeout == 7
