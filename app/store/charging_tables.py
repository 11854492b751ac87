"""Charging tables: OCPP transactions as typed rows (what the OCPI Session and, later, the priced
CDR are made from), their meter samples, and the bookkeeping around them (1.6 transaction ids,
1.6 idTag ↔ OCPI token uid, remote starts awaiting their transaction, CDRs not yet built).

Every table has a `cpo_id` column, so a CPO's teardown removes its rows (app.store.db)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel


class ChargingSession(SQLModel, table=True):
    """One charger transaction (unique per CPO, charger and OCPP transaction id) = one OCPI Session."""

    __tablename__ = "charging_session"
    __table_args__ = (
        Index("ix_charging_session_tx", "cpo_id", "identity", "transaction_id", unique=True),
        Index("ix_charging_session_ocpi", "cpo_id", "session_id", unique=True),
        # 1.6 StartTransaction resends (same connector, idTag, meterStart, timestamp); NULL on 2.0.1.
        Index("ix_charging_session_start", "cpo_id", "identity", "start_key", unique=True),
    )
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int
    session_id: str  # the OCPI Session id (1.6: the transactionId; 2.0.1: a uuid5 of the station's id)
    identity: str
    ocpp_version: str
    transaction_id: str  # 1.6: the CSMS-assigned integer, as text; 2.0.1: the station's string
    start_key: str | None = None
    location_id: str
    evse_uid: str
    connector_id: str  # OCPI connector id
    ocpp_evse_id: int  # 0 on 1.6
    ocpp_connector_id: int
    id_tag: str | None = None  # as sent over OCPP (1.6 idTag / 2.0.1 idToken.idToken)
    id_token_type: str | None = None  # 2.0.1 IdTokenEnumType
    token_uid: str | None = None  # the OCPI token it resolved to (None: unknown to every eMSP)
    token_type: str | None = None
    token_country_code: str | None = None
    token_party_id: str | None = None
    contract_id: str | None = None
    auth_method: str | None = None  # OCPI AuthMethod
    authorization_reference: str | None = None
    auth_status: str | None = None  # the authorization answered, as OCPI AllowedType (or UNKNOWN)
    remote_start_id: int | None = None
    start_at: datetime
    end_at: datetime | None = None
    meter_start_wh: float | None = None  # None until the first register reading (2.0.1)
    meter_last_wh: float | None = None
    meter_last_at: datetime | None = None
    meter_stop_wh: float | None = None
    kwh: float = 0.0  # never decreases
    power_w: float | None = None
    status: str  # PENDING | ACTIVE | COMPLETED | INVALID
    stop_reason: str | None = None
    seq_no: int | None = None  # 2.0.1: the highest TransactionEvent seqNo applied
    currency: str
    # The charging period in progress (closed at each price-relevant change and at each push).
    period_start_at: datetime | None = None
    period_start_wh: float = 0.0
    period_charging: bool = False
    period_max_power_w: float = 0.0
    pushed_at: datetime | None = None  # the last Session push recorded (PATCH throttle)
    sample_count: int = 0  # rows in charging_meter_sample (kept under a cap)
    created_at: datetime
    last_updated: datetime


class MeterSample(SQLModel, table=True):
    """A meter reading of a session (bounded per session: thinned when it grows past the cap)."""

    __tablename__ = "charging_meter_sample"
    __table_args__ = (Index("ix_charging_meter_sample_at", "charging_session_id", "at", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int = Field(index=True)
    charging_session_id: int
    at: datetime
    energy_wh: float  # imported since the session started
    power_w: float
    current_a: float | None = None
    voltage_v: float | None = None
    soc_percent: float | None = None


class TransactionCounter(SQLModel, table=True):
    """The last OCPP 1.6 transactionId handed out per CPO (an UPDATE … RETURNING under the row lock:
    unique across API processes)."""

    __tablename__ = "ocpp_transaction_counter"
    cpo_id: int = Field(primary_key=True)
    last_id: int = Field(sa_type=BigInteger)


class IdTagMapping(SQLModel, table=True):
    """OCPI token uids longer than a 1.6 idTag (20): the short idTag sent over OCPP (deterministic,
    app.charging.authorization.id_tag_for) and the uid it stands for."""

    __tablename__ = "ocpp_id_tag"
    cpo_id: int = Field(primary_key=True)
    id_tag: str = Field(primary_key=True)
    uid: str


class RemoteStart(SQLModel, table=True):
    """A START_SESSION the charger accepted, waiting for its transaction (1.6 cannot carry the
    authorization_reference: the first matching StartTransaction takes it; 2.0.1 by remoteStartId)."""

    __tablename__ = "charging_remote_start"
    __table_args__ = (Index("ix_charging_remote_start_charger", "cpo_id", "identity"),)
    id: int | None = Field(default=None, primary_key=True)
    cpo_id: int
    identity: str
    ocpp_evse_id: int | None = None  # None: any EVSE of the charger
    ocpp_connector_id: int | None = None
    id_tag: str
    remote_start_id: int | None = None
    token_uid: str
    token_type: str
    token_country_code: str
    token_party_id: str
    contract_id: str
    authorization_reference: str | None = None
    expires_at: datetime
    used_by: int | None = None  # the charging_session that took it


class CdrPending(SQLModel, table=True):
    """A completed session whose CDR is not built yet: written in the transaction that completes the
    session, deleted by the pricing consumer in the transaction that records the CDR."""

    __tablename__ = "cdr_pending"
    cpo_id: int = Field(primary_key=True)
    session_id: str = Field(primary_key=True)
    charging_session_id: int
    created_at: datetime
