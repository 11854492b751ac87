"""Background activity profiles: how drivers use a template's chargers on their own (issue 9 §6).

Pure and seeded. A profile is data (`data/activity_profiles.json`, one per template): Poisson arrivals
per EVSE for each hour of the day, and per AC / DC EVSE what a driver wants (energy, start state of
charge) and how long they leave the car plugged in once it is full. `expected_arrivals` integrates the
hourly rates over a window of simulated time; `draw_count` and `plan_visit` turn seeds into arrivals
and visits, so the same seeds give the same traffic. `busy_share` and `midway` describe the network as
it is when the simulation starts: drivers already parked, part-way through their stay.
"""

# No `from __future__ import annotations` here: the dataclasses travel in workflow inputs, and the
# workflow sandbox cannot resolve string annotations of a passed-through module (NameError on ChargeSpan).
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DATA_FILE = Path(__file__).parent / "data" / "activity_profiles.json"
HOUR = 3600.0
MAX_STAY_S = 7 * 86_400.0  # the simulate control's duration_s bound
# Above this mean a Poisson count is drawn from its normal approximation (exact enough, O(1)).
_NORMAL_ABOVE = 30.0


class _Span(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    energy_kwh: tuple[float, float]
    start_soc_percent: tuple[float, float]
    typical_kw: float = Field(gt=0)
    idle_after_full_min: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> "_Span":
        for name in ("energy_kwh", "start_soc_percent", "idle_after_full_min"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be [low, high] with 0 ≤ low ≤ high")
        if self.energy_kwh[0] <= 0 or self.start_soc_percent[1] > 99.9:
            raise ValueError("energy_kwh must be > 0 and start_soc_percent ≤ 99.9")
        return self


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    arrivals_per_hour: tuple[float, ...] = Field(min_length=24, max_length=24)
    ac: _Span
    dc: _Span

    @model_validator(mode="after")
    def _rates(self) -> "_Profile":
        if any(not 0 <= r <= 60 for r in self.arrivals_per_hour):
            raise ValueError("arrivals_per_hour must be 24 rates in [0, 60]")
        return self


@dataclass
class ChargeSpan:
    """What a driver wants at one kind of EVSE (plain dataclass: it travels in workflow inputs)."""

    energy_kwh: list[float]
    start_soc_percent: list[float]
    typical_kw: float
    idle_after_full_min: list[float]


@dataclass
class ActivityProfile:
    arrivals_per_hour: list[float]  # 24 rates: arrivals per EVSE per hour, by local hour of the day
    ac: ChargeSpan
    dc: ChargeSpan
    # The network's local standard time minus UTC (app.network.local_time.network_utc_offset_s). 0 in
    # the inputs of workflows started before it existed: their replays must draw the same traffic.
    utc_offset_s: int = 0


@dataclass(frozen=True)
class Visit:
    """One driver's stay: charge toward `target_kwh` from `soc_percent`, leave after `duration_s`
    (simulated seconds: the expected charging time plus the idle time after full)."""

    target_kwh: float
    soc_percent: float
    duration_s: float
    idle_after_full_s: float


def _span(raw: _Span) -> ChargeSpan:
    return ChargeSpan(list(raw.energy_kwh), list(raw.start_soc_percent), raw.typical_kw, list(raw.idle_after_full_min))


def load_profiles(doc: Any) -> dict[str, ActivityProfile]:
    """Validated profiles by template slug (raises ValueError naming the template)."""
    out: dict[str, ActivityProfile] = {}
    for slug, raw in (doc.get("profiles") or {}).items():
        try:
            p = _Profile.model_validate(raw)
        except ValueError as exc:
            raise ValueError(f"activity profile {slug!r}: {exc}") from exc
        out[slug] = ActivityProfile(list(p.arrivals_per_hour), _span(p.ac), _span(p.dc))
    return out


PROFILES = load_profiles(json.loads(DATA_FILE.read_text(encoding="utf-8")))


def profile_for(template: str) -> ActivityProfile | None:
    return PROFILES.get(template)


def _local(profile: ActivityProfile, at: float) -> float:
    """Simulated POSIX seconds `at` as seconds on the network's local clock."""
    return at + profile.utc_offset_s


def _rate_at_local(profile: ActivityProfile, local: float) -> float:
    return profile.arrivals_per_hour[int(local // HOUR) % 24]


def expected_arrivals(profile: ActivityProfile, evses: int, start: float, seconds: float) -> float:
    """Mean number of arrivals over all `evses` in simulated [start, start + seconds) (POSIX seconds),
    the rates of the network's local hours integrated piecewise."""
    total, t = 0.0, _local(profile, start)
    end = t + max(0.0, seconds)
    while t < end:
        boundary = min(end, (math.floor(t / HOUR) + 1) * HOUR)
        total += _rate_at_local(profile, t) * (boundary - t) / HOUR
        t = boundary
    return total * evses


def draw_count(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's product method; the normal approximation for large means)."""
    if mean <= 0:
        return 0
    if mean > _NORMAL_ABOVE:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _span_kw(profile: ActivityProfile, power_type: str, max_electric_power_w: int | None) -> tuple[ChargeSpan, float]:
    span = profile.dc if power_type == "DC" else profile.ac
    kw = span.typical_kw if not max_electric_power_w else min(span.typical_kw, max_electric_power_w / 1000)
    return span, kw


def plan_visit(seed: int, profile: ActivityProfile, power_type: str, max_electric_power_w: int | None) -> Visit:
    """The visit of the driver seeded `seed` at an EVSE of `power_type` (OCPI) and power."""
    rng = random.Random(seed)
    span, kw = _span_kw(profile, power_type, max_electric_power_w)
    target = round(rng.uniform(*span.energy_kwh), 1)
    soc = round(rng.uniform(*span.start_soc_percent), 1)
    idle = round(rng.uniform(*span.idle_after_full_min) * 60)
    charging = math.ceil(target / kw * HOUR)
    return Visit(target, soc, float(min(MAX_STAY_S, charging + idle)), float(idle))


def busy_share(profile: ActivityProfile, power_type: str, max_electric_power_w: int | None, at: float) -> float:
    """The share of time such an EVSE is occupied in the steady state of the network's local hour at
    `at` (simulated POSIX seconds): one place, drivers who find it taken go away (Erlang's loss formula
    with one server: ρ / (1 + ρ), ρ = arrivals per second × mean stay)."""
    span, kw = _span_kw(profile, power_type, max_electric_power_w)
    mean_stay = sum(span.energy_kwh) / 2 / kw * HOUR + sum(span.idle_after_full_min) / 2 * 60
    rho = _rate_at_local(profile, _local(profile, at)) / HOUR * min(MAX_STAY_S, mean_stay)
    return rho / (1 + rho)


def midway(visit: Visit, elapsed_s: float) -> Visit:
    """What is left of `visit` `elapsed_s` after it began: the energy still wanted (charging is the
    first part of the stay, at an even pace) and the rest of the stay, at least a minute of each."""
    charging_s = visit.duration_s - visit.idle_after_full_s
    charged = min(1.0, elapsed_s / charging_s) if charging_s > 0 else 1.0
    left = max(60.0, visit.duration_s - elapsed_s)
    return Visit(
        target_kwh=max(0.1, round(visit.target_kwh * (1 - charged), 1)),
        soc_percent=visit.soc_percent,
        duration_s=float(round(left)),
        idle_after_full_s=float(round(min(visit.idle_after_full_s, left))),
    )
