"""Independent JSON Schemas for the OCPI objects our CPO sends, written from the spec text
(/work/shared/reference/ocpi-2.2.1.md §3, §4.1 and the OCPI 2.1.1 tag), not from our code.

Every object is closed (`additionalProperties: false`): a field the version does not define (a
2.2.1 field leaking into a 2.1.1 response, a typo) fails as loudly as a missing required one.
Validated with jsonschema_rs (installed with schemathesis).
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from app.network.ocpi_enums import (
    CAPABILITIES_211,
    CONNECTOR_TYPES_211,
    FACILITIES_211,
    POWER_TYPES_211,
    Capability,
    ConnectorFormat,
    ConnectorType,
    DayOfWeek,
    EvseStatus,
    Facility,
    LocationType211,
    ParkingRestriction,
    ParkingType,
    PowerType,
    TariffDimension,
    TariffType,
    values,
)

DATETIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$", "maxLength": 25}
LATITUDE = r"^-?[0-9]{1,2}\.[0-9]{5,7}$"
LONGITUDE = r"^-?[0-9]{1,3}\.[0-9]{5,7}$"
# eMI3 / ISO 15118 EVSE ID: country, operator, "E", outlet id (separators '*' optional).
EVSE_ID = r"^[A-Z]{2}\*?[A-Z0-9]{3}\*?E[A-Z0-9][A-Z0-9*]{0,30}$"
HHMM = r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$"


def _s(max_length: int, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, **extra}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _obj(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    missing = set(required) - set(properties)
    assert not missing, missing
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": False}


def _array(items: dict[str, Any], min_items: int = 0) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": min_items}


# ---- enums ---------------------------------------------------------------------------------------

# The enum values come from their one home in the app (app.network.ocpi_enums); the schemas below
# check shapes, types and formats independently.
STATUS = _enum(*values(EvseStatus))
PARKING_TYPE = _enum(*values(ParkingType))
LOCATION_TYPE_211 = _enum(*values(LocationType211))
CAPABILITY = _enum(*values(Capability))
CAPABILITY_211 = _enum(*sorted(CAPABILITIES_211))
CONNECTOR_TYPE = _enum(*values(ConnectorType))
CONNECTOR_TYPE_211 = _enum(*sorted(CONNECTOR_TYPES_211))
CONNECTOR_FORMAT = _enum(*values(ConnectorFormat))
POWER_TYPE = _enum(*values(PowerType))
POWER_TYPE_211 = _enum(*sorted(POWER_TYPES_211))
FACILITY = _enum(*values(Facility))
FACILITY_211 = _enum(*sorted(FACILITIES_211))
PARKING_RESTRICTION = _enum(*values(ParkingRestriction))
TARIFF_DIMENSION = _enum(*values(TariffDimension))
TARIFF_TYPE = _enum(*values(TariffType))
DAY_OF_WEEK = _enum(*values(DayOfWeek))

# ---- shared classes ------------------------------------------------------------------------------

DISPLAY_TEXT = _obj(["language", "text"], {"language": _s(2, minLength=2), "text": _s(512)})
GEO = _obj(
    ["latitude", "longitude"],
    {"latitude": _s(10, pattern=LATITUDE), "longitude": _s(11, pattern=LONGITUDE)},
)
IMAGE = {"type": "object", "required": ["url", "category", "type"]}
BUSINESS_DETAILS = _obj(["name"], {"name": _s(100), "website": _s(255), "logo": IMAGE})
REGULAR_HOURS = _obj(
    ["weekday", "period_begin", "period_end"],
    {
        "weekday": {"type": "integer", "minimum": 1, "maximum": 7},
        "period_begin": _s(5, pattern=HHMM),
        "period_end": _s(5, pattern=HHMM),
    },
)
EXCEPTIONAL_PERIOD = _obj(["period_begin", "period_end"], {"period_begin": DATETIME, "period_end": DATETIME})
HOURS = {
    **_obj(
        ["twentyfourseven"],
        {
            "twentyfourseven": {"type": "boolean"},
            "regular_hours": _array(REGULAR_HOURS),
            "exceptional_openings": _array(EXCEPTIONAL_PERIOD),
            "exceptional_closings": _array(EXCEPTIONAL_PERIOD),
        },
    ),
    # twentyfourseven=false needs at least one regular_hours entry.
    "if": {"properties": {"twentyfourseven": {"const": False}}},
    "then": {"required": ["regular_hours"], "properties": {"regular_hours": {"minItems": 1}}},
}
# 2.1.1 Hours: a choice between regular_hours and twentyfourseven (neither strictly required alone).
HOURS_211 = {
    "type": "object",
    "properties": {
        "twentyfourseven": {"type": "boolean"},
        "regular_hours": _array(REGULAR_HOURS),
        "exceptional_openings": _array(EXCEPTIONAL_PERIOD),
        "exceptional_closings": _array(EXCEPTIONAL_PERIOD),
    },
    "anyOf": [{"required": ["twentyfourseven"]}, {"required": ["regular_hours"]}],
    "additionalProperties": False,
}
STATUS_SCHEDULE = _obj(["period_begin", "status"], {"period_begin": DATETIME, "period_end": DATETIME, "status": STATUS})
ENERGY_MIX = {"type": "object", "required": ["is_green_energy"]}
NUMBER_4DP = {"type": "number", "multipleOf": 0.0001}

# ---- OCPI 2.2.1 ----------------------------------------------------------------------------------

CONNECTOR_221 = _obj(
    ["id", "standard", "format", "power_type", "max_voltage", "max_amperage", "last_updated"],
    {
        "id": _s(36, minLength=1),
        "standard": CONNECTOR_TYPE,
        "format": CONNECTOR_FORMAT,
        "power_type": POWER_TYPE,
        "max_voltage": {"type": "integer", "minimum": 1},
        "max_amperage": {"type": "integer", "minimum": 1},
        "max_electric_power": {"type": "integer", "minimum": 1},
        "tariff_ids": _array(_s(36, minLength=1)),
        "terms_and_conditions": _s(255),
        "last_updated": DATETIME,
    },
)
EVSE_221 = _obj(
    ["uid", "status", "connectors", "last_updated"],
    {
        "uid": _s(36, minLength=1),
        "evse_id": _s(48, pattern=EVSE_ID),
        "status": STATUS,
        "status_schedule": _array(STATUS_SCHEDULE),
        "capabilities": _array(CAPABILITY),
        "connectors": _array(CONNECTOR_221, min_items=1),
        "floor_level": _s(4),
        "coordinates": GEO,
        "physical_reference": _s(16),
        "directions": _array(DISPLAY_TEXT),
        "parking_restrictions": _array(PARKING_RESTRICTION),
        "images": _array(IMAGE),
        "last_updated": DATETIME,
    },
)
LOCATION_221 = _obj(
    [
        "country_code",
        "party_id",
        "id",
        "publish",
        "address",
        "city",
        "country",
        "coordinates",
        "time_zone",
        "last_updated",
    ],
    {
        "country_code": _s(2, pattern=r"^[A-Z]{2}$"),
        "party_id": _s(3, pattern=r"^[A-Z0-9]{3}$"),
        "id": _s(36, minLength=1),
        "publish": {"type": "boolean"},
        "publish_allowed_to": _array({"type": "object"}),
        "name": _s(255),
        "address": _s(255),
        "city": _s(45),
        "postal_code": _s(10),
        "state": _s(45),
        "country": _s(3, pattern=r"^[A-Z]{3}$"),
        "coordinates": GEO,
        "related_locations": _array({"type": "object"}),
        "parking_type": PARKING_TYPE,
        "evses": _array(EVSE_221),
        "directions": _array(DISPLAY_TEXT),
        "operator": BUSINESS_DETAILS,
        "suboperator": BUSINESS_DETAILS,
        "owner": BUSINESS_DETAILS,
        "facilities": _array(FACILITY),
        "time_zone": _s(255, pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+\-]+)*$"),
        "opening_times": HOURS,
        "charging_when_closed": {"type": "boolean"},
        "images": _array(IMAGE),
        "energy_mix": ENERGY_MIX,
        "last_updated": DATETIME,
    },
)
RESTRICTIONS_221 = _obj(
    [],
    {
        "start_time": _s(5, pattern=HHMM),
        "end_time": _s(5, pattern=HHMM),
        "start_date": _s(10, pattern=r"^\d{4}-\d{2}-\d{2}$"),
        "end_date": _s(10, pattern=r"^\d{4}-\d{2}-\d{2}$"),
        "min_kwh": NUMBER_4DP,
        "max_kwh": NUMBER_4DP,
        "min_current": NUMBER_4DP,
        "max_current": NUMBER_4DP,
        "min_power": NUMBER_4DP,
        "max_power": NUMBER_4DP,
        "min_duration": {"type": "integer", "minimum": 0},
        "max_duration": {"type": "integer", "minimum": 0},
        "day_of_week": _array(DAY_OF_WEEK),
        "reservation": _enum("RESERVATION", "RESERVATION_EXPIRES"),
    },
)
PRICE_COMPONENT_221 = _obj(
    ["type", "price", "step_size"],
    {
        "type": TARIFF_DIMENSION,
        "price": {**NUMBER_4DP, "minimum": 0},
        "vat": {**NUMBER_4DP, "minimum": 0},
        "step_size": {"type": "integer", "minimum": 0},
    },
)
PRICE = _obj(["excl_vat"], {"excl_vat": NUMBER_4DP, "incl_vat": NUMBER_4DP})
TARIFF_221 = _obj(
    ["country_code", "party_id", "id", "currency", "elements", "last_updated"],
    {
        "country_code": _s(2, pattern=r"^[A-Z]{2}$"),
        "party_id": _s(3, pattern=r"^[A-Z0-9]{3}$"),
        "id": _s(36, minLength=1),
        "currency": _s(3, pattern=r"^[A-Z]{3}$"),
        "type": TARIFF_TYPE,
        "tariff_alt_text": _array(DISPLAY_TEXT),
        "tariff_alt_url": _s(255),
        "min_price": PRICE,
        "max_price": PRICE,
        "elements": _array(
            _obj(
                ["price_components"],
                {"price_components": _array(PRICE_COMPONENT_221, min_items=1), "restrictions": RESTRICTIONS_221},
            ),
            min_items=1,
        ),
        "start_date_time": DATETIME,
        "end_date_time": DATETIME,
        "energy_mix": ENERGY_MIX,
        "last_updated": DATETIME,
    },
)

# ---- OCPI 2.1.1 ----------------------------------------------------------------------------------

CONNECTOR_211 = _obj(
    ["id", "standard", "format", "power_type", "voltage", "amperage", "last_updated"],
    {
        "id": _s(36, minLength=1),
        "standard": CONNECTOR_TYPE_211,
        "format": CONNECTOR_FORMAT,
        "power_type": POWER_TYPE_211,
        "voltage": {"type": "integer", "minimum": 1},
        "amperage": {"type": "integer", "minimum": 1},
        "tariff_id": _s(36, minLength=1),
        "terms_and_conditions": _s(255),
        "last_updated": DATETIME,
    },
)
EVSE_211 = _obj(
    ["uid", "status", "connectors", "last_updated"],
    {
        "uid": _s(39, minLength=1),
        "evse_id": _s(48, pattern=EVSE_ID),
        "status": STATUS,
        "status_schedule": _array(STATUS_SCHEDULE),
        "capabilities": _array(CAPABILITY_211),
        "connectors": _array(CONNECTOR_211, min_items=1),
        "floor_level": _s(4),
        "coordinates": GEO,
        "physical_reference": _s(16),
        "directions": _array(DISPLAY_TEXT),
        "parking_restrictions": _array(PARKING_RESTRICTION),
        "images": _array(IMAGE),
        "last_updated": DATETIME,
    },
)
LOCATION_211 = _obj(
    ["id", "type", "address", "city", "postal_code", "country", "coordinates", "last_updated"],
    {
        "id": _s(39, minLength=1),
        "type": LOCATION_TYPE_211,
        "name": _s(255),
        "address": _s(45),
        "city": _s(45),
        "postal_code": _s(10),
        "country": _s(3, pattern=r"^[A-Z]{3}$"),
        "coordinates": GEO,
        "related_locations": _array({"type": "object"}),
        "evses": _array(EVSE_211),
        "directions": _array(DISPLAY_TEXT),
        "operator": BUSINESS_DETAILS,
        "suboperator": BUSINESS_DETAILS,
        "owner": BUSINESS_DETAILS,
        "facilities": _array(FACILITY_211),
        "time_zone": _s(255),
        "opening_times": HOURS_211,
        "charging_when_closed": {"type": "boolean"},
        "images": _array(IMAGE),
        "energy_mix": ENERGY_MIX,
        "last_updated": DATETIME,
    },
)
RESTRICTIONS_211 = _obj(
    [],
    {k: v for k, v in RESTRICTIONS_221["properties"].items() if k not in ("min_current", "max_current", "reservation")},
)
TARIFF_211 = _obj(
    ["id", "currency", "elements", "last_updated"],
    {
        "id": _s(36, minLength=1),
        "currency": _s(3, pattern=r"^[A-Z]{3}$"),
        "tariff_alt_text": _array(DISPLAY_TEXT),
        "tariff_alt_url": _s(255),
        "elements": _array(
            _obj(
                ["price_components"],
                {
                    "price_components": _array(
                        _obj(
                            ["type", "price", "step_size"],
                            {
                                "type": TARIFF_DIMENSION,
                                "price": {**NUMBER_4DP, "minimum": 0},
                                "step_size": {"type": "integer", "minimum": 0},
                            },
                        ),
                        min_items=1,
                    ),
                    "restrictions": RESTRICTIONS_211,
                },
            ),
            min_items=1,
        ),
        "energy_mix": ENERGY_MIX,
        "last_updated": DATETIME,
    },
)

ENVELOPE = {
    "type": "object",
    "required": ["status_code", "timestamp"],
    "properties": {"status_code": {"type": "integer"}, "status_message": {"type": "string"}, "timestamp": DATETIME},
}

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("2.2.1", "location"): LOCATION_221,
    ("2.2.1", "evse"): EVSE_221,
    ("2.2.1", "connector"): CONNECTOR_221,
    ("2.2.1", "tariff"): TARIFF_221,
    ("2.1.1", "location"): LOCATION_211,
    ("2.1.1", "evse"): EVSE_211,
    ("2.1.1", "connector"): CONNECTOR_211,
    ("2.1.1", "tariff"): TARIFF_211,
    ("any", "envelope"): ENVELOPE,
}
_VALIDATORS = {key: jsonschema_rs.Draft202012Validator(schema) for key, schema in SCHEMAS.items()}


def errors(version: str, kind: str, instance: Any) -> list[str]:
    """Schema violations of `instance` as readable strings (empty when valid)."""
    return [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in _VALIDATORS[(version, kind)].iter_errors(instance)
    ]


def assert_valid(version: str, kind: str, instance: Any) -> None:
    problems = errors(version, kind, instance)
    assert not problems, f"{version} {kind} {instance.get('id') or instance.get('uid')}: {problems[:5]}"
