"""Database tables (SQLModel). One module so every process creates the same schema.

Natural, deterministic primary keys (cpo_id + generator ids) make every provisioning write an
idempotent upsert: an activity that runs twice after a crash inserts nothing new.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel


class Cpo(SQLModel, table=True):
    # Never reuse an id: it names the Temporal workflow (cpo-{id}) and the OCPI URLs.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    org: str = Field(index=True)
    country_code: str
    party_id: str
    requested_party_id: str
    role: str  # OCPI role, upper-case: CPO / EMSP
    name_prefix: str
    template: str
    template_version: int
    seed: int = Field(sa_type=BigInteger)  # the API accepts any signed 64-bit seed
    overrides: dict[str, int] | None = Field(default=None, sa_column=Column(JSON))
    ocpi_version: str
    ttl_seconds: int | None = None
    status: str = Field(index=True)
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    progress: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    workflow_id: str | None = None
    workflow_run_id: str | None = None
    locations: int = 0
    chargers: int = 0
    evses: int = 0
    connectors: int = 0
    created_at: datetime
    updated_at: datetime
    provisioned_at: datetime | None = None
    expires_at: datetime | None = None
    destroyed_at: datetime | None = None


class CpoBlueprint(SQLModel, table=True):
    """The CPO's resolved template snapshot (app.network.blueprint), written once at create: what its
    activities regenerate the network from, whatever the live catalog says later."""

    __tablename__ = "cpo_blueprint"
    cpo_id: int = Field(primary_key=True)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class PartyReservation(SQLModel, table=True):
    """A live CPO holds (org, country, party) exclusively; the row goes when the CPO is torn down."""

    __tablename__ = "party_reservation"
    org: str = Field(primary_key=True)
    country_code: str = Field(primary_key=True)
    party_id: str = Field(primary_key=True)
    cpo_id: int = Field(index=True)


class CredentialToken(SQLModel, table=True):
    """OCPI tokens that open a CPO's OCPI platform. Only a SHA-256 hash is stored."""

    __tablename__ = "credential_token"
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int = Field(index=True)
    token_hash: str = Field(unique=True)
    kind: str  # "A" (registration) or "C" (issued to a registered peer)
    peer_id: int | None = Field(default=None, index=True)
    created_at: datetime
    revoked_at: datetime | None = None


class Tariff(SQLModel, table=True):
    # OCPI GET tariffs pages by cpo_id with a date_from/date_to window on last_updated.
    __table_args__ = (Index("ix_tariff_cpo_updated", "cpo_id", "last_updated"),)
    cpo_id: int = Field(primary_key=True)
    id: str = Field(primary_key=True)
    currency: str
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    last_updated: datetime


class Location(SQLModel, table=True):
    __table_args__ = (
        Index("ix_location_cpo_updated", "cpo_id", "last_updated"),
        # OCPI list order (generation index): pages are read in index order, no sort per request.
        Index("ix_location_cpo_idx", "cpo_id", "idx"),
    )
    cpo_id: int = Field(primary_key=True)
    id: str = Field(primary_key=True)
    idx: int  # generator index: stable list order
    name: str
    city: str
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # OCPI Location minus evses
    last_updated: datetime


class Evse(SQLModel, table=True):
    __table_args__ = (Index("ix_evse_cpo_location", "cpo_id", "location_id"),)
    cpo_id: int = Field(primary_key=True)
    uid: str = Field(primary_key=True)
    location_id: str
    evse_id: str
    charger_identity: str
    status: str = "UNKNOWN"
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # OCPI EVSE minus connectors/status
    last_updated: datetime


class Connector(SQLModel, table=True):
    __table_args__ = (Index("ix_connector_cpo_location", "cpo_id", "location_id"),)
    cpo_id: int = Field(primary_key=True)
    evse_uid: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    location_id: str
    standard: str
    format: str
    power_type: str
    max_voltage: int
    max_amperage: int
    max_electric_power: int | None = None
    tariff_id: str | None = None
    last_updated: datetime


class Charger(SQLModel, table=True):
    cpo_id: int = Field(primary_key=True)
    identity: str = Field(primary_key=True)
    location_id: str = Field(index=True)
    model_id: str
    vendor: str
    model: str
    ocpp_version: str
    serial_number: str
    password_hash: str
    status: str = "OFFLINE"


class ChargerRoute(SQLModel, table=True):
    """Topology routing: which CPO / location / EVSE an OCPP (identity, evse number) belongs to."""

    __tablename__ = "charger_route"
    cpo_id: int = Field(primary_key=True)
    identity: str = Field(primary_key=True)
    ocpp_evse_id: int = Field(primary_key=True)
    location_id: str
    evse_uid: str


# Tables whose rows belong to one CPO's generated network, in teardown order (children first).
NETWORK_TABLES: tuple[type[SQLModel], ...] = (ChargerRoute, Charger, Connector, Evse, Location, Tariff)
