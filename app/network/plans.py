"""The generator's public plan types: its input spec and what it produces (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

GENERATOR_VERSION = 2  # what new CPOs are created with (app.control.create names it in their spec)
# A spec that names no version was stored before versions existed, by generator 1: it must keep
# regenerating as version 1, so this (not GENERATOR_VERSION) is the field's default.
UNVERSIONED_GENERATOR_VERSION = 1


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
    tariff_id: str


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


@dataclass(frozen=True)
class PriceComponentPlan:
    type: str
    price: float  # excl. VAT, in the tariff currency
    step_size: int


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
