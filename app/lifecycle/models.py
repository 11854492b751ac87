"""Payloads shared by CpoWorkflow, its activities and the API (plain dataclasses: sandbox-safe).

Everything here is small: ids and counts, never the generated network itself, which activities
re-derive from the seed (payloads stay far below Temporal's 2 MB limit even at 10k chargers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from temporalio.common import SearchAttributeKey

from app.lifecycle.pods import SimChargerSpec
from app.network.activity_profile import ActivityProfile
from app.network.generator import NetworkShape, NetworkSpec

TASK_QUEUE = "provisioning"


class CpoStatus(StrEnum):
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    FAILED = "FAILED"
    DESTROYING = "DESTROYING"
    DESTROYED = "DESTROYED"


TERMINAL = frozenset({CpoStatus.FAILED, CpoStatus.DESTROYED})
LIVE = frozenset({CpoStatus.PENDING, CpoStatus.PROVISIONING, CpoStatus.READY})
# Being or already torn down: no OCPI platform, no TTL change, no provisioning write.
GONE = TERMINAL | {CpoStatus.DESTROYING}

# Which stored statuses a status write may replace: nothing moves a row out of DESTROYING (except to
# DESTROYED), and nothing moves it out of DESTROYED or FAILED (a late retry or a racing extend_ttl).
ALLOWED_FROM: dict[CpoStatus, frozenset[CpoStatus]] = {
    CpoStatus.PENDING: LIVE,
    CpoStatus.PROVISIONING: LIVE,
    CpoStatus.READY: LIVE,
    CpoStatus.DESTROYING: LIVE | {CpoStatus.DESTROYING},
    CpoStatus.DESTROYED: LIVE | {CpoStatus.DESTROYING, CpoStatus.DESTROYED},
    CpoStatus.FAILED: LIVE | {CpoStatus.FAILED},
}

# Typed search attributes: find and read runs in the Temporal Web UI (registered at server start).
SA_ORG = SearchAttributeKey.for_keyword("CpoOrg")
SA_TEMPLATE = SearchAttributeKey.for_keyword("CpoTemplate")
SA_STATE = SearchAttributeKey.for_keyword("CpoState")
SA_CPO_ID = SearchAttributeKey.for_int("CpoId")
SEARCH_ATTRIBUTES = (SA_ORG, SA_TEMPLATE, SA_STATE, SA_CPO_ID)


# The workflows the API and the reconciler call, by name: the API process does not import workflow or
# activity code (nor, through it, the simulator). The workflows declare themselves with these names.
CPO_WORKFLOW = "CpoWorkflow"
CPO_STATE_QUERY = "state"
CPO_EXTEND_TTL_UPDATE = "extend_ttl"
CPO_DESTROY_SIGNAL = "request_destroy"
TEARDOWN_WORKFLOW = "CpoTeardownWorkflow"


def workflow_id(cpo_id: int) -> str:
    return f"cpo-{cpo_id}"


def teardown_workflow_id(cpo_id: int) -> str:
    return f"cpo-{cpo_id}-teardown"


RECONCILER_SCHEDULE_ID = "cpolab-reconciler"


class Step(StrEnum):
    CREATE_NETWORK = "create_network"
    CREATE_LOCATIONS = "create_locations"
    REGISTER_ROUTING = "register_routing"
    START_CHARGER_PODS = "start_charger_pods"
    WAIT_CHARGERS_ONLINE = "wait_chargers_online"


STEPS: tuple[Step, ...] = tuple(Step)


@dataclass
class Progress:
    steps_total: int
    steps_done: int
    current_step: str | None
    locations_total: int
    locations_done: int
    chargers_total: int
    chargers_done: int
    chargers_online: int


@dataclass
class CpoError:
    code: str
    message: str
    retryable: bool
    step: str | None


@dataclass
class CpoState:
    status: CpoStatus
    progress: Progress | None
    error: CpoError | None
    expires_at: datetime | None
    provisioned_at: datetime | None
    updated_at: datetime | None


@dataclass
class Resume:
    """What a READY CPO carries into its next run when it continues-as-new (bounded history)."""

    progress: Progress | None
    expires_at: datetime | None
    provisioned_at: datetime | None


@dataclass
class SimulationSettings:
    """How a CPO's chargers live, chosen at create: `time_scale` simulated seconds per real second
    (app/sim/clock.py) and whether the CPO makes its own traffic (workflows/background.py)."""

    time_scale: float = 1.0
    background_activity: bool = False


@dataclass
class CpoWorkflowInput:
    """Self-contained: the API resolved the template once, so nothing in the workflow (or its
    activities, which read the CPO row's blueprint) depends on the live catalog."""

    cpo_id: int
    org: str
    spec: NetworkSpec
    expires_at: datetime | None
    # Chargers written per activity: small enough for one short SQLite transaction, large enough
    # that a 10k-charger CPO needs ~40 activities (well inside one workflow history).
    batch_chargers: int = 250
    # Resolved at create time (None only in runs started before these fields existed); the
    # generator version travels in `spec`.
    shape: NetworkShape | None = None
    template_version: int | None = None
    # Set when a READY run continued as new: skip provisioning and keep waiting.
    resume: Resume | None = None
    # Continue-as-new once the history has this many events (or the server suggests it).
    max_history_events: int = 2000
    # How long every charger may take to come online before the CPO fails (None: by size,
    # app.lifecycle.pods.online_timeout).
    online_timeout_seconds: int | None = None
    # The simulation settings of the create (None: runs started before they existed, scale 1, no traffic).
    simulation: SimulationSettings | None = None
    # The template's background activity profile, resolved at create when `simulation.background_activity`.
    activity_profile: ActivityProfile | None = None


@dataclass
class TeardownInput:
    """Teardown of a CPO whose own workflow can no longer do it (terminated, lost, never started)."""

    cpo_id: int
    reason: str


@dataclass
class ReconcileInput:
    grace_seconds: int


@dataclass
class ReconcileReport:
    orphans_removed: list[int] = field(default_factory=list)
    teardowns_started: list[int] = field(default_factory=list)
    unanswered_destroyed: list[int] = field(default_factory=list)  # workflow started, 202 never sent


@dataclass
class LocationBatch:
    cpo_id: int
    spec: NetworkSpec
    start: int
    stop: int


@dataclass
class BatchResult:
    locations: int
    chargers: int
    evses: int
    connectors: int


@dataclass
class WholeNetwork:
    """A network small enough for one batch, written by one activity: what to write and what the
    rows must add up to before the transaction may commit."""

    cpo_id: int
    spec: NetworkSpec
    expected: BatchResult


@dataclass
class SmallNetwork:
    """`WholeNetwork` plus what its caller used to do in separate round trips: the PROVISIONING
    record (written in the network's transaction, with the progress as it stands after it) and,
    when `pod_chargers`, the specs of the network's single pod."""

    cpo_id: int
    spec: NetworkSpec
    expected: BatchResult
    progress: Progress
    pod_chargers: bool = False


@dataclass
class SmallNetworkResult:
    counts: BatchResult
    pod_chargers: list[SimChargerSpec] | None = None


@dataclass
class StatusRecord:
    """What an activity writes to the CPO row at each milestone (the status endpoint's fallback)."""

    cpo_id: int
    status: CpoStatus
    progress: Progress | None = None
    error: CpoError | None = None
    provisioned_at: datetime | None = None
    destroyed_at: datetime | None = None
    expires_at: datetime | None = None
    set_expires_at: bool = False


@dataclass
class NetworkRequest:
    cpo_id: int
    spec: NetworkSpec


@dataclass
class ExtendTtl:
    ttl_seconds: int | None = field(default=None)
