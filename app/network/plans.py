"""The generator's public plan types: its input spec and what it produces (frozen dataclasses)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

GENERATOR_VERSION = 3  # what new CPOs are created with (app.control.create names it in their spec)
# A spec that names no version was stored before versions existed, by generator 1: it must keep
# regenerating as version 1, so this (not GENERATOR_VERSION) is the field's default.
UNVERSIONED_GENERATOR_VERSION = 1
# Fields added by generator 3: versions 1 and 2 leave them None, and `plan_dict` leaves them out then,
# so the canonical JSON of an older version's plan stays byte-identical.
_SINCE_3: dict[str, Any] = {"omit_if_none": True}


def plan_dict(value: Any) -> Any:
    """`dataclasses.asdict` without the generator-3 fields an older version left None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plan_dict(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_if_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, (tuple, list)):
        return [plan_dict(v) for v in value]
    return value


@dataclass(frozen=True)
class NetworkSpec:
    template: str
    seed: int
    country_code: str  # ISO 3166-1 alpha-2, upper-case
    party_id: str
    name_prefix: str
    locations: int | None = None  # override; None = template default
    chargers_per_location: int | None = None
    generator_version: int = UNVERSIONED_GENERATOR_VERSION


@dataclass(frozen=True)
class NetworkShape:
    locations: int
    chargers_per_location: int
    chargers: int
    evses: int
    connectors: int
    tariffs: int


@dataclass(frozen=True)
class ConnectorPlan:
    id: str
    standard: str
    format: str
    power_type: str
    max_voltage: int
    max_amperage: int
    max_electric_power: int
    tariff_id: str  # the REGULAR tariff (what OCPI 2.1.1's single tariff_id names)
    tariff_ids: tuple[str, ...] | None = field(
        default=None, metadata=_SINCE_3
    )  # 2.2.1: REGULAR, then AD_HOC_PAYMENT on card EVSEs


@dataclass(frozen=True)
class EvsePlan:
    uid: str
    evse_id: str
    charger_identity: str
    ocpp_evse_id: int
    capabilities: tuple[str, ...]
    physical_reference: str
    connectors: tuple[ConnectorPlan, ...]


@dataclass(frozen=True)
class ChargerPlan:
    identity: str
    location_id: str
    model_id: str
    vendor: str
    model: str
    ocpp_version: str
    serial_number: str
    evse_uids: tuple[str, ...]


@dataclass(frozen=True)
class RegularHoursPlan:
    weekday: int  # 1 = Monday
    period_begin: str
    period_end: str


@dataclass(frozen=True)
class OpeningTimesPlan:
    twentyfourseven: bool
    regular_hours: tuple[RegularHoursPlan, ...] | None = None


@dataclass(frozen=True)
class PublishTokenPlan:
    """OCPI PublishTokenType: who may see an unpublished location (here: the operator's fleet group)."""

    group_id: str
    issuer: str


@dataclass(frozen=True)
class LocationPlan:
    index: int
    id: str
    name: str
    address: str
    city: str
    postal_code: str | None
    state: str | None
    country: str  # ISO 3166-1 alpha-3
    country_code: str
    latitude: str
    longitude: str
    time_zone: str
    parking_type: str
    facilities: tuple[str, ...]
    evses: tuple[EvsePlan, ...]
    chargers: tuple[ChargerPlan, ...]
    publish: bool | None = field(default=None, metadata=_SINCE_3)  # None: published (versions 1 and 2)
    publish_allowed_to: tuple[PublishTokenPlan, ...] | None = field(default=None, metadata=_SINCE_3)
    opening_times: OpeningTimesPlan | None = field(default=None, metadata=_SINCE_3)  # None: 24/7 (versions 1 and 2)


@dataclass(frozen=True)
class PriceComponentPlan:
    type: str
    price: float  # excl. VAT, in the tariff currency
    step_size: int
    vat: float | None = field(default=None, metadata=_SINCE_3)  # percent; None: no VAT applies (or generator 1/2)


@dataclass(frozen=True)
class TariffRestrictionsPlan:
    start_time: str | None = None
    end_time: str | None = None
    min_duration: int | None = None
    max_duration: int | None = None


@dataclass(frozen=True)
class TariffElementPlan:
    price_components: tuple[PriceComponentPlan, ...]
    restrictions: TariffRestrictionsPlan | None


@dataclass(frozen=True)
class DisplayText:
    language: str
    text: str


@dataclass(frozen=True)
class TariffPlan:
    id: str
    currency: str
    type: str
    elements: tuple[TariffElementPlan, ...]
    tariff_alt_text: tuple[DisplayText, ...]


@dataclass(frozen=True)
class NetworkPlan:
    template: str
    template_version: int
    seed: int
    country_code: str
    party_id: str
    name_prefix: str
    shape: NetworkShape
    tariffs: tuple[TariffPlan, ...]
    locations: tuple[LocationPlan, ...]
