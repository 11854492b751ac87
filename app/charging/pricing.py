"""Price a charging session with an OCPI 2.2.1 tariff, in Decimal, into the CDR's periods and totals.

`price_cdr` builds CdrChargingPeriods from meter samples (see `app.charging.periods`), then prices them
with `price_periods`, which also prices published CDR test vectors as they are.

Rounding (the spec is silent, OCPI `number` allows 4 decimals): every emitted number is rounded half-up
to 4 decimals. Money is never rounded to the currency's minor unit (the spec does not ask for it).
Each cost total is rounded once from its exact value; `total_cost` is the sum of the rounded totals,
then clamped by the tariff's `min_price` / `max_price` (excl. and incl. VAT independently).
A price component without `vat` has no VAT applicable (OCPI 2.2.1 PriceComponent.vat): its incl. VAT
amount equals its excl. VAT amount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.charging.costs import Bucket, CostSheet
from app.charging.ocpi_values import PricingInputError, ocpi_datetime, q4, seconds_between
from app.charging.periods import MeterSample, build_periods
from app.charging.tariff_model import (
    Money,
    PeriodState,
    TariffError,
    parse_tariff,
    to_decimal,
)

__all__ = [
    "MeterSample",
    "Price",
    "PricedCdr",
    "PricingInputError",
    "TariffError",
    "price_cdr",
    "price_periods",
]

CDR_DIMENSIONS = frozenset(
    {"ENERGY", "MAX_CURRENT", "MIN_CURRENT", "MAX_POWER", "MIN_POWER", "PARKING_TIME", "RESERVATION_TIME", "TIME"}
)
ADDITIVE_DIMENSIONS = frozenset({"ENERGY", "PARKING_TIME", "RESERVATION_TIME", "TIME"})


@dataclass(frozen=True)
class Price:
    excl_vat: Decimal
    incl_vat: Decimal | None

    def ocpi(self) -> dict[str, float]:
        out = {"excl_vat": float(q4(self.excl_vat))}
        if self.incl_vat is not None:
            out["incl_vat"] = float(q4(self.incl_vat))
        return out


@dataclass(frozen=True)
class PricedCdr:
    charging_periods: list[dict[str, Any]]
    total_energy: Decimal  # kWh
    total_time: Decimal  # hours, end - start
    total_parking_time: Decimal  # hours
    total_cost: Price
    total_fixed_cost: Price | None
    total_energy_cost: Price | None
    total_time_cost: Price | None
    total_parking_cost: Price | None
    total_reservation_cost: Price | None = None  # addition: reservation FLAT + TIME

    def ocpi_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "charging_periods": self.charging_periods,
            "total_cost": self.total_cost.ocpi(),
            "total_energy": float(self.total_energy),
            "total_time": float(self.total_time),
            "total_parking_time": float(self.total_parking_time),
        }
        for name in ("fixed", "energy", "time", "parking", "reservation"):
            price: Price | None = getattr(self, f"total_{name}_cost")
            if price is not None:
                out[f"total_{name}_cost"] = price.ocpi()
        return out


@dataclass(frozen=True)
class _Period:
    start: datetime
    volumes: dict[str, Decimal]


def price_periods(
    tariff: Mapping[str, Any],
    periods: Sequence[Mapping[str, Any]],
    *,
    start: datetime,
    end: datetime,
    time_zone: str,
) -> PricedCdr:
    """Price OCPI CdrChargingPeriods. Each period is priced with the tariff components that apply at its
    start (local time, session duration and energy before it; power/current from its MIN/MAX dimensions),
    so a period must not straddle a restriction boundary: the CDR rules require a new period there."""
    parsed_tariff = parse_tariff(tariff)
    zone = _zone(time_zone)
    _check_bounds(start, end)
    parsed_tariff.check_valid_at(start)
    parsed = [_parse_period(p, i, start, end) for i, p in enumerate(periods)]
    if not parsed:
        raise PricingInputError("charging_periods: a CDR has at least one charging period")
    for i in range(1, len(parsed)):
        if parsed[i].start < parsed[i - 1].start:
            raise PricingInputError(f"charging_periods[{i}]: starts before the period before it")
    # A reservation that no charging period follows has expired (or was never used).
    expired = all("RESERVATION_TIME" in p.volumes for p in parsed)
    sheet = CostSheet()
    energy_so_far = Decimal(0)
    for period in parsed:
        reservation = "RESERVATION_TIME" in period.volumes
        state = PeriodState(
            local=period.start.astimezone(zone),
            duration_s=seconds_between(start, period.start),
            energy_kwh=q4(energy_so_far),  # as periods.build_periods evaluates it
            power_kw=_observed_range(period.volumes, "POWER"),
            current_a=_observed_range(period.volumes, "CURRENT"),
            reservation=("RESERVATION_EXPIRES" if expired else "RESERVATION") if reservation else None,
        )
        selected = parsed_tariff.select(state)
        if selected["FLAT"]:
            sheet.flat(selected["FLAT"][1], reservation=reservation)
        if reservation:
            if selected["TIME"]:
                sheet.reservation_h(selected["TIME"][1], period.volumes["RESERVATION_TIME"])
            continue
        for dim, add in (("ENERGY", sheet.energy_kwh), ("TIME", sheet.time_h), ("PARKING_TIME", sheet.parking_h)):
            if selected[dim] and dim in period.volumes:
                add(selected[dim][1], period.volumes[dim])
        energy_so_far += period.volumes.get("ENERGY", Decimal(0))
    sheet.apply_step_sizes()
    buckets = [sheet.fixed, sheet.energy, sheet.time, sheet.parking, sheet.reservation]
    total = Price(
        excl_vat=sum((q4(b.excl_vat) for b in buckets), Decimal(0)),
        incl_vat=sum((q4(b.incl_vat) for b in buckets), Decimal(0)),
    )
    return PricedCdr(
        charging_periods=_periods_json(parsed, periods, parsed_tariff.id),
        total_energy=q4(sum((p.volumes.get("ENERGY", Decimal(0)) for p in parsed), Decimal(0))),
        total_time=q4(seconds_between(start, end) / 3600),
        total_parking_time=q4(sum((p.volumes.get("PARKING_TIME", Decimal(0)) for p in parsed), Decimal(0))),
        total_cost=_clamp(total, parsed_tariff.min_price, parsed_tariff.max_price),
        total_fixed_cost=_price(sheet.fixed),
        total_energy_cost=_price(sheet.energy),
        total_time_cost=_price(sheet.time),
        total_parking_cost=_price(sheet.parking),
        total_reservation_cost=_price(sheet.reservation),
    )


def price_cdr(
    tariff: Mapping[str, Any],
    samples: Sequence[MeterSample],
    *,
    start: datetime,
    end: datetime,
    time_zone: str,
) -> PricedCdr:
    """Charging periods from meter samples (split wherever the applicable price components or the
    charging/parking state change), priced with `price_periods`."""
    parsed_tariff = parse_tariff(tariff)
    zone = _zone(time_zone)
    _check_bounds(start, end)
    parsed_tariff.check_valid_at(start)
    periods = build_periods(parsed_tariff, samples, start=start, end=end, zone=zone)
    return price_periods(tariff, periods, start=start, end=end, time_zone=time_zone)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise PricingInputError(f"time_zone: not an IANA time zone: {name!r}") from None


def _check_bounds(start: datetime, end: datetime) -> None:
    for name, moment in (("start", start), ("end", end)):
        if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
            raise PricingInputError(f"{name}: expected a timezone-aware datetime, got {moment!r}")
    if end < start:
        raise PricingInputError(f"end ({end.isoformat()}) is before start ({start.isoformat()})")


def _parse_period(raw: Mapping[str, Any], index: int, start: datetime, end: datetime) -> _Period:
    where = f"charging_periods[{index}]"
    if not isinstance(raw, Mapping):
        raise PricingInputError(f"{where}: expected a CdrChargingPeriod object")
    moment = raw.get("start_date_time")
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            raise PricingInputError(f"{where}.start_date_time: not an RFC 3339 date-time: {moment!r}") from None
        if moment.tzinfo is None:  # OCPI: no designator = UTC
            moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise PricingInputError(f"{where}.start_date_time: missing or without time zone")
    if not start <= moment <= end:
        raise PricingInputError(f"{where}.start_date_time: {moment.isoformat()} is outside the session")
    dimensions = raw.get("dimensions")
    if not isinstance(dimensions, Sequence) or isinstance(dimensions, str) or not dimensions:
        raise PricingInputError(f"{where}.dimensions: expected a non-empty list")
    volumes: dict[str, Decimal] = {}
    for j, dim in enumerate(dimensions):
        kind = dim.get("type") if isinstance(dim, Mapping) else None
        if kind not in CDR_DIMENSIONS:
            raise PricingInputError(f"{where}.dimensions[{j}].type: not a CDR dimension: {kind!r}")
        if kind in volumes:
            raise PricingInputError(f"{where}.dimensions[{j}]: {kind} appears twice")
        volume = to_decimal(dim.get("volume"), f"{where}.dimensions[{j}].volume", PricingInputError)
        if volume < 0:
            raise PricingInputError(f"{where}.dimensions[{j}].volume: negative volumes are not priced")
        volumes[kind] = volume
    return _Period(moment, volumes)


def _observed_range(volumes: Mapping[str, Decimal], quantity: str) -> tuple[Decimal, Decimal] | None:
    low, high = volumes.get(f"MIN_{quantity}"), volumes.get(f"MAX_{quantity}")
    if low is None and high is None:
        return None
    return (low if low is not None else high, high if high is not None else low)  # type: ignore[return-value]


def _periods_json(parsed: list[_Period], raw: Sequence[Mapping[str, Any]], tariff_id: str) -> list[dict[str, Any]]:
    """The periods as OCPI JSON, volumes at 4 decimals. Additive volumes are rounded cumulatively, so
    each dimension's periods add up exactly to its rounded total."""
    out = []
    cumulative: dict[str, Decimal] = {}
    for period, source in zip(parsed, raw, strict=True):
        dims = []
        for kind in (d["type"] for d in source["dimensions"]):
            volume = period.volumes[kind]
            if kind in ADDITIVE_DIMENSIONS:
                before = cumulative.get(kind, Decimal(0))
                cumulative[kind] = before + volume
                volume = q4(cumulative[kind]) - q4(before)
            dims.append({"type": kind, "volume": float(q4(volume))})
        out.append({"start_date_time": ocpi_datetime(period.start), "dimensions": dims, "tariff_id": tariff_id})
    return out


def _price(bucket: Bucket) -> Price | None:
    return Price(q4(bucket.excl_vat), q4(bucket.incl_vat)) if bucket.used else None


def _clamp(total: Price, low: Money | None, high: Money | None) -> Price:
    excl, incl = total.excl_vat, total.incl_vat
    if low is not None:
        excl = max(excl, low.excl_vat)
        if incl is not None and low.incl_vat is not None:
            incl = max(incl, low.incl_vat)
    if high is not None:
        excl = min(excl, high.excl_vat)
        if incl is not None and high.incl_vat is not None:
            incl = min(incl, high.incl_vat)
    return Price(excl, incl)
