"""The simulate control: a DataTransfer(vendorId "cpolab", messageId "simulate", data = JSON) that makes
the simulated charger act as if something happened at it (interfaces.md, "Simulator control over OCPP").

    plug / unplug            the EV's cable
    start                    plug (if not yet) and hold `id_tag` to the reader: Authorize, then the
                             transaction; optional `target_kwh`, `duration_s` (the driver stops and
                             unplugs after it), `soc_percent` (the car's start SoC)
    stop                     the driver stops the transaction at the charger (reason Local); the cable
                             stays in until `unplug`
    fault / clear_fault      an OCPP 1.6 `error_code` (EVCommunicationError and WeakSignal are warnings:
                             the status stays; any other faults the connector and ends its transaction)
    suspend_ev               during a transaction the car stops drawing power (its BMS pauses, a
                             departure timer) for `duration_s` (default: until the transaction ends),
                             plugged in, the transaction open: 1.6 SuspendedEV and MeterValues at 0 W,
                             2.0.1 chargingState SuspendedEV; then Charging again unless the car is full
    go_offline / go_online   drop the link for `duration_s` (default 60) and queue transaction messages
                             meanwhile; go_online (in-process, `Pod.simulate`) reconnects early

Durations are simulated seconds (app/sim/clock.py). The answer's data is JSON: what was done, or
`{"reason": ...}` when Rejected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from app.sim.connector_state import ERROR_CODES, End, Refusal
from app.sim.state import ChargerState, Followup

VENDOR_ID = "cpolab"
MESSAGE_ID = "simulate"
ACTIONS = {"plug", "unplug", "start", "stop", "fault", "clear_fault", "suspend_ev", "go_offline", "go_online"}
# What an action takes besides the connector (start's fields are checked on their own).
_EXTRAS = {"fault": ("error_code",), "suspend_ev": ("duration_s",)}
_FIELDS = {"action", "connector_id", "evse_id", "id_tag", "target_kwh", "duration_s", "soc_percent", "error_code"}
_MAX_DURATION = 7 * 86_400.0
_MAX_OFFLINE_REAL = 3_600.0


@dataclass(frozen=True)
class Answer:
    status: str  # Accepted | Rejected | UnknownVendorId | UnknownMessageId
    data: dict[str, Any] | None = None
    followup: Followup | None = None
    arg: object = None

    def text(self) -> str | None:
        return None if self.data is None else json.dumps(self.data, separators=(",", ":"), sort_keys=True)


def _reject(reason: str) -> Answer:
    return Answer("Rejected", {"reason": reason})


def _number(body: dict[str, Any], name: str, low: float, high: float, *, low_open: bool = True) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Refusal(f"{name} must be a number")
    if value < low or (low_open and value == low) or value > high:
        raise Refusal(f"{name} must be in {'(' if low_open else '['}{low:g}, {high:g}]")
    return float(value)


def _connector(state: ChargerState, body: dict[str, Any]) -> int:
    """The layout index the body designates (1.6 connector_id; 2.0.1 evse_id + connector_id, default 1)."""
    for name in ("connector_id", "evse_id"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise Refusal(f"{name} must be an integer")
    if state.config.ocpp_version == "1.6":
        if body.get("evse_id") is not None:
            raise Refusal("evse_id is for OCPP 2.0.1 chargers; use connector_id")
        if body.get("connector_id") is None:
            raise Refusal("connector_id is required")
        index = state.flat_index(body["connector_id"])
        if index is None:
            raise Refusal(f"no connector {body['connector_id']}")
        return index
    if body.get("evse_id") is None:
        raise Refusal("evse_id is required")
    indices = state.evse_indices(body["evse_id"], body.get("connector_id") or 1)
    if not indices:
        raise Refusal(f"no connector {body.get('connector_id') or 1} on EVSE {body['evse_id']}")
    return indices[0]


def simulate(state: ChargerState, vendor_id: str, message_id: str | None, data: Any) -> Answer:
    """`data`: the JSON text (1.6 data is a string; 2.0.1 may also carry the object itself)."""
    if vendor_id != VENDOR_ID:
        return Answer("UnknownVendorId")
    if message_id != MESSAGE_ID:
        return Answer("UnknownMessageId")
    try:
        body = json.loads(data) if isinstance(data, str) else data
    except (ValueError, RecursionError):
        return _reject("data must be a JSON object")
    if not isinstance(body, dict):
        return _reject("data must be a JSON object")
    try:
        return apply(state, body)
    except Refusal as exc:
        return _reject(str(exc))


def apply(state: ChargerState, body: dict[str, Any]) -> Answer:
    """Validates and performs one command (also the in-process entry, `Pod.simulate`)."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise Refusal(f"unknown fields: {', '.join(unknown)}")
    action = body.get("action")
    if action not in ACTIONS:
        raise Refusal(f"action must be one of {sorted(ACTIONS)}")
    sessions = state.sessions
    duration = _number(body, "duration_s", 0, _MAX_DURATION)
    if action == "go_offline":
        seconds = duration if duration is not None else 60.0
        real = min(seconds / state.config.time_scale, _MAX_OFFLINE_REAL)
        return Answer("Accepted", {"action": action, "offline_s": seconds}, Followup.OFFLINE, real)
    if action == "go_online":
        state.offline_until = 0.0
        state.wake.set()
        return Answer("Accepted", {"action": action})
    index = _connector(state, body)
    ref = state.layout[index]
    done: dict[str, Any] = {"action": action, "connector_id": ref.flat_id}
    if state.config.ocpp_version == "2.0.1":
        done = {"action": action, "evse_id": ref.evse_id, "connector_id": ref.connector_id}
    if action == "start":
        id_tag = body.get("id_tag")
        limit = 20 if state.config.ocpp_version == "1.6" else 36
        if not isinstance(id_tag, str) or not 0 < len(id_tag) <= limit or not id_tag.isprintable():
            raise Refusal(f"id_tag must be 1-{limit} printable characters")
        overrides = {
            "target_kwh": _number(body, "target_kwh", 0, 1_000),
            "duration_s": duration,
            "soc_percent": _number(body, "soc_percent", 0, 99.9, low_open=False),
        }
        c = sessions.connector(index)
        if c.tx is not None or c.pending is not None:
            raise Refusal("connector occupied")
        c.overrides = {k: v for k, v in overrides.items() if v is not None}
        try:
            if not c.plugged:
                sessions.plug(index)
            sessions.present(index, id_tag)
        except Refusal:
            c.overrides = {}
            raise
    elif set(body) - {"action", "connector_id", "evse_id", *_EXTRAS.get(action, ())}:
        raise Refusal(f"{action} takes only the connector" + "".join(f" and {x}" for x in _EXTRAS.get(action, ())))
    elif action == "plug":
        sessions.plug(index)
    elif action == "unplug":
        sessions.unplug(index)
    elif action == "stop":
        sessions.stop(index, End.LOCAL)
    elif action == "fault":
        code = body.get("error_code")
        if code not in ERROR_CODES:
            raise Refusal(f"error_code must be one of {sorted(ERROR_CODES)}")
        sessions.set_fault(index, code)
    elif action == "clear_fault":
        sessions.clear_fault(index)
    elif action == "suspend_ev":
        sessions.suspend_ev(index, duration)
    tx = sessions.connectors[index].tx if index in sessions.connectors else None
    done["status"] = sessions.status(index)[0 if state.config.ocpp_version == "1.6" else 1]
    if tx is not None and tx.ocpp_id is not None:
        done["transaction_id"] = tx.ocpp_id
    if action == "suspend_ev" and tx is not None:  # 2.0.1's connector status says Occupied either way
        done["charging_state"] = tx.charging_state
    return Answer("Accepted", done)
