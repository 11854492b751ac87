"""The OpenAPI entries of a CPO's chargers (CONTRACT §3; the actions are not built yet)."""

from __future__ import annotations

from typing import Any

from app.control import schemas as s
from app.control.openapi_parts import CPO_ID, CPO_NOT_FOUND, INVALID, PAGING, REF, operation, response

SCHEMA_DESCRIPTIONS = {
    "Charger": "A simulated OCPP charge point of the CPO: where it is, what it is, and its live state.",
    "ChargerConnection": "How to connect to the CSMS as this charger: WebSocket URL, OCPP subprotocol and HTTP "
    "Basic credentials (security profile 1). The password only for a token with scope `cpos:write`.",
    "ChargerCounts": "A CPO's chargers counted by live state.",
    "ChargerDetail": "One charger and its CSMS connection.",
    "ChargerList": "One page of a CPO's chargers, ordered by identity.",
    "ChargerState": "A charger's connection to the CSMS: BOOTING (connected, not yet reported), ONLINE (booted "
    "and reported its status), OFFLINE (not connected), DETACHED (deliberately disconnected).",
    "OcppLogEntry": "One OCPP-J frame between a charger and the CSMS.",
    "OcppLogPage": "One page of a charger's OCPP frames, newest first.",
}

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
    }
