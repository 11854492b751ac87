"""A completed charging session priced with its connector's tariff (the domain half of a CDR).

The OCPI CDR object is rendered by app.ocpi.cdr_render from what this returns; the two are kept
apart so pricing never depends on a protocol version.

- The meter samples kept for the session (app.charging.sessions) are what is priced; samples
  outside [start, end] (a charger clock slightly off) are clamped to the session's bounds.
- A connector without a tariff is charged nothing: the CDR still reports energy and times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.charging.pricing import MeterSample, PricedCdr, price_cdr
from app.store.charging_tables import MeterSample as MeterSampleRow

FREE_TARIFF_ID = "cpolab-no-tariff"


def free_tariff(currency: str) -> dict[str, Any]:
    """What a connector without a tariff costs: nothing (an ENERGY component at 0 so periods still
    carry their volumes)."""
    return {
        "id": FREE_TARIFF_ID,
        "currency": currency,
        "elements": [{"price_components": [{"type": "ENERGY", "price": 0, "step_size": 1}]}],
    }


def pricing_samples(rows: Sequence[MeterSampleRow], start: datetime, end: datetime) -> list[MeterSample]:
    """The stored samples as the pricer's, clamped to [start, end] and kept in time order (the
    energy register never decreases, so a clamped sample keeps the highest reading at its instant)."""
    out: list[MeterSample] = []
    for row in rows:
        at = min(max(_aware(row.at), start), end)
        sample = MeterSample(
            at=at,
            energy_wh=Decimal(str(max(row.energy_wh, 0.0))),
            power_w=Decimal(str(max(row.power_w, 0.0))),
            current_a=None if row.current_a is None else Decimal(str(max(row.current_a, 0.0))),
        )
        if out and out[-1].at == at:
            if sample.energy_wh >= out[-1].energy_wh:
                out[-1] = sample
            continue
        if out and sample.energy_wh < out[-1].energy_wh:
            sample = MeterSample(at, out[-1].energy_wh, sample.power_w, sample.current_a)
        out.append(sample)
    return out


def price_session(
    tariff: Mapping[str, Any] | None,
    rows: Sequence[MeterSampleRow],
    *,
    currency: str,
    start: datetime,
    end: datetime,
    time_zone: str,
) -> PricedCdr:
    """Price a session (raises app.charging.pricing.TariffError / PricingInputError when it can't be)."""
    start, end = _aware(start), _aware(max(_aware(end), _aware(start)))
    return price_cdr(
        tariff if tariff is not None else free_tariff(currency),
        pricing_samples(rows, start, end),
        start=start,
        end=end,
        time_zone=time_zone,
    )


def _aware(at: datetime) -> datetime:
    """Stored datetimes are UTC; SQLite hands them back naive."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
