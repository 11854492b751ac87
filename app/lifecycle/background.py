"""Payloads of a CPO's background activity (workflows/background.py): plain dataclasses, sandbox-safe."""

from __future__ import annotations

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
