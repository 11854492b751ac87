"""Simulated electric vehicles: who plugs in (a seeded draw from a small population) and how much power
the car takes at each state of charge. Pure and deterministic: no clock, no I/O, no global random.

Each tick the power is the minimum of what the EVSE offers (its amperage × voltage × phases, capped by
its rated power and an optional charging limit) and what the car accepts at its SoC (onboard charger on
AC, the DC peak × a piecewise-linear SoC curve on DC). Energy is metered on the grid side; the battery
gets it minus conversion losses. The car stops drawing at its target SoC or at a target energy: the
session then parks (power 0) until the driver unplugs or stops it.

Figures of the archetypes are rounded public manufacturer data and published charging-curve
measurements (as summarised in shared/reference/ocpp-sim.md §10: Model 3 LR ~250 kW only at 10-18 %
SoC, ~50 kW at 80 %; Ioniq 5 ~177 kW flat 7-45 %, ~50 kW at 86 %); weights are a rough European mix.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, replace

AC_VOLTAGE = 230.0  # line-to-neutral, Europe
STEP_S = 10.0  # integration step (simulated seconds): the DC curve changes little in 10 s
AC_EFFICIENCY = 0.90  # grid → battery (onboard charger losses)
DC_EFFICIENCY = 0.95
# AC: the battery management system tapers the last few percent.
AC_CURVE: tuple[tuple[float, float], ...] = ((0.0, 1.0), (92.0, 1.0), (100.0, 0.25))
POWER_TYPES = {"AC_1_PHASE": 1, "AC_3_PHASE": 3, "DC": 0}


@dataclass(frozen=True)
class Supply:
    """What an EVSE can deliver (the OCPI connector's electrical fields)."""

    power_type: str  # AC_1_PHASE | AC_3_PHASE | DC
    max_voltage: float  # V; line-to-neutral on AC
    max_amperage: float  # A (per phase on AC)
    max_power_w: float  # W

    def __post_init__(self) -> None:
        if self.power_type not in POWER_TYPES:
            raise ValueError(f"power_type must be one of {sorted(POWER_TYPES)}, not {self.power_type!r}")
        if min(self.max_voltage, self.max_amperage, self.max_power_w) <= 0:
            raise ValueError("max_voltage, max_amperage and max_power_w must be > 0")

    @property
    def dc(self) -> bool:
        return self.power_type == "DC"

    @property
    def phases(self) -> int:
        return POWER_TYPES[self.power_type]


@dataclass(frozen=True)
class EvModel:
    name: str
    battery_kwh: float  # usable
    ac_kw: float  # onboard charger
    ac_phases: int  # 1 or 3
    dc_peak_kw: float  # 0: no DC inlet
    pack_voltage: tuple[float, float]  # at 0 % and 100 % SoC
    dc_curve: tuple[tuple[float, float], ...]  # (SoC %, fraction of dc_peak_kw), SoC ascending
    weight: int  # relative share in the population


POPULATION: tuple[EvModel, ...] = (
    # Renault Zoe R135 (ZE50): 52 kWh, 22 kW 3-phase AC, 46-50 kW CCS.
    EvModel("compact-zoe", 52.0, 22.0, 3, 50.0, (330.0, 400.0), ((0, 0.92), (55, 1.0), (80, 0.6), (100, 0.12)), 15),
    # VW ID.3 Pro (58 kWh): 11 kW AC, 120 kW DC, 400 V class.
    EvModel(
        "hatch-id3", 58.0, 11.0, 3, 120.0, (340.0, 405.0), ((0, 0.8), (10, 1.0), (35, 1.0), (80, 0.45), (100, 0.05)), 20
    ),
    # Tesla Model 3 Long Range: 75 kWh, 11 kW AC, 250 kW peak only at 10-18 %.
    EvModel(
        "sedan-model3",
        75.0,
        11.0,
        3,
        250.0,
        (330.0, 400.0),
        ((0, 0.7), (10, 1.0), (18, 1.0), (28, 0.56), (40, 0.56), (80, 0.2), (90, 0.144), (100, 0.03)),
        20,
    ),
    # Hyundai Ioniq 5 (58 kWh, 800 V): 11 kW AC, ~177 kW flat 7-45 %, ~50 kW at 86 %.
    EvModel(
        "cuv-ioniq5", 58.0, 11.0, 3, 177.0, (600.0, 740.0), ((0, 0.9), (7, 1.0), (45, 1.0), (86, 0.28), (100, 0.05)), 15
    ),
    # Nissan Leaf 40 kWh: 6.6 kW single-phase AC, 50 kW CHAdeMO.
    EvModel("leaf-40", 40.0, 6.6, 1, 50.0, (300.0, 390.0), ((0, 1.0), (55, 1.0), (80, 0.5), (100, 0.1)), 10),
    # Large SUV (Audi e-tron 55 / Mercedes EQE SUV class): ~86 kWh, 11 kW AC, 150 kW DC.
    EvModel(
        "suv-large",
        86.0,
        11.0,
        3,
        150.0,
        (350.0, 440.0),
        ((0, 0.85), (30, 1.0), (50, 0.85), (80, 0.45), (100, 0.05)),
        12,
    ),
    # Plug-in hybrid (e.g. Golf GTE / Outlander PHEV class): 12 kWh, 3.7 kW single-phase, no DC here.
    EvModel("phev", 12.0, 3.7, 1, 0.0, (300.0, 360.0), ((0, 0.0), (100, 0.0)), 8),
)


@dataclass(frozen=True)
class Ev:
    """One car in one session: its model, where it starts and where it stops drawing."""

    model: EvModel
    soc: float  # % now
    target_soc: float  # % at which it stops drawing
    target_wh: float | None  # grid-side energy after which it stops drawing (None: SoC only)
    delivered_wh: float = 0.0  # grid-side energy this session

    @property
    def done(self) -> bool:
        """The car no longer requests power (parking)."""
        return self.soc >= self.target_soc or (self.target_wh is not None and self.delivered_wh >= self.target_wh)


@dataclass(frozen=True)
class Flow:
    """The electrical state of a tick: P = V × I × phases (phases = 1 on DC)."""

    power_w: float
    voltage_v: float
    current_a: float
    phases: int


def session_seed(charger_seed: int, identity: str, transaction: int) -> int:
    """The seed of the `transaction`-th session of a charger: stable across processes and machines."""
    digest = hashlib.blake2b(f"ev\x00{charger_seed}\x00{identity}\x00{transaction}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def draw_ev(
    seed: int,
    supply: Supply,
    *,
    soc_percent: float | None = None,
    target_kwh: float | None = None,
) -> Ev:
    """The car of a session: a model able to charge on this supply (DC needs a DC inlet), a start SoC
    (AC 15-60 %, DC 10-40 %) and a target (DC ~80 %, AC 80, 90 or 100 %); overrides win."""
    rng = random.Random(seed)
    models = [m for m in POPULATION if m.dc_peak_kw > 0 or not supply.dc]
    model = rng.choices(models, weights=[m.weight for m in models])[0]
    if supply.dc:
        soc, target = rng.uniform(10, 40), rng.uniform(75, 85)
    else:
        soc, target = rng.uniform(15, 60), rng.choice((80.0, 90.0, 100.0, 100.0))
    if soc_percent is not None:
        soc = soc_percent
    if target_kwh is not None:  # the driver's energy goal replaces the SoC goal (still ≤ 100 %)
        target = 100.0
    return Ev(model, round(soc, 2), round(max(target, soc), 2), None if target_kwh is None else target_kwh * 1000)


def _curve(points: tuple[tuple[float, float], ...], soc: float) -> float:
    if soc <= points[0][0]:
        return points[0][1]
    for (s0, f0), (s1, f1) in itertools.pairwise(points):
        if soc <= s1:
            return f0 + (f1 - f0) * (soc - s0) / (s1 - s0)
    return points[-1][1]


def flow(ev: Ev, supply: Supply, limit_w: float | None = None) -> Flow:
    """Power, voltage and current now: min(EVSE offer, charging limit, what the car accepts)."""
    model = ev.model
    if supply.dc:
        low, high = model.pack_voltage
        voltage = low + (high - low) * min(ev.soc, 100.0) / 100
        offer = min(supply.max_power_w, supply.max_amperage * voltage)
        accepts = model.dc_peak_kw * 1000 * _curve(model.dc_curve, ev.soc)
        phases = 1
    else:
        voltage = supply.max_voltage
        phases = min(supply.phases, model.ac_phases)
        offer = min(supply.max_power_w, supply.max_amperage * voltage * phases)
        per_phase_a = model.ac_kw * 1000 / (AC_VOLTAGE * model.ac_phases)  # the onboard charger's current
        accepts = per_phase_a * voltage * phases * _curve(AC_CURVE, ev.soc)
    power = 0.0 if ev.done else max(0.0, min(offer, accepts, float("inf") if limit_w is None else limit_w))
    return Flow(power, voltage, power / (voltage * phases), phases)


def advance(ev: Ev, supply: Supply, seconds: float, limit_w: float | None = None) -> tuple[Ev, float | None]:
    """The car `seconds` later, and when (seconds from now) it stopped drawing if it did meanwhile.
    Integrated in steps of STEP_S at the power of each step's start; the last step is cut where the
    target is reached, so the register stops exactly at the target."""
    efficiency = DC_EFFICIENCY if supply.dc else AC_EFFICIENCY
    capacity_wh = ev.model.battery_kwh * 1000
    elapsed = 0.0
    while elapsed < seconds and not ev.done:
        step = min(STEP_S, seconds - elapsed)
        power = flow(ev, supply, limit_w).power_w
        if power <= 0:  # nothing flows (e.g. limit 0): the state cannot change in this span
            return ev, None
        # Grid energy until the nearer of the two targets, then cut the step there.
        soc_room_wh = (ev.target_soc - ev.soc) / 100 * capacity_wh / efficiency
        wh_room = soc_room_wh if ev.target_wh is None else ev.target_wh - ev.delivered_wh
        energy = power * step / 3600
        if energy >= min(soc_room_wh, wh_room):
            if soc_room_wh <= wh_room:  # the SoC target binds
                energy = soc_room_wh
                ev = replace(ev, delivered_wh=ev.delivered_wh + energy, soc=ev.target_soc)
            else:
                energy = wh_room
                soc = ev.soc + energy * efficiency / capacity_wh * 100
                ev = replace(ev, delivered_wh=ev.target_wh, soc=soc)  # type: ignore[arg-type]
            return ev, elapsed + energy * 3600 / power
        ev = replace(ev, delivered_wh=ev.delivered_wh + energy, soc=ev.soc + energy * efficiency / capacity_wh * 100)
        elapsed += step
    return ev, None
