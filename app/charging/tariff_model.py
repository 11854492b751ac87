"""An OCPI 2.2.1 Tariff parsed into checked, immutable values, and which price component applies when.

Every number is a `Decimal` made from the JSON number's text (never through binary floats). A tariff
that cannot be applied raises `TariffError` naming the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

DIMENSIONS = ("FLAT", "ENERGY", "TIME", "PARKING_TIME")
TARIFF_TYPES = frozenset({"AD_HOC_PAYMENT", "PROFILE_CHEAP", "PROFILE_FAST", "PROFILE_GREEN", "REGULAR"})
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
RESERVATION_KINDS = frozenset({"RESERVATION", "RESERVATION_EXPIRES"})
# A reservation element may only price these (OCPI 2.2.1 TariffRestrictions.reservation).
RESERVATION_DIMENSIONS = frozenset({"FLAT", "TIME"})

_TIME_OF_DAY = re.compile(r"([0-1][0-9]|2[0-3]):[0-5][0-9]")
_DATE = re.compile(r"[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")
_CURRENCY = re.compile(r"[A-Z]{3}")
_DAY_MICROSECONDS = 24 * 3600 * 1_000_000
_RANGES = (("min_kwh", "max_kwh"), ("min_current", "max_current"), ("min_power", "max_power"))


class TariffError(ValueError):
    """The tariff cannot be applied (missing or malformed field, contradictory restriction, …)."""


def to_decimal(value: Any, where: str, error: type[ValueError] = TariffError) -> Decimal:
    """A JSON number (or numeric string / Decimal) as a finite Decimal; `where` names it in the error."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise error(f"{where}: expected a number, got {value!r}")
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise error(f"{where}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise error(f"{where}: expected a finite number, got {value!r}")
    return number


@dataclass(frozen=True)
class Money:
    """An OCPI Price as the tariff states it (min_price / max_price)."""

    excl_vat: Decimal
    incl_vat: Decimal | None


@dataclass(frozen=True)
class PriceComponent:
    type: str
    price: Decimal  # per unit (kWh, hour, or once for FLAT), excl. VAT
    vat: Decimal | None  # percent; None = no VAT applicable (OCPI 2.2.1 PriceComponent.vat)
    step_size: int  # Wh for ENERGY, seconds for TIME / PARKING_TIME; 0 = no rounding

    def incl_vat(self, amount: Decimal) -> Decimal:
        return amount if self.vat is None else amount * (1 + self.vat / 100)


@dataclass(frozen=True)
class PeriodState:
    """What restrictions look at, at the start of a charging period."""

    local: datetime  # wall-clock time in the location's zone
    duration_s: Decimal  # seconds since the session started
    energy_kwh: Decimal  # energy charged before this period
    power_kw: tuple[Decimal, Decimal] | None  # (min, max) during the period; None = unknown
    current_a: tuple[Decimal, Decimal] | None  # (min, max) summed over phases; None = unknown
    reservation: str | None  # None for charging/parking; RESERVATION or RESERVATION_EXPIRES (expired)


@dataclass(frozen=True)
class Restrictions:
    start_time: time | None = None
    end_time: time | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    day_of_week: frozenset[str] = frozenset()
    reservation: str | None = None

    def times_of_day(self) -> list[time]:
        return [t for t in (self.start_time, self.end_time) if t is not None]

    def durations(self) -> list[int]:
        return [d for d in (self.min_duration, self.max_duration) if d is not None]

    def kwh_thresholds(self) -> list[Decimal]:
        return [k for k in (self.min_kwh, self.max_kwh) if k is not None]

    def matches(self, state: PeriodState) -> bool:
        """All set restrictions hold (logical AND). Minimums are inclusive, maximums exclusive."""
        if self.reservation is None and state.reservation is not None:
            return False
        if self.reservation is not None and not _reservation_matches(self.reservation, state.reservation):
            return False
        return (
            self._time_of_day_matches(state.local)
            and _within(state.local.date(), self.start_date, self.end_date)
            and (not self.day_of_week or WEEKDAYS[state.local.weekday()] in self.day_of_week)
            and _within(state.energy_kwh, self.min_kwh, self.max_kwh)
            and _within(state.duration_s, self.min_duration, self.max_duration)
            and _range_matches(state.power_kw, self.min_power, self.max_power)
            and _range_matches(state.current_a, self.min_current, self.max_current)
        )

    def _time_of_day_matches(self, local: datetime) -> bool:
        if self.start_time is None and self.end_time is None:
            return True
        now = (local.hour * 3600 + local.minute * 60 + local.second) * 1_000_000 + local.microsecond
        begin = _microseconds(self.start_time) if self.start_time else 0
        # "To stop at end of the day use: 00:00" (OCPI 2.2.1 TariffRestrictions.end_time).
        end = _microseconds(self.end_time) if self.end_time and self.end_time != time(0) else _DAY_MICROSECONDS
        if begin < end:
            return begin <= now < end
        return now >= begin or now < end  # end before start: the window wraps past midnight


def _reservation_matches(kind: str, period: str | None) -> bool:
    if period is None:
        return False
    # An expired reservation is priced by both kinds of element (RESERVATION_EXPIRES ones first).
    return kind == "RESERVATION" or period == "RESERVATION_EXPIRES"


def _within(value: Any, low: Any, high: Any) -> bool:
    return (low is None or value >= low) and (high is None or value < high)


def _range_matches(observed: tuple[Decimal, Decimal] | None, low: Decimal | None, high: Decimal | None) -> bool:
    """min_* holds when the value never went below it in the period, max_* when it stayed under it.
    An unknown value (no measurement) cannot satisfy a restriction on it."""
    if low is None and high is None:
        return True
    if observed is None:
        return False
    return (low is None or observed[0] >= low) and (high is None or observed[1] < high)


def _microseconds(t: time) -> int:
    return (t.hour * 3600 + t.minute * 60) * 1_000_000


@dataclass(frozen=True)
class TariffElement:
    components: tuple[PriceComponent, ...]  # at most one per dimension
    restrictions: Restrictions


@dataclass(frozen=True)
class Tariff:
    id: str
    currency: str
    type: str | None
    elements: tuple[TariffElement, ...]
    min_price: Money | None
    max_price: Money | None
    start_date_time: datetime | None
    end_date_time: datetime | None

    def select(self, state: PeriodState) -> dict[str, tuple[int, PriceComponent] | None]:
        """Per dimension, the element index and price component that apply: from the first element that
        has a component of that dimension and whose restrictions all match (OCPI 2.2.1 Tariff object).
        None = the dimension is free at this moment."""
        order: Sequence[int] = range(len(self.elements))
        if state.reservation == "RESERVATION_EXPIRES":
            # "the time based cost of an expired reservation will be calculated based on the
            # RESERVATION_EXPIRES Tariff Element" (note under ReservationRestrictionType).
            order = sorted(order, key=lambda i: self.elements[i].restrictions.reservation != "RESERVATION_EXPIRES")
        chosen: dict[str, tuple[int, PriceComponent] | None] = dict.fromkeys(DIMENSIONS)
        for index in order:
            element = self.elements[index]
            open_dims = [c for c in element.components if chosen[c.type] is None]
            if open_dims and element.restrictions.matches(state):
                for component in open_dims:
                    chosen[component.type] = (index, component)
        return chosen

    def check_valid_at(self, moment: datetime) -> None:
        if self.start_date_time is not None and moment < self.start_date_time:
            raise TariffError(f"tariff {self.id} is not valid yet at {moment.isoformat()} (start_date_time)")
        if self.end_date_time is not None and moment >= self.end_date_time:
            raise TariffError(f"tariff {self.id} is no longer valid at {moment.isoformat()} (end_date_time)")


def parse_tariff(raw: Mapping[str, Any]) -> Tariff:
    if not isinstance(raw, Mapping):
        raise TariffError(f"tariff: expected a JSON object, got {type(raw).__name__}")
    tariff_id = raw.get("id")
    if not isinstance(tariff_id, str) or not tariff_id:
        raise TariffError("tariff.id: missing or not a string")
    currency = raw.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise TariffError(f"tariff.currency: expected an ISO 4217 code such as EUR, got {currency!r}")
    tariff_type = raw.get("type")
    if tariff_type is not None and tariff_type not in TARIFF_TYPES:
        raise TariffError(f"tariff.type: {tariff_type!r} is not a TariffType")
    elements = raw.get("elements")
    if not isinstance(elements, Sequence) or isinstance(elements, str) or not elements:
        raise TariffError("tariff.elements: expected a non-empty list")
    min_price = _money(raw.get("min_price"), "tariff.min_price")
    max_price = _money(raw.get("max_price"), "tariff.max_price")
    if min_price and max_price and min_price.excl_vat > max_price.excl_vat:
        raise TariffError("tariff: min_price.excl_vat is greater than max_price.excl_vat")
    return Tariff(
        id=tariff_id,
        currency=currency,
        type=tariff_type,
        elements=tuple(_element(e, f"tariff.elements[{i}]") for i, e in enumerate(elements)),
        min_price=min_price,
        max_price=max_price,
        start_date_time=_datetime(raw.get("start_date_time"), "tariff.start_date_time"),
        end_date_time=_datetime(raw.get("end_date_time"), "tariff.end_date_time"),
    )


def _money(raw: Any, where: str) -> Money | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "excl_vat" not in raw:
        raise TariffError(f"{where}: expected a Price object with excl_vat")
    excl = _non_negative(raw["excl_vat"], f"{where}.excl_vat")
    incl = raw.get("incl_vat")
    return Money(excl, None if incl is None else _non_negative(incl, f"{where}.incl_vat"))


def _non_negative(value: Any, where: str) -> Decimal:
    number = to_decimal(value, where)
    if number < 0:
        raise TariffError(f"{where}: must not be negative, got {value!r}")
    return number


def _datetime(raw: Any, where: str) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise TariffError(f"{where}: not an RFC 3339 date-time: {raw!r}") from None
    # OCPI: "The absence of the timezone designator implies a UTC timestamp."
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _element(raw: Any, where: str) -> TariffElement:
    if not isinstance(raw, Mapping):
        raise TariffError(f"{where}: expected a TariffElement object")
    components_raw = raw.get("price_components")
    if not isinstance(components_raw, Sequence) or isinstance(components_raw, str) or not components_raw:
        raise TariffError(f"{where}.price_components: expected a non-empty list")
    components = tuple(_component(c, f"{where}.price_components[{i}]") for i, c in enumerate(components_raw))
    seen = [c.type for c in components]
    if len(set(seen)) != len(seen):
        raise TariffError(f"{where}: more than one price component of the same type {seen}")
    restrictions = _restrictions(raw.get("restrictions"), f"{where}.restrictions")
    if restrictions.reservation is not None:
        extra = set(seen) - RESERVATION_DIMENSIONS
        if extra:
            raise TariffError(f"{where}: a reservation element can only price FLAT and TIME, not {sorted(extra)}")
    return TariffElement(components, restrictions)


def _component(raw: Any, where: str) -> PriceComponent:
    if not isinstance(raw, Mapping):
        raise TariffError(f"{where}: expected a PriceComponent object")
    kind = raw.get("type")
    if kind not in DIMENSIONS:
        raise TariffError(f"{where}.type: expected one of {', '.join(DIMENSIONS)}, got {kind!r}")
    if "price" not in raw:
        raise TariffError(f"{where}.price: missing")
    vat = raw.get("vat")
    step = raw.get("step_size")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TariffError(f"{where}.step_size: expected a non-negative integer, got {step!r}")
    return PriceComponent(
        type=kind,
        price=_non_negative(raw["price"], f"{where}.price"),
        vat=None if vat is None else _non_negative(vat, f"{where}.vat"),
        step_size=step,
    )


def _restrictions(raw: Any, where: str) -> Restrictions:
    if raw is None:
        return Restrictions()
    if not isinstance(raw, Mapping):
        raise TariffError(f"{where}: expected a TariffRestrictions object")
    values: dict[str, Any] = {}
    for key in ("start_time", "end_time"):
        if raw.get(key) is not None:
            text = raw[key]
            if not isinstance(text, str) or not _TIME_OF_DAY.fullmatch(text):
                raise TariffError(f"{where}.{key}: expected HH:MM (24h, leading zeros), got {text!r}")
            values[key] = time(int(text[:2]), int(text[3:]))
    start, end = values.get("start_time"), values.get("end_time")
    if start is not None and start == end and start != time(0):  # 00:00-00:00 is the whole day
        raise TariffError(f"{where}: start_time equals end_time, the element could never apply")
    for key in ("start_date", "end_date"):
        if raw.get(key) is not None:
            text = raw[key]
            if not isinstance(text, str) or not _DATE.fullmatch(text):
                raise TariffError(f"{where}.{key}: expected YYYY-MM-DD, got {text!r}")
            try:
                values[key] = date.fromisoformat(text)
            except ValueError:
                raise TariffError(f"{where}.{key}: not a calendar date: {text!r}") from None
    for low, high in (*_RANGES, ("min_duration", "max_duration")):
        for key in (low, high):
            if raw.get(key) is not None:
                values[key] = _non_negative(raw[key], f"{where}.{key}")
        if values.get(low) is not None and values.get(high) is not None and values[low] >= values[high]:
            raise TariffError(f"{where}: {low} must be below {high}, the element could never apply")
    for key in ("min_duration", "max_duration"):
        if key in values:
            if values[key] != values[key].to_integral_value():
                raise TariffError(f"{where}.{key}: expected whole seconds, got {raw[key]!r}")
            values[key] = int(values[key])
    if values.get("start_date") and values.get("end_date") and values["start_date"] >= values["end_date"]:
        raise TariffError(f"{where}: start_date must be before end_date (end_date is exclusive)")
    days = raw.get("day_of_week")
    if days is not None:
        if isinstance(days, str) or not isinstance(days, Sequence) or any(d not in WEEKDAYS for d in days):
            raise TariffError(f"{where}.day_of_week: expected a list of MONDAY … SUNDAY, got {days!r}")
        values["day_of_week"] = frozenset(days)
    reservation = raw.get("reservation")
    if reservation is not None:
        if reservation not in RESERVATION_KINDS:
            raise TariffError(f"{where}.reservation: expected RESERVATION or RESERVATION_EXPIRES, got {reservation!r}")
        values["reservation"] = reservation
    return Restrictions(**values)
