"""Blueprints: the per-CPO catalog snapshot, its JSON round trip, catalog-edit isolation and the version lock."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.network import blueprint, catalog
from app.network.blueprint import (
    LOCK_FILE,
    Blueprint,
    lock_entries,
    lock_problems,
    read_lock,
    resolve_blueprint,
    updated_lock,
)
from app.network.catalog import Catalog, load_catalog
from app.network.generator import NetworkSpec, generate_locations, network_json, network_shape
from tests.test_generator import GOLDEN, GOLDEN_SPECS

ROOT = Path(__file__).resolve().parents[1]
# Blueprints exactly as CPOs created before generator version 2 stored them (cpo_blueprint.data).
STORED = Path(__file__).parent / "stored_blueprints"
SLUGS = [t.slug for t in catalog.list_templates()]
BUMP_HINT = "bump `version` and run `python -m app.network.blueprint --lock`"


def _docs() -> dict[str, Any]:
    names = ("templates.json", "chargers.json", "streets.json")
    return {n: json.loads((catalog.DATA_DIR / n).read_text()) for n in names}


def _load(docs: dict[str, Any]) -> Catalog:
    return load_catalog(docs["templates.json"], docs["chargers.json"], docs["streets.json"])


def _template_doc(docs: dict[str, Any], slug: str) -> dict[str, Any]:
    return next(t for t in docs["templates.json"]["templates"] if t["slug"] == slug)


def _resolved(slug: str, cc: str, source: Catalog | None = None) -> Blueprint:
    bp = resolve_blueprint(slug, cc, source=source)
    assert bp is not None
    return bp


# ---- the snapshot --------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", SLUGS)
@pytest.mark.parametrize("cc", ["FR", "GB", "JP", "KW", "AQ"])
def test_json_round_trip_is_exact(slug: str, cc: str):
    bp = _resolved(slug, cc)
    stored = bp.model_dump_json()
    back = Blueprint.model_validate_json(stored)
    assert back == bp and back.model_dump_json() == stored and hash(back) == hash(bp)


@pytest.mark.parametrize("slug", ["stress-10k", "city-mixed-large"])
def test_blueprint_stays_a_few_kilobytes(slug: str):
    size = len(_resolved(slug, "DE").model_dump_json().encode())
    print(f"blueprint {slug}@DE: {size} bytes")
    assert size < 8 * 1024


def test_blueprint_is_immutable():
    bp = _resolved("mixed-depot", "FR")
    with pytest.raises(ValidationError, match="frozen"):
        bp.template.version = 2  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        bp.template.charger_mix[0].model.vendor = "x"  # type: ignore[misc]
    assert isinstance(bp.template.charger_mix, tuple) and isinstance(bp.template.charger_mix[0].model.evses, tuple)


def test_snapshot_holds_what_the_generator_reads():
    bp = _resolved("mixed-depot", "GB")
    t = catalog.get_template("mixed-depot")
    assert t is not None
    assert (bp.template.slug, bp.template.version, bp.template.caps) == (t.slug, t.version, t.caps)
    assert bp.template.site_kind == catalog.CATALOG.site_kinds["depot"]
    assert [(s.model, s.share, s.ocpp_version) for s in bp.template.charger_mix] == [
        (catalog.get_charger_model(e.model), e.share, e.ocpp_version) for e in t.charger_mix
    ]
    assert [p.id for p in bp.template.tariffs] == ["AC-STD", "DC-FAST"]
    assert _resolved("small-urban-ac", "GB").template.tariffs == (catalog.CATALOG.tariffs["AC"],)
    assert (bp.country.code, bp.country.currency, bp.country.rate.per_eur) == ("GB", "GBP", Decimal("0.85"))
    assert bp.country.street_locale == catalog.CATALOG.street_locales["en"]


@pytest.mark.parametrize(
    ("cc", "currency", "per_eur", "locale"),
    [
        ("DE", "EUR", "1", "de"),
        ("CH", "CHF", "0.95", "de"),  # first of the country's languages with a locale
        ("US", "USD", "1.08", "en-US"),  # full tag before base language
        ("FJ", "FJD", "1", "en"),  # currency not in the table: EUR figures
        ("AQ", "EUR", "1", "en"),  # no currency, no language: EUR and the fallback locale
    ],
)
def test_country_part_follows_the_catalog_fallbacks(cc: str, currency: str, per_eur: str, locale: str):
    country = _resolved("small-urban-ac", cc).country
    assert (country.currency, country.rate.per_eur) == (currency, Decimal(per_eur))
    assert country.street_locale == catalog.CATALOG.street_locales[locale]


def _tampered(mutate) -> str:
    data = json.loads(_resolved("mixed-depot", "FR").model_dump_json())
    mutate(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d["template"].update(tariffs=d["template"]["tariffs"][:1]), "one per power class"),
        (lambda d: d["template"].update(tariffs=d["template"]["tariffs"][::-1]), "one per power class"),
        (lambda d: d["template"].update(locations=51), "default locations outside caps"),
        (lambda d: d["template"].update(power_types=["DC"]), "power_types"),
        (lambda d: d["template"]["charger_mix"][1]["model"].update(ocpp_versions=["1.6"]), "support OCPP 2.0.1"),
        (lambda d: d["template"].update(colour="red"), "Extra inputs are not permitted"),
        (lambda d: d["country"].update(code="fr"), "code"),
        (lambda d: d["country"].pop("rate"), "rate"),
    ],
)
def test_a_tampered_stored_blueprint_is_refused(mutate, needle: str):
    with pytest.raises(ValidationError, match=needle):
        Blueprint.model_validate_json(_tampered(mutate))


def test_overrides_are_validated_against_the_blueprint_caps():
    bp = _resolved("small-urban-ac", "FR")
    assert catalog.validate_overrides(bp.template, {"locations": 100}) == []
    ((key, message),) = catalog.validate_overrides(bp.template, {"locations": 101})
    assert key == "locations" and "between 1 and 100 for template small-urban-ac" in message


@pytest.mark.parametrize("path", sorted(STORED.glob("*.json")), ids=lambda p: p.stem)
def test_blueprints_stored_before_generator_2_load_and_regenerate_their_network(path: Path):
    stored = path.read_text().strip()
    bp = Blueprint.model_validate_json(stored)
    assert bp.model_dump_json() == stored
    fields = GOLDEN_SPECS[bp.template.slug]
    assert (fields["template"], fields["country_code"]) == (bp.template.slug, bp.country.code)
    digests = {v: d for t, v, d in GOLDEN if t == bp.template.slug}
    # Their specs name no generator version (or version 1): they regenerate exactly as they were made.
    for spec in (NetworkSpec(**fields), NetworkSpec(**fields, generator_version=1)):
        assert hashlib.sha256(network_json(spec, bp)).hexdigest() == digests[1]
    # The same snapshot feeds version 2 (a catalog model reads the same in both).
    assert hashlib.sha256(network_json(NetworkSpec(**fields, generator_version=2), bp)).hexdigest() == digests[2]


def test_a_blueprint_with_a_mixed_ac_dc_model_round_trips():
    triple = catalog.get_charger_model("abb-terra-54-cjg")
    assert triple is not None
    data = json.loads(_resolved("highway-dc", "FR").model_dump_json())
    data["template"]["charger_mix"][0]["model"] = triple.model_dump(mode="json")
    with pytest.raises(ValidationError, match="power_types"):  # the AC output must be declared and priced
        Blueprint.model_validate(data)
    data["template"]["power_types"] = ["AC_3_PHASE", "DC"]
    with pytest.raises(ValidationError, match="one per power class"):
        Blueprint.model_validate(data)
    data["template"]["tariffs"] = [catalog.CATALOG.tariffs[c].model_dump(mode="json") for c in ("AC", "DC")]
    bp = Blueprint.model_validate(data)
    assert Blueprint.model_validate_json(bp.model_dump_json()) == bp


# ---- catalog edits do not reach existing CPOs ----------------------------------------------------


def _edit_everything(docs: dict[str, Any]) -> None:
    """A deploy that touches every part of the catalog mixed-depot@FR reads, without a version bump."""
    t = _template_doc(docs, "mixed-depot")
    t["charger_mix"][0]["share"] = 1
    t["caps"]["chargers_per_location"]["max"] = 8
    docs["templates.json"]["site_kinds"]["depot"]["jitter_km"] = 1.0
    docs["templates.json"]["site_kinds"]["depot"]["name_suffixes"] = ["Edited Depot"]
    docs["templates.json"]["tariffs"][0]["elements"][-1]["price_components"][0]["price_eur"] = "0.99"
    model = next(m for m in docs["chargers.json"]["models"] if m["id"] == t["charger_mix"][0]["model"])
    model["vendor"] = "Edited"
    docs["streets.json"]["locales"]["fr"]["streets"] = ["Rue Modifiée"]


def test_a_blueprint_resolved_before_a_catalog_edit_generates_the_same_network(monkeypatch: pytest.MonkeyPatch):
    s = NetworkSpec("mixed-depot", 42, "FR", "ABC", "alice", locations=3, chargers_per_location=9)
    before = _resolved("mixed-depot", "FR")
    stored = before.model_dump_json()  # what the CPO keeps
    expected = network_json(s, before)

    docs = _docs()
    _edit_everything(docs)
    edited = _load(docs)
    monkeypatch.setattr(catalog, "CATALOG", edited)  # the deploy: the live catalog is now the edited one
    after = _resolved("mixed-depot", "FR")
    assert after != before and after.template.version == before.template.version

    assert network_json(s, Blueprint.model_validate_json(stored)) == expected
    # The edit would have changed the network (and 9 chargers/location is now beyond the new cap).
    with pytest.raises(ValueError, match="chargers_per_location must be between 1 and 8"):
        network_shape(s, after)
    small = NetworkSpec("mixed-depot", 42, "FR", "ABC", "alice", locations=3, chargers_per_location=8)
    assert network_json(small, after) != network_json(small, before)
    (loc,) = generate_locations(small, after, 0, 1)
    assert loc.name.endswith("Edited Depot") and "Rue Modifiée" in loc.address


# ---- template version lock -----------------------------------------------------------------------


def test_shipped_lock_vouches_for_every_template():
    """Fails when a template's content changed without a new version: the message says what to do."""
    problems = lock_problems(catalog.CATALOG, read_lock(catalog.DATA_DIR))
    assert problems == [], "\n".join(problems)


def test_an_edit_without_a_version_bump_is_caught_with_a_clear_message():
    lock = read_lock(catalog.DATA_DIR)
    for edit in (
        lambda d: _template_doc(d, "highway-dc")["charger_mix"][0].update(share=3),
        lambda d: d["templates.json"]["site_kinds"]["highway"].update(jitter_km=14.0),
        lambda d: d["templates.json"]["tariffs"][1].update(type="PROFILE_FAST"),
        lambda d: next(m for m in d["chargers.json"]["models"] if m["id"] == "abb-terra-184").update(model="T184"),
    ):
        docs = _docs()
        edit(docs)
        problems = lock_problems(_load(docs), lock)
        # The DC tariff edit also changes every other template with DC chargers: each one is reported.
        assert any(p.startswith(f"template highway-dc changed without a version bump: {BUMP_HINT}") for p in problems)
        assert all("changed without a version bump" in p for p in problems)
        with pytest.raises(ValueError, match="highway-dc changed without a version bump"):
            updated_lock(_load(docs), lock)


def test_a_version_bump_is_locked_next_to_the_old_version():
    lock = read_lock(catalog.DATA_DIR)
    docs = _docs()
    _template_doc(docs, "highway-dc")["charger_mix"][0]["share"] = 3
    _template_doc(docs, "highway-dc")["version"] = 2
    edited = _load(docs)
    assert lock_problems(edited, lock) == [
        "template highway-dc@2 is not in templates.lock.json: run `python -m app.network.blueprint --lock`"
    ]
    new = updated_lock(edited, lock)
    assert new["highway-dc@1"] == lock["highway-dc@1"] and new["highway-dc@2"] == lock_entries(edited)["highway-dc@2"]
    assert lock_problems(edited, new) == []
    # Going back to version 1 with the new content is still a silent edit of version 1.
    _template_doc(docs, "highway-dc")["version"] = 1
    assert "changed without a version bump" in lock_problems(_load(docs), new)[0]


def test_gallery_text_and_other_countries_data_need_no_bump():
    docs = _docs()
    _template_doc(docs, "highway-dc")["description"] = "reworded"
    docs["templates.json"]["currencies"]["GBP"]["per_eur"] = "0.9"  # per country: in each CPO's blueprint
    assert lock_problems(_load(docs), read_lock(catalog.DATA_DIR)) == []


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    shutil.copytree(catalog.DATA_DIR, tmp_path / "data")
    return tmp_path / "data"


def _write_templates(data_dir: Path, mutate) -> None:
    path = data_dir / "templates.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))


def test_lock_command(data_copy: Path, capsys: pytest.CaptureFixture[str]):
    original = (data_copy / LOCK_FILE).read_text()
    assert blueprint.main(["--check", "--data-dir", str(data_copy)]) == 0
    assert blueprint.main(["--lock", "--data-dir", str(data_copy)]) == 0
    assert "nothing new" in capsys.readouterr().out
    assert (data_copy / LOCK_FILE).read_text() == original  # the shipped lock is what --lock writes

    def depot(doc: dict[str, Any]) -> dict[str, Any]:
        return next(t for t in doc["templates"] if t["slug"] == "mixed-depot")

    _write_templates(data_copy, lambda doc: depot(doc).update(locations=2))
    assert blueprint.main(["--check", "--data-dir", str(data_copy)]) == 1
    assert f"template mixed-depot changed without a version bump: {BUMP_HINT}" in capsys.readouterr().err
    assert blueprint.main(["--lock", "--data-dir", str(data_copy)]) == 1
    assert "mixed-depot changed without a version bump" in capsys.readouterr().err
    assert (data_copy / LOCK_FILE).read_text() == original  # a refused --lock writes nothing

    _write_templates(data_copy, lambda doc: depot(doc).update(version=2))
    assert blueprint.main(["--lock", "--data-dir", str(data_copy)]) == 0
    assert "added mixed-depot@2" in capsys.readouterr().out
    lock = json.loads((data_copy / LOCK_FILE).read_text())
    assert {"mixed-depot@1", "mixed-depot@2"} <= lock.keys()
    assert lock["mixed-depot@1"] == json.loads(original)["mixed-depot@1"]
    assert blueprint.main(["--check", "--data-dir", str(data_copy)]) == 0


@pytest.mark.parametrize(
    ("file", "content", "needle"),
    [
        (LOCK_FILE, "[1, 2]", "must be a JSON object"),
        (LOCK_FILE, "{not json", "error:"),
        ("templates.json", "{}", "invalid catalog data"),
        ("chargers.json", None, "chargers.json"),  # missing file
    ],
)
def test_lock_command_reports_bad_input(data_copy: Path, capsys, file: str, content: str | None, needle: str):
    if content is None:
        (data_copy / file).unlink()
    else:
        (data_copy / file).write_text(content)
    for action in ("--check", "--lock"):
        assert blueprint.main([action, "--data-dir", str(data_copy)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err


def test_lock_command_runs_as_a_module(data_copy: Path):
    cmd = [sys.executable, "-m", "app.network.blueprint", "--check", "--data-dir", str(data_copy)]
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).returncode == 0
    usage = subprocess.run(cmd[:3], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 2 and "one of the arguments --lock --check is required" in usage.stderr


def test_new_template_versions_start_in_the_lock():
    docs = _docs()
    extra = copy.deepcopy(_template_doc(docs, "small-urban-ac")) | {"slug": "brand-new"}
    docs["templates.json"]["templates"].append(extra)
    assert lock_problems(_load(docs), read_lock(catalog.DATA_DIR)) == [
        "template brand-new@1 is not in templates.lock.json: run `python -m app.network.blueprint --lock`"
    ]
