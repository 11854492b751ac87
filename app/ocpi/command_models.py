"""What an OCPI command becomes on its way to a charger and back: the Temporal payloads of the command
workflow (dataclasses), and the pure rules it follows (ids, the idTag of a token, the OCPP answer →
OCPI CommandResult). Light on purpose: the workflow sandbox imports it (no database, no HTTP).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

COMMAND_QUEUE_PREFIX = "csms-"  # + charger.api_instance: the worker inside that API process


def csms_queue(api_instance: str) -> str:
    """Task queue of the worker inside the API process that holds a charger's WebSocket."""
    return COMMAND_QUEUE_PREFIX + api_instance


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def command_workflow_id(cpo_id: int, peer_id: int, command: str, response_url: str) -> str:
    """One workflow per command: an eMSP that retries its POST (same response_url) joins it."""
    return f"ocpi-command-{cpo_id}-{command.lower()}-{_digest(peer_id, command, response_url).hex()[:24]}"


def reservation_workflow_id(cpo_id: int, peer_id: int, reservation_id: str) -> str:
    """RESERVE_NOW's workflow id, found again by CANCEL_RESERVATION (whose body names no charger)."""
    return f"ocpi-reservation-{cpo_id}-{_digest(peer_id, reservation_id).hex()[:24]}"


def ocpp_reservation_id(reservation_id: str) -> int:
    """OCPP reservation ids are integers: a decimal OCPI id that fits in 31 bits is kept (2.1.1 sends
    integers), any other maps to a stable positive 31-bit number."""
    if reservation_id.isdigit() and 0 < int(reservation_id) < 2**31:
        return int(reservation_id)
    return int.from_bytes(_digest("reservation", reservation_id)[:4], "big") & 0x7FFFFFFF or 1


def remote_start_id(workflow_id: str) -> int:
    """OCPP 2.0.1 remoteStartId of a START_SESSION (positive 31-bit, stable per command)."""
    return int.from_bytes(_digest("remote-start", workflow_id)[:4], "big") & 0x7FFFFFFF or 1


# OCPI TokenType → OCPP 2.0.1 IdTokenEnumType (ocpp-sim.md §4).
ID_TOKEN_TYPES = {"RFID": "ISO14443", "AD_HOC_USER": "Local", "APP_USER": "Central", "OTHER": "Central"}


# ---- Temporal payloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OcppCall:
    """One OCPP call to one charger; `payload` in the ocpp library's snake_case field names."""

    cpo_id: int
    identity: str
    ocpp_version: str
    action: str
    payload: dict[str, Any]
    timeout_s: float


@dataclass(frozen=True)
class OcppAnswer:
    """The charger's CALLRESULT (`status` and the rest of its payload) or its CALLERROR."""

    status: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_description: str | None = None


@dataclass(frozen=True)
class ConnectionClose:
    """Close one connection of a charger in the API process `api_instance` (detach / attach)."""

    cpo_id: int
    identity: str
    api_instance: str
    connection_id: str
    code: int  # WebSocket close code
    reason: str


@dataclass(frozen=True)
class RouteQuery:
    cpo_id: int
    identity: str


@dataclass(frozen=True)
class ChargerRoute:
    """Where a charger's WebSocket is now (api_instance None: not connected)."""

    status: str
    api_instance: str | None


@dataclass(frozen=True)
class ReservationQuery:
    cpo_id: int
    workflow_id: str


@dataclass(frozen=True)
class ReservationFound:
    """The charger and OCPP call of an accepted RESERVE_NOW (None: no such live reservation)."""

    identity: str | None = None
    ocpp_version: str | None = None


@dataclass(frozen=True)
class ResultDelivery:
    """The CommandResult POST; Token B is read from the peer row by the activity, never carried here."""

    cpo_id: int
    peer_id: int
    version: str
    response_url: str
    body: dict[str, Any]
    correlation_id: str
    from_country_code: str
    from_party_id: str
    to_country_code: str | None
    to_party_id: str | None
    attempt_s: float  # one POST attempt's bound (the client's own deadline plus slack)


@dataclass(frozen=True)
class CommandInput:
    """A validated command, resolved to its charger. `call` None: the answer is known without the
    charger (`result`, e.g. a charger with no route), or found at run time (CANCEL_RESERVATION)."""

    command: str
    cpo_id: int
    identity: str | None
    call: OcppCall | None
    delivery: ResultDelivery | None  # None: a simulation action, answered to its caller (no response_url)
    deadline_s: float  # CommandResponse.timeout: the result is POSTed within it
    result: str | None = None
    message: str | None = None
    reservation_workflow_id: str | None = None  # CANCEL_RESERVATION: the RESERVE_NOW to look up
    reservation_id: int | None = None  # CANCEL_RESERVATION: the OCPP reservationId


@dataclass(frozen=True)
class CommandOutcome:
    """What the workflow returns: the CommandResult sent and whether the eMSP took it."""

    result: str
    message: str
    identity: str | None
    ocpp_version: str | None
    delivered: bool


# ---- the charger's answer → OCPI CommandResultType (ocpp-sim.md §8) ------------------------------------

_BY_STATUS = {
    "Accepted": "ACCEPTED",
    "Rejected": "REJECTED",
    "Occupied": "EVSE_OCCUPIED",
    "Faulted": "EVSE_INOPERATIVE",
    "Unavailable": "EVSE_INOPERATIVE",
    "Unlocked": "ACCEPTED",
    "UnlockFailed": "FAILED",
    "NotSupported": "NOT_SUPPORTED",
    "UnknownConnector": "REJECTED",
    "OngoingAuthorizedTransaction": "EVSE_OCCUPIED",  # 2.0.1: a session holds the cable
}
_NOT_SUPPORTED_ERRORS = {"NotImplemented", "NotSupported"}


def command_result(command: str, answer: OcppAnswer) -> tuple[str, str]:
    """(CommandResultType, message) for the charger's answer to `command`."""
    if answer.error_code is not None:
        result = "NOT_SUPPORTED" if answer.error_code in _NOT_SUPPORTED_ERRORS else "FAILED"
        detail = f": {answer.error_description}" if answer.error_description else ""
        return result, f"the charge point answered with the OCPP error {answer.error_code}{detail}"
    status = answer.status or "?"
    if command == "CANCEL_RESERVATION" and status == "Rejected":
        return "UNKNOWN_RESERVATION", "the charge point answered Rejected: it knows no such reservation"
    result = _BY_STATUS.get(status, "FAILED")
    # A DataTransfer's answer carries the charger's reason (e.g. a simulated charger's refusal).
    detail = answer.payload.get("data") if command == "SIMULATE" else None
    return result, f"the charge point answered {status}" + (f": {detail}" if detail else "")


# OCPI 2.1.1 has no CommandResult: the result is a CommandResponse, whose type knows fewer values.
_RESULTS_211 = {"ACCEPTED", "REJECTED", "TIMEOUT", "NOT_SUPPORTED", "UNKNOWN_SESSION"}


def result_body(version: str, result: str, message: str) -> dict[str, Any]:
    """The body POSTed to response_url, in the CPO's OCPI version."""
    if version == "2.1.1" and result not in _RESULTS_211:
        result = "REJECTED"
    return {"result": result, "message": [{"language": "en", "text": message}]}
