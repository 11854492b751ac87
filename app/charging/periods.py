"""CdrChargingPeriods from meter samples: one period per stretch in which the same price components
apply and the vehicle is either charging or parking (OCPI 2.2.1 mod_cdrs "ChargingPeriod": a new period
at every moment relevant to the cost).

Between samples, energy is interpolated linearly (kWh-threshold crossings are placed there, rounded up to
the microsecond); power and current are the last sample's values until the next sample. A stretch is
charging when energy flows or the sample's power is above 0, unless the sample says whether the vehicle
requests power. Volumes are differences of cumulative totals kept to 12 decimals, so costs follow the meter
rather than 4-decimal hours; restrictions see the energy before a period rounded to 4 decimals, exactly what
`price_periods` sums from these volumes, so both choose the same price components for every period.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from app.charging.ocpi_values import PricingInputError, ocpi_datetime, q4, q12, seconds_between
from app.charging.tariff_model import DIMENSIONS, PeriodState, Tariff, to_decimal

_KW = Decimal(1000)


@dataclass(frozen=True)
class MeterSample:
    at: datetime  # timezone-aware
    energy_wh: Decimal  # energy imported since the session started (>= 0, never decreases)
    power_w: Decimal  # active power import at `at` (0 = car not drawing: parking once it stays 0)
    # Optional extras (additions to the lead's interface, both default to "not known"):
    current_a: Decimal | None = None  # current summed over phases, for min/max_current restrictions
    # Whether the vehicle requests power (OCPP 1.6 SuspendedEV / 2.0.1 chargingState say it does not).
    # None: inferred from the meter (energy flowing or power > 0 = charging). PARKING_TIME is time the
    # vehicle does not request power (2.2.1 errata), so SuspendedEVSE is charging time, not parking.
    ev_requesting_power: bool | None = None


@dataclass(frozen=True)
class _Segment:
    """The stretch between two consecutive meter readings (or the session's start/end)."""

    start: datetime
    end: datetime
    energy_start_wh: Decimal
    energy_end_wh: Decimal
    charging: bool
    power_kw: Decimal
    current_a: Decimal | None

    def energy_at(self, moment: datetime) -> Decimal:
        if moment >= self.end or self.energy_end_wh == self.energy_start_wh:
            return self.energy_end_wh if moment >= self.end else self.energy_start_wh
        share = seconds_between(self.start, moment) / seconds_between(self.start, self.end)
        return self.energy_start_wh + (self.energy_end_wh - self.energy_start_wh) * share


@dataclass(frozen=True)
class _Atom:
    start: datetime
    end: datetime
    segment: _Segment
    key: tuple[Any, ...]  # charging flag + the element chosen per dimension: equal keys merge


def build_periods(
    tariff: Tariff, samples: Sequence[MeterSample], *, start: datetime, end: datetime, zone: ZoneInfo
) -> list[dict[str, Any]]:
    checked = _checked_samples(samples, start, end)
    segments = _segments(checked, start, end)
    if not segments:  # a session of zero length
        energy = q4(checked[-1].energy_wh / _KW) if checked else Decimal(0)
        return [_period_json(start, [("ENERGY", energy), ("TIME", Decimal(0))])]
    cuts = {s.start for s in segments}
    cuts |= set(_local_time_cuts(tariff, start, end, zone))
    cuts |= {start + timedelta(seconds=d) for e in tariff.elements for d in e.restrictions.durations()}
    thresholds = {k for e in tariff.elements for k in e.restrictions.kwh_thresholds()}
    cuts |= set(_energy_cuts(segments, thresholds))
    bounds = [*sorted(c for c in cuts if start <= c < end), end]
    starts = [s.start for s in segments]
    atoms = []
    for a, b in pairwise(bounds):
        segment = segments[bisect_right(starts, a) - 1]
        atoms.append(_Atom(a, b, segment, _key(tariff, segment, a, start, zone)))
    return _merge(atoms)


def _checked_samples(samples: Sequence[MeterSample], start: datetime, end: datetime) -> list[MeterSample]:
    out: list[MeterSample] = []
    for i, s in enumerate(samples):
        where = f"samples[{i}]"
        if not isinstance(s, MeterSample):
            raise PricingInputError(f"{where}: expected a MeterSample, got {type(s).__name__}")
        if not isinstance(s.at, datetime) or s.at.tzinfo is None or s.at.utcoffset() is None:
            raise PricingInputError(f"{where}.at: expected a timezone-aware datetime")
        if not start <= s.at <= end:
            raise PricingInputError(f"{where}.at: {s.at.isoformat()} is outside the session")
        energy = to_decimal(s.energy_wh, f"{where}.energy_wh", PricingInputError)
        power = to_decimal(s.power_w, f"{where}.power_w", PricingInputError)
        current = None if s.current_a is None else to_decimal(s.current_a, f"{where}.current_a", PricingInputError)
        if energy < 0 or power < 0 or (current is not None and current < 0):
            raise PricingInputError(f"{where}: energy, power and current must not be negative")
        if out and s.at < out[-1].at:
            raise PricingInputError(f"{where}.at: samples must be in time order")
        if out and energy < out[-1].energy_wh:
            raise PricingInputError(f"{where}.energy_wh: the energy register went down")
        out.append(MeterSample(s.at, energy, power, current, s.ev_requesting_power))
    return out


def _segments(samples: list[MeterSample], start: datetime, end: datetime) -> list[_Segment]:
    times = [s.at for s in samples]
    bounds = sorted({start, end, *(t for t in times if start < t < end)})

    def last_at_or_before(moment: datetime) -> MeterSample | None:
        i = bisect_right(times, moment)
        return samples[i - 1] if i else None

    segments = []
    for a, b in pairwise(bounds):
        # Before the first reading, that reading's power is the best estimate (held backwards).
        ref = last_at_or_before(a) or (samples[0] if samples else None)
        at_end = last_at_or_before(b)
        energy_start = Decimal(0) if a == start else ref.energy_wh if ref else Decimal(0)
        energy_end = at_end.energy_wh if at_end else Decimal(0)
        power = ref.power_w if ref else Decimal(0)
        if ref is not None and ref.ev_requesting_power is not None:
            charging = ref.ev_requesting_power
        else:
            charging = energy_end > energy_start or power > 0
        current = None if ref is None or ref.current_a is None else q4(ref.current_a)
        segments.append(_Segment(a, b, energy_start, energy_end, charging, q4(power / _KW), current))
    return segments


def _local_time_cuts(tariff: Tariff, start: datetime, end: datetime, zone: ZoneInfo) -> Iterable[datetime]:
    """Every instant at which a local time of day named in the tariff (and local midnight) is reached,
    including both occurrences of a repeated hour, and every UTC-offset change (a skipped time of day is
    reached at the jump)."""
    times = {time(0)} | {t for e in tariff.elements for t in e.restrictions.times_of_day()}
    first = start.astimezone(zone).date() - timedelta(days=1)
    days = [first + timedelta(days=n) for n in range((end.astimezone(zone).date() - first).days + 2)]
    for day in days:
        for t in times:
            for fold in (0, 1):
                yield datetime.combine(day, t, tzinfo=zone).replace(fold=fold).astimezone(UTC)
        yield from _offset_change(day, zone)


def _offset_change(day: date, zone: ZoneInfo) -> Iterable[datetime]:
    low = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    high = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    after = high.astimezone(zone).utcoffset()
    if low.astimezone(zone).utcoffset() == after:
        return
    while high - low > timedelta(seconds=1):  # offsets change on whole seconds
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    yield high


def _energy_cuts(segments: list[_Segment], thresholds_kwh: set[Decimal]) -> Iterable[datetime]:
    """When the energy charged reaches each min_kwh / max_kwh (interpolated, rounded up to 1 µs)."""
    for threshold in thresholds_kwh:
        wh = threshold * _KW
        for s in segments:
            if s.energy_start_wh < wh <= s.energy_end_wh:
                span_us = int(seconds_between(s.start, s.end) * 1_000_000)
                share = (wh - s.energy_start_wh) / (s.energy_end_wh - s.energy_start_wh)
                yield s.start + timedelta(microseconds=math.ceil(share * span_us))
                break


def _state(segment: _Segment, moment: datetime, start: datetime, zone: ZoneInfo) -> PeriodState:
    current = None if segment.current_a is None else (segment.current_a, segment.current_a)
    return PeriodState(
        local=moment.astimezone(zone),
        duration_s=seconds_between(start, moment),
        energy_kwh=q4(q12(segment.energy_at(moment) / _KW)),
        power_kw=(segment.power_kw, segment.power_kw),
        current_a=current,
        reservation=None,
    )


def _key(tariff: Tariff, segment: _Segment, moment: datetime, start: datetime, zone: ZoneInfo) -> tuple[Any, ...]:
    state = _state(segment, moment, start, zone)
    chosen = tariff.select(state)
    return (segment.charging, *(None if chosen[dim] is None else chosen[dim][0] for dim in DIMENSIONS))


def _merge(atoms: list[_Atom]) -> list[dict[str, Any]]:
    groups: list[list[_Atom]] = []
    for atom in atoms:
        if groups and groups[-1][-1].key == atom.key:
            groups[-1].append(atom)
        else:
            groups.append([atom])
    periods = []
    energy_before = Decimal(0)
    seconds = {True: Decimal(0), False: Decimal(0)}  # charging, parking: cumulative, exact
    for group in groups:
        first, last = group[0], group[-1]
        charging = first.segment.charging
        energy_after = q12(last.segment.energy_at(last.end) / _KW)
        hours_before = q12(seconds[charging] / 3600)
        seconds[charging] += sum((seconds_between(a.start, a.end) for a in group), Decimal(0))
        dims: list[tuple[str, Decimal]] = []
        energy = energy_after - energy_before
        if charging or energy > 0:
            dims.append(("ENERGY", energy))
        dims.append(("TIME" if charging else "PARKING_TIME", q12(seconds[charging] / 3600) - hours_before))
        powers = [a.segment.power_kw for a in group]
        dims += [("MIN_POWER", min(powers)), ("MAX_POWER", max(powers))]
        currents = [a.segment.current_a for a in group]
        if None not in currents:
            dims += [("MIN_CURRENT", min(currents)), ("MAX_CURRENT", max(currents))]  # type: ignore[type-var]
        periods.append(_period_json(first.start, dims))
        energy_before = energy_after
    return periods


def _period_json(moment: datetime, dims: list[tuple[str, Decimal]]) -> dict[str, Any]:
    return {"start_date_time": ocpi_datetime(moment), "dimensions": [{"type": t, "volume": v} for t, v in dims]}
