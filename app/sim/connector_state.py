"""The records of a simulated charger's sessions: per connector (cable, fault, reservation, pending
start, running transaction), the meter samples, the messages queued for the CSMS, and why a
transaction ended in each OCPP version's words. Data only; `app/sim/session_timeline.py` and
`app/sim/transactions.py` drive it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ocpp.v16.enums import ChargePointErrorCode

from app.sim.ev import Ev, Flow, Supply

WARNINGS = {"EVCommunicationError", "WeakSignal"}  # 1.6 error codes that are warnings, not faults
# A 1.6 ChargePointErrorCode a fault may carry (the simulate control's `error_code`).
ERROR_CODES = {code.value for code in ChargePointErrorCode} - {ChargePointErrorCode.no_error.value}


class End(enum.Enum):
    """Why a transaction ended: (1.6 reason, 2.0.1 triggerReason, 2.0.1 stoppedReason)."""

    REMOTE = ("Remote", "RemoteStop", "Remote")
    LOCAL = ("Local", "StopAuthorized", "Local")
    UNPLUG = ("EVDisconnected", "EVDeparted", "EVDisconnected")
    UNLOCK = ("UnlockCommand", "UnlockCommand", "Other")
    DEAUTHORIZED = ("DeAuthorized", "Deauthorized", "DeAuthorized")
    HARD_RESET = ("HardReset", "ResetCommand", "ImmediateReset")
    SOFT_RESET = ("SoftReset", "ResetCommand", "ImmediateReset")
    FAULT = ("Other", "AbnormalCondition", "EmergencyStop")


# 2.0.1 stoppedReason for a fault, by 1.6 error code (others: EmergencyStop).
_FAULT_STOPPED = {"GroundFailure": "GroundFault", "OverCurrentFailure": "OvercurrentFault"}


@dataclass(slots=True)
class Sample:
    at: float  # simulated POSIX seconds
    context: str  # Transaction.Begin | Sample.Periodic | Transaction.End
    register_wh: int  # the connector's energy register (never decreases)
    flow: Flow
    soc: float | None  # % (DC only: plain AC signalling carries no SoC)
    dc: bool


@dataclass(slots=True)
class Transaction:
    number: int  # the charger's transaction counter (seeds the car)
    index: int  # connector (position in the layout)
    id_tag: str
    token_type: str  # 2.0.1 idToken.type
    started_at: float
    meter_start_wh: int
    ev: Ev
    supply: Supply
    ocpp_id: int | str | None  # 1.6: the CSMS's integer (None until StartTransaction is answered); 2.0.1: ours
    remote_start_id: int | None = None
    reservation_id: int | None = None
    trigger: str = "Authorized"  # 2.0.1 triggerReason of Started
    t: float = 0.0  # physics advanced up to here (simulated)
    next_sample_at: float = 0.0
    stop_at: float | None = None  # the driver leaves (duration_s)
    charging_state: str = "Charging"  # Charging | SuspendedEV | SuspendedEVSE
    # The suspend-ev control: the car holds off from `suspend_at` (its BMS pauses, a departure timer)
    # until `resume_at` (None: until the transaction ends); `ev_paused` while it does.
    suspend_at: float | None = None
    resume_at: float | None = None
    ev_paused: bool = False
    seq_no: int = 0  # 2.0.1: next seqNo
    ended: bool = False


@dataclass(slots=True)
class Outgoing:
    kind: str  # "status" | "authorize" | "started" | "sample" | "state" (charging state changed) | "ended"
    index: int
    at: float
    tx: Transaction | None = None
    sample: Sample | None = None
    end: End | None = None
    error_code: str | None = None  # "ended" by a fault: the code (2.0.1 stoppedReason)
    status: tuple[str, str, str] | None = None  # "status": (1.6 status, 2.0.1 status, 1.6 errorCode)
    id_tag: str = ""  # "authorize"
    token_type: str = ""  # "authorize" (2.0.1 idToken.type)
    charging_state: str = ""  # of the transaction when queued
    seq_no: int = 0  # 2.0.1, assigned when queued
    offline: bool = False  # produced while the link was down (2.0.1 `offline`)
    attempts: int = 0  # failed deliveries (CALLERROR answers)
    retry_at: float = 0.0
    durable: bool = True  # transaction messages survive a disconnect; statuses and Authorize do not


@dataclass(slots=True)
class Pending:
    """An authorized start waiting for the cable (remote start before plug) or for Authorize's answer."""

    id_tag: str
    token_type: str
    trigger: str
    expires_at: float  # simulated
    remote_start_id: int | None = None
    authorized: bool = True


@dataclass(slots=True)
class Reservation:
    reservation_id: int
    id_tag: str
    expires_at: float  # wall clock (the CSMS's absolute time)


@dataclass(slots=True)
class Connector:
    plugged: bool = False
    finished: bool = False  # a transaction ended on this plug-in (1.6 Finishing)
    fault: str | None = None  # a 1.6 error code that is a fault
    warning: str | None = None
    reservation: Reservation | None = None
    pending: Pending | None = None
    tx: Transaction | None = None
    register_wh: float = 0.0
    reported: tuple[str, str, str] | None = None
    overrides: dict[str, float] = field(default_factory=dict)  # target_kwh / duration_s / soc_percent


class Refusal(Exception):
    """The action cannot be done now; the message is the reason given to the CSMS."""


def fault_stopped_reason(error_code: str | None) -> str:
    return _FAULT_STOPPED.get(error_code or "", "EmergencyStop")
