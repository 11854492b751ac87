"""Blueprint: a frozen, JSON-serialisable snapshot of everything the generator reads for one CPO.

The API resolves it once, at create, from the live catalog; the workflow and its activities carry
it and the generator reads only it (plus the exactly pinned geography libraries). Editing the
catalog therefore never changes what an existing CPO regenerates, nor breaks a workflow replay.

Template versions: a template's country-independent content (template, inlined charger models,
site kind, tariff profiles) is hashed per `slug@version` into `data/templates.lock.json`; the tests
fail when the content changed but the version did not. The lock keeps every version ever
published, so a version number can never be reused for different content:

    python -m app.network.blueprint --lock [--data-dir DIR]   # record new versions (refuses silent edits)
    python -m app.network.blueprint --check [--data-dir DIR]  # exit 1 when the lock is out of date
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import pycountry
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from app.network import catalog
from app.network.catalog import (
    OVERRIDE_KEYS,
    Catalog,
    ChargerModel,
    Currency,
    OcppVersion,
    PowerType,
    SiteKind,
    Slug,
    StreetLocale,
    TariffProfile,
    Template,
    TemplateCaps,
    power_class,
)
from app.network.geography import geonames_country
from app.network.regional import CountryRealism

LOCK_FILE = "templates.lock.json"
LOCK_COMMAND = "python -m app.network.blueprint --lock"
_COUNTRY_RE = re.compile(r"[A-Z]{2}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MixSlot(_Frozen):
    """A charger-mix entry with its charger model inlined (the catalog refers to it by id)."""

    model: ChargerModel
    share: PositiveInt
    ocpp_version: OcppVersion


class TemplateSnapshot(_Frozen):
    """The country-independent part: what the lock hashes. `description` is gallery text, not input."""

    slug: Slug
    version: PositiveInt
    locations: PositiveInt
    chargers_per_location: PositiveInt
    caps: TemplateCaps
    ocpp_versions: tuple[OcppVersion, ...] = Field(min_length=1)
    power_types: tuple[PowerType, ...] = Field(min_length=1)
    site_kind: SiteKind
    charger_mix: tuple[MixSlot, ...] = Field(min_length=1)
    tariffs: tuple[TariffProfile, ...] = Field(min_length=1)  # one per power class used, AC before DC

    @model_validator(mode="after")
    def _consistent(self) -> TemplateSnapshot:
        # A stored blueprint is re-validated when read back: it must be something the generator can run.
        for key in OVERRIDE_KEYS:
            cap = getattr(self.caps, key)
            if cap.min < 1 or not cap.min <= getattr(self, key) <= cap.max:
                raise ValueError(f"{self.slug}: default {key} outside caps {cap.min}..{cap.max}")
        used: set[str] = set()
        for slot in self.charger_mix:
            if slot.ocpp_version not in slot.model.ocpp_versions:
                raise ValueError(f"{self.slug}: model {slot.model.id} does not support OCPP {slot.ocpp_version}")
            used.update(c.power_type for connectors in slot.model.evses for c in connectors)
        if sorted(self.power_types) != sorted(used):
            raise ValueError(f"{self.slug}: power_types {list(self.power_types)} != mix {sorted(used)}")
        classes = [cls for cls in ("AC", "DC") if cls in {power_class(p) for p in used}]
        if [t.power_class for t in self.tariffs] != classes:
            raise ValueError(f"{self.slug}: tariffs must be one per power class used, in order {classes}")
        return self


class RegionalModel(_Frozen):
    """The model the country's sites install in place of the template's model `replaces`."""

    replaces: Slug
    model: ChargerModel


class CountrySnapshot(_Frozen):
    """The catalog data picked for the CPO's country (its geography itself is a library read).

    `realism` and `regional_models` are what generator 3 reads; blueprints stored before them have
    neither, and they are left out of the JSON when absent so those blueprints round-trip exactly."""

    code: str = Field(pattern=r"^[A-Z]{2}$")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    rate: Currency
    street_locale: StreetLocale
    realism: CountryRealism | None = None
    regional_models: tuple[RegionalModel, ...] | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict:
        data = handler(self)
        for key in ("realism", "regional_models"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def model_for(self, model: ChargerModel) -> ChargerModel:
        """The hardware the country's sites install for a template's model (itself in Europe)."""
        return next((r.model for r in self.regional_models or () if r.replaces == model.id), model)


class Blueprint(_Frozen):
    template: TemplateSnapshot
    country: CountrySnapshot


# ---- resolution from a catalog -------------------------------------------------------------------


def snapshot_template(t: Template, source: Catalog) -> TemplateSnapshot:
    mix = tuple(
        MixSlot(model=source.models[e.model], share=e.share, ocpp_version=e.ocpp_version) for e in t.charger_mix
    )
    classes = {power_class(p) for p in t.power_types}
    return TemplateSnapshot(
        slug=t.slug,
        version=t.version,
        locations=t.locations,
        chargers_per_location=t.chargers_per_location,
        caps=t.caps,
        ocpp_versions=tuple(t.ocpp_versions),
        power_types=tuple(t.power_types),
        site_kind=source.site_kinds[t.site_kind],
        charger_mix=mix,
        tariffs=tuple(source.tariffs[cls] for cls in ("AC", "DC") if cls in classes),
    )


def _country_snapshot(code: str, source: Catalog, template: TemplateSnapshot) -> CountrySnapshot:
    if not _COUNTRY_RE.fullmatch(code) or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"unknown ISO 3166-1 alpha-2 country code {code!r}")
    info = geonames_country(code)
    currency = info.get("currencycode") or "EUR"
    languages = [tag for tag in (info.get("languages") or "").split(",") if tag]
    realism, regional = None, None
    if source.countries is not None:
        realism = source.countries.resolve(code, languages, template.site_kind.name_suffixes)
        substitutes = source.countries.substitutes(code)
        used = dict.fromkeys(slot.model.id for slot in template.charger_mix)
        regional = tuple(
            RegionalModel(replaces=m, model=source.models[substitutes[m]]) for m in used if m in substitutes
        )
    return CountrySnapshot(
        code=code,
        currency=currency,
        rate=source.currency(currency),
        street_locale=source.street_locale(languages),
        realism=realism,
        regional_models=regional,
    )


def resolve_blueprint(slug: str, country_code: str, *, source: Catalog | None = None) -> Blueprint | None:
    """The blueprint of template `slug` in `country_code` (live catalog by default); None for an unknown slug.

    Raises ValueError for a country code that is not ISO 3166-1 alpha-2 (upper-case).
    """
    source = source or catalog.CATALOG
    template = source.templates.get(slug)
    if template is None:
        return None
    snapshot = snapshot_template(template, source)
    return Blueprint(template=snapshot, country=_country_snapshot(country_code, source, snapshot))


# ---- template version lock -----------------------------------------------------------------------


def template_digest(snapshot: TemplateSnapshot) -> str:
    """sha256 of the canonical JSON of a template snapshot (what `slug@version` must always mean)."""
    canonical = json.dumps(snapshot.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def lock_entries(source: Catalog) -> dict[str, str]:
    return {f"{t.slug}@{t.version}": template_digest(snapshot_template(t, source)) for t in source.templates.values()}


def lock_problems(source: Catalog, lock: dict[str, str]) -> list[str]:
    """Why `lock` does not vouch for the catalog's templates (empty when it does)."""
    problems = []
    for key, digest in lock_entries(source).items():
        slug = key.split("@")[0]
        if key not in lock:
            problems.append(f"template {key} is not in {LOCK_FILE}: run `{LOCK_COMMAND}`")
        elif lock[key] != digest:
            problems.append(
                f"template {slug} changed without a version bump: bump `version` and run `{LOCK_COMMAND}` "
                f"({key} is locked to different content)"
            )
    return problems


def updated_lock(source: Catalog, lock: dict[str, str]) -> dict[str, str]:
    """`lock` plus the catalog's new versions; ValueError when a locked version's content changed."""
    changed = [p for p in lock_problems(source, lock) if "without a version bump" in p]
    if changed:
        raise ValueError("; ".join(changed))
    return dict(sorted({**lock, **lock_entries(source)}.items()))


def read_lock(data_dir: Path) -> dict[str, str]:
    path = data_dir / LOCK_FILE
    lock = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if not isinstance(lock, dict) or not all(isinstance(v, str) for v in lock.values()):
        raise ValueError(f"{path} must be a JSON object of slug@version → sha256")
    return lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.network.blueprint", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--lock", action="store_true", help=f"add the catalog's template versions to {LOCK_FILE}")
    action.add_argument("--check", action="store_true", help=f"exit 1 unless {LOCK_FILE} vouches for the catalog")
    parser.add_argument("--data-dir", type=Path, default=catalog.DATA_DIR, help="catalog data directory")
    args = parser.parse_args(argv)
    try:
        source = catalog.load_catalog_dir(args.data_dir)
        lock = read_lock(args.data_dir)
        if args.check:
            problems = lock_problems(source, lock)
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        new = updated_lock(source, lock)
    except (OSError, ValueError) as exc:  # CatalogError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    (args.data_dir / LOCK_FILE).write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
    added = sorted(new.keys() - lock.keys())
    print(f"{LOCK_FILE}: {len(new)} versions locked" + (f", added {', '.join(added)}" if added else ", nothing new"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
