"""A priced session as the OCPI CDR its eMSP receives (2.2.1 or 2.1.1, the CPO's version).

The CDR id is the Session id (unique per CPO, ≤ 36 characters): a redelivery or a rebuild after a
crash names the same CDR, so the eMSP can tell it already has it. `signed_data` is left out (no
calibration-law meter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from app.charging.pricing import PricedCdr
from app.ocpi import render
from app.ocpi.transport import ocpi_datetime
from app.store.charging_tables import ChargingSession
from app.store.db import as_utc
from app.store.tables import Cpo

V211 = render.V211
# 2.1.1 CdrDimensionType has no power or reservation dimensions.
_DIMENSIONS_211 = frozenset({"ENERGY", "FLAT", "MAX_CURRENT", "MIN_CURRENT", "PARKING_TIME", "TIME"})


def cdr(
    cs: ChargingSession,
    cpo: Cpo,
    priced: PricedCdr,
    *,
    location: Mapping[str, Any],
    evse: Mapping[str, Any],
    connector: Mapping[str, Any],
    tariff: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The OCPI CDR. `location`, `evse`, `connector`, `tariff`: rows (column mappings) of
    app.store.tables; `tariff` None when the connector has none."""
    if cpo.ocpi_version == V211:
        return _cdr_211(cs, priced, location, evse, connector, tariff, now)
    return _cdr_221(cs, cpo, priced, location, evse, connector, tariff, now)


def _cdr_221(
    cs: ChargingSession,
    cpo: Cpo,
    priced: PricedCdr,
    location: Mapping[str, Any],
    evse: Mapping[str, Any],
    connector: Mapping[str, Any],
    tariff: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    data: Mapping[str, Any] = location["data"]
    cdr_location = {
        "id": location["id"],
        **{k: data[k] for k in ("name", "address", "city", "postal_code", "state", "country") if k in data},
        "coordinates": data["coordinates"],
        "evse_uid": evse["uid"],
        "evse_id": evse["evse_id"],
        "connector_id": connector["id"],
        "connector_standard": connector["standard"],
        "connector_format": connector["format"],
        "connector_power_type": connector["power_type"],
    }
    out: dict[str, Any] = {
        "country_code": cpo.country_code,
        "party_id": cpo.party_id,
        "id": cs.session_id,
        "start_date_time": _at(cs.start_at),
        "end_date_time": _at(cs.end_at or cs.start_at),
        "session_id": cs.session_id,
        "cdr_token": {
            "country_code": cs.token_country_code,
            "party_id": cs.token_party_id,
            "uid": cs.token_uid,
            "type": cs.token_type,
            "contract_id": cs.contract_id,
        },
        "auth_method": cs.auth_method,
        "cdr_location": cdr_location,
        "currency": cs.currency,
    }
    if cs.authorization_reference:
        out["authorization_reference"] = cs.authorization_reference
    if tariff is not None:
        out["tariffs"] = [render.tariff(tariff, "2.2.1")]
    out |= priced.ocpi_fields()
    out["credit"] = False
    out["last_updated"] = ocpi_datetime(now)
    return out


def _cdr_211(
    cs: ChargingSession,
    priced: PricedCdr,
    location: Mapping[str, Any],
    evse: Mapping[str, Any],
    connector: Mapping[str, Any],
    tariff: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    fields = priced.ocpi_fields()
    out: dict[str, Any] = {
        "id": cs.session_id,
        "start_date_time": _at(cs.start_at),
        "stop_date_time": _at(cs.end_at or cs.start_at),
        "auth_id": cs.contract_id,
        "auth_method": "AUTH_REQUEST" if cs.auth_method == "COMMAND" else cs.auth_method,  # no COMMAND in 2.1.1
        # 2.1.1 embeds the Location with only the EVSE and connector used.
        "location": render.location(location, [evse], {evse["uid"]: [connector]}, V211),
        "currency": cs.currency,
        "charging_periods": _periods_211(fields["charging_periods"]),
        # 2.1.1 costs are one number, excluding VAT.
        "total_cost": fields["total_cost"]["excl_vat"],
        "total_energy": fields["total_energy"],
        "total_time": fields["total_time"],
        "total_parking_time": fields["total_parking_time"],
        "last_updated": ocpi_datetime(now),
    }
    if tariff is not None:
        out["tariffs"] = [render.tariff(tariff, V211)]
    return out


def _periods_211(periods: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for period in periods:
        dimensions = [d for d in period["dimensions"] if d["type"] in _DIMENSIONS_211]
        if dimensions:
            out.append({"start_date_time": period["start_date_time"], "dimensions": dimensions})
    return out


def _at(value: datetime) -> str:
    stamp = as_utc(value)
    assert stamp is not None
    return ocpi_datetime(stamp)
