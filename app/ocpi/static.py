"""Generator plans → the static part of OCPI 2.2.1 objects, stored as JSON on each row.

Dynamic parts (EVSE status, connectors, last_updated) are added when serving, from their columns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from app.network.generator import EvsePlan, LocationPlan, NetworkSpec, TariffPlan


def _plain(value: Any) -> Any:
    """Dataclasses/tuples → JSON-ready dicts/lists, dropping None (OCPI omits absent optionals)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def location_static(loc: LocationPlan, spec: NetworkSpec) -> dict[str, Any]:
    data: dict[str, Any] = {
        "country_code": spec.country_code,
        "party_id": spec.party_id,
        "id": loc.id,
        # Generator 3 decides publication and hours per site; versions 1 and 2 were published and 24/7.
        "publish": True if loc.publish is None else loc.publish,
        "publish_allowed_to": None if loc.publish_allowed_to is None else _plain(loc.publish_allowed_to),
        "name": loc.name,
        "address": loc.address,
        "city": loc.city,
        "postal_code": loc.postal_code,
        "state": loc.state,
        "country": loc.country,
        "coordinates": {"latitude": loc.latitude, "longitude": loc.longitude},
        "parking_type": loc.parking_type,
        "facilities": list(loc.facilities),
        "time_zone": loc.time_zone,
        "opening_times": {"twentyfourseven": True} if loc.opening_times is None else _plain(loc.opening_times),
        "operator": {"name": spec.name_prefix},
    }
    return {k: v for k, v in data.items() if v is not None}


def evse_static(evse: EvsePlan) -> dict[str, Any]:
    return {
        "uid": evse.uid,
        "evse_id": evse.evse_id,
        "capabilities": list(evse.capabilities),
        "physical_reference": evse.physical_reference,
    }


def tariff_static(tariff: TariffPlan, spec: NetworkSpec) -> dict[str, Any]:
    return {
        "country_code": spec.country_code,
        "party_id": spec.party_id,
        "id": tariff.id,
        "currency": tariff.currency,
        "type": tariff.type,
        "tariff_alt_text": _plain(tariff.tariff_alt_text),
        "elements": _plain(tariff.elements),
    }
