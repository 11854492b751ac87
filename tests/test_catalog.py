"""Catalog data: templates, charger models, caps and override validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.network import catalog
from app.network.catalog import CatalogError, load_catalog

DATA = Path(catalog.__file__).parent / "data"
PRODUCT = ["small-urban-ac", "highway-dc", "mixed-depot"]


def _docs() -> tuple[Any, Any, Any]:
    return tuple(json.loads((DATA / n).read_text()) for n in ("templates.json", "chargers.json", "streets.json"))


def _template(slug: str) -> catalog.Template:
    t = catalog.get_template(slug)
    assert t is not None, slug
    return t


def _power_types_of(entry: catalog.MixEntry) -> set[str]:
    model = catalog.get_charger_model(entry.model)
    assert model is not None
    return {c.power_type for connectors in model.evses for c in connectors}


def test_templates_listed_in_stable_order_product_first():
    slugs = [t.slug for t in catalog.list_templates()]
    assert slugs[:3] == PRODUCT
    assert {"city-mixed-large", "stress-10k"} <= set(slugs)
    assert slugs == [t.slug for t in catalog.list_templates()]
    assert catalog.get_template("no-such-template") is None


@pytest.mark.parametrize("template", catalog.list_templates(), ids=lambda t: t.slug)
def test_every_template_references_models_that_support_its_protocols(template: catalog.Template):
    versions, power_types = set(), set()
    for entry in template.charger_mix:
        model = catalog.get_charger_model(entry.model)
        assert model is not None, entry.model
        assert entry.ocpp_version in model.ocpp_versions
        versions.add(entry.ocpp_version)
        power_types |= _power_types_of(entry)
    assert set(template.ocpp_versions) == versions
    assert set(template.power_types) == power_types
    caps = template.caps
    assert caps.locations.min <= template.locations <= caps.locations.max
    assert caps.chargers_per_location.min <= template.chargers_per_location <= caps.chargers_per_location.max
    assert template.chargers == template.locations * template.chargers_per_location


def test_small_urban_ac_shape():
    t = _template("small-urban-ac")
    assert (t.locations, t.chargers_per_location, t.chargers) == (2, 3, 6)
    assert t.site_kind == "urban"
    assert t.ocpp_versions == ["1.6"]
    assert all(p.startswith("AC_") for p in t.power_types)
    # A crash test provisions 1,000 chargers with it.
    assert t.caps.locations.max >= 40 and t.caps.chargers_per_location.max >= 25


def test_highway_dc_shape():
    t = _template("highway-dc")
    assert (t.locations, t.chargers_per_location, t.chargers) == (3, 2, 6)
    assert t.site_kind == "highway"
    assert t.ocpp_versions == ["1.6"]
    assert t.power_types == ["DC"]


def test_mixed_depot_shape():
    t = _template("mixed-depot")
    assert (t.locations, t.chargers_per_location, t.chargers) == (1, 6, 6)
    assert t.site_kind == "depot"
    assert sorted(t.ocpp_versions) == ["1.6", "2.0.1"]
    ac = sum(e.share for e in t.charger_mix if _power_types_of(e) == {"AC_3_PHASE"})
    dc = sum(e.share for e in t.charger_mix if _power_types_of(e) == {"DC"})
    assert (ac, dc) == (4, 2)  # shares equal the counts at the default 6 chargers per location
    assert {e.ocpp_version for e in t.charger_mix if _power_types_of(e) == {"DC"}} == {"2.0.1"}
    assert {e.ocpp_version for e in t.charger_mix if _power_types_of(e) != {"DC"}} == {"1.6"}


def test_some_template_allows_200_by_50():
    assert any(t.caps.locations.max >= 200 and t.caps.chargers_per_location.max >= 50 for t in catalog.list_templates())
    stress = _template("stress-10k")
    assert (stress.locations, stress.chargers_per_location, stress.chargers) == (200, 50, 10_000)
    assert (stress.caps.locations.min, stress.caps.locations.max) == (1, 200)
    assert (stress.caps.chargers_per_location.min, stress.caps.chargers_per_location.max) == (1, 50)
    big = _template("city-mixed-large")
    assert big.caps.locations.max == 1000 and big.caps.chargers_per_location.max == 50


def test_charger_models_look_real():
    for t in catalog.list_templates():
        for entry in t.charger_mix:
            model = catalog.get_charger_model(entry.model)
            assert model is not None
            assert model.vendor and model.model and model.max_power_w > 0
            assert model.evses and all(model.evses)
    assert catalog.get_charger_model("nope") is None
    dc = catalog.get_charger_model("abb-terra-184")
    assert dc is not None and dc.power_type == "DC"
    assert {c.standard for ev in dc.evses for c in ev} >= {"IEC_62196_T2_COMBO"}


def test_gallery_item_has_contract_fields():
    item = catalog.template_gallery_item(_template("mixed-depot"))
    assert item["slug"] == "mixed-depot" and item["version"] == 1 and item["description"]
    assert (item["locations"], item["chargers"]) == (1, 6)
    assert item["caps"] == {"locations": {"min": 1, "max": 50}, "chargers_per_location": {"min": 1, "max": 50}}
    assert sorted(item["ocpp_versions"]) == ["1.6", "2.0.1"]
    assert sorted(item["power_types"]) == ["AC_3_PHASE", "DC"]
    json.dumps(item)  # plain JSON types only


@pytest.mark.parametrize(
    ("overrides", "key", "needle"),
    [
        ({"colour": "red"}, "colour", "colour"),
        ({"locations": True}, "locations", "between 1 and 100"),
        ({"locations": "3"}, "locations", "between 1 and 100"),
        ({"locations": 2.0}, "locations", "between 1 and 100"),
        ({"locations": 0}, "locations", "between 1 and 100"),
        ({"chargers_per_location": 31}, "chargers_per_location", "between 1 and 30"),
    ],
)
def test_validate_overrides_rejects(overrides: dict, key: str, needle: str):
    problems = catalog.validate_overrides(_template("small-urban-ac"), overrides)
    assert len(problems) == 1
    got_key, message = problems[0]
    assert got_key == key
    assert key in message and needle in message
    if key != "colour":
        assert "small-urban-ac" in message


def test_validate_overrides_reports_every_problem_and_accepts_valid():
    t = _template("small-urban-ac")
    problems = catalog.validate_overrides(t, {"locations": 0, "chargers_per_location": False, "x": 1})
    assert sorted(k for k, _ in problems) == ["chargers_per_location", "locations", "x"]
    assert catalog.validate_overrides(t, None) == []
    assert catalog.validate_overrides(t, {}) == []
    assert catalog.validate_overrides(t, {"locations": 40, "chargers_per_location": 25}) == []
    assert catalog.validate_overrides(_template("stress-10k"), {"locations": 200, "chargers_per_location": 50}) == []
    assert catalog.validate_overrides(t, ["locations"]) != []  # type: ignore[arg-type]


def test_shipped_data_loads():
    loaded = load_catalog(*_docs())
    assert list(loaded.templates) == [t.slug for t in catalog.list_templates()]


def test_missing_model_fails_loudly():
    templates, chargers, streets = _docs()
    templates["templates"][0]["charger_mix"][0]["model"] = "acme-ghost-9000"
    with pytest.raises(CatalogError, match="acme-ghost-9000"):
        load_catalog(templates, chargers, streets)


def test_unsupported_ocpp_version_fails_loudly():
    templates, chargers, streets = _docs()
    mix = templates["templates"][0]["charger_mix"][0]
    for model in chargers["models"]:
        if model["id"] == mix["model"]:
            model["ocpp_versions"] = ["2.0.1"]
    with pytest.raises(CatalogError, match=r"does not support OCPP 1\.6"):
        load_catalog(templates, chargers, streets)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t, c: t["templates"][0].update(ocpp_versions=["1.6", "2.0.1"]),  # declared but unused
        lambda t, c: t["templates"][0].update(power_types=["DC"]),
        lambda t, c: t["templates"][0].update(locations=1000),  # default outside caps
        lambda t, c: t["templates"][0].update(site_kind="moon-base"),
        lambda t, c: t["templates"].append(copy.deepcopy(t["templates"][0])),  # duplicate slug
        lambda t, c: c["models"][0]["evses"][0][0].update(max_electric_power=10**9),  # beyond V x A
        lambda t, c: c["models"][0]["evses"][0][0].update(standard="TYPE_2"),  # not an OCPI enum
    ],
)
def test_inconsistent_data_fails_loudly(mutate):
    templates, chargers, streets = _docs()
    mutate(templates, chargers)
    with pytest.raises(CatalogError):
        load_catalog(templates, chargers, streets)


# ---- charger models: outputs match the hardware ---------------------------------------------------


def _outputs(model_id: str) -> list[list[tuple[str, str, str]]]:
    model = catalog.get_charger_model(model_id)
    assert model is not None, model_id
    assert model.outputs == model.evses  # `evses` is the stored name of the outputs
    return [[(c.standard, c.format, c.power_type) for c in output] for output in model.outputs]


CCS_CABLE = ("IEC_62196_T2_COMBO", "CABLE", "DC")
CHADEMO_CABLE = ("CHADEMO", "CABLE", "DC")
T2_SOCKET = ("IEC_62196_T2", "SOCKET", "AC_3_PHASE")


@pytest.mark.parametrize(
    ("model_id", "outputs"),
    [
        # One power stage, two cables used one at a time: one output.
        ("abb-terra-54", [[CCS_CABLE, CHADEMO_CABLE]]),
        ("tritium-rtm75", [[CCS_CABLE, CHADEMO_CABLE]]),
        # Triple charger: the DC cables share one output; the AC cable charges another car at the same time.
        ("abb-terra-54-cjg", [[CCS_CABLE, CHADEMO_CABLE], [("IEC_62196_T2", "CABLE", "AC_3_PHASE")]]),
        # Dual-outlet AC: two outputs.
        ("alfen-eve-double-pro-line", [[T2_SOCKET], [T2_SOCKET]]),
        ("alfen-eve-single-pro-line", [[T2_SOCKET]]),
        ("abb-terra-184", [[CCS_CABLE], [CCS_CABLE, CHADEMO_CABLE]]),
    ],
)
def test_catalog_models_have_the_hardware_outputs(model_id: str, outputs: list):
    assert _outputs(model_id) == outputs


def test_a_model_may_add_an_ac_output_to_a_dc_unit():
    cjg = catalog.get_charger_model("abb-terra-54-cjg")
    assert cjg is not None and cjg.power_type == "DC"  # the headline (first) output's type
    # The unit's rating covers both outputs charging at once.
    assert cjg.max_power_w >= sum(max(c.max_electric_power for c in output) for output in cjg.outputs)


def _model_doc(chargers: Any, model_id: str) -> dict[str, Any]:
    return next(m for m in chargers["models"] if m["id"] == model_id)


@pytest.mark.parametrize(
    ("model_id", "mutate", "needle"),
    [
        ("abb-terra-54", lambda m: m["evses"].append([]), "output 2 needs at least one connector"),
        ("abb-terra-54", lambda m: m.update(evses=[]), "evses"),
        (
            "abb-terra-54-cjg",
            lambda m: m["evses"][0].append(copy.deepcopy(m["evses"][1][0])),  # an AC cable on the DC stage
            "the connectors of output 1 mix power types",
        ),
        ("abb-terra-54-cjg", lambda m: m.update(power_type="AC_3_PHASE"), "is not its first output's"),
        ("abb-terra-54-cjg", lambda m: m["evses"].reverse(), "is not its first output's"),
        ("abb-terra-54", lambda m: m.update(max_power_w=40000), "exceeds the model's max_power_w"),
    ],
)
def test_inconsistent_outputs_fail_loudly(model_id: str, mutate, needle: str):
    templates, chargers, streets = _docs()
    mutate(_model_doc(chargers, model_id))
    with pytest.raises(CatalogError, match=needle):
        load_catalog(templates, chargers, streets)
