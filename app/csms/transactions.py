"""OCPP transactions of one charger connection → charging sessions (app.charging.sessions) and
their OCPI Sessions (app.ocpi.session_push), one database transaction per message.

Idempotent on resend, as chargers resend transaction messages after a reconnect or a failure
(OCPP 1.6 §3.7; 2.0.1 E.): a 1.6 StartTransaction with the same connector, idTag, meterStart and
timestamp gets the transactionId it got the first time (unique index on that key, also across API
processes); a 2.0.1 TransactionEvent whose seqNo is not above the highest one applied changes
nothing; meter readings not newer than the newest applied are ignored; a StopTransaction or an
Ended event for a finished session changes nothing. The CSMS never refuses a stop.

Authorization (app.charging.authorization) runs before the write transaction and is bounded in
time (`authorize_timeout`), so a slow eMSP never holds a database lock. A token that a charger
presented at Authorize is not checked again at the start for `DECISION_TTL` seconds (the same
answer, with its authorization_reference). A transaction started by START_SESSION takes the
pending remote start instead (auth_method COMMAND, its authorization_reference).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from ocpp.exceptions import InternalError, OccurenceConstraintViolationError, OCPPError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.charging import sessions
from app.charging.authorization import OCPI_TYPE_OF_201, Decision, RealtimeAuthorizer, authorize
from app.csms.connections import write_lock
from app.csms.meter import parse_time, readings
from app.csms.session import ChargerLink
from app.network.topology import OcppConnector
from app.ocpi.session_push import publish
from app.settings import Settings
from app.store.charging_tables import ChargingSession, RemoteStart
from app.store.db import Database, as_utc, utcnow
from app.store.tables import Connector, Tariff, tariff_ids

log = logging.getLogger("cpolab.csms")

DECISION_TTL = 120.0
LOST_REASON = "Reboot"  # OCPP's stop reason for a transaction that ended with the charger's restart
DEFAULT_CURRENCY = "EUR"
CHARGING_STATES = {"Charging": True, "SuspendedEV": False, "SuspendedEVSE": False, "EVConnected": False}
CHARGING_STATES["Idle"] = False
T = TypeVar("T")


class Transactions:
    def __init__(self, link: ChargerLink, db: Database, settings: Settings, realtime: RealtimeAuthorizer) -> None:
        self.link = link
        self.db = db
        self.settings = settings
        self.realtime = realtime
        self.cpo_id, self.identity = link.key
        self._decisions: dict[str, tuple[float, Decision]] = {}

    # ---- shared ----------------------------------------------------------------------------------

    async def _guarded(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        """Protocol errors pass; anything else is ours: logged, answered InternalError."""
        try:
            return await work()
        except OCPPError:
            raise
        except Exception:
            log.exception("%s of charger %r (CPO %s) failed", what, self.identity, self.cpo_id)
            raise InternalError(description=f"could not process the {what}") from None

    def _location(self, evse_uid: str | None) -> tuple[str, tuple[str, ...]]:
        views = self.link.views
        if evse_uid is not None:
            return views[evse_uid].location_id, (evse_uid,)
        uids = tuple(sorted(views))
        return (views[uids[0]].location_id if uids else ""), uids

    async def decide(self, id_tag: str, id_token_type: str | None = None, evse_uid: str | None = None) -> Decision:
        """The authorization of a token presented at this charger (cached for DECISION_TTL)."""
        cached = self._decisions.get(id_tag.upper())
        if cached is not None and time.monotonic() - cached[0] < DECISION_TTL:
            return cached[1]
        location_id, evse_uids = self._location(evse_uid)
        decision = await authorize(
            self.db,
            self.realtime,
            cpo_id=self.cpo_id,
            id_tag=id_tag,
            preferred_type=OCPI_TYPE_OF_201.get(id_token_type or ""),
            location_id=location_id,
            evse_uids=evse_uids,
        )
        self._decisions[id_tag.upper()] = (time.monotonic(), decision)
        if len(self._decisions) > 256:  # a charger presents few tokens; keep it bounded anyway
            self._decisions.pop(next(iter(self._decisions)))
        return decision

    async def authorize(self, id_tag: str, id_token_type: str | None = None) -> Decision:
        self._decisions.pop(id_tag.upper(), None)  # an Authorize always asks afresh
        return await self._guarded("Authorize", lambda: self.decide(id_tag, id_token_type))

    async def _find(self, session: AsyncSession, **where: Any) -> ChargingSession | None:
        query = select(ChargingSession).where(
            ChargingSession.cpo_id == self.cpo_id,
            ChargingSession.identity == self.identity,
            *(getattr(ChargingSession, k) == v for k, v in where.items()),
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def _read(self, **where: Any) -> ChargingSession | None:
        async with self.db.session() as session:
            return await self._find(session, **where)

    async def _has_remote_start(self, cs: ChargingSession) -> bool:
        async with self.db.session() as session:
            found = await sessions.take_remote_start(session, cs, utcnow())
            await session.rollback()  # only a peek: the write transaction takes it
        return found is not None

    async def _currency(self, session: AsyncSession, connector: OcppConnector) -> str:
        column = (
            await session.execute(
                select(Connector.tariff_id).where(
                    Connector.cpo_id == self.cpo_id,
                    Connector.evse_uid == connector.evse_uid,
                    Connector.id == connector.connector_id,
                )
            )
        ).scalar_one_or_none()
        regular = tariff_ids(column)[:1]
        if not regular:
            return DEFAULT_CURRENCY
        query = select(Tariff.currency).where(Tariff.cpo_id == self.cpo_id, Tariff.id == regular[0])
        return (await session.execute(query)).scalar_one_or_none() or DEFAULT_CURRENCY

    def _new(self, connector: OcppConnector, start_at: datetime, now: datetime, **fields: Any) -> ChargingSession:
        return ChargingSession(
            cpo_id=self.cpo_id,
            identity=self.identity,
            ocpp_version=self.link.ocpp_version,
            location_id=self.link.views[connector.evse_uid].location_id,
            evse_uid=connector.evse_uid,
            connector_id=connector.connector_id,
            ocpp_evse_id=connector.ocpp_evse_id,
            ocpp_connector_id=connector.ocpp_connector_id,
            start_at=start_at,
            status=sessions.PENDING,
            currency=DEFAULT_CURRENCY,
            created_at=now,
            last_updated=now,
            **fields,
        )

    @staticmethod
    def _grant(cs: ChargingSession, remote: RemoteStart | None, decision: Decision | None) -> None:
        """Attach the token and authorization: the remote start it answers, else the decision."""
        if remote is not None:
            cs.token_uid, cs.token_type, cs.contract_id = remote.token_uid, remote.token_type, remote.contract_id
            cs.token_country_code, cs.token_party_id = remote.token_country_code, remote.token_party_id
            cs.auth_method, cs.authorization_reference = "COMMAND", remote.authorization_reference
            cs.auth_status = "ALLOWED"
        elif decision is not None:
            token = decision.token
            if token is not None:
                cs.token_uid, cs.token_type, cs.contract_id = token.uid, token.type, token.contract_id
                cs.token_country_code, cs.token_party_id = token.country_code, token.party_id
            cs.auth_method, cs.authorization_reference = decision.auth_method, decision.authorization_reference
            cs.auth_status = decision.allowed
        else:
            return
        cs.status = sessions.ACTIVE if cs.auth_status == "ALLOWED" else sessions.INVALID

    async def _commit(
        self, session: AsyncSession, cs: ChargingSession, closed: list[dict[str, Any]], samples: list[dict[str, Any]]
    ) -> None:
        """Samples, the OCPI Session and (at the end) the CDR marker, then the commit."""
        now = utcnow()
        await sessions.record_samples(session, cs, samples)
        await publish(session, cs, closed, now, push_interval=self.settings.session_push_interval)
        if cs.status == sessions.COMPLETED and cs.end_at is not None:
            await sessions.on_session_completed(session, cs, now)
        cs.last_updated = now
        await session.commit()

    # ---- OCPP 1.6 --------------------------------------------------------------------------------

    async def start_16(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str) -> tuple[int, str]:
        """StartTransaction → (transactionId, the OCPI allowed value answered)."""
        connector = self.link.topology.connector(0, connector_id)
        at = parse_time(timestamp)
        key = f"{connector_id}|{id_tag.upper()}|{meter_start}|{at.isoformat()}"

        async def work() -> tuple[int, str]:
            existing = await self._read(start_key=key)
            if existing is not None:
                return int(existing.transaction_id), existing.auth_status or "UNKNOWN"
            now = utcnow()
            probe = self._new(connector, at, now, id_tag=id_tag, start_key=key, transaction_id="", session_id="")
            remote_pending = await self._has_remote_start(probe)
            decision = None if remote_pending else await self.decide(id_tag, None, connector.evse_uid)
            try:
                async with write_lock(self.db), self.db.session() as session:
                    transaction_id = await sessions.next_transaction_id(session, self.cpo_id)
                    cs = self._new(
                        connector,
                        at,
                        now,
                        id_tag=id_tag,
                        start_key=key,
                        transaction_id=str(transaction_id),
                        session_id=str(transaction_id),
                        meter_start_wh=float(meter_start),
                    )
                    cs.currency = await self._currency(session, connector)
                    session.add(cs)
                    await session.flush()
                    remote = await sessions.take_remote_start(session, cs, now)
                    self._grant(cs, remote, decision if remote is None else None)
                    first = sessions.Reading(at, register_wh=float(meter_start))
                    closed, samples = sessions.apply_readings(cs, [first])
                    await self._commit(session, cs, closed, samples)
                    return transaction_id, cs.auth_status or "UNKNOWN"
            except IntegrityError:  # the same start, recorded meanwhile by another process
                existing = await self._read(start_key=key)
                if existing is None:
                    raise
                return int(existing.transaction_id), existing.auth_status or "UNKNOWN"

        return await self._guarded("StartTransaction", work)

    async def meter_values_16(self, transaction_id: int | None, meter_value: list[dict[str, Any]]) -> None:
        if transaction_id is None:
            return  # readings outside a transaction: nothing to bill
        values = readings(meter_value)

        async def work() -> None:
            async with write_lock(self.db), self.db.session() as session:
                cs = await self._find(session, transaction_id=str(transaction_id))
                if cs is None or cs.end_at is not None:
                    return  # unknown or finished: accepted and ignored
                closed, samples = sessions.apply_readings(cs, values)
                await self._commit(session, cs, closed, samples)

        await self._guarded("MeterValues", work)

    async def stop_16(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        reason: str | None,
        transaction_data: list[dict[str, Any]] | None,
    ) -> None:
        at = parse_time(timestamp)
        values = readings(transaction_data)

        async def work() -> None:
            async with write_lock(self.db), self.db.session() as session:
                cs = await self._find(session, transaction_id=str(transaction_id))
                if cs is None or cs.end_at is not None:
                    if cs is None:
                        log.info("charger %r stopped unknown transaction %s", self.identity, transaction_id)
                    return
                closed, samples = sessions.apply_readings(cs, values)
                ended, final = sessions.finish(cs, at, float(meter_stop), reason or "Local")
                closed, samples = closed + ended, samples + final
                await self._commit(session, cs, closed, samples)

        await self._guarded("StopTransaction", work)

    # ---- transactions a charger lost ----------------------------------------------------------------

    async def end_lost(self, connector: OcppConnector) -> None:
        """The charger booted again and reports `connector` Available: it has no transaction there any
        more, so a session still open on it was lost with the charger's memory (our simulated chargers
        keep nothing across a pod failover). It ends at the last meter reading applied (or its start),
        reason "Reboot": billed for what was measured, and the eMSP gets its COMPLETED Session and CDR.
        A charger that kept the transaction reports the connector occupied, or stops it first."""

        query = (
            select(ChargingSession)
            .where(
                ChargingSession.cpo_id == self.cpo_id,
                ChargingSession.identity == self.identity,
                ChargingSession.evse_uid == connector.evse_uid,
                ChargingSession.connector_id == connector.connector_id,
                ChargingSession.end_at.is_(None),  # type: ignore[union-attr]
            )
            .limit(1)
        )

        async def work() -> None:
            while True:
                async with self.db.session() as session:  # a look first: a reboot rarely finds one open
                    if (await session.execute(query)).scalar_one_or_none() is None:
                        return
                async with write_lock(self.db), self.db.session() as session:
                    cs = (await session.execute(query)).scalar_one_or_none()
                    if cs is None:
                        return
                    end_at = as_utc(cs.meter_last_at) or as_utc(cs.start_at)
                    assert end_at is not None
                    closed, samples = sessions.finish(cs, end_at, None, LOST_REASON)
                    await self._commit(session, cs, closed, samples)
                log.warning(
                    "charger %r (CPO %s) rebooted without transaction %s: session %s ended %s at its last reading",
                    *(self.identity, self.cpo_id, cs.transaction_id, cs.session_id, cs.status),
                )

        await self._guarded("StatusNotification", work)

    # ---- OCPP 2.0.1 ------------------------------------------------------------------------------

    def _connector_201(self, evse: dict[str, Any] | None) -> OcppConnector:
        if evse is not None:
            return self.link.topology.connector(int(evse["id"]), int(evse.get("connector_id") or 1))
        evse_ids = {number[0] for number in self.link.topology.by_number}
        if len(evse_ids) != 1:
            raise OccurenceConstraintViolationError(description="`evse` is required: this station has several EVSEs")
        return self.link.topology.connector(evse_ids.pop(), 1)

    async def transaction_event(
        self,
        event_type: str,
        timestamp: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None,
        evse: dict[str, Any] | None,
        id_token: dict[str, Any] | None,
    ) -> str | None:
        """TransactionEvent → the OCPI allowed value of the event's idToken (None: no idToken)."""
        transaction_id = str(transaction_info["transaction_id"])
        at = parse_time(timestamp)
        values = readings(meter_value)
        charging_state = CHARGING_STATES.get(transaction_info.get("charging_state") or "")
        if charging_state is not None and not values:  # a state change alone still starts a period
            values = [sessions.Reading(at)]

        async def work() -> str | None:
            found = await self._read(transaction_id=transaction_id)
            if found is not None and found.seq_no is not None and seq_no <= found.seq_no:
                return found.auth_status if id_token else None  # a resend: applied already
            connector = self._connector_201(evse) if found is None else None
            now = utcnow()
            decision: Decision | None = None
            wants_token = id_token is not None and id_token.get("type") != "NoAuthorization"
            if wants_token and (found is None or found.token_uid is None) and (found is None or found.end_at is None):
                assert id_token is not None
                probe = found or self._new(  # type: ignore[arg-type]
                    connector, at, now, transaction_id=transaction_id, session_id=""
                )
                probe.id_tag, probe.remote_start_id = id_token["id_token"], transaction_info.get("remote_start_id")
                if not await self._has_remote_start(probe):
                    decision = await self.decide(id_token["id_token"], id_token.get("type"), probe.evse_uid)
            try:
                async with write_lock(self.db), self.db.session() as session:
                    cs = await self._find(session, transaction_id=transaction_id)
                    if cs is None:
                        assert connector is not None
                        cs = self._new(
                            connector,
                            at,
                            now,
                            transaction_id=transaction_id,
                            session_id=sessions.session_id_201(self.cpo_id, self.identity, transaction_id),
                        )
                        cs.currency = await self._currency(session, connector)
                        session.add(cs)
                        await session.flush()
                    elif cs.seq_no is not None and seq_no <= cs.seq_no:
                        return cs.auth_status if id_token else None
                    if cs.remote_start_id is None:
                        cs.remote_start_id = transaction_info.get("remote_start_id")
                    if wants_token and cs.token_uid is None and cs.end_at is None:
                        assert id_token is not None
                        cs.id_tag, cs.id_token_type = id_token["id_token"], id_token.get("type")
                        remote = await sessions.take_remote_start(session, cs, now)
                        self._grant(cs, remote, decision if remote is None else None)
                    closed, samples = sessions.apply_readings(cs, values, charging_state)
                    if event_type == "Ended" and cs.end_at is None:
                        reason = transaction_info.get("stopped_reason") or "Local"
                        closed += sessions.finish(cs, at, None, reason)[0]
                    cs.seq_no = max(seq_no, cs.seq_no if cs.seq_no is not None else -1)
                    await self._commit(session, cs, closed, samples)
                    return cs.auth_status if id_token else None
            except IntegrityError:  # the same transaction, recorded meanwhile by another process
                existing = await self._read(transaction_id=transaction_id)
                if existing is None:
                    raise
                return existing.auth_status if id_token else None

        return await self._guarded("TransactionEvent", work)
