"""Templates, charger models and locale data: JSON under `app/network/data`, validated once at import.

Everything a template does is data (site kind, caps, charger mix, OCPP versions); the generator has
no per-template branches. A broken data file fails the import loudly instead of a provisioning run.
The generator never reads this live catalog: `app.network.blueprint` snapshots what one CPO needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from app.network.ocpi_enums import (
    Capability,
    ConnectorFormat,
    ConnectorType,
    Facility,
    ParkingType,
    PowerType,
    TariffDimension,
    TariffType,
)
from app.network.regional import CountriesDoc

DATA_DIR = Path(__file__).parent / "data"

OcppVersion = Literal["1.6", "2.0.1"]
PowerClass = Literal["AC", "DC"]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=64)]
HourMinute = Annotated[str, Field(pattern=r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$")]

OVERRIDE_KEYS = ("locations", "chargers_per_location")
# Connector max_voltage is line-to-neutral (OCPI), so a 3-phase connector delivers 3 x V x A.
_PHASES = {"AC_1_PHASE": 1, "AC_2_PHASE": 2, "AC_2_PHASE_SPLIT": 2, "AC_3_PHASE": 3, "DC": 1}


class CatalogError(ValueError):
    """The data files are inconsistent (raised at import, so a bad deploy fails at once)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def power_class(power_type: str) -> PowerClass:
    """Tariffs are per class: every AC_* connector shares the AC tariff."""
    return "DC" if power_type == "DC" else "AC"


class Caps(_Frozen):
    min: int = Field(ge=0)
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> Caps:
        if self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        return self


class TemplateCaps(_Frozen):
    locations: Caps
    chargers_per_location: Caps


class Connector(_Frozen):
    standard: ConnectorType
    format: ConnectorFormat
    power_type: PowerType
    max_voltage: PositiveInt
    max_amperage: PositiveInt
    max_electric_power: PositiveInt

    @model_validator(mode="after")
    def _physical(self) -> Connector:
        limit = _PHASES[self.power_type] * self.max_voltage * self.max_amperage
        if self.max_electric_power > limit:
            raise ValueError(f"max_electric_power {self.max_electric_power} W exceeds V x A limit {limit} W")
        return self


class ChargerModel(_Frozen):
    """A charger product. `evses` lists its power *outputs*, each with the connectors (cables or
    sockets) that share it: an output charges one vehicle at a time whatever its connector count, so
    it is one OCPI EVSE. A CCS + CHAdeMO fast charger with one power stage is one output with two
    connectors; a twin-socket wallbox is two outputs. (The key keeps its name: stored blueprints
    inline these models, and the template lock hashes them.)"""

    id: Slug
    vendor: str = Field(min_length=1, max_length=20)  # OCPP 1.6 chargePointVendor limit
    model: str = Field(min_length=1, max_length=20)  # OCPP 1.6 chargePointModel limit
    serial_prefix: str = Field(pattern=r"^[A-Z0-9]{2,6}$")
    power_type: PowerType  # the headline output's (the first); others may differ, e.g. an AC outlet on a DC unit
    max_power_w: PositiveInt  # the whole unit, all outputs together
    ocpp_versions: tuple[OcppVersion, ...] = Field(min_length=1)
    capabilities: tuple[Capability, ...]
    evses: tuple[tuple[Connector, ...], ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ChargerModel:
        for number, connectors in enumerate(self.evses, start=1):
            if not connectors:
                raise ValueError(f"{self.id}: output {number} needs at least one connector")
            # The connectors of one output are alternatives on one power stage: one kind of power.
            if len({c.power_type for c in connectors}) > 1:
                raise ValueError(f"{self.id}: the connectors of output {number} mix power types")
            for c in connectors:
                if c.max_electric_power > self.max_power_w:
                    raise ValueError(f"{self.id}: connector {c.standard} exceeds the model's max_power_w")
        if self.evses[0][0].power_type != self.power_type:
            raise ValueError(f"{self.id}: power_type {self.power_type} is not its first output's")
        return self

    @property
    def outputs(self) -> tuple[tuple[Connector, ...], ...]:
        """The power outputs (what `evses` holds), by their hardware name."""
        return self.evses


class MixEntry(_Frozen):
    model: Slug
    share: PositiveInt
    ocpp_version: OcppVersion


class Template(_Frozen):
    slug: Slug
    version: PositiveInt
    description: str = Field(min_length=1)
    site_kind: str
    locations: PositiveInt
    chargers_per_location: PositiveInt
    caps: TemplateCaps
    ocpp_versions: list[OcppVersion] = Field(min_length=1)
    power_types: list[PowerType] = Field(min_length=1)
    charger_mix: tuple[MixEntry, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _defaults_within_caps(self) -> Template:
        for key in OVERRIDE_KEYS:
            cap: Caps = getattr(self.caps, key)
            if cap.min < 1 or not cap.min <= getattr(self, key) <= cap.max:
                raise ValueError(f"{self.slug}: default {key} outside caps {cap.min}..{cap.max}")
        return self

    @property
    def chargers(self) -> int:
        """Default total chargers (what the gallery shows)."""
        return self.locations * self.chargers_per_location


class SiteKind(_Frozen):
    name_suffixes: tuple[str, ...] = Field(min_length=1)
    parking_types: tuple[ParkingType, ...] = Field(min_length=1)
    facilities: tuple[Facility, ...]
    facilities_count: Caps
    jitter_km: float = Field(gt=0, le=50)

    @model_validator(mode="after")
    def _enough_facilities(self) -> SiteKind:
        if self.facilities_count.max > len(self.facilities):
            raise ValueError("facilities_count.max exceeds the facility pool")
        return self


class PriceComponent(_Frozen):
    type: TariffDimension
    price_eur: Decimal = Field(ge=0)
    step_size: PositiveInt


class TariffRestrictions(_Frozen):
    start_time: HourMinute | None = None
    end_time: HourMinute | None = None
    min_duration: PositiveInt | None = None
    max_duration: PositiveInt | None = None


class TariffElement(_Frozen):
    price_components: tuple[PriceComponent, ...] = Field(min_length=1)
    restrictions: TariffRestrictions | None = None


class TariffProfile(_Frozen):
    id: str = Field(pattern=r"^[A-Z0-9-]{1,36}$")
    power_class: PowerClass
    type: TariffType
    elements: tuple[TariffElement, ...] = Field(min_length=1)


class Currency(_Frozen):
    per_eur: Decimal = Field(gt=0)
    decimals: int = Field(ge=0, le=4)


class StreetLocale(_Frozen):
    format: str
    streets: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _fits_ocpi(self) -> StreetLocale:
        longest = max(self.streets, key=len)
        sample = self.format.format(number=999, street=longest)  # raises on unknown placeholders
        if "{number}" not in self.format or "{street}" not in self.format or len(sample) > 45:
            raise ValueError(f"street format {self.format!r} must use number and street and fit 45 chars")
        return self


class _TemplatesDoc(_Frozen):
    site_kinds: dict[str, SiteKind]
    tariffs: tuple[TariffProfile, ...] = Field(min_length=1)
    currencies: dict[str, Currency]
    templates: tuple[Template, ...] = Field(min_length=1)


class _ChargersDoc(_Frozen):
    models: tuple[ChargerModel, ...] = Field(min_length=1)


class _StreetsDoc(_Frozen):
    fallback: str
    locales: dict[str, StreetLocale]


class Catalog(_Frozen):
    """All data, cross-checked. Module functions below serve the instance loaded at import."""

    site_kinds: dict[str, SiteKind]
    tariffs: dict[str, TariffProfile]  # by power class
    currencies: dict[str, Currency]
    templates: dict[str, Template]  # insertion order = file order (product templates first)
    models: dict[str, ChargerModel]
    street_locales: dict[str, StreetLocale]
    street_fallback: str
    countries: CountriesDoc | None = None  # generator 3's per-country data (None: a catalog without it)

    def currency(self, code: str) -> Currency:
        """Conversion data for a currency; unknown currencies keep the EUR figures (documented fallback)."""
        return self.currencies.get(code, Currency(per_eur=Decimal(1), decimals=2))

    def street_locale(self, languages: Iterable[str]) -> StreetLocale:
        """First locale matching the country's languages in order (full tag, then base), else the fallback."""
        for tag in languages:
            for key in (tag, tag.split("-")[0]):
                if key in self.street_locales:
                    return self.street_locales[key]
        return self.street_locales[self.street_fallback]


def _unique(kind: str, ids: list[str]) -> None:
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise CatalogError(f"duplicate {kind}: {', '.join(dupes)}")


def _check_template(t: Template, models: dict[str, ChargerModel], doc: _TemplatesDoc) -> None:
    if t.site_kind not in doc.site_kinds:
        raise CatalogError(f"template {t.slug}: unknown site_kind {t.site_kind!r}")
    used_power: set[str] = set()
    for entry in t.charger_mix:
        model = models.get(entry.model)
        if model is None:
            raise CatalogError(f"template {t.slug}: charger model {entry.model!r} is not in the catalog")
        if entry.ocpp_version not in model.ocpp_versions:
            raise CatalogError(
                f"template {t.slug}: model {model.id} does not support OCPP {entry.ocpp_version} "
                f"(supports {', '.join(model.ocpp_versions)})"
            )
        used_power.update(c.power_type for connectors in model.evses for c in connectors)
    # Declared lists are what the gallery shows: they must say exactly what the mix produces.
    if sorted(t.ocpp_versions) != sorted({e.ocpp_version for e in t.charger_mix}):
        raise CatalogError(f"template {t.slug}: ocpp_versions {t.ocpp_versions} do not match its charger mix")
    if sorted(t.power_types) != sorted(used_power):
        raise CatalogError(f"template {t.slug}: power_types {t.power_types} != mix {sorted(used_power)}")
    tariffs = {p.power_class for p in doc.tariffs}
    missing = {power_class(p) for p in used_power} - tariffs
    if missing:
        raise CatalogError(f"template {t.slug}: no tariff profile for {', '.join(sorted(missing))}")


def load_catalog(templates: Any, chargers: Any, streets: Any, countries: Any = None) -> Catalog:
    """Validate the parsed JSON documents together; raise CatalogError on any problem."""
    try:
        tdoc = _TemplatesDoc.model_validate(templates)
        cdoc = _ChargersDoc.model_validate(chargers)
        sdoc = _StreetsDoc.model_validate(streets)
        kdoc = None if countries is None else CountriesDoc.model_validate(countries)
    except ValidationError as exc:
        raise CatalogError(f"invalid catalog data: {exc}") from exc
    _unique("charger model ids", [m.id for m in cdoc.models])
    _unique("template slugs", [t.slug for t in tdoc.templates])
    _unique("tariff ids", [p.id for p in tdoc.tariffs])
    _unique("tariff power classes", [p.power_class for p in tdoc.tariffs])
    if sdoc.fallback not in sdoc.locales:
        raise CatalogError(f"street fallback locale {sdoc.fallback!r} is not defined")
    models = {m.id: m for m in cdoc.models}
    for t in tdoc.templates:
        _check_template(t, models, tdoc)
    if kdoc is not None:
        _check_countries(kdoc, models, tdoc)
    return Catalog(
        site_kinds=tdoc.site_kinds,
        tariffs={p.power_class: p for p in tdoc.tariffs},
        currencies=tdoc.currencies,
        templates={t.slug: t for t in tdoc.templates},
        models=models,
        street_locales=sdoc.locales,
        street_fallback=sdoc.fallback,
        countries=kdoc,
    )


def _check_countries(doc: CountriesDoc, models: dict[str, ChargerModel], tdoc: _TemplatesDoc) -> None:
    used = {e.model for t in tdoc.templates for e in t.charger_mix}
    suffixes = [s for kind in tdoc.site_kinds.values() for s in kind.name_suffixes]
    problems = doc.problems(models, used, suffixes)
    # A substitute takes the template's place output for output: same outputs, power classes, OCPP.
    for name, region in doc.regions.items():
        for original, substitute in sorted(region.models.items()):
            a, b = models.get(original), models.get(substitute)
            if a is None or b is None:
                continue
            if [{power_class(c.power_type) for c in o} for o in a.outputs] != [
                {power_class(c.power_type) for c in o} for o in b.outputs
            ] or not set(a.ocpp_versions) <= set(b.ocpp_versions):
                problems.append(f"region {name}: {substitute} cannot replace {original} output for output")
    if problems:
        raise CatalogError("countries.json: " + "; ".join(problems))


def load_catalog_dir(data_dir: Path) -> Catalog:
    """The catalog of a data directory laid out like `app/network/data`."""

    def read(name: str) -> Any:
        return json.loads((data_dir / name).read_text(encoding="utf-8"))

    countries = read("countries.json") if (data_dir / "countries.json").exists() else None
    return load_catalog(read("templates.json"), read("chargers.json"), read("streets.json"), countries)


CATALOG = load_catalog_dir(DATA_DIR)


def get_template(slug: str) -> Template | None:
    return CATALOG.templates.get(slug)


def list_templates() -> list[Template]:
    return list(CATALOG.templates.values())


def get_charger_model(model_id: str) -> ChargerModel | None:
    return CATALOG.models.get(model_id)


class CappedTemplate(Protocol):
    """What override validation needs: a catalog `Template` or a blueprint's template snapshot."""

    @property
    def slug(self) -> str: ...

    @property
    def caps(self) -> TemplateCaps: ...


def validate_overrides(template: CappedTemplate, overrides: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Every problem with `overrides` as (key, message); each message names the key and the cap."""
    if overrides is None:
        return []
    if not isinstance(overrides, dict):
        return [("overrides", "overrides must be an object with keys locations, chargers_per_location")]
    problems: list[tuple[str, str]] = []
    for key, value in overrides.items():
        if key not in OVERRIDE_KEYS:
            problems.append((str(key), f"unknown override {key!r}; allowed keys: {', '.join(OVERRIDE_KEYS)}"))
            continue
        cap: Caps = getattr(template.caps, key)
        bounds = f"between {cap.min} and {cap.max} for template {template.slug}"
        # bool is a subclass of int, but `true` is not a count.
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((key, f"{key} must be an integer {bounds}"))
        elif not cap.min <= value <= cap.max:
            problems.append((key, f"{key} must be {bounds} (got {value})"))
    return problems


def template_gallery_item(t: Template) -> dict[str, Any]:
    """CONTRACT "Template (gallery item)"; `chargers_per_location` is an additive field."""
    return {
        "slug": t.slug,
        "version": t.version,
        "description": t.description,
        "locations": t.locations,
        "chargers": t.chargers,
        "chargers_per_location": t.chargers_per_location,
        "caps": t.caps.model_dump(),
        "ocpp_versions": list(t.ocpp_versions),
        "power_types": list(t.power_types),
    }
