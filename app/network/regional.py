"""What makes a CPO's network true to its country (generator version 3), from `data/countries.json`:
regional charger hardware, VAT, the `state` field, tariff texts in the country's language, and
opening hours and publication per site type. `resolve_realism` picks the part one CPO needs; the
blueprint stores it (`CountrySnapshot.realism`), so a later data edit changes only new CPOs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.network.ocpi_enums import Capability

HourMinute = Annotated[str, Field(pattern=r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$")]
Weekday = Annotated[int, Field(ge=1, le=7)]
# EVSEs with one of these take a payment card at the charger: they get an AD_HOC_PAYMENT tariff.
CARD_CAPABILITIES: frozenset[Capability] = frozenset(
    ["CREDIT_CARD_PAYABLE", "DEBIT_CARD_PAYABLE", "CONTACTLESS_CARD_SUPPORT"]
)
TEXT_FIELDS = ("energy", "time", "parking", "flat", "window", "after", "first", "vat", "ad_hoc")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Hours(_Frozen):
    """One opening period, repeated on each of `weekdays` (1 = Monday, OCPI RegularHours)."""

    weekdays: tuple[Weekday, ...] = Field(min_length=1)
    begin: HourMinute
    end: HourMinute


class SiteRule(_Frozen):
    """What a location named with `suffix` is: its opening hours (none = 24/7) and publication."""

    suffix: str
    site_type: str
    hours: tuple[Hours, ...]
    published: bool


class TariffTexts(_Frozen):
    """Phrases for tariff_alt_text in one language ({price}, {currency}, {minutes}, {vat} …)."""

    language: str = Field(pattern=r"^[a-z]{2}$")
    decimal: str = Field(min_length=1, max_length=1)
    energy: str
    time: str
    parking: str
    flat: str
    window: str
    after: str
    first: str
    vat: str
    ad_hoc: str


class CountryRealism(_Frozen):
    region: str  # "europe" unless countries.json lists the country in a region
    vat_percent: Decimal | None  # None: no VAT applies (2.2.1 omits `vat`)
    vat_known: bool  # False: the country is not modelled; prices carry no `vat` either way
    state_field: bool  # locations carry `state` (the admin-1 code, e.g. a US state)
    texts: tuple[TariffTexts, ...] = Field(min_length=1)  # the country's language first, then English
    sites: tuple[SiteRule, ...]
    garage_hours: tuple[Hours, ...]


class _Region(_Frozen):
    countries: tuple[str, ...]
    models: dict[str, str]


class CountriesDoc(_Frozen):
    about: str
    vat_percent: dict[str, Decimal | None]
    regions: dict[str, _Region]
    state_countries: tuple[str, ...]
    sunday_closed: tuple[str, ...]
    site_types: dict[str, str]
    hours: dict[str, tuple[Hours, ...]]
    garage_hours: tuple[Hours, ...]
    unpublished_types: tuple[str, ...]
    tariff_texts: dict[str, dict[str, str]]

    def region_of(self, code: str) -> str:
        return next((name for name, r in self.regions.items() if code in r.countries), "europe")

    def problems(self, model_ids: Iterable[str], used_models: Iterable[str], suffixes: Iterable[str]) -> list[str]:
        """Cross-checks against the rest of the catalog (empty when consistent)."""
        out = []
        known = set(model_ids)
        for name, region in self.regions.items():
            out += [f"region {name}: no substitute for {m}" for m in sorted(set(used_models) - region.models.keys())]
            out += [f"region {name}: unknown model {m}" for m in sorted(set(region.models.values()) - known)]
        for suffix in sorted(set(suffixes) - self.site_types.keys()):
            out.append(f"site name suffix {suffix!r} has no site type")
        out += [f"site type {t!r} has no hours" for t in sorted(set(self.site_types.values()) - self.hours.keys())]
        if "en" not in self.tariff_texts:
            out.append("tariff_texts needs English")
        for lang, texts in self.tariff_texts.items():
            try:
                TariffTexts(language=lang, **texts)
            except ValidationError as exc:
                out.append(f"tariff_texts {lang}: {exc.errors()[0]['msg']}")
        return out

    def substitutes(self, code: str) -> Mapping[str, str]:
        """Catalog model id → the model the country's region installs instead (empty in Europe)."""
        region = self.regions.get(self.region_of(code))
        return region.models if region else {}

    def resolve(self, code: str, languages: list[str], suffixes: Iterable[str]) -> CountryRealism:
        """The realism data of country `code` for a template with these site name suffixes."""
        region = self.region_of(code)
        bases = [tag.split("-")[0] for tag in languages]
        wanted = [lang for lang in dict.fromkeys([*bases[:1], "en"]) if lang in self.tariff_texts]
        sites = []
        for suffix in dict.fromkeys(suffixes):
            site_type = self.site_types[suffix]
            hours = self.hours[site_type]
            if code in self.sunday_closed and site_type in ("mall", "retail"):
                hours = tuple(h.model_copy(update={"weekdays": tuple(d for d in h.weekdays if d != 7)}) for h in hours)
                hours = tuple(h for h in hours if h.weekdays)
            published = site_type not in self.unpublished_types
            sites.append(SiteRule(suffix=suffix, site_type=site_type, hours=hours, published=published))
        return CountryRealism(
            region=region,
            vat_percent=self.vat_percent.get(code),
            vat_known=code in self.vat_percent,
            state_field=code in self.state_countries,
            texts=tuple(TariffTexts(language=lang, **self.tariff_texts[lang]) for lang in wanted),
            sites=tuple(sites),
            garage_hours=self.garage_hours,
        )


def load_countries(path: Path) -> CountriesDoc:
    return CountriesDoc.model_validate(json.loads(path.read_text(encoding="utf-8")))
