"""Cost of priced charging periods: volumes × price per dimension, FLAT once, step_size on totals.

Rules (OCPI 2.2.1 mod_tariffs / mod_cdrs "step_size"):
- FLAT is charged once: at the first period where a FLAT component applies (once more for a reservation).
- step_size applies once per session to the billed total of a dimension, with the step of the last
  component used; the extra volume is billed at that component's price and VAT:
  ENERGY on its own; TIME and PARKING_TIME together: when parking was billed only the parking total is
  rounded ("the charging duration is not rounded up, as it is followed by another time based period"),
  otherwise the TIME total. Reservation TIME is rounded on its own. step_size 0 = no rounding.
All arithmetic is exact Decimal; rounding happens only when the Price is emitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from app.charging.tariff_model import PriceComponent

_SECONDS_PER_HOUR = Decimal(3600)
_WH_PER_KWH = Decimal(1000)
_THOUSANDTH = Decimal("0.001")


@dataclass
class Bucket:
    """One CDR cost total (fixed, energy, time, parking, reservation), exact until emitted."""

    excl_vat: Decimal = Decimal(0)
    incl_vat: Decimal = Decimal(0)
    used: bool = False  # a price component applied at least once (else the CDR leaves the total out)

    def add(self, component: PriceComponent, quantity: Decimal) -> None:
        amount = component.price * quantity
        self.excl_vat += amount
        self.incl_vat += component.incl_vat(amount)
        self.used = True


@dataclass
class _Billed:
    """The billed volume of a dimension and the last component that billed it (for step_size)."""

    total: Decimal = Decimal(0)
    last: PriceComponent | None = None

    def add(self, component: PriceComponent, volume: Decimal) -> None:
        if volume > 0:
            self.total += volume
            self.last = component


@dataclass
class CostSheet:
    fixed: Bucket = field(default_factory=Bucket)
    energy: Bucket = field(default_factory=Bucket)
    time: Bucket = field(default_factory=Bucket)
    parking: Bucket = field(default_factory=Bucket)
    reservation: Bucket = field(default_factory=Bucket)
    _flat_charged: set[bool] = field(default_factory=set)
    _energy_kwh: _Billed = field(default_factory=_Billed)
    _time_h: _Billed = field(default_factory=_Billed)
    _parking_h: _Billed = field(default_factory=_Billed)
    _reservation_h: _Billed = field(default_factory=_Billed)

    def flat(self, component: PriceComponent, *, reservation: bool) -> None:
        if reservation in self._flat_charged:
            return
        self._flat_charged.add(reservation)
        (self.reservation if reservation else self.fixed).add(component, Decimal(1))

    def energy_kwh(self, component: PriceComponent, volume: Decimal) -> None:
        self.energy.add(component, volume)
        self._energy_kwh.add(component, volume)

    def time_h(self, component: PriceComponent, volume: Decimal) -> None:
        self.time.add(component, volume)
        self._time_h.add(component, volume)

    def parking_h(self, component: PriceComponent, volume: Decimal) -> None:
        self.parking.add(component, volume)
        self._parking_h.add(component, volume)

    def reservation_h(self, component: PriceComponent, volume: Decimal) -> None:
        self.reservation.add(component, volume)
        self._reservation_h.add(component, volume)

    def apply_step_sizes(self) -> None:
        """Call once, after every period was added."""
        _round_up(self.energy, self._energy_kwh, _WH_PER_KWH)
        _round_up(self.parking, self._parking_h, _SECONDS_PER_HOUR)
        if self._parking_h.last is None:
            _round_up(self.time, self._time_h, _SECONDS_PER_HOUR)
        _round_up(self.reservation, self._reservation_h, _SECONDS_PER_HOUR)


def _round_up(bucket: Bucket, billed: _Billed, step_unit: Decimal) -> None:
    """Bill the total in whole steps: e.g. 0.0334 h parking at step_size 900 s is billed as 0.25 h."""
    component = billed.last
    if component is None or component.step_size == 0:
        return
    # Wh or seconds, to 1/1000: meter-derived volumes are 12-decimal hours, and an exact 10 minutes
    # (0.166666666667 h = 600.0000000012 s) must not start a second 600 s step.
    units = (billed.total * step_unit).quantize(_THOUSANDTH, rounding=ROUND_HALF_UP)
    steps = math.ceil(units / component.step_size)
    extra = (steps * component.step_size - units) / step_unit
    if extra > 0:
        bucket.add(component, extra)
