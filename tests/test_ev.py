"""EV physics (app/sim/ev.py): pure functions, no network."""

from __future__ import annotations

import dataclasses

import pytest

from app.sim.ev import POPULATION, Ev, EvModel, Supply, advance, draw_ev, flow, session_seed

AC22 = Supply("AC_3_PHASE", 230, 32, 22_080)
AC11 = Supply("AC_3_PHASE", 230, 16, 11_040)
AC1 = Supply("AC_1_PHASE", 230, 32, 7_360)
DC50 = Supply("DC", 920, 125, 50_000)
DC350 = Supply("DC", 920, 500, 350_000)
SUPERCHARGER = Supply("DC", 500, 760, 250_000)  # 400 V cars reach 250 kW only with ~750 A


def model(name: str) -> EvModel:
    return next(m for m in POPULATION if m.name == name)


def car(name: str, soc: float = 20, target: float = 100, target_wh: float | None = None) -> Ev:
    return Ev(model(name), soc, target, target_wh)


@pytest.mark.parametrize(
    ("name", "supply", "watts", "phases"),
    [
        ("hatch-id3", AC22, 11_000, 3),  # an 11 kW onboard charger on a 22 kW EVSE
        ("compact-zoe", AC22, 22_000, 3),  # a 22 kW car takes it all
        ("compact-zoe", AC11, 11_040, 3),  # ... but not more than the EVSE offers (16 A)
        ("compact-zoe", AC1, 7_333, 1),  # a 3-phase car on a 1-phase EVSE: one phase of its charger
        ("leaf-40", AC22, 6_600, 1),  # a 1-phase car on a 3-phase EVSE uses one phase
        ("phev", AC22, 3_700, 1),
    ],
)
def test_ac_power_is_the_minimum_of_car_and_evse(name: str, supply: Supply, watts: float, phases: int) -> None:
    f = flow(car(name, soc=30), supply)
    assert f.power_w == pytest.approx(watts, rel=0.01)
    assert f.phases == phases and f.voltage_v == 230
    assert f.power_w == pytest.approx(f.voltage_v * f.current_a * f.phases)
    assert f.current_a <= supply.max_amperage + 1e-9


def test_dc_curve_tapers_and_is_capped_by_the_evse() -> None:
    m3 = [flow(car("sedan-model3", soc=s), SUPERCHARGER).power_w for s in (15, 35, 80, 90, 99)]
    assert m3[0] == pytest.approx(250_000, rel=0.01)
    assert m3 == sorted(m3, reverse=True) and m3[-1] < 15_000
    assert m3[2] == pytest.approx(50_000, rel=0.05)  # ~50 kW at 80 % (published curve)
    # on a 500 A CCS charger the same car is current-limited at its ~340 V
    assert flow(car("sedan-model3", soc=15), DC350).power_w == pytest.approx(500 * 340.5, rel=0.01)
    on50 = flow(car("sedan-model3", soc=15), DC50)
    assert on50.power_w == pytest.approx(min(50_000, 125 * on50.voltage_v))
    assert on50.power_w == pytest.approx(on50.voltage_v * on50.current_a)
    assert on50.current_a <= 125 + 1e-9
    # the pack voltage rises with SoC; an 800 V car draws less current for the same power
    assert flow(car("cuv-ioniq5", soc=80), DC350).voltage_v > flow(car("cuv-ioniq5", soc=10), DC350).voltage_v
    assert flow(car("cuv-ioniq5", soc=20), DC350).voltage_v > 600


def test_a_limit_caps_power_and_zero_stops_it() -> None:
    assert flow(car("compact-zoe"), AC22, limit_w=5_000).power_w == 5_000
    ev, done = advance(car("compact-zoe"), AC22, 600, limit_w=0)
    assert done is None and ev.delivered_wh == 0


def test_the_car_stops_exactly_at_its_target_soc_and_energy_and_soc_never_decrease() -> None:
    ev = car("hatch-id3", soc=70, target=80)
    soc, wh = [ev.soc], [ev.delivered_wh]
    done_at = None
    t = 0.0
    while done_at is None and t < 10_000:
        ev, done = advance(ev, DC50, 60)
        soc.append(ev.soc)
        wh.append(ev.delivered_wh)
        done_at = None if done is None else t + done
        t += 60
    assert done_at is not None and ev.done and ev.soc == 80
    assert soc == sorted(soc) and wh == sorted(wh)
    # 10 % of 58 kWh at 95 % efficiency on the grid side
    assert ev.delivered_wh == pytest.approx(5_800 / 0.95)
    assert flow(ev, DC50).power_w == 0  # parking: no power once done
    again, done = advance(ev, DC50, 3_600)
    assert again == ev and done is None


def test_target_energy_stops_the_car_before_its_soc_target() -> None:
    ev, done = advance(car("compact-zoe", soc=20, target=100, target_wh=5_000), AC22, 4 * 3_600)
    assert done is not None and ev.done
    assert ev.delivered_wh == 5_000
    assert done == pytest.approx(5_000 / 22_000 * 3_600, rel=0.02)


def test_taper_slows_the_last_percent() -> None:
    """10→20 % of a Model 3 on 350 kW takes less time than 80→90 %."""

    def minutes(soc: float, target: float) -> float:
        _, done = advance(car("sedan-model3", soc=soc, target=target), DC350, 7_200)
        assert done is not None
        return done / 60

    assert minutes(10, 20) * 3 < minutes(80, 90)


def test_draws_are_deterministic_and_fit_the_supply() -> None:
    seeds = [session_seed(7, "CP-1", n) for n in range(200)]
    assert seeds == [session_seed(7, "CP-1", n) for n in range(200)]
    assert len(set(seeds)) == 200 and session_seed(8, "CP-1", 0) != seeds[0]
    ac = [draw_ev(s, AC22) for s in seeds]
    dc = [draw_ev(s, DC50) for s in seeds]
    assert ac == [draw_ev(s, AC22) for s in seeds]
    assert all(e.model.dc_peak_kw > 0 for e in dc)  # no PHEV without a DC inlet on a DC charger
    assert all(10 <= e.soc <= 40 and 75 <= e.target_soc <= 85 for e in dc)
    assert all(15 <= e.soc <= 60 and e.target_soc in (80, 90, 100) for e in ac)
    assert len({e.model.name for e in ac}) >= 5  # a population, not one car
    over = draw_ev(seeds[0], AC22, soc_percent=95, target_kwh=12.5)
    assert over.soc == 95 and over.target_wh == 12_500 and over.target_soc == 100


def test_a_car_already_past_its_target_does_not_draw() -> None:
    ev = dataclasses.replace(draw_ev(1, DC50, soc_percent=90), target_soc=80)
    assert ev.done and flow(ev, DC50).power_w == 0


@pytest.mark.parametrize(
    "fields",
    [("AC_2_PHASE", 230, 16, 1), ("DC", 0, 125, 50_000), ("AC_3_PHASE", 230, -1, 11_000)],
)
def test_bad_supply_is_refused(fields: tuple) -> None:
    with pytest.raises(ValueError):
        Supply(*fields)
