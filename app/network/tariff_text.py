"""Tariff alt texts of generator 3: the country's language, then English, stating the VAT."""

from __future__ import annotations

from decimal import Decimal

from app.network.plans import DisplayText, TariffElementPlan, TariffRestrictionsPlan
from app.network.regional import TariffTexts

_PHRASE = {"ENERGY": "energy", "TIME": "time", "PARKING_TIME": "parking", "FLAT": "flat"}


def _number(value: float | Decimal, decimals: int, texts: TariffTexts) -> str:
    return f"{value:.{decimals}f}".replace(".", texts.decimal)


def _vat(percent: Decimal, texts: TariffTexts) -> str:
    return texts.vat.format(vat=format(percent.normalize(), "f").replace(".", texts.decimal))


def _text(
    elements: tuple[TariffElementPlan, ...],
    currency: str,
    decimals: int,
    vat: Decimal | None,
    texts: TariffTexts,
    ad_hoc: bool,
) -> str:
    parts = []
    for element in elements:
        r = element.restrictions or TariffRestrictionsPlan()
        when = []
        if r.start_time and r.end_time:
            when.append(texts.window.format(start=r.start_time, end=r.end_time))
        if r.min_duration:
            when.append(texts.after.format(minutes=r.min_duration // 60))
        if r.max_duration:
            when.append(texts.first.format(minutes=r.max_duration // 60))
        for c in element.price_components:
            price = _number(c.price, decimals, texts)
            parts.append(" ".join([getattr(texts, _PHRASE[c.type]).format(price=price, currency=currency), *when]))
    text = "; ".join(parts)
    if vat is not None:
        text += f" ({_vat(vat, texts)})"
    return (texts.ad_hoc + text) if ad_hoc else text


def alt_texts(
    elements: tuple[TariffElementPlan, ...],
    currency: str,
    decimals: int,
    vat: Decimal | None,
    languages: tuple[TariffTexts, ...],
    ad_hoc: bool,
) -> tuple[DisplayText, ...]:
    """One DisplayText per language (the country's first, English last); VAT named only where it applies."""
    return tuple(DisplayText(t.language, _text(elements, currency, decimals, vat, t, ad_hoc)[:512]) for t in languages)
