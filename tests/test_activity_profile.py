"""Background activity profiles (app/network/activity_profile.py): data for every template, hourly
rates integrated exactly, Poisson counts with the right mean, visits seeded and coherent."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from app.network import catalog
from app.network.activity_profile import (
    HOUR,
    MAX_STAY_S,
    PROFILES,
    Visit,
    busy_share,
    draw_count,
    expected_arrivals,
    load_profiles,
    midway,
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


def test_the_hours_are_the_network_s_local_hours() -> None:
    p = profile_for("small-urban-ac")
    assert p is not None
    chicago = replace(p, utc_offset_s=-6 * 3600)
    # 14:00-15:00 UTC is 08:00-09:00 in Chicago: its morning, not the middle of Amsterdam's afternoon.
    assert expected_arrivals(chicago, 1, 14 * HOUR, HOUR) == pytest.approx(p.arrivals_per_hour[8])
    assert expected_arrivals(chicago, 1, 2 * HOUR, HOUR) == pytest.approx(p.arrivals_per_hour[20])  # the day before
    # A half-hour zone: one UTC hour is half of two local hours.
    delhi = replace(p, utc_offset_s=5 * 3600 + 1800)
    assert expected_arrivals(delhi, 2, 3 * HOUR, HOUR) == pytest.approx(p.arrivals_per_hour[8] + p.arrivals_per_hour[9])
    assert expected_arrivals(delhi, 1, 0.0, 24 * HOUR) == pytest.approx(sum(p.arrivals_per_hour))
    for at in (0.0, 7 * HOUR, 18 * HOUR):
        assert busy_share(chicago, "AC_3_PHASE", 11_000, at + 6 * HOUR) == busy_share(p, "AC_3_PHASE", 11_000, at)


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


def test_busy_share_is_the_loss_system_s_steady_state() -> None:
    p = profile_for("stress-10k")
    assert p is not None
    # By hand: AC at 11 kW stays (10+30)/2/11 h charging + 30 min idle; 0.18 arrivals per hour.
    rho_ac = 0.18 * (20 / 11 + 0.5)
    assert busy_share(p, "AC_3_PHASE", 11_000, 0.0) == pytest.approx(rho_ac / (1 + rho_ac))
    rho_dc = 0.18 * (35 / 80 + 7.5 / 60)
    assert busy_share(p, "DC", 150_000, 0.0) == pytest.approx(rho_dc / (1 + rho_dc))
    assert busy_share(p, "AC_1_PHASE", 3_700, 0.0) > busy_share(p, "AC_3_PHASE", 11_000, 0.0)  # slower: longer
    urban = profile_for("small-urban-ac")
    assert urban is not None
    assert busy_share(urban, "AC_3_PHASE", 11_000, 18 * HOUR) > 5 * busy_share(urban, "AC_3_PHASE", 11_000, 2 * HOUR)
    assert busy_share(replace(p, arrivals_per_hour=[0.0] * 24), "DC", None, 0.0) == 0.0

    # Independently: one EVSE simulated for 40,000 hours, drivers who find it taken going away.
    rng, t, busy_until, busy_time, seed = random.Random(3), 0.0, 0.0, 0.0, 0
    while t < 40_000 * HOUR:
        t += rng.expovariate(0.18 / HOUR)
        if t >= busy_until:
            seed += 1
            stay = plan_visit(seed, p, "AC_3_PHASE", 11_000).duration_s
            busy_until, busy_time = t + stay, busy_time + stay
    assert busy_time / t == pytest.approx(busy_share(p, "AC_3_PHASE", 11_000, 0.0), abs=0.02)


def test_midway_leaves_the_rest_of_the_stay() -> None:
    visit = Visit(target_kwh=20.0, soc_percent=30.0, duration_s=9000.0, idle_after_full_s=1800.0)
    assert midway(visit, 0.0) == visit
    half = midway(visit, 3600.0)  # half of the 7,200 s of charging
    assert half == Visit(target_kwh=10.0, soc_percent=30.0, duration_s=5400.0, idle_after_full_s=1800.0)
    full = midway(visit, 8000.0)  # full, idling
    assert full == Visit(target_kwh=0.1, soc_percent=30.0, duration_s=1000.0, idle_after_full_s=1000.0)
    assert midway(visit, 9000.0).duration_s == 60.0  # about to leave: still a minute


def test_ticks_are_bounded_in_real_time() -> None:
    assert tick_seconds(1) == TICK_REAL_MAX_S
    assert tick_seconds(10_000) == TICK_REAL_MIN_S
    assert tick_seconds(60) == pytest.approx(5.0)
