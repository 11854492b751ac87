"""Payloads shared by CpoWorkflow, its activities and the API (plain dataclasses: sandbox-safe).

Everything here is small: ids and counts, never the generated network itself, which activities
re-derive from the seed (payloads stay far below Temporal's 2 MB limit even at 10k chargers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from temporalio.common import SearchAttributeKey

from app.network.generator import NetworkSpec

TASK_QUEUE = "provisioning"


class CpoStatus(StrEnum):
    PENDING = "PENDING"
    PROVISIONING = "PROVISIONING"
    READY = "READY"
    FAILED = "FAILED"
    DESTROYING = "DESTROYING"
    DESTROYED = "DESTROYED"


TERMINAL = frozenset({CpoStatus.FAILED, CpoStatus.DESTROYED})

# Typed search attributes: find and read runs in the Temporal Web UI (registered at server start).
SA_ORG = SearchAttributeKey.for_keyword("CpoOrg")
SA_TEMPLATE = SearchAttributeKey.for_keyword("CpoTemplate")
SA_STATE = SearchAttributeKey.for_keyword("CpoState")
SA_CPO_ID = SearchAttributeKey.for_int("CpoId")
SEARCH_ATTRIBUTES = (SA_ORG, SA_TEMPLATE, SA_STATE, SA_CPO_ID)


def workflow_id(cpo_id: int) -> str:
    return f"cpo-{cpo_id}"


class Step(StrEnum):
    CREATE_NETWORK = "create_network"
    CREATE_LOCATIONS = "create_locations"
    REGISTER_ROUTING = "register_routing"
    START_CHARGER_PODS = "start_charger_pods"


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
class CpoWorkflowInput:
    cpo_id: int
    org: str
    spec: NetworkSpec
    expires_at: datetime | None
    # Chargers written per activity: small enough for one short SQLite transaction, large enough
    # that a 10k-charger CPO needs ~40 activities (well inside one workflow history).
    batch_chargers: int = 250


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
