"""Payloads of the charger pods: the durable "container tasks" that host a CPO's OCPP simulators.

A CPO's chargers are split into pods of about POD_CHARGERS chargers (by whole locations). Each pod
is a child workflow (`cpo-{id}-pod-{n}`, so the CPO workflow can continue-as-new under it) running
one long, heartbeating activity on the `charger-runtime` task queue: a sim worker hosts it, and
when that worker dies the heartbeat timeout hands the pod to another one.
"""

# No `from __future__ import annotations`: these dataclasses travel in workflow inputs and activity
# results, and the SDK's converter resolves a dataclass's type hints for every value it decodes; string
# annotations are compiled each time (a 250-charger pod plan: 68 ms instead of 20 ms of a workflow task).
from dataclasses import dataclass

from app.network.generator import NetworkSpec

CHARGER_RUNTIME_QUEUE = "charger-runtime"
# Chargers per pod: one activity slot of a sim worker each, so 10,000 chargers are 20 pods.
# bench/bench_sim.py measured the cost per idle charger flat from 100 to 10,000 per process, so the
# size only trades failover granularity (a retried pod reconnects all of its chargers at once)
# against pod count (child workflows and activity slots).
POD_CHARGERS = 500
# A small network's single pod gets its chargers in its input (no plan_pod round trip) up to this
# many chargers: ~300 bytes each, carried twice in the CPO's history and once in the pod's.
INLINE_POD_CHARGERS = 100
# The upgrade header that carries a pod's generation: the CSMS refuses a lower one than it has seen.
GENERATION_HEADER = "X-Cpolab-Pod-Generation"


def pod_workflow_id(cpo_id: int, index: int) -> str:
    return f"cpo-{cpo_id}-pod-{index}"


def online_timeout(chargers: int) -> int:
    """Seconds every charger of a CPO may take to boot: two minutes, plus one per fifty chargers.
    Generous on purpose (a CPO that fails is worse than one that is slow): on a shared, loaded box
    a pod may be retried once (heartbeat timeout) and boot its chargers again."""
    return 120 + chargers // 50


def pod_ranges(locations: int, chargers_per_location: int, pod_chargers: int = POD_CHARGERS) -> list[tuple[int, int]]:
    """Whole locations per pod, about `pod_chargers` chargers each."""
    per_pod = max(1, pod_chargers // max(1, chargers_per_location))
    return [(start, min(start + per_pod, locations)) for start in range(0, locations, per_pod)]


@dataclass
class SimEvseSpec:
    """One EVSE of a simulated charger and its electrical envelope (what the simulated car may draw).
    The envelope's defaults are what pods planned before it was carried (a 22 kW AC point)."""

    evse_id: int
    connectors: int
    power_type: str = "AC_3_PHASE"
    max_voltage: int = 230
    max_amperage: int = 32
    max_electric_power: int = 22_080


@dataclass
class SimChargerSpec:
    """What a simulated charger needs to know of itself (its password is derived inside the pod)."""

    identity: str
    ocpp_version: str
    vendor: str
    model: str
    serial_number: str
    firmware_version: str
    evses: list[SimEvseSpec]


@dataclass
class PodInput:
    """One pod: locations [location_start, location_stop) of the CPO's network."""

    cpo_id: int
    spec: NetworkSpec
    index: int
    location_start: int
    location_stop: int
    time_scale: float = 1.0  # simulated seconds per real second of every charger of the pod
    # What the pod hosts, when the CPO's provisioning already derived it (a small network's only
    # pod); None: the pod plans itself (plan_pod), as every pod started before this field did.
    chargers: list[SimChargerSpec] | None = None


@dataclass
class PodRun:
    cpo_id: int
    index: int
    chargers: list[SimChargerSpec]
    time_scale: float = 1.0


@dataclass
class OnlineWait:
    """Wait (bounded) until the CPO's online count differs from `seen` or reaches `total`."""

    cpo_id: int
    total: int
    seen: int
    max_wait_seconds: float = 10.0


@dataclass
class OnlineCount:
    online: int
    not_online_sample: list[str]  # a few identities still not online (for the error message)
