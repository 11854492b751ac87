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
    # {time_scale, background_activity} as created (app.control.schemas.Simulation); null: the defaults.
    simulation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
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
    tariff_id: str | None = None  # the connector's tariff ids, comma-separated: see `tariff_ids`
    # The last OCPP status the charger reported for this connector (None: never reported); the
    # EVSE's OCPI status is aggregated from its connectors' (app.network.status).
    ocpp_status: str | None = None
    last_updated: datetime


class Charger(SQLModel, table=True):
    """A charger and its connection as the CSMS sees it (the connection table): which API process
    holds its WebSocket, which socket (`connection_id`, so a replaced socket can no longer write) and
    the highest simulator pod generation seen (a zombie pod's older generation is refused)."""

    __table_args__ = (
        Index("ix_charger_cpo_status", "cpo_id", "status"),
        Index("ix_charger_api_instance", "api_instance"),
        # The stale-connection sweep: chargers in a live state not seen since a cutoff, across CPOs.
        Index("ix_charger_status_seen", "status", "last_seen_at"),
    )
    cpo_id: int = Field(primary_key=True)
    identity: str = Field(primary_key=True)
    location_id: str = Field(index=True)
    model_id: str
    vendor: str
    model: str
    ocpp_version: str
    serial_number: str
    password_hash: str
    status: str = "OFFLINE"  # ChargerState: BOOTING | ONLINE | OFFLINE | DETACHED
    last_boot_at: datetime | None = None  # BootNotification accepted
    last_seen_at: datetime | None = None  # any frame, or the holding API process's periodic touch
    api_instance: str | None = None  # the API process holding the WebSocket (None: not connected)
    connection_id: str | None = None
    pod_generation: int | None = Field(default=None, sa_type=BigInteger)


class OcppLogRow(SQLModel, table=True):
    """Each charger's OCPP frames, both directions (retention like the OCPI traffic log)."""

    __tablename__ = "ocpp_log"
    __table_args__ = (Index("ix_ocpp_log_charger", "cpo_id", "identity", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int
    identity: str
    timestamp: datetime
    direction: str  # "in" (charger → CSMS) | "out"
    message_type: int  # 2 CALL, 3 CALLRESULT, 4 CALLERROR (0: unparseable)
    message_id: str | None = None
    action: str | None = None  # CALLs, and results matched to the CALL they answer
    payload: str  # the raw frame text, truncated to a bound


class OutboxRow(SQLModel, table=True):
    """A push to one registered eMSP, written in the transaction of the change it reports and
    delivered in order per (peer, object) by app.ocpi.outbox. Rows go once delivered or given up."""

    __tablename__ = "ocpi_outbox"
    __table_args__ = (
        Index("ix_ocpi_outbox_object", "cpo_id", "peer_id", "object_key", "id"),
        Index("ix_ocpi_outbox_due", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int
    peer_id: int
    object_key: str  # e.g. "evse:LOC00001/LOC00001-C01-1": one ordered stream per object
    module: str  # OCPI module identifier: locations | sessions | cdrs | tariffs
    method: str  # PUT | PATCH | POST | DELETE
    path: list[str] = Field(sa_column=Column(JSON, nullable=False))  # appended to the receiver URL
    body: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    coalescible: bool = False  # a later change to the same object may replace this body before it is sent
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    claimed_until: datetime | None = None  # a dispatcher is sending it (lease, for several API processes)
    last_error: str | None = None


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


def tariff_ids(column: str | None) -> list[str]:
    """The ids a Connector row's `tariff_id` column holds, comma-separated: the REGULAR tariff first
    (what a session with a token is billed with), then an AD_HOC_PAYMENT one on card EVSEs."""
    return column.split(",") if column else []
