"""Published golden vectors (tandemdrive/ocpi-tariffs test_data, re-expressed in tests/data/tariff_vectors):
`price_periods` must reproduce each CDR's totals from its tariff and charging periods.

The vectors carry no location time zone; their reference pricer evaluates restrictions in UTC, so do we.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.charging.pricing import Price, price_periods

VECTORS = Path(__file__).parent / "data" / "tariff_vectors"
CASES = sorted(p.stem for p in VECTORS.glob("*.json"))

# Where our reading of OCPI 2.2.1 differs from a vector: the value we assert instead, and why.
DIFFERS: dict[str, tuple[dict[str, Any], str]] = {
    "025kwh_min_price__cdr2_less_than_2kWh": (
        {"total_cost": {"excl_vat": 0.50, "incl_vat": 0.55}},
        "the vector expects 0.30 / 0.33 (energy only), but the tariff has min_price 0.50 / 0.55 and the spec's "
        "own example for this tariff says: 'if less than 2 kWh is charged, € 0.50 (excl. VAT) or € 0.55 "
        "(incl. VAT) will be billed' (mod_tariffs, 'Tariff example € 0.25 per kWh + minimum price')",
    ),
}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _money(ours: Price | None, expected: dict[str, Any] | None) -> None:
    """The vectors leave a cost out when it is zero; ours is None when no component applied."""
    expected = expected or {"excl_vat": 0, "incl_vat": 0}
    got = ours or Price(Decimal(0), Decimal(0))
    assert got.excl_vat == Decimal(str(expected["excl_vat"]))
    assert got.incl_vat == Decimal(str(expected["incl_vat"]))


def test_every_vector_is_present() -> None:
    assert len(CASES) == 9
    assert set(DIFFERS) <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_vector_totals(case: str) -> None:
    data = json.loads((VECTORS / f"{case}.json").read_text())
    cdr = data["cdr"]
    expected = dict(cdr)
    if case in DIFFERS:
        expected.update(DIFFERS[case][0])
    priced = price_periods(
        data["tariff"],
        cdr["charging_periods"],
        start=_when(cdr["start_date_time"]),
        end=_when(cdr["end_date_time"]),
        time_zone="UTC",
    )
    assert priced.total_energy == Decimal(str(expected["total_energy"]))
    assert priced.total_time == Decimal(str(expected["total_time"]))
    assert priced.total_parking_time == Decimal(str(expected.get("total_parking_time", 0)))
    _money(priced.total_cost, expected["total_cost"])
    for name in ("fixed", "energy", "time", "parking", "reservation"):
        _money(getattr(priced, f"total_{name}_cost"), expected.get(f"total_{name}_cost"))
    assert [p["tariff_id"] for p in priced.charging_periods] == [data["tariff"]["id"]] * len(cdr["charging_periods"])
