"""OCPI value formats the pricer emits and reads: 4-decimal numbers, UTC date-times, exact durations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

FOUR_PLACES = Decimal("0.0001")
TWELVE_PLACES = Decimal("1e-12")


class PricingInputError(ValueError):
    """Meter samples, periods, session bounds or time zone that cannot be priced."""


def q4(value: Decimal) -> Decimal:
    """An OCPI `number`: 4 decimals, half-up."""
    return value.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


def q12(value: Decimal) -> Decimal:
    """Meter-derived volumes are kept to 12 decimals: far below any price's effect at 4 decimals, and
    sums of such numbers stay exact within Decimal's 28 digits."""
    return value.quantize(TWELVE_PLACES, rounding=ROUND_HALF_UP)


def ocpi_datetime(moment: datetime) -> str:
    """RFC 3339 in UTC with `Z`; fractions of seconds only when there are some (OCPI DateTime)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def seconds_between(earlier: datetime, later: datetime) -> Decimal:
    """Exact (microsecond) seconds from `earlier` to `later`, without going through a float."""
    delta = later - earlier
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 1_000_000
