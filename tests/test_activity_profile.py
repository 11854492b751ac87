"""Background activity profiles (app/network/activity_profile.py): data for every template, hourly
rates integrated exactly, Poisson counts with the right mean, visits seeded and coherent."""

from __future__ import annotations

import random

import pytest

from app.network import catalog
from app.network.activity_profile import (
    HOUR,
    MAX_STAY_S,
    PROFILES,
    draw_count,
    expected_arrivals,
    load_profiles,
    plan_visit,
    profile_for,
)
from workflows.background import TICK_REAL_MAX_S, TICK_REAL_MIN_S, tick_seconds


def test_every_template_has_a_profile() -> None:
    assert {t.slug for t in catalog.list_templates()} <= set(PROFILES)
    assert profile_for("no-such-template") is None


def test_arrivals_integrate_the_hourly_rates() -> None:
    p = profile_for("small-urban-ac")
    assert p is not None
    day = expected_arrivals(p, 10, 0.0, 24 * HOUR)
    assert day == pytest.approx(10 * sum(p.arrivals_per_hour))
    # Half of 07:00 and half of 08:00 (UTC) on 4 EVSEs, from any day.
    half = expected_arrivals(p, 4, 3 * 86_400 + 7.5 * HOUR, HOUR)
    assert half == pytest.approx(4 * (p.arrivals_per_hour[7] + p.arrivals_per_hour[8]) / 2)
    assert expected_arrivals(p, 4, 0.0, 0.0) == 0.0


@pytest.mark.parametrize("mean", [0.2, 3.0, 250.0])
def test_poisson_counts_have_the_mean(mean: float) -> None:
    rng = random.Random(7)
    draws = [draw_count(rng, mean) for _ in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(mean, rel=0.05)
    assert min(draws) >= 0
    assert draw_count(rng, 0.0) == 0


def test_visits_are_seeded_and_follow_the_hardware() -> None:
    p = profile_for("highway-dc")
    assert p is not None
    assert plan_visit(42, p, "DC", 150_000) == plan_visit(42, p, "DC", 150_000)
    assert plan_visit(42, p, "DC", 150_000) != plan_visit(43, p, "DC", 150_000)
    for seed in range(200):
        dc = plan_visit(seed, p, "DC", 150_000)
        ac = plan_visit(seed, p, "AC_3_PHASE", 11_000)
        assert p.dc.energy_kwh[0] <= dc.target_kwh <= p.dc.energy_kwh[1]
        assert p.ac.energy_kwh[0] <= ac.target_kwh <= p.ac.energy_kwh[1]
        # The stay covers the charge at the power the EVSE (or the car) allows, then the idle time.
        assert dc.duration_s >= dc.target_kwh / min(p.dc.typical_kw, 150) * HOUR + dc.idle_after_full_s - 1
        assert ac.duration_s >= ac.target_kwh / min(p.ac.typical_kw, 11) * HOUR + ac.idle_after_full_s - 1
        assert 0 < dc.duration_s <= MAX_STAY_S and 0 < ac.duration_s <= MAX_STAY_S
    # A slow EVSE keeps the driver longer for the same wish.
    assert plan_visit(5, p, "AC_1_PHASE", 3_700).duration_s > plan_visit(5, p, "AC_3_PHASE", 11_000).duration_s


@pytest.mark.parametrize(
    "bad",
    [
        {"arrivals_per_hour": [0.1] * 23},
        {"arrivals_per_hour": [-0.1] + [0.1] * 23},
        {"ac": {"energy_kwh": [30, 6], "start_soc_percent": [10, 20], "typical_kw": 9, "idle_after_full_min": [0, 1]}},
        {"dc": {"energy_kwh": [10, 20], "start_soc_percent": [10, 20], "typical_kw": 0, "idle_after_full_min": [0, 1]}},
        {"extra": 1},
    ],
)
def test_a_bad_profile_is_refused_naming_the_template(bad: dict) -> None:
    span = {"energy_kwh": [5, 10], "start_soc_percent": [10, 20], "typical_kw": 9, "idle_after_full_min": [0, 1]}
    raw = {"arrivals_per_hour": [0.1] * 24, "ac": span, "dc": span, **bad}
    with pytest.raises(ValueError, match="broken"):
        load_profiles({"profiles": {"broken": raw}})


def test_ticks_are_bounded_in_real_time() -> None:
    assert tick_seconds(1) == TICK_REAL_MAX_S
    assert tick_seconds(10_000) == TICK_REAL_MIN_S
    assert tick_seconds(60) == pytest.approx(5.0)
