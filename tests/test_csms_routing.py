"""app.csms.routing writes what the `ocpp` library would, byte for byte, and reads payloads the same."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.messages import Call
from ocpp.v16 import call_result as r16
from ocpp.v16.enums import RegistrationStatus
from ocpp.v201 import call_result as r201
from ocpp.v201 import datatypes as d201
from ocpp.v201.enums import RegistrationStatusEnumType

from app.csms import routing
from app.csms.chargepoint import ocpp_now

ANSWERS: list[Any] = [
    r16.Heartbeat(current_time="2026-11-30T05:00:00.123Z"),
    r16.StatusNotification(),
    r16.BootNotification(current_time="2026-11-30T05:00:00.123Z", interval=300, status=RegistrationStatus.accepted),
    r16.StartTransaction(transaction_id=17, id_tag_info={"status": "Accepted", "parentIdTag": None}),
    r16.StopTransaction(id_tag_info=None),
    r16.Authorize(id_tag_info={"status": "Invalid"}),
    r201.Heartbeat(current_time="2026-11-30T05:00:00.123Z"),
    r201.BootNotification(
        current_time="2026-11-30T05:00:00.123Z", interval=60, status=RegistrationStatusEnumType.accepted
    ),
    r201.TransactionEvent(id_token_info={"status": "Accepted"}),
    r201.TransactionEvent(),
    r201.Authorize(
        id_token_info=d201.IdTokenInfoType(
            status="Accepted", evse_id=[1, 2], group_id_token=d201.IdTokenType(id_token="G", type="Central")
        )
    ),
    r201.GetVariables(get_variable_result=[]),
]


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{type(a).__module__.split('.')[1]}.{type(a).__name__}")
def test_call_result_as_the_library_writes_it(answer: Any) -> None:
    library = Call("m-1", "X", {}).create_call_result(snake_to_camel_case(remove_nones(serialize_as_dict(answer))))
    assert routing.call_result_text("m-1", answer) == library.to_json()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"connectorId": 1, "errorCode": "NoError", "status": "Available", "vendorErrorCode": "x"},
        {"chargingStation": {"vendorName": "V", "serialNumber": "S"}, "reason": "PowerUp"},
        {"meterValue": [{"timestamp": "t", "sampledValue": [{"value": "1", "measurand": "SoC"}]}]},
        {"customData": {"vendorId": "v", "someURLField": 1, "V2XMode": True, "ocppCSMSURL": "u"}},
    ],
)
def test_payload_keys_as_the_library_reads_them(payload: dict[str, Any]) -> None:
    assert routing.snake_case_payload(payload) == camel_to_snake_case(payload)
    assert routing.snake_case_payload(payload) == camel_to_snake_case(payload)  # memoised the second time


def test_ocpp_now_is_utc_with_milliseconds() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    text = ocpp_now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before <= stamp <= datetime.now(UTC)
