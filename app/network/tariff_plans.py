"""A template's tariff profile priced for a country: the `TariffPlan`s the generator emits.

Prices are the profile's EUR figures converted at the blueprint's frozen rate and rounded half-up to
the currency's decimals. Versions 1 and 2 (`legacy_tariff`) carry no `vat` and one English text;
version 3 (`realistic_tariff`) puts the country's VAT on every price component and texts in the
country's language and English (`app.network.tariff_text`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from app.network.blueprint import CountrySnapshot
from app.network.catalog import Currency, TariffElement, TariffProfile
from app.network.plans import DisplayText, PriceComponentPlan, TariffElementPlan, TariffPlan, TariffRestrictionsPlan
from app.network.tariff_text import alt_texts

_UNIT_TEXT = {"ENERGY": "/kWh", "TIME": "/h charging", "PARKING_TIME": "/h parking", "FLAT": " per session"}


def _element(element: TariffElement, cur: Currency, vat: Decimal | None = None) -> TariffElementPlan:
    quantum = Decimal(1).scaleb(-cur.decimals)
    restrictions = element.restrictions
    return TariffElementPlan(
        price_components=tuple(
            PriceComponentPlan(
                type=pc.type,
                price=float((pc.price_eur * cur.per_eur).quantize(quantum, rounding=ROUND_HALF_UP)),
                step_size=pc.step_size,
                vat=None if vat is None else float(vat),
            )
            for pc in element.price_components
        ),
        restrictions=None if restrictions is None else TariffRestrictionsPlan(**restrictions.model_dump()),
    )


def _legacy_text(elements: tuple[TariffElementPlan, ...], currency: str, decimals: int) -> str:
    parts = []
    for element in elements:
        r = element.restrictions or TariffRestrictionsPlan()
        when = f" {r.start_time}-{r.end_time}" if r.start_time and r.end_time else ""
        when += f" after {r.min_duration // 60} min" if r.min_duration else ""
        when += f" for the first {r.max_duration // 60} min" if r.max_duration else ""
        parts += [f"{c.price:.{decimals}f} {currency}{_UNIT_TEXT[c.type]}{when}" for c in element.price_components]
    return "; ".join(parts) + " (excl. VAT)"


def legacy_tariff(profile: TariffProfile, country: CountrySnapshot) -> TariffPlan:
    """Generator versions 1 and 2: the profile's own id and type, no VAT, an English text."""
    code, cur = country.currency, country.rate
    elements = tuple(_element(e, cur) for e in profile.elements)
    text = (DisplayText("en", _legacy_text(elements, code, cur.decimals)),)
    return TariffPlan(profile.id, code, profile.type, elements, text)


def realistic_tariff(profile: TariffProfile, tariff_id: str, tariff_type: str, country: CountrySnapshot) -> TariffPlan:
    """Generator version 3: `vat` on every component where the country's rate is known, texts in the
    country's language and English."""
    realism = country.realism
    if realism is None:
        raise ValueError(f"country {country.code} has no realism data (a blueprint resolved before generator 3)")
    code, cur = country.currency, country.rate
    vat = realism.vat_percent if realism.vat_known else None
    elements = tuple(_element(e, cur, vat) for e in profile.elements)
    texts = alt_texts(elements, code, cur.decimals, vat, realism.texts, ad_hoc=tariff_type == "AD_HOC_PAYMENT")
    return TariffPlan(tariff_id, code, tariff_type, elements, texts)
