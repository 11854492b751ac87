"""OCPP-J frames before the `ocpp` library sees them: shape checks, our own CALLERRORs, redaction.

The library logs and drops a frame it cannot parse, without answering; a charger then waits for a
response that never comes. So every frame is checked here first and a bad one is answered with a
CALLERROR (message id "-1" when the id itself is unreadable), and the connection stays open.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

CALL, CALLRESULT, CALLERROR = 2, 3, 4
MAX_MESSAGE_ID = 36  # OCPP-J: the message id is at most 36 characters
MAX_ACTION = 64  # longer than any action of either version

# Error codes that each version spells its own way (OCPP-J 1.6 table 7 vs OCPP 2.0.1 part 4).
_FORMAT_VIOLATION = {"1.6": "FormationViolation", "2.0.1": "FormatViolation"}
_V16_SPELLING = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}

# An id readable without parsing the frame (an oversized one is never parsed).
_LEADING_ID = re.compile(r'\s*\[\s*[234]\s*,\s*"([^"\\]{1,36})"')

# The head of a frame the library wrote: `[3,"id",…` or `[2,"id","Action",…` (json.dumps escapes no
# character of an id we accepted, and our own ids are uuids).
_OWN_HEAD = re.compile(r'\[([234]),"([^"\\]*)"(?:,"([A-Za-z0-9]+)")?')

# Configuration values that are secrets: never written to the OCPP log.
_SECRET_KEYS = frozenset({"AuthorizationKey", "BasicAuthPassword"})
REDACTED = "***"


class FrameError(Exception):
    """A frame that cannot be routed; `reply` is the CALLERROR text to send back (None: send none)."""

    def __init__(self, reply: str | None, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply


class Frame(NamedTuple):  # a tuple: made for every frame, cheaper than a frozen dataclass
    message_type: int
    message_id: str
    action: str | None  # CALLs only
    payload: Any  # CALL / CALLRESULT payload, CALLERROR details


def call_error(ocpp_version: str, message_id: str, code: str, description: str) -> str:
    if code == "FormatViolation":
        code = _FORMAT_VIOLATION[ocpp_version]
    return json.dumps([CALLERROR, message_id, code, description[:255], {}], separators=(",", ":"))


def parse(text: str, ocpp_version: str, max_frame: int) -> Frame:
    """The frame's shape, or FrameError with the CALLERROR to answer."""
    if len(text) > max_frame or (len(text) * 4 > max_frame and len(text.encode()) > max_frame):
        found = _LEADING_ID.match(text[:64])
        message_id = found.group(1) if found else "-1"
        raise FrameError(
            call_error(ocpp_version, message_id, "FormatViolation", f"frame larger than {max_frame} bytes"),
            "oversized frame",
        )
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError(call_error(ocpp_version, "-1", "FormatViolation", "frame is not JSON"), "not JSON") from None
    if not isinstance(msg, list) or not msg:
        raise FrameError(
            call_error(ocpp_version, "-1", "FormatViolation", "frame is not a non-empty JSON array"), "not a list"
        )
    message_id = msg[1] if len(msg) > 1 and _valid_id(msg[1]) else None
    reply_id = message_id or "-1"
    message_type = msg[0]
    if type(message_type) is not int or message_type not in (CALL, CALLRESULT, CALLERROR):
        if ocpp_version == "2.0.1":
            error = call_error(ocpp_version, reply_id, "MessageTypeNotSupported", "unknown MessageTypeId")
        else:
            error = call_error(ocpp_version, reply_id, "FormatViolation", "unknown MessageTypeId")
        raise FrameError(error, "unknown message type")
    if message_id is None:
        raise FrameError(
            call_error(ocpp_version, "-1", "FormatViolation", "message id must be a string of 1-36 characters"),
            "bad message id",
        )
    if message_type == CALL:
        if len(msg) != 4 or not isinstance(msg[2], str) or not 0 < len(msg[2]) <= MAX_ACTION:
            raise FrameError(
                call_error(ocpp_version, message_id, "FormatViolation", "a CALL is [2, id, action, {payload}]"),
                "bad CALL",
            )
        if not isinstance(msg[3], dict):
            raise FrameError(
                call_error(ocpp_version, message_id, "FormatViolation", "the payload must be a JSON object"),
                "bad CALL payload",
            )
        return Frame(CALL, message_id, msg[2], msg[3])
    if message_type == CALLRESULT and (len(msg) != 3 or not isinstance(msg[2], dict)):
        raise FrameError(None, "bad CALLRESULT")  # a response is never answered
    if message_type == CALLERROR and (
        len(msg) != 5 or not isinstance(msg[2], str) or not isinstance(msg[3], str) or not isinstance(msg[4], dict)
    ):
        raise FrameError(None, "bad CALLERROR")
    return Frame(message_type, message_id, None, msg[2] if message_type == CALLRESULT else msg[4])


def head(text: str) -> tuple[int, str, str | None]:
    """(message type, message id, action or None) of a frame we made (the library's compact JSON)."""
    found = _OWN_HEAD.match(text)
    if found is None:  # not the library's layout: take the slow way
        msg = json.loads(text)
        return msg[0], msg[1], msg[2] if msg[0] == CALL else None
    message_type = int(found.group(1))
    return message_type, found.group(2), found.group(3) if message_type == CALL else None


def fix_error_spelling(text: str, ocpp_version: str) -> str:
    """The library spells CALLERROR codes the 2.0.1 way in both versions; 1.6 chargers expect 1.6's."""
    if ocpp_version != "1.6" or not text.startswith("[4"):
        return text
    msg = json.loads(text)
    msg[2] = _V16_SPELLING.get(msg[2], msg[2])
    return json.dumps(msg, separators=(",", ":"))


def redacted(message_type: int, text: str) -> str:
    """The frame text with secret configuration values masked: ChangeConfiguration / SetVariables
    and what a charger reports back through GetConfiguration / GetVariables. Decided on the payload's
    shape, not the action: an unsolicited or mislabelled frame is masked too."""
    if not any(key in text for key in _SECRET_KEYS):
        return text
    if message_type not in (CALL, CALLRESULT):
        return REDACTED  # unparseable frames and CALLERROR details: nothing we could mask precisely
    try:
        msg = json.loads(text)
        payload = msg[3] if message_type == CALL else msg[2]
    except (ValueError, IndexError, KeyError, TypeError):
        return REDACTED  # a frame we cannot read may hold the secret: keep none of it
    if not isinstance(payload, dict):
        return REDACTED
    _mask(payload)
    return json.dumps(msg, separators=(",", ":"))


def _mask(payload: dict[str, Any]) -> None:
    # 1.6 ChangeConfiguration {key, value}; GetConfiguration result {configurationKey: [{key, value}]}.
    if payload.get("key") in _SECRET_KEYS and "value" in payload:
        payload["value"] = REDACTED
    for entry in _dicts(payload.get("configurationKey")):
        if entry.get("key") in _SECRET_KEYS and "value" in entry:
            entry["value"] = REDACTED
    # 2.0.1 SetVariables {setVariableData: [{variable: {name}, attributeValue}]}, GetVariables result
    # {getVariableResult: [{variable: {name}, attributeValue}]}.
    for field in ("setVariableData", "getVariableResult"):
        for entry in _dicts(payload.get(field)):
            variable = entry.get("variable")
            if isinstance(variable, dict) and variable.get("name") in _SECRET_KEYS and "attributeValue" in entry:
                entry["attributeValue"] = REDACTED


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID
