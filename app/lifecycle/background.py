"""Payloads of a CPO's background activity (workflows/background.py): plain dataclasses, sandbox-safe."""

# No `from __future__ import annotations`: an ArrivalBatch carries up to 500 Arrivals, and the SDK's
# converter resolves each dataclass value's type hints, compiling string annotations every time.
from dataclasses import dataclass, field
from datetime import datetime

from app.network.activity_profile import ActivityProfile


def background_workflow_id(cpo_id: int) -> str:
    return f"cpo-{cpo_id}-background"


@dataclass
class BackgroundCounts:
    arrivals: int = 0  # drivers who came
    started: int = 0  # sessions sent to a charger (start with target and stay)
    busy: int = 0  # went away: the EVSE was occupied, faulted, unknown or its charger offline
    no_token: int = 0  # went away: the eMSP has pushed no usable token yet
    failed: int = 0  # the start could not be sent (workflow backend trouble)


@dataclass
class BackgroundInput:
    cpo_id: int
    evses: int  # the CPO's EVSE count: arrivals pick one uniformly (index into the uid-ordered list)
    time_scale: float
    profile: ActivityProfile
    # The simulated clock: simulated time `sim_origin` at real (workflow) time `real_origin`; None in the
    # first run (both become workflow.now()), carried across continue-as-new.
    sim_origin: datetime | None = None
    real_origin: datetime | None = None
    counts: BackgroundCounts = field(default_factory=BackgroundCounts)
    max_history_events: int = 2000
    # The drivers already parked when the traffic begins were placed (once the eMSP had tokens).
    warmed: bool = False


@dataclass
class Arrival:
    evse_index: int
    seed: int  # the driver: token, energy, start SoC, stay (app.network.activity_profile.plan_visit)


@dataclass
class ArrivalBatch:
    cpo_id: int
    batch_id: str  # unique per tick (workflow run + tick): the start workflows' ids derive from it
    profile: ActivityProfile
    arrivals: list[Arrival]


@dataclass
class WarmUp:
    """Place the drivers already parked at simulated time `sim_at`, as the steady state of its hour
    has them (app.network.activity_profile.busy_share), drawn from `seed`."""

    cpo_id: int
    batch_id: str  # the start workflows' ids derive from it (a retried activity starts nothing twice)
    profile: ActivityProfile
    sim_at: float  # simulated POSIX seconds
    seed: int


@dataclass
class WarmUpResult:
    counts: BackgroundCounts
    tokens: bool  # False: the eMSP has pushed no usable token yet, nothing was placed (try again later)
