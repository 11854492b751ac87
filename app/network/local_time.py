"""The network's local clock, for traffic that follows the hours of the day (background activity).

A network can span time zones (a US one does), but the background traffic runs one clock per CPO:
the population-weighted mean of the standard-time UTC offsets of the places its Locations are drawn
from, to a quarter hour. Standard time, not daylight saving time: the offset is fixed for the CPO's
life (it travels in the workflow input), so it cannot follow the clock changes.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.network.generator import network_country
from app.network.geography import Country, country_of

_QUARTER_HOUR_S = 900
# Mid-winter and mid-summer: the smaller offset of the two is standard time in either hemisphere.
_PROBES = (datetime(2025, 1, 15, 12, tzinfo=UTC), datetime(2025, 7, 15, 12, tzinfo=UTC))


@functools.cache
def standard_offset_s(zone: str) -> int | None:
    """The zone's standard-time UTC offset in seconds; None when the tz database does not know it."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    offsets = [probe.astimezone(tz).utcoffset() for probe in _PROBES]
    return int(min(o.total_seconds() for o in offsets if o is not None))


def country_utc_offset_s(country: Country) -> int:
    """Population-weighted mean standard offset of the country's places, to a quarter hour."""
    known = [
        (offset, w)
        for p, w in zip(country.places, country.populations(), strict=True)
        if (offset := standard_offset_s(p.time_zone)) is not None
    ]
    total = sum(w for _, w in known)
    if not total:
        return 0
    mean = sum(offset * w for offset, w in known) / total
    return round(mean / _QUARTER_HOUR_S) * _QUARTER_HOUR_S


@functools.cache
def network_utc_offset_s(country_code: str, generator_version: int) -> int:
    """The local clock of a network of `generator_version` in the country: its Locations' places,
    weighted as they are drawn."""
    return country_utc_offset_s(network_country(country_of(country_code), generator_version))
