"""Database rows → OCPI JSON objects, for OCPI 2.2.1 and 2.1.1.

Rows keep the static OCPI 2.2.1 parts in `data` (written by app.ocpi.static at provisioning);
dynamic parts (EVSE status, connectors, timestamps) come from columns and are merged here. 2.1.1 is
derived from the same 2.2.1 parts: it has no country_code/party_id/publish, a required Location
`type` instead of the optional `parking_type`, `voltage`/`amperage` on connectors, a single
`tariff_id`, and smaller enums (values it lacks are dropped, never sent).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from app.network.ocpi_enums import CAPABILITIES_211, FACILITIES_211, POWER_TYPES_211
from app.ocpi.transport import ocpi_datetime
from app.store.tables import tariff_ids

V211 = "2.1.1"

# 2.1.1 LocationType; 2.2 replaced it with the optional ParkingType (which adds ALONG_MOTORWAY and
# ON_DRIVEWAY, neither of which 2.1.1 can say).
_LOCATION_TYPE_211 = {
    "ON_STREET": "ON_STREET",
    "PARKING_GARAGE": "PARKING_GARAGE",
    "UNDERGROUND_GARAGE": "UNDERGROUND_GARAGE",
    "PARKING_LOT": "PARKING_LOT",
    "ALONG_MOTORWAY": "OTHER",
    "ON_DRIVEWAY": "OTHER",
}
# Fields 2.1.1 does not know at all (Location / Tariff level).
_LOCATION_ONLY_221 = ("country_code", "party_id", "publish", "publish_allowed_to", "parking_type")
_TARIFF_211_KEYS = ("id", "currency", "tariff_alt_text", "tariff_alt_url", "elements", "energy_mix")
_RESTRICTIONS_211 = frozenset(
    [
        "start_time",
        "end_time",
        "start_date",
        "end_date",
        "min_kwh",
        "max_kwh",
        "min_power",
        "max_power",
        "min_duration",
        "max_duration",
        "day_of_week",
    ]
)
_FOUR_PLACES = Decimal("0.0001")
_NUMBER_SPLIT = re.compile(r"(\d+)")


def natural_key(value: str) -> tuple[Any, ...]:
    """Sort key giving generator order whatever the digit count: LOC1-C02-10 after LOC1-C02-9."""
    return tuple(int(p) if p.isdigit() else p for p in _NUMBER_SPLIT.split(value))


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# ---- connectors ----------------------------------------------------------------------------------


def connector(row: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A Connector row (columns of app.store.tables.Connector) as an OCPI Connector."""
    if version == V211:
        out: dict[str, Any] = {
            "id": row["id"],
            "standard": row["standard"],
            "format": row["format"],
            # 2.1.1 has no 2-phase types; a split/2-phase supply is single-phase to the car.
            "power_type": row["power_type"] if row["power_type"] in POWER_TYPES_211 else "AC_1_PHASE",
            "voltage": row["max_voltage"],
            "amperage": row["max_amperage"],
        }
        if row["tariff_id"]:
            out["tariff_id"] = tariff_ids(row["tariff_id"])[0]
    else:
        out = {
            "id": row["id"],
            "standard": row["standard"],
            "format": row["format"],
            "power_type": row["power_type"],
            "max_voltage": row["max_voltage"],
            "max_amperage": row["max_amperage"],
        }
        if row["max_electric_power"] is not None:
            out["max_electric_power"] = row["max_electric_power"]
        if row["tariff_id"]:
            out["tariff_ids"] = tariff_ids(row["tariff_id"])
    out["last_updated"] = ocpi_datetime(row["last_updated"])
    return out


# ---- EVSEs ---------------------------------------------------------------------------------------


def evse(row: Mapping[str, Any], connectors: Sequence[Mapping[str, Any]], version: str) -> dict[str, Any]:
    """An Evse row plus its Connector rows as an OCPI EVSE (connectors in generator order)."""
    out = dict(row["data"])
    out["status"] = row["status"]
    if version == V211 and "capabilities" in out:
        out["capabilities"] = [c for c in out["capabilities"] if c in CAPABILITIES_211]
    ordered = sorted(connectors, key=lambda c: natural_key(c["id"]))
    out["connectors"] = [connector(c, version) for c in ordered]
    out["last_updated"] = ocpi_datetime(row["last_updated"])
    return out


# ---- locations -----------------------------------------------------------------------------------


def location(
    row: Mapping[str, Any],
    evses: Sequence[Mapping[str, Any]],
    connectors_by_evse: Mapping[str, Sequence[Mapping[str, Any]]],
    version: str,
) -> dict[str, Any]:
    """A Location row plus its EVSE rows and their connectors as an OCPI Location."""
    data: dict[str, Any] = row["data"]
    if version == V211:
        out = {k: v for k, v in data.items() if k not in _LOCATION_ONLY_221}
        out["type"] = _LOCATION_TYPE_211.get(data.get("parking_type", ""), "UNKNOWN")
        # postal_code is required in 2.1.1; places without postal codes send an empty string.
        out.setdefault("postal_code", "")
        if "facilities" in out:
            out["facilities"] = [f for f in out["facilities"] if f in FACILITIES_211]
    else:
        out = dict(data)
    ordered = sorted(evses, key=lambda e: natural_key(e["uid"]))
    out["evses"] = [evse(e, connectors_by_evse.get(e["uid"], ()), version) for e in ordered]
    out["last_updated"] = ocpi_datetime(row["last_updated"])
    return out


# ---- tariffs -------------------------------------------------------------------------------------


def _price(value: Any) -> float:
    """OCPI `number`: at most 4 decimals, sent as a JSON number (never a string; 9 goes out as 9.0
    so typed clients always see a decimal)."""
    return float(Decimal(str(value)).quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP))


def _element(element: Mapping[str, Any], version: str) -> dict[str, Any]:
    components = []
    for pc in element["price_components"]:
        out = {"type": pc["type"], "price": _price(pc["price"]), "step_size": pc["step_size"]}
        if version != V211 and pc.get("vat") is not None:
            out["vat"] = _price(pc["vat"])
        components.append(out)
    result: dict[str, Any] = {"price_components": components}
    restrictions = element.get("restrictions")
    if restrictions:
        if version == V211:
            restrictions = {k: v for k, v in restrictions.items() if k in _RESTRICTIONS_211}
        if restrictions:
            result["restrictions"] = restrictions
    return result


def tariff(row: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A Tariff row as an OCPI Tariff."""
    data: dict[str, Any] = row["data"]
    out = {k: data[k] for k in _TARIFF_211_KEYS if k in data} if version == V211 else dict(data)
    out["elements"] = [_element(e, version) for e in data["elements"]]
    out["last_updated"] = ocpi_datetime(row["last_updated"])
    return out
