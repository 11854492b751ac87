"""The OCPI 2.2.1 pricer (app.charging.pricing): restrictions, step_size, FLAT, VAT, min/max price,
local time (midnight wrap, DST), periods built from meter samples, and bad input.

Expected amounts come from the spec's worked examples (mod_tariffs / mod_cdrs, release-2.2.1-bugfixes)
where there is one, else from arithmetic written out next to the assertion.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.charging.pricing import (
    MeterSample,
    PricedCdr,
    PricingInputError,
    TariffError,
    price_cdr,
    price_periods,
)

AMS = "Europe/Amsterdam"
D = Decimal


def pc(kind: str, price: float, vat: float | None = None, step: int = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "price": price, "step_size": step}
    if vat is not None:
        out["vat"] = vat
    return out


def el(*components: dict[str, Any], **restrictions: Any) -> dict[str, Any]:
    return {"price_components": list(components), **({"restrictions": restrictions} if restrictions else {})}


def tariff(*elements: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"country_code": "NL", "party_id": "CPL", "id": "T1", "currency": "EUR", "elements": list(elements), **extra}


def local(text: str, zone: str = AMS) -> datetime:
    """A local wall-clock time as UTC (so that adding a timedelta adds real time, also across DST)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def period(start: datetime, **dims: float) -> dict[str, Any]:
    return {"start_date_time": start, "dimensions": [{"type": k, "volume": v} for k, v in dims.items()]}


def charge(start: datetime, stretches: list[tuple[float, float]], end: datetime | None = None) -> list[MeterSample]:
    """Samples only where the power changes: stretches of (minutes, kW) at constant power, then 0 W (parked)
    until `end`. Sparse on purpose: every split inside a stretch must come from the pricer."""
    samples, at, wh = [], start, D(0)
    for minutes, kw in stretches:
        samples.append(MeterSample(at, wh, D(str(kw)) * 1000))
        wh += D(str(kw)) * 1000 * D(str(minutes)) / 60
        at += timedelta(minutes=minutes)
    samples.append(MeterSample(at, wh, D(0)))
    if end is not None and end > at:
        samples.append(MeterSample(end, wh, D(0)))
    return samples


def costs(cdr: PricedCdr) -> tuple[Decimal, Decimal | None]:
    return cdr.total_cost.excl_vat, cdr.total_cost.incl_vat


def dims(cdr: PricedCdr) -> list[tuple[str, dict[str, float]]]:
    return [(p["start_date_time"], {d["type"]: d["volume"] for d in p["dimensions"]}) for p in cdr.charging_periods]


# ---- the spec's worked examples -------------------------------------------------------------------

WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]
COMPLEX = tariff(
    el(pc("FLAT", 2.50, 15.0)),
    el(pc("TIME", 1.00, 20.0, 900), max_current=32.0),
    el(pc("TIME", 2.00, 20.0, 600), min_current=32.0, day_of_week=WEEKDAYS),
    el(pc("TIME", 1.25, 20.0, 600), min_current=32.0, day_of_week=["SATURDAY", "SUNDAY"]),
    el(pc("PARKING_TIME", 5.0, 10.0, 300), start_time="09:00", end_time="18:00", day_of_week=WEEKDAYS),
    el(pc("PARKING_TIME", 6.0, 10.0, 300), start_time="10:00", end_time="17:00", day_of_week=["SATURDAY"]),
)


def test_complex_tariff_monday_morning() -> None:
    """Monday 09:30, 165 min at 16 A, then 42 min parked: 9.00 / 10.30; parking 42 → 45 min (step 300 s of
    the last time-based component), charging time not rounded because parking follows."""
    start = local("2026-11-30T09:30")
    end = start + timedelta(minutes=165 + 42)
    priced = price_periods(
        COMPLEX,
        [
            period(start, TIME=2.75, MIN_CURRENT=16, MAX_CURRENT=16),
            period(start + timedelta(minutes=165), PARKING_TIME=0.7, MIN_CURRENT=0, MAX_CURRENT=0),
        ],
        start=start,
        end=end,
        time_zone=AMS,
    )
    assert costs(priced) == (D("9.00"), D("10.30"))
    assert priced.total_fixed_cost.excl_vat == D("2.5") and priced.total_fixed_cost.incl_vat == D("2.875")
    assert priced.total_time_cost.incl_vat == D("3.30")
    assert priced.total_parking_cost.excl_vat == D("3.75") and priced.total_parking_cost.incl_vat == D("4.125")
    assert priced.total_time == D("3.45") and priced.total_parking_time == D("0.7")


def test_complex_tariff_saturday_afternoon_differs_from_the_spec_arithmetic() -> None:
    """Saturday 13:30, 114 min at 43 A, then 71 min parked. The spec's table prices the 114 minutes at
    1.20/h (2.28) although its own tariff and text say 1.25/h; 114 min × 1.25/h = 2.375, so the total is
    2.50 + 2.375 + 7.50 = 12.375 excl. (spec: 12.28) and 2.875 + 2.85 + 8.25 = 13.975 incl. (spec: 13.861)."""
    start = local("2026-12-05T13:30")
    priced = price_periods(
        COMPLEX,
        [
            period(start, TIME=1.9, MIN_CURRENT=43, MAX_CURRENT=43),
            period(start + timedelta(minutes=114), PARKING_TIME=D(71) / 60, MIN_CURRENT=0, MAX_CURRENT=0),
        ],
        start=start,
        end=start + timedelta(minutes=185),
        time_zone=AMS,
    )
    assert priced.total_time_cost.excl_vat == D("2.375")
    assert priced.total_parking_cost.excl_vat == D("7.50")  # 71 → 75 minutes at 6.00/h
    assert costs(priced) == (D("12.375"), D("13.975"))


STEP_TARIFF = tariff(
    el(pc("TIME", 1.20, step=1800), pc("PARKING_TIME", 1.00, step=900), start_time="00:00", end_time="17:00"),
    el(pc("TIME", 2.40, step=900), pc("PARKING_TIME", 1.00, step=900), start_time="17:00", end_time="20:00"),
    el(pc("TIME", 2.40, step=900), start_time="20:00", end_time="00:00"),
)


def test_step_size_switching_element_1() -> None:
    """16:55 charge 10 min, park 2 min: 5 min × 1.20 + 5 min × 2.40 + parking 2 → 15 min × 1.00 = 0.55.
    Built from meter samples, so the 17:00 split comes from the pricer."""
    start = local("2026-01-13T16:55")
    priced = price_cdr(
        STEP_TARIFF,
        charge(start, [(10, 11)], start + timedelta(minutes=12)),
        start=start,
        end=start + timedelta(minutes=12),
        time_zone=AMS,
    )
    assert [(t, sorted(d)) for t, d in dims(priced)] == [
        ("2026-01-13T15:55:00Z", ["ENERGY", "MAX_POWER", "MIN_POWER", "TIME"]),
        ("2026-01-13T16:00:00Z", ["ENERGY", "MAX_POWER", "MIN_POWER", "TIME"]),
        ("2026-01-13T16:05:00Z", ["MAX_POWER", "MIN_POWER", "PARKING_TIME"]),
    ]
    assert priced.total_time_cost.excl_vat == D("0.30")
    assert priced.total_parking_cost.excl_vat == D("0.25")
    assert costs(priced) == (D("0.55"), D("0.55"))  # no `vat` on the components: no VAT applies


def test_step_size_switching_element_2() -> None:
    """16:35 charge 35 min, leave: 35 → 45 min with the last component's 900 s step; 25 min × 1.20 +
    20 min × 2.40 = 1.30."""
    start = local("2026-01-13T16:35")
    priced = price_cdr(
        STEP_TARIFF, charge(start, [(35, 11)]), start=start, end=start + timedelta(minutes=35), time_zone=AMS
    )
    assert costs(priced) == (D("1.30"), D("1.30"))
    assert priced.total_parking_cost is None


def test_step_size_switching_to_free_parking() -> None:
    """19:40 charge 12 min, park 20 min; parking is free after 20:00: 8 billable min → 15 min.
    0.48 + 0.25 = 0.73."""
    start = local("2026-01-13T19:40")
    end = start + timedelta(minutes=32)
    priced = price_cdr(STEP_TARIFF, charge(start, [(12, 22)], end), start=start, end=end, time_zone=AMS)
    assert priced.total_time_cost.excl_vat == D("0.48")
    assert priced.total_parking_cost.excl_vat == D("0.25")
    assert costs(priced) == (D("0.73"), D("0.73"))
    assert priced.total_parking_time == D("0.3333")  # all 20 minutes are parking, billed or not


def test_step_size_energy_total_not_per_element() -> None:
    """4.3 kWh at 0.20 before 17:00 + 1.1 kWh at 0.27 after, step 500 Wh: 5.4 → 5.5 kWh in total, the extra
    0.1 kWh at the last component: 0.86 + 1.2 × 0.27 = 1.184 (not 1.5 kWh after 17:00)."""
    t = tariff(el(pc("ENERGY", 0.20, step=500), end_time="17:00"), el(pc("ENERGY", 0.27, step=500)))
    start = local("2026-01-13T16:00")
    priced = price_periods(
        t,
        [period(start, ENERGY=4.3), period(local("2026-01-13T17:00"), ENERGY=1.1)],
        start=start,
        end=local("2026-01-13T18:00"),
        time_zone=AMS,
    )
    assert priced.total_energy_cost.excl_vat == D("1.184")
    assert priced.total_energy == D("5.4")


def test_step_size_time_total_and_parking_only_when_both() -> None:
    """6 min at 5/h before 17:00 and 22 min at 7/h after, step 10 min: 28 → 30 min, 24 min after 17:00:
    0.50 + 2.80 = 3.30. With parking as well only the parking total is rounded: 21 min charging at 1/h
    stays 21 min, 16 min parking at 2/h → 20 min."""
    t = tariff(el(pc("TIME", 5, step=600), end_time="17:00"), el(pc("TIME", 7, step=600)))
    start = local("2026-01-13T16:54")
    priced = price_cdr(t, charge(start, [(28, 11)]), start=start, end=start + timedelta(minutes=28), time_zone=AMS)
    assert costs(priced) == (D("3.30"), D("3.30"))

    both = tariff(el(pc("TIME", 1, step=600), pc("PARKING_TIME", 2, step=600)))
    end = start + timedelta(minutes=37)
    priced = price_cdr(both, charge(start, [(21, 11)], end), start=start, end=end, time_zone=AMS)
    assert priced.total_time_cost.excl_vat == D("0.35")  # 21/60
    assert priced.total_parking_cost.excl_vat == D("0.6667")  # 20/60 × 2


def test_step_size_does_not_round_up_an_exact_multiple() -> None:
    """10 minutes is 0.166666666667 h as a meter-derived volume; at step 600 s it is billed as 10 minutes."""
    t = tariff(el(pc("TIME", 6, step=600)))
    start = local("2026-01-13T10:00")
    priced = price_cdr(t, charge(start, [(10, 11)]), start=start, end=start + timedelta(minutes=10), time_zone=AMS)
    assert costs(priced) == (D("1.00"), D("1.00"))


@pytest.mark.parametrize(("step", "billed"), [(1, D("0.029")), (25, D("0.0313")), (500, D("0.125"))])
def test_step_size_energy_in_wh(step: int, billed: Decimal) -> None:
    """115.2 Wh at 0.25/kWh: step 1 → 116 Wh, step 25 → 125 Wh, step 500 → 500 Wh (PriceComponent note)."""
    start = local("2026-01-13T10:00")
    priced = price_periods(
        tariff(el(pc("ENERGY", 0.25, step=step))),
        [period(start, ENERGY=0.1152)],
        start=start,
        end=start + timedelta(hours=1),
        time_zone=AMS,
    )
    assert priced.total_energy_cost.excl_vat == billed  # 0.03125 → 0.0313: 4 decimals, half up


def test_max_power_restriction_from_meter_samples() -> None:
    """1 kWh at 6 kW (0.20), 40 kWh at 48 kW (0.50, the fallback), 0.5 kWh at 4 kW (0.20): 20.30."""
    t = tariff(
        el(pc("ENERGY", 0.20, 20.0), max_power=16.0),
        el(pc("ENERGY", 0.35, 20.0), max_power=32.0),
        el(pc("ENERGY", 0.50, 20.0)),
    )
    start = local("2026-03-02T10:00")
    samples = charge(start, [(10, 6), (50, 48), (7.5, 4)])
    priced = price_cdr(t, samples, start=start, end=samples[-1].at, time_zone=AMS)
    assert [d["ENERGY"] for _, d in dims(priced)] == [1.0, 40.0, 0.5]
    assert [(d["MIN_POWER"], d["MAX_POWER"]) for _, d in dims(priced)] == [(6.0, 6.0), (48.0, 48.0), (4.0, 4.0)]
    assert costs(priced) == (D("20.30"), D("24.36"))


def test_max_duration_restriction() -> None:
    """First 30 minutes free, then 0.25/kWh until 60 minutes: 5 kWh in 30 min + 1.2 kWh in 10 min = 0.30."""
    t = tariff(
        el(pc("ENERGY", 0, 20.0), max_duration=1800),
        el(pc("ENERGY", 0.25, 20.0), max_duration=3600),
        el(pc("ENERGY", 0.40, 20.0)),
    )
    start = local("2026-03-02T10:00")
    priced = price_cdr(
        t, charge(start, [(30, 10), (10, 7.2)]), start=start, end=start + timedelta(minutes=40), time_zone=AMS
    )
    assert [(at, d["ENERGY"]) for at, d in dims(priced)] == [
        ("2026-03-02T09:00:00Z", 5.0),
        ("2026-03-02T09:30:00Z", 1.2),
    ]
    assert costs(priced) == (D("0.30"), D("0.36"))
    # A steady 9 kW for 70 minutes: split at 30 and 60 minutes although no sample is there.
    steady = price_cdr(t, charge(start, [(70, 9)]), start=start, end=start + timedelta(minutes=70), time_zone=AMS)
    assert [d["ENERGY"] for _, d in dims(steady)] == [4.5, 4.5, 1.5]
    assert costs(steady)[0] == D("4.5") * D("0.25") + D("1.5") * D("0.40")


def test_reservation_examples() -> None:
    """Reservation elements price only RESERVATION_TIME periods; an expired reservation (no charging
    period follows) uses RESERVATION_EXPIRES elements first."""
    fee_and_time = tariff(
        el(pc("FLAT", 2.0, 20.0), pc("TIME", 5.0, 20.0, 300), reservation="RESERVATION"),
        el(pc("FLAT", 0.5, 20.0), pc("ENERGY", 0.25, 10.0)),
    )
    start = local("2026-03-02T10:00")
    used = [period(start, RESERVATION_TIME=D(13) / 60), period(start + timedelta(minutes=13), ENERGY=20, TIME=1)]
    priced = price_periods(fee_and_time, used, start=start, end=start + timedelta(minutes=73), time_zone=AMS)
    assert costs(priced) == (D("8.75"), D("10.00"))  # 2.00 + 13 → 15 min × 5.00 + 0.50 + 5.00
    assert priced.total_reservation_cost.excl_vat == D("3.25")
    assert priced.total_fixed_cost.excl_vat == D("0.5")  # reservation fees are not "fixed cost"

    expire_time = tariff(
        el(pc("TIME", 6.0, 20.0, 600), reservation="RESERVATION_EXPIRES"),
        el(pc("TIME", 3.0, 20.0, 600), reservation="RESERVATION"),
        el(pc("FLAT", 0.5, 20.0), pc("ENERGY", 0.25, 10.0)),
    )
    used = [period(start, RESERVATION_TIME=D(22) / 60), period(start + timedelta(minutes=22), ENERGY=20, TIME=1)]
    priced = price_periods(expire_time, used, start=start, end=start + timedelta(minutes=82), time_zone=AMS)
    assert costs(priced) == (D("7.00"), D("7.90"))  # 22 → 30 min × 3.00 + 0.50 + 5.00
    expired = price_periods(
        expire_time,
        [period(start, RESERVATION_TIME=1.5)],
        start=start,
        end=start + timedelta(minutes=90),
        time_zone=AMS,
    )
    assert costs(expired) == (D("9.00"), D("10.80"))
    # The note under ReservationRestrictionType: the RESERVATION_EXPIRES element wins wherever it is listed.
    reordered = tariff(*reversed(expire_time["elements"]))
    expired = price_periods(
        reordered, [period(start, RESERVATION_TIME=1.5)], start=start, end=start + timedelta(minutes=90), time_zone=AMS
    )
    assert costs(expired) == (D("9.00"), D("10.80"))


def test_parking_fee_and_start_fee() -> None:
    """20 kWh then 40 min parked (billed per 15 min → 45): 0.50 + 5.00 + 1.50 = 7.00 / 7.90."""
    t = tariff(el(pc("FLAT", 0.5, 20.0), pc("ENERGY", 0.25, 10.0), pc("PARKING_TIME", 2.0, 20.0, 900)))
    start = local("2026-03-02T10:00")
    end = start + timedelta(minutes=160)
    priced = price_cdr(t, charge(start, [(120, 10)], end), start=start, end=end, time_zone=AMS)
    assert costs(priced) == (D("7.00"), D("7.90"))
    assert priced.total_parking_time == D("0.6667")


@pytest.mark.parametrize(("kwh", "expected"), [(50, (D(10), D(11))), (30, (D("8.00"), D("8.85")))])
def test_max_price(kwh: int, expected: tuple[Decimal, Decimal]) -> None:
    t = tariff(
        el(pc("FLAT", 0.5, 20.0), pc("ENERGY", 0.25, 10.0)),
        max_price={"excl_vat": 10, "incl_vat": 11},
        end_date_time="2019-06-30T23:59:59Z",
    )
    start = local("2019-06-01T10:00")
    priced = price_periods(t, [period(start, ENERGY=kwh)], start=start, end=start + timedelta(hours=3), time_zone=AMS)
    assert costs(priced) == expected
    assert priced.total_energy_cost.excl_vat == D("0.25") * kwh  # parts are not clamped, only the total


def test_min_price_clamps_excl_and_incl_independently() -> None:
    """1.10 excl. at 0 % VAT is above min_price.excl_vat 1.00 but below min_price.incl_vat 1.30."""
    t = tariff(el(pc("FLAT", 1.10, 0.0)), min_price={"excl_vat": 1.00, "incl_vat": 1.30})
    start = local("2026-03-02T10:00")
    priced = price_periods(t, [period(start, TIME=1)], start=start, end=start + timedelta(hours=1), time_zone=AMS)
    assert costs(priced) == (D("1.10"), D("1.30"))


def test_alt_url_example_is_not_rounded_to_cents() -> None:
    """20.45 kWh billed per 100 Wh = 20.5 kWh: 5.125 excl. The spec shows cents (5.13 / 5.64, total
    5.63 / 6.24); OCPI leaves money rounding to law and contracts, so we keep 4 decimals."""
    t = tariff(el(pc("FLAT", 0.5, 20.0), pc("ENERGY", 0.25, 10.0, 100)), type="PROFILE_CHEAP")
    start = local("2026-03-02T10:00")
    priced = price_periods(t, [period(start, ENERGY=20.45)], start=start, end=start + timedelta(hours=2), time_zone=AMS)
    assert priced.total_energy_cost.excl_vat == D("5.125")
    assert costs(priced) == (D("5.625"), D("6.2375"))


# ---- restrictions, one by one ---------------------------------------------------------------------


def _two_rates(**restrictions: Any) -> dict[str, Any]:
    return tariff(el(pc("TIME", 10), **restrictions), el(pc("TIME", 1)))


def test_time_of_day_window_wrapping_midnight() -> None:
    """22:00–06:00 costs 10/h: 21:00–23:00 is 1 h at 1 + 1 h at 10; 05:00–07:00 is 1 h at 10 + 1 h at 1."""
    t = _two_rates(start_time="22:00", end_time="06:00")
    for begin in ("2026-03-02T21:00", "2026-03-03T05:00"):
        start = local(begin)
        priced = price_cdr(t, charge(start, [(120, 11)]), start=start, end=start + timedelta(hours=2), time_zone=AMS)
        assert costs(priced) == (D(11), D(11))
        assert len(priced.charging_periods) == 2


def test_time_of_day_end_of_day_and_open_ends() -> None:
    """end_time 00:00 means the end of the day; a window with only start_time runs to midnight."""
    for restrictions in ({"start_time": "23:00", "end_time": "00:00"}, {"start_time": "23:00"}):
        start = local("2026-03-02T22:30")
        priced = price_cdr(
            _two_rates(**restrictions),
            charge(start, [(120, 11)]),
            start=start,
            end=start + timedelta(hours=2),
            time_zone=AMS,
        )
        assert costs(priced)[0] == D("0.5") + D(10) + D("0.5")


def test_start_and_end_date_are_local_and_end_exclusive() -> None:
    t = _two_rates(start_date="2026-03-03", end_date="2026-03-04")
    start = local("2026-03-02T23:00")
    priced = price_cdr(t, charge(start, [(26 * 60, 3)]), start=start, end=start + timedelta(hours=26), time_zone=AMS)
    # 1 h on the 2nd, 24 h on the 3rd, 1 h on the 4th (local dates, Amsterdam is UTC+1 in March before DST)
    assert costs(priced)[0] == D(1) + D(240) + D(1)
    assert [at for at, _ in dims(priced)] == ["2026-03-02T22:00:00Z", "2026-03-02T23:00:00Z", "2026-03-03T23:00:00Z"]


def test_day_of_week_uses_the_local_day() -> None:
    """Sunday 23:30 → Monday 00:30 local; in UTC both hours are on Sunday."""
    t = _two_rates(day_of_week=["SUNDAY"])
    start = local("2026-03-01T23:30")
    priced = price_cdr(t, charge(start, [(60, 11)]), start=start, end=start + timedelta(hours=1), time_zone=AMS)
    assert costs(priced)[0] == D(5) + D("0.5")


def test_min_and_max_kwh_split_at_the_interpolated_crossing() -> None:
    """0.30/kWh below 10 kWh, 0.50 from 10 kWh: 15 kWh at a steady 9 kW crosses 10 kWh at 66:40."""
    t = tariff(el(pc("ENERGY", 0.30), max_kwh=10), el(pc("ENERGY", 0.50), min_kwh=10))
    start = local("2026-03-02T10:00")
    samples = [MeterSample(start, D(0), D(9000)), MeterSample(start + timedelta(minutes=100), D(15000), D(9000))]
    priced = price_cdr(t, samples, start=start, end=start + timedelta(minutes=100), time_zone=AMS)
    assert dims(priced)[1][0] == "2026-03-02T10:06:40Z"
    assert [d["ENERGY"] for _, d in dims(priced)] == [10.0, 5.0]
    assert costs(priced)[0] == D("5.5")


def test_min_power_and_current_restrictions() -> None:
    """Fast charging (≥ 22 kW) costs more per kWh; current limits apply only when the meter reports current."""
    t = tariff(el(pc("ENERGY", 0.60), min_power=22), el(pc("ENERGY", 0.40)))
    start = local("2026-03-02T10:00")
    priced = price_cdr(
        t, charge(start, [(30, 50), (30, 11)]), start=start, end=start + timedelta(hours=1), time_zone=AMS
    )
    assert costs(priced)[0] == D(25) * D("0.60") + D("5.5") * D("0.40")

    # From CDR periods: min_power holds only if the period's MIN_POWER reached it, max_power only if its
    # MAX_POWER stayed below it; without power dimensions neither can hold.
    for observed, price in (
        ({"MIN_POWER": 5, "MAX_POWER": 30}, D("0.40")),
        ({"MIN_POWER": 22}, D("0.60")),
        ({}, D("0.40")),
    ):
        one = price_periods(
            t, [period(start, ENERGY=1, **observed)], start=start, end=start + timedelta(hours=1), time_zone=AMS
        )
        assert costs(one)[0] == price
    capped = tariff(el(pc("ENERGY", 0.20), max_power=16), el(pc("ENERGY", 0.50)))
    for observed, price in (({"MIN_POWER": 5, "MAX_POWER": 30}, D("0.50")), ({"MAX_POWER": 15}, D("0.20"))):
        one = price_periods(
            capped, [period(start, ENERGY=1, **observed)], start=start, end=start + timedelta(hours=1), time_zone=AMS
        )
        assert costs(one)[0] == price

    by_current = tariff(el(pc("TIME", 3), min_current=32), el(pc("TIME", 1)))
    samples = [
        MeterSample(start, D(0), D(22000), current_a=D(96)),
        MeterSample(start + timedelta(minutes=30), D(11000), D(7000), current_a=D(30)),
        MeterSample(start + timedelta(hours=1), D(14500), D(0)),
    ]
    priced = price_cdr(by_current, samples, start=start, end=start + timedelta(hours=1), time_zone=AMS)
    assert costs(priced)[0] == D("1.5") + D("0.5")
    without_current = [MeterSample(s.at, s.energy_wh, s.power_w) for s in samples]
    priced = price_cdr(by_current, without_current, start=start, end=start + timedelta(hours=1), time_zone=AMS)
    assert costs(priced)[0] == D(1)  # unknown current cannot satisfy min_current


def test_flat_is_charged_once_from_the_first_period_it_applies() -> None:
    t = tariff(el(pc("FLAT", 2.0), start_time="17:00"), el(pc("FLAT", 0.5), pc("TIME", 0)))
    start = local("2026-03-02T16:00")
    priced = price_cdr(t, charge(start, [(120, 11)]), start=start, end=start + timedelta(hours=2), time_zone=AMS)
    assert priced.total_fixed_cost.excl_vat == D("0.5")
    assert costs(priced)[0] == D("0.5")


# ---- local time across DST changes (Europe/Amsterdam) ---------------------------------------------


def test_dst_spring_forward_skips_the_night_hour() -> None:
    """29 March 2026: 02:00 → 03:00. A 01:00–03:00 night rate lasts one real hour that night."""
    t = _two_rates(start_time="01:00", end_time="03:00")
    start = local("2026-03-29T00:00")  # 23:00 UTC
    end = start + timedelta(hours=4)
    priced = price_cdr(t, charge(start, [(240, 11)]), start=start, end=end, time_zone=AMS)
    assert costs(priced)[0] == D(10) + D(3)
    assert [at for at, _ in dims(priced)] == ["2026-03-28T23:00:00Z", "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"]
    assert priced.total_time == D(4)


def test_dst_spring_forward_window_inside_the_skipped_hour_ends_at_the_jump() -> None:
    """A 02:00–02:30 window never happens on 29 March 2026; 01:30–02:30 lasts 30 real minutes."""
    t = _two_rates(start_time="01:30", end_time="02:30")
    start = local("2026-03-29T01:00")
    priced = price_cdr(t, charge(start, [(120, 11)]), start=start, end=start + timedelta(hours=2), time_zone=AMS)
    assert costs(priced)[0] == D(5) + D("1.5")


def test_dst_fall_back_repeats_the_hour() -> None:
    """25 October 2026: 03:00 → 02:00. A 02:00–03:00 rate applies twice, two real hours."""
    t = _two_rates(start_time="02:00", end_time="03:00")
    start = datetime.fromisoformat("2026-10-24T23:00+00:00")  # 01:00 CEST
    priced = price_cdr(t, charge(start, [(240, 11)]), start=start, end=start + timedelta(hours=4), time_zone=AMS)
    assert costs(priced)[0] == D(1) + D(20) + D(1)


def test_dst_fall_back_second_occurrence_of_a_time_of_day() -> None:
    """25 October 2026, window 02:30–04:00: in at 02:30 CEST, out at the jump back to 02:00 CET, in again at
    02:30 CET, out at 04:00 CET: 2 of the 3 real hours (00:00–03:00 UTC) at 10."""
    t = _two_rates(start_time="02:30", end_time="04:00")
    start = datetime.fromisoformat("2026-10-25T00:00+00:00")  # 02:00 CEST
    priced = price_cdr(t, charge(start, [(180, 11)]), start=start, end=start + timedelta(hours=3), time_zone=AMS)
    assert [at for at, _ in dims(priced)] == [
        "2026-10-25T00:00:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:00:00Z",
        "2026-10-25T01:30:00Z",
    ]
    assert costs(priced)[0] == D("0.5") + D(5) + D("0.5") + D(15)


# ---- VAT, periods from meter samples, output -------------------------------------------------------


def test_vat_per_component_and_omitted_vat() -> None:
    """0.50 start at 20 % + 20 kWh at 0.25 and 10 %: 5.50 / 6.10. No `vat`: no VAT applies (incl = excl);
    vat 0.0 gives the same amount."""
    start = local("2026-03-02T10:00")
    periods = [period(start, ENERGY=20, TIME=1)]
    with_vat = tariff(el(pc("FLAT", 0.5, 20.0), pc("ENERGY", 0.25, 10.0)))
    assert costs(price_periods(with_vat, periods, start=start, end=start + timedelta(hours=1), time_zone=AMS)) == (
        D("5.50"),
        D("6.10"),
    )
    for vat in (None, 0.0):
        t = tariff(el(pc("FLAT", 0.5, vat), pc("ENERGY", 0.25, vat)))
        priced = price_periods(t, periods, start=start, end=start + timedelta(hours=1), time_zone=AMS)
        assert costs(priced) == (D("5.50"), D("5.50"))


def test_suspended_evse_is_charging_time_and_a_car_not_drawing_is_parking() -> None:
    """PARKING_TIME is time the vehicle does not request power (2.2.1 errata): a pause the EVSE imposes
    (ev_requesting_power=True at 0 W) stays TIME; without that flag 0 W is parking."""
    t = tariff(el(pc("TIME", 1), pc("PARKING_TIME", 5)))
    start = local("2026-03-02T10:00")
    paused = [
        MeterSample(start, D(0), D(11000)),
        MeterSample(start + timedelta(minutes=30), D(5500), D(0), None, True),
        MeterSample(start + timedelta(minutes=60), D(5500), D(11000)),
        MeterSample(start + timedelta(minutes=90), D(11000), D(0)),
    ]
    priced = price_cdr(t, paused, start=start, end=start + timedelta(minutes=90), time_zone=AMS)
    assert priced.total_parking_time == 0 and costs(priced)[0] == D("1.5")
    inferred = [MeterSample(s.at, s.energy_wh, s.power_w) for s in paused]
    priced = price_cdr(t, inferred, start=start, end=start + timedelta(minutes=90), time_zone=AMS)
    assert priced.total_parking_time == D("0.5") and costs(priced)[0] == D(1) + D("2.5")
    assert [sorted(d)[-1] for _, d in dims(priced)] == ["TIME", "PARKING_TIME", "TIME"]


def test_periods_add_up_to_the_totals_and_output_is_deterministic() -> None:
    t = tariff(
        el(pc("ENERGY", 0.31, 21.0), pc("TIME", 0.7, 21.0, 60), pc("PARKING_TIME", 2, 21.0, 300)),
        el(pc("ENERGY", 0.2), max_kwh=3),
    )
    start = datetime.fromisoformat("2026-03-02T09:00:07.250+00:00")
    samples = [MeterSample(start + timedelta(seconds=37 * i), D(i * 113) / 7, D(11100 - i * 13)) for i in range(200)]
    end = samples[-1].at + timedelta(minutes=17)
    samples.append(MeterSample(end, samples[-1].energy_wh, D(0)))
    first = price_cdr(t, samples, start=start, end=end, time_zone=AMS)
    assert first == price_cdr(t, samples, start=start, end=end, time_zone=AMS)
    volumes = dims(first)
    assert D(str(sum(d.get("ENERGY", 0) for _, d in volumes))).quantize(D("0.0001")) == first.total_energy
    assert first.total_energy == (samples[-1].energy_wh / 1000).quantize(D("0.0001"))
    parking = D(str(sum(d.get("PARKING_TIME", 0) for _, d in volumes))).quantize(D("0.0001"))
    assert parking == first.total_parking_time
    assert all(p["tariff_id"] == "T1" for p in first.charging_periods)
    fields = json.loads(json.dumps(first.ocpi_fields()))
    assert set(fields) >= {"charging_periods", "total_cost", "total_energy", "total_time", "total_parking_time"}
    assert fields["total_cost"] == {
        "excl_vat": float(first.total_cost.excl_vat),
        "incl_vat": float(first.total_cost.incl_vat),
    }
    assert all(len(str(d["volume"]).split(".")[-1]) <= 4 for p in first.charging_periods for d in p["dimensions"])


def test_no_samples_and_zero_length_sessions() -> None:
    t = tariff(el(pc("FLAT", 1), pc("PARKING_TIME", 2)))
    start = local("2026-03-02T10:00")
    idle = price_cdr(t, [], start=start, end=start + timedelta(minutes=30), time_zone=AMS)
    assert idle.total_parking_time == D("0.5") and costs(idle)[0] == D(2)
    instant = price_cdr(t, [], start=start, end=start, time_zone=AMS)
    assert costs(instant)[0] == D(1) and len(instant.charging_periods) == 1


# ---- bad input -------------------------------------------------------------------------------------

GOOD = tariff(el(pc("ENERGY", 0.25, 21.0)))


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_without("currency"), "currency"),
        ({**GOOD, "currency": "euro"}, "currency"),
        (_without("id"), "tariff.id"),
        ({**GOOD, "elements": []}, "elements"),
        ({**GOOD, "type": "CHEAP"}, "TariffType"),
        (tariff({"price_components": []}), "price_components"),
        (tariff(el(pc("KWH", 0.25))), "type"),
        (tariff(el(pc("ENERGY", -1))), "negative"),
        (tariff(el(pc("ENERGY", "a lot"))), "number"),
        (tariff(el(pc("ENERGY", float("nan")))), "finite"),
        (tariff(el(pc("ENERGY", 0.25, vat=-5))), "vat"),
        (tariff(el(pc("ENERGY", 0.25, step=1.5))), "step_size"),  # type: ignore[arg-type]
        (tariff(el(pc("ENERGY", 0.25, step=-1))), "step_size"),
        (tariff(el(pc("ENERGY", 0.25), pc("ENERGY", 0.3))), "same type"),
        (tariff(el(pc("ENERGY", 0.25), start_time="7:00")), "HH:MM"),
        (tariff(el(pc("ENERGY", 0.25), start_time="24:00")), "HH:MM"),
        (tariff(el(pc("ENERGY", 0.25), start_time="10:00", end_time="10:00")), "equals"),
        (tariff(el(pc("ENERGY", 0.25), start_date="2026-02-30")), "calendar"),
        (tariff(el(pc("ENERGY", 0.25), start_date="2026-03-02", end_date="2026-03-02")), "start_date"),
        (tariff(el(pc("ENERGY", 0.25), min_kwh=20, max_kwh=10)), "min_kwh"),
        (tariff(el(pc("ENERGY", 0.25), min_duration=1.5)), "whole seconds"),
        (tariff(el(pc("ENERGY", 0.25), day_of_week="MONDAY")), "day_of_week"),
        (tariff(el(pc("ENERGY", 0.25), day_of_week=["MON"])), "day_of_week"),
        (tariff(el(pc("ENERGY", 0.25), reservation="YES")), "reservation"),
        (tariff(el(pc("ENERGY", 0.25), reservation="RESERVATION")), "FLAT and TIME"),
        ({**GOOD, "min_price": {"excl_vat": 5}, "max_price": {"excl_vat": 1}}, "min_price"),
        ({**GOOD, "min_price": 5}, "min_price"),
        ({**GOOD, "end_date_time": "2026-01-01T00:00:00Z"}, "no longer valid"),
        ({**GOOD, "start_date_time": "2027-01-01T00:00:00Z"}, "not valid yet"),
        ({**GOOD, "end_date_time": "soon"}, "RFC 3339"),
        ("not a tariff", "JSON object"),
    ],
)
def test_bad_tariffs_raise_tariff_error(bad: Any, message: str) -> None:
    start = local("2026-03-02T10:00")
    with pytest.raises(TariffError, match=message):
        price_cdr(bad, [], start=start, end=start + timedelta(hours=1), time_zone=AMS)
    with pytest.raises(TariffError, match=message):
        price_periods(bad, [period(start, ENERGY=1)], start=start, end=start + timedelta(hours=1), time_zone=AMS)


START = local("2026-03-02T10:00")
LATER = START + timedelta(hours=1)


@pytest.mark.parametrize(
    ("samples", "kwargs", "message"),
    [
        ([], {"time_zone": "Mars/Olympus"}, "time_zone"),
        ([], {"start": datetime(2026, 3, 2, 10)}, "timezone-aware"),
        ([], {"end": START - timedelta(seconds=1)}, "before start"),
        ([MeterSample(LATER + timedelta(seconds=1), D(0), D(0))], {}, "outside the session"),
        ([MeterSample(LATER, D(0), D(0)), MeterSample(START, D(0), D(0))], {}, "time order"),
        ([MeterSample(START, D(5), D(0)), MeterSample(LATER, D(4), D(0))], {}, "went down"),
        ([MeterSample(START, D(-1), D(0))], {}, "negative"),
        ([MeterSample(START, "lots", D(0))], {}, "energy_wh"),  # type: ignore[arg-type]
        ([{"at": START}], {}, "MeterSample"),
    ],
)
def test_bad_meter_data_raises_pricing_input_error(samples: list[Any], kwargs: dict[str, Any], message: str) -> None:
    args = {"start": START, "end": LATER, "time_zone": AMS, **kwargs}
    with pytest.raises(PricingInputError, match=message):
        price_cdr(GOOD, samples, **args)


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        ([], "at least one"),
        ([period(START, KWH=1)], "not a CDR dimension"),
        ([period(START, ENERGY=-1)], "negative"),
        ([{"start_date_time": "yesterday", "dimensions": [{"type": "ENERGY", "volume": 1}]}], "RFC 3339"),
        ([period(LATER + timedelta(minutes=1), ENERGY=1)], "outside the session"),
        ([period(START + timedelta(minutes=5), ENERGY=1), period(START, ENERGY=1)], "before the period"),
        ([{"start_date_time": START, "dimensions": []}], "dimensions"),
    ],
)
def test_bad_periods_raise_pricing_input_error(periods: list[Any], message: str) -> None:
    with pytest.raises(PricingInputError, match=message):
        price_periods(GOOD, periods, start=START, end=LATER, time_zone=AMS)


# ---- cpolab's own tariffs -------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["small-urban-ac", "highway-dc", "mixed-depot", "city-mixed-large"])
def test_cpolab_generated_tariffs_price_a_session(template: str) -> None:
    """Every tariff the generator serves (as the OCPI JSON cpolab stores) is accepted and priced."""
    from app.network.blueprint import resolve_blueprint
    from app.network.generator import GENERATOR_VERSION, NetworkSpec, generate_tariffs
    from app.ocpi.static import tariff_static

    spec = NetworkSpec(
        template=template,
        seed=7,
        country_code="NL",
        party_id="CPL",
        name_prefix="p",
        generator_version=GENERATOR_VERSION,
    )
    blueprint = resolve_blueprint(template, "NL")
    assert blueprint is not None
    start = local("2026-03-02T21:00")
    end = start + timedelta(hours=5)  # past 22:00 and past 4 hours: crosses the templates' restrictions
    for plan in generate_tariffs(spec, blueprint):
        served = json.loads(json.dumps(tariff_static(plan, spec), default=str))
        priced = price_cdr(served, charge(start, [(90, 11)], end), start=start, end=end, time_zone=AMS)
        assert priced.total_cost.excl_vat > 0
        assert priced.total_time == 5
        assert priced.total_parking_time == D("3.5")


# ---- property: extra readings on the same path change nothing -------------------------------------


def _random_tariff(rng: random.Random) -> dict[str, Any]:
    elements = []
    for _ in range(rng.randint(1, 5)):
        kinds = rng.sample(["FLAT", "ENERGY", "TIME", "PARKING_TIME"], rng.randint(1, 3))
        components = [
            pc(k, rng.randint(0, 500) / 100, rng.choice([None, 0.0, 21.0]), rng.choice([0, 1, 300, 900])) for k in kinds
        ]
        restrictions: dict[str, Any] = {}
        if rng.random() < 0.4:
            restrictions["start_time"] = f"{rng.randint(0, 23):02d}:30"
            restrictions["end_time"] = f"{rng.randint(0, 23):02d}:00"
        if rng.random() < 0.3:
            restrictions["max_kwh"] = rng.randint(1, 20)
        if rng.random() < 0.3:
            restrictions["min_power"] = rng.randint(1, 30)
        if rng.random() < 0.3:
            restrictions["max_duration"] = rng.randint(600, 7200)
        elements.append(el(*components, **restrictions))
    return tariff(*elements)


def _on_the_same_path(rng: random.Random, samples: list[MeterSample]) -> list[MeterSample]:
    """The samples plus readings in between: energy on the straight line, the same (held) power."""
    out = []
    for a, b in pairwise(samples):
        out.append(a)
        span_us = (b.at - a.at) // timedelta(microseconds=1)
        for share_us in sorted({rng.randint(1, span_us - 1) for _ in range(rng.randint(0, 3))} if span_us > 1 else ()):
            energy = a.energy_wh + (b.energy_wh - a.energy_wh) * D(share_us) / D(span_us)
            out.append(MeterSample(a.at + timedelta(microseconds=share_us), energy, a.power_w))
    return [*out, samples[-1]]


def test_extra_readings_on_the_same_path_change_nothing() -> None:
    """Seeded random tariffs and sessions (around the spring DST change): splitting is the pricer's job, so
    readings added on the same energy path and power must not change the cost."""
    rng = random.Random(9)
    for _ in range(60):
        start = local("2026-03-28T20:00") + timedelta(minutes=rng.randint(0, 3000))
        stretches = [(rng.randint(1, 90), rng.choice([0, 3.7, 11, 22, 50, 150])) for _ in range(rng.randint(1, 8))]
        samples = charge(start, stretches)
        end = samples[-1].at + timedelta(minutes=rng.randint(0, 60))
        t = _random_tariff(rng)
        plain = price_cdr(t, samples, start=start, end=end, time_zone=AMS)
        dense = price_cdr(t, _on_the_same_path(rng, samples), start=start, end=end, time_zone=AMS)
        assert abs(plain.total_cost.excl_vat - dense.total_cost.excl_vat) <= D("0.0001")
        assert abs(plain.total_cost.incl_vat - dense.total_cost.incl_vat) <= D("0.0001")
        assert plain.total_energy == dense.total_energy and plain.total_parking_time == dense.total_parking_time
