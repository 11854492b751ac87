"""OCPI-side tables (peers, pushed tokens, sessions, CDRs, traffic log). Imported by app.store.db so
every process creates them; every per-CPO table has a `cpo_id` column so teardown removes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


class OcpiPeer(SQLModel, table=True):
    """One registration of a peer platform (the eMSP) with one CPO.

    Our own tokens for the peer (A, C) live hashed in credential_token with this peer_id; Token B is
    the peer's token for us to call it, so it must be kept in the clear to be sent.
    """

    __tablename__ = "ocpi_peer"
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int = Field(index=True)
    version: str  # the negotiated OCPI version (always the CPO's version)
    token_b: str
    versions_url: str
    version_url: str
    endpoints: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    roles: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    country_code: str | None = None  # of the peer's first role (routing headers, URL checks)
    party_id: str | None = None
    registered: bool = True
    created_at: datetime
    updated_at: datetime
    unregistered_at: datetime | None = None


class OcpiToken(SQLModel, table=True):
    """Tokens the eMSP pushed to this CPO (the CPO is the Tokens receiver)."""

    __tablename__ = "ocpi_token"
    cpo_id: int = Field(primary_key=True)
    country_code: str = Field(primary_key=True)  # stored upper-case: CiString compares case-insensitively
    party_id: str = Field(primary_key=True)
    uid: str = Field(primary_key=True)
    type: str = Field(primary_key=True)
    peer_id: int | None = None
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    last_updated: datetime


class OcpiSession(SQLModel, table=True):
    __tablename__ = "ocpi_session"
    __table_args__ = (
        Index("ix_ocpi_session_cpo_order", "cpo_id", "created_at", "id"),
        Index("ix_ocpi_session_cpo_updated", "cpo_id", "last_updated"),  # date_from/date_to pulls
    )
    cpo_id: int = Field(primary_key=True)
    id: str = Field(primary_key=True)
    status: str
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime  # list order: creation, so a crawl is stable while sessions update
    last_updated: datetime


class OcpiCdr(SQLModel, table=True):
    __tablename__ = "ocpi_cdr"
    __table_args__ = (
        Index("ix_ocpi_cdr_cpo_order", "cpo_id", "created_at", "id"),
        Index("ix_ocpi_cdr_cpo_updated", "cpo_id", "last_updated"),  # date_from/date_to pulls
    )
    cpo_id: int = Field(primary_key=True)
    id: str = Field(primary_key=True)
    data: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime
    last_updated: datetime


class OcpiLogRow(SQLModel, table=True):
    """OCPI traffic of one CPO, both directions (written in batches by app.ocpi.log)."""

    __tablename__ = "ocpi_log"
    __table_args__ = (Index("ix_ocpi_log_cpo_time", "cpo_id", "timestamp"),)
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int
    timestamp: datetime
    direction: str  # "in" | "out"
    method: str
    url: str
    http_status: int | None = None
    ocpi_status_code: int | None = None
    duration_ms: float
    request_id: str | None = None
    correlation_id: str | None = None
    error: str | None = None


class OcpiRejectedCount(SQLModel, table=True):
    """Requests to a CPO's OCPI platform that presented no valid token of that CPO: counted here
    instead of logged, so nobody without a token can fill (or write into) a CPO's traffic log."""

    __tablename__ = "ocpi_rejected_count"
    cpo_id: int = Field(primary_key=True)
    rejected: int
    last_at: datetime
