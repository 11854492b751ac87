"""Real postal codes of a city (generator version 3), from `data/postal_codes.json`.

The file maps geonames city ids to real codes (built by `data/build_postal_codes.py`, sources named
there): NL holds 4-digit areas, which get the two letters of a street (never SA, SD or SS, which
PostNL does not use), and GB outward codes, which get an inward code (digit + two letters of the
inward alphabet). Like the geonames data it is an input of generator 3 only: editing it changes the
networks of generator 3, so an edit goes with a new generator version.
"""

from __future__ import annotations

import functools
import json
import random
import string
from pathlib import Path

_PATH = Path(__file__).parent / "data" / "postal_codes.json"
_GB_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # Royal Mail never uses C, I, K, M, O, V in the inward code
_NL_LETTERS = tuple(
    a + b for a in string.ascii_uppercase for b in string.ascii_uppercase if a + b not in {"SA", "SD", "SS"}
)


@functools.cache
def _codes() -> dict[str, dict[int, tuple[str, ...]]]:
    doc = json.loads(_PATH.read_text(encoding="utf-8"))["countries"]
    return {cc: {int(gid): tuple(codes) for gid, codes in cities.items()} for cc, cities in sorted(doc.items())}


def countries_with_postal_data() -> frozenset[str]:
    return frozenset(_codes())


def cities_with_codes(country: str) -> frozenset[int]:
    """geonames ids of the country's cities that have real postal codes (empty: no data)."""
    return frozenset(_codes().get(country, {}))


def real_postal_code(country: str, geoname_id: int, rng: random.Random) -> str | None:
    """A real postal code of the city (NL and GB completed with a street part); None without data."""
    codes = _codes().get(country, {}).get(geoname_id)
    if not codes:
        return None
    code = rng.choice(codes)
    if country == "NL":
        return f"{code} {rng.choice(_NL_LETTERS)}"
    if country == "GB":
        return f"{code} {rng.randrange(10)}{rng.choice(_GB_INWARD_LETTERS)}{rng.choice(_GB_INWARD_LETTERS)}"
    return code
