"""The charger's small set of settings, as 1.6 configuration keys and as 2.0.1 component variables.

Both versions read and write the same state, so a HeartbeatInterval change applies the same way
whichever protocol set it. The password is write-only: it is never read back, nor logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.sim.state import ChargerState, Followup


class Refused(Exception):
    """The value is not acceptable (wrong type or range): the answer is Rejected."""


@dataclass(frozen=True)
class Setting:
    key16: str | None  # 1.6 configuration key (None: not exposed in 1.6)
    component: str | None  # 2.0.1 component.name (None: not exposed in 2.0.1)
    variable: str | None  # 2.0.1 variable.name
    read: Callable[[ChargerState], str] | None  # None: write-only
    # Applies the value and returns what must follow once the CSMS has the answer; None: read-only.
    write: Callable[[ChargerState, str], Followup | None] | None


def _positive_int(value: str, maximum: int = 86_400) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Refused from None
    if not 0 < number <= maximum:
        raise Refused
    return number


def _set_heartbeat(state: ChargerState, value: str) -> Followup:
    state.heartbeat_interval = _positive_int(value)
    return Followup.WAKE  # the session loop recomputes the next Heartbeat from the new interval


def _set_meter_interval(state: ChargerState, value: str) -> Followup:
    state.sessions.meter_interval = _positive_int(value)
    return Followup.WAKE  # running transactions sample at the new interval after their next sample


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise Refused
    return value.lower() == "true"


def _set_authorize_remote(state: ChargerState, value: str) -> None:
    state.sessions.authorize_remote = _bool(value)


def _set_connection_timeout(state: ChargerState, value: str) -> None:
    state.sessions.connection_timeout = _positive_int(value)


def _set_attempts(state: ChargerState, value: str) -> None:
    state.sessions.retry_attempts = _positive_int(value, maximum=10)


def _set_retry_interval(state: ChargerState, value: str) -> None:
    state.sessions.retry_interval = _positive_int(value, maximum=3_600)


def _set_password(state: ChargerState, value: str) -> Followup:
    # 2.0.1 passwordString is 16-40 characters; the 1.6 whitepaper asks ≥ 16 bytes, ≤ 40 hex digits.
    if not 16 <= len(value) <= 40 or not value.isprintable() or ":" in value:
        raise Refused
    state.password_override = value
    return Followup.RECONNECT  # the CSMS expects the next connection to use the new key


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "HeartbeatInterval",
        "OCPPCommCtrlr",
        "HeartbeatInterval",
        lambda s: str(s.heartbeat_interval),
        _set_heartbeat,
    ),
    Setting(
        "MeterValueSampleInterval",
        "SampledDataCtrlr",
        "TxUpdatedInterval",
        lambda s: str(s.sessions.meter_interval),
        _set_meter_interval,
    ),
    Setting(
        "AuthorizeRemoteTxRequests",
        "AuthCtrlr",
        "AuthorizeRemoteStart",
        lambda s: str(s.sessions.authorize_remote).lower(),
        _set_authorize_remote,
    ),
    Setting(
        "ConnectionTimeOut",
        "TxCtrlr",
        "EVConnectionTimeOut",
        lambda s: str(s.sessions.connection_timeout),
        _set_connection_timeout,
    ),
    Setting(
        "TransactionMessageAttempts",
        "OCPPCommCtrlr",
        "MessageAttemptsTransactionEvent",
        lambda s: str(s.sessions.retry_attempts),
        _set_attempts,
    ),
    Setting(
        "TransactionMessageRetryInterval",
        "OCPPCommCtrlr",
        "MessageAttemptIntervalTransactionEvent",
        lambda s: str(s.sessions.retry_interval),
        _set_retry_interval,
    ),
    Setting("NumberOfConnectors", None, None, lambda s: str(len(s.layout)), None),
    Setting(None, "SecurityCtrlr", "Identity", lambda s: s.config.identity, None),
    Setting("AuthorizationKey", "SecurityCtrlr", "BasicAuthPassword", None, _set_password),
)
BY_KEY16 = {s.key16: s for s in SETTINGS if s.key16}
BY_VARIABLE = {(s.component, s.variable): s for s in SETTINGS if s.component}
COMPONENTS = {s.component for s in SETTINGS if s.component}
