"""The OpenAPI entries of a CPO's chargers and their simulation actions (CONTRACT §3)."""

from __future__ import annotations

from typing import Any

from app.control import schemas as s
from app.control.charger_actions import ACTIONS, ActionResult, ChargerActionRequest, LocationActionResult
from app.control.openapi_parts import CPO_ID, CPO_NOT_FOUND, INVALID, PAGING, REF, operation, ref, response

SCHEMA_DESCRIPTIONS = {
    "Charger": "A simulated OCPP charge point of the CPO: where it is, what it is, and its live state.",
    "ChargerConnection": "How to connect to the CSMS as this charger: WebSocket URL, OCPP subprotocol and HTTP "
    "Basic credentials (security profile 1). The password only for a token with scope `cpos:write`.",
    "ChargerCounts": "A CPO's chargers counted by live state.",
    "ChargerDetail": "One charger and its CSMS connection.",
    "ChargerList": "One page of a CPO's chargers, ordered by identity.",
    "ChargerState": "A charger's connection to the CSMS: BOOTING (connected, not yet reported), ONLINE (booted "
    "and reported its status), OFFLINE (not connected), DETACHED (handed to your own OCPP client by `detach`, "
    "connected or not, until `attach`).",
    "OcppLogEntry": "One OCPP-J frame between a charger and the CSMS.",
    "OcppLogPage": "One page of a charger's OCPP frames, newest first.",
    "ChargerActionRequest": "What a simulation action takes. `evse_uid` / `connector_id` (OCPI ids; default the "
    "charger's first EVSE and its first connector) for every action; `start`: `token_uid` (required), and "
    "`target_kwh`, `soc_percent`, `duration_s` (the car stops drawing at the first reached); `fault`: "
    "`error_code` (OCPP 1.6 ChargePointErrorCode, default OtherError); `suspend-ev`: `duration_s` (simulated seconds "
    "the car stays suspended; absent: until the session is stopped or the cable unplugged). An action ignores the "
    "fields of the others; an unknown field is a 422. `detach` / `attach` act on the whole charger: `evse_uid` "
    "(one of its EVSEs) may name it.",
    "ActionResult": "An action the charger answered (ACCEPTED) or has not answered yet (PENDING); in a location's "
    "list also REJECTED / FAILED with the charger's reason in `message`.",
    "LocationActionResult": "The action's result on each EVSE of the location (`detach` / `attach`: on each "
    "charger, named by its first EVSE there).",
}

ACTION = {
    "name": "action",
    "in": "path",
    "required": True,
    "description": "What happens at the charger.",
    "schema": {"type": "string", "enum": list(ACTIONS)},
}
LOCATION_ID = {
    "name": "location_id",
    "in": "path",
    "required": True,
    "description": "An OCPI location id of the CPO.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 36},
}
_ACTION_BODY = {"required": False, "content": {"application/json": {"schema": ref(ChargerActionRequest)}}}
_ACTION_DESCRIPTION = (
    "What a person does at a real charger, played by the simulated charger: `plug` a car in, `start` (hold the "
    "card `token_uid` and plug in: the charger authorizes the token and starts a transaction, which becomes "
    "an OCPI Session and, at its end, a CDR), `stop`, `unplug`, `fault` / `clear-fault`, `suspend-ev` (during "
    "a session the car stops drawing power, plugged in with the session open, as when its battery management "
    "pauses or a departure timer waits: OCPP 1.6 status SuspendedEV and meter values at 0 W, 2.0.1 chargingState "
    "SuspendedEV; the OCPI EVSE stays CHARGING and the stretch is parking time, PARKING_TIME in the CDR; it "
    "charges again after `duration_s` unless the car is full; 409 without a session). It reaches the "
    "charger over OCPP (DataTransfer `cpolab`/`simulate`) through whichever API process holds its "
    "connection; the answer waits for the charger, at most `CPOLAB_COMMAND_CHARGER_TIMEOUT` + 5 s (then "
    "PENDING). `detach` hands the charger's identity to your own OCPP client: the charger reads DETACHED (kept "
    "across restarts), the simulator's connection is closed (WebSocket 4002), our pods are refused (409, "
    "`Retry-After: 5`) and any other client with the charger's credentials (`getCharger`) is served, its "
    "statuses and transactions reaching OCPI like any charger's. `attach` closes that client (4003) and the "
    "simulator takes the charger back, ONLINE within ~10 s. 409: `detach` of a detached charger, `attach` of "
    "one that is not, or another action on a detached charger. Durations are the charger's simulated seconds."
)

IDENTITY = {
    "name": "identity",
    "in": "path",
    "required": True,
    "description": "The charger's OCPP identity (as listed by `GET /ocpi/cpos/{cpo_id}/chargers`).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}

STATE = {
    "name": "state",
    "in": "query",
    "required": False,
    "description": "Only chargers in this state.",
    "schema": {"$ref": REF.format(model="ChargerState")},
}

_UNKNOWN = response("No such CPO in your org, or no charger of that identity in it.", s.HttpError)


def charger_paths() -> dict[str, Any]:
    return {
        "/ocpi/cpos/{cpo_id}/chargers": {
            "parameters": [CPO_ID],
            "get": operation(
                "listChargers",
                "List a CPO's chargers",
                {
                    "200": response("One page of the CPO's chargers.", s.ChargerList),
                    "404": CPO_NOT_FOUND,
                    "422": INVALID,
                },
                tag="Chargers",
                description="Ordered by identity, with each charger's EVSE uids and live state.",
                parameters=[*PAGING, STATE],
            ),
        },
        "/ocpi/cpos/{cpo_id}/chargers/{identity}": {
            "parameters": [CPO_ID, IDENTITY],
            "get": operation(
                "getCharger",
                "Get a charger and its CSMS connection",
                {
                    "200": response("The charger and how to connect as it.", s.ChargerDetail),
                    "404": _UNKNOWN,
                    "422": INVALID,
                },
                tag="Chargers",
                description="`connection` says how to point your own OCPP client at the CSMS in place of the "
                "simulator: `url` (`ws(s)://…/ocpp/{cpo_id}/{identity}`, from `CPOLAB_PUBLIC_BASE_URL` like "
                "`ocpi_peer_url`), `subprotocol`, and the HTTP Basic `username`; `password` only when the token "
                "also has scope `cpos:write`.",
            ),
        },
        "/ocpi/cpos/{cpo_id}/chargers/{identity}/ocpp-log": {
            "parameters": [CPO_ID, IDENTITY, *PAGING],
            "get": operation(
                "getChargerOcppLog",
                "A charger's OCPP log",
                {
                    "200": response("One page of the charger's OCPP frames.", s.OcppLogPage),
                    "404": _UNKNOWN,
                    "422": INVALID,
                },
                tag="Chargers",
                description="Every frame between the charger and the CSMS, both directions, newest first (like the "
                "OCPI traffic log), within the CSMS's retention. `payload` is the frame as JSON, or its text when "
                "it does not parse (a garbled frame, or one cut at the stored size).",
            ),
        },
        "/ocpi/cpos/{cpo_id}/chargers/{identity}/actions/{action}": {
            "parameters": [CPO_ID, IDENTITY, ACTION],
            "post": operation(
                "chargerAction",
                "Play an action at a charger",
                {
                    "202": response("The charger accepted the action (or has not answered yet).", ActionResult),
                    "404": response("No such CPO, charger, EVSE or connector.", s.HttpError),
                    "409": response(
                        "The charger is not online, or refused the action in its state (`detail` gives its reason), "
                        "or is an external OCPP client that does not simulate; `detach` of a detached charger, "
                        "`attach` of one that is not.",
                        s.HttpError,
                    ),
                    "422": INVALID,
                    "503": response("The workflow backend is unreachable.", s.HttpError),
                },
                tag="Chargers",
                scope="cpos:write",
                description=_ACTION_DESCRIPTION,
                body=_ACTION_BODY,
            ),
        },
        "/ocpi/cpos/{cpo_id}/locations/{location_id}/actions/{action}": {
            "parameters": [CPO_ID, LOCATION_ID, ACTION],
            "post": operation(
                "locationAction",
                "Play an action at every EVSE of a location",
                {
                    "202": response("Each EVSE's result.", LocationActionResult),
                    "404": response("No such CPO, location (with EVSEs) or EVSE.", s.HttpError),
                    "409": response("An EVSE's charger cannot take the action.", s.HttpError),
                    "422": INVALID,
                    "503": response("The workflow backend is unreachable.", s.HttpError),
                },
                tag="Chargers",
                scope="cpos:write",
                description="The charger action on each EVSE of the location (at most 200), each EVSE's first "
                "connector unless `connector_id`; `evse_uid` narrows it to one EVSE. `detach` / `attach`: once per "
                "charger, a charger already in that state REJECTED in the list.",
                body=_ACTION_BODY,
            ),
        },
    }
