"""Provisioning activities: idempotent DB writes keyed by the generator's deterministic ids.

Every activity may run twice (a worker killed after the commit, before reporting completion):
inserts are ON CONFLICT DO NOTHING, deletes of missing rows are no-ops, status writes are
last-writer-wins with a guard against resurrecting a destroyed CPO.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from activities.pod_plan import sim_chargers
from app.lifecycle.models import (
    ALLOWED_FROM,
    GONE,
    BatchResult,
    CpoStatus,
    LocationBatch,
    NetworkRequest,
    Progress,
    SmallNetwork,
    SmallNetworkResult,
    StatusRecord,
    WholeNetwork,
)
from app.network.blueprint import Blueprint
from app.network.generator import LocationPlan, NetworkSpec, TariffPlan, generate_locations, generate_tariffs
from app.network.legacy import legacy_blueprint
from app.ocpi.static import evse_static, location_static, tariff_static
from app.security.passwords import charger_password, password_hash
from app.store.db import Database, delete_owned_rows, utcnow
from app.store.tables import Charger, ChargerRoute, Connector, Cpo, CpoBlueprint, Evse, Location, Tariff

log = logging.getLogger("cpolab.provisioning")

CPO_MISSING = "CpoMissing"
# Provisioning writes refuse a CPO that is being (or was) torn down: a write racing a teardown
# workflow must not leave rows behind it.
CPO_GONE = "CpoGone"
# The rows written differ from the plan (duplicates or gaps): never report READY over them.
NETWORK_MISMATCH = "NetworkMismatch"


async def load_blueprint(db: Database, cpo_id: int, spec: NetworkSpec) -> Blueprint:
    """The snapshot stored at create; rows from before blueprints existed fall back to the catalog.
    Read in its own short session, so generating the plan never runs inside a write transaction."""
    async with db.session() as session:
        row = await session.get(CpoBlueprint, cpo_id)
    if row is None:
        return legacy_blueprint(spec)
    return Blueprint.model_validate(row.data)


async def _write_status(session: Any, rec: StatusRecord) -> int:
    """The CPO row's status record, in the caller's transaction, only from an allowed previous status
    (ALLOWED_FROM). Returns the rows written (0: the row had moved on)."""
    values: dict[str, Any] = {"status": rec.status.value, "updated_at": utcnow()}
    if rec.progress is not None:
        values["progress"] = asdict(rec.progress)
    if rec.error is not None:
        values["error"] = asdict(rec.error)
    if rec.provisioned_at is not None:
        values["provisioned_at"] = rec.provisioned_at
    if rec.destroyed_at is not None:
        values["destroyed_at"] = rec.destroyed_at
    if rec.set_expires_at:
        values["expires_at"] = rec.expires_at
    allowed = [s.value for s in ALLOWED_FROM[rec.status]]
    result = await session.execute(
        update(Cpo).where(Cpo.id == rec.cpo_id, Cpo.status.in_(allowed)).values(**values)  # type: ignore[attr-defined]
    )
    return int(result.rowcount or 0)


class ProvisioningActivities:
    def __init__(self, db: Database, charger_key: bytes) -> None:
        self.db = db
        # Charger passwords are HMAC(charger_key, cpo_id, identity): derived here, never an input
        # (activity inputs are readable in the Web UI) and never stored in clear.
        self.charger_key = charger_key

    async def _blueprint(self, cpo_id: int, spec: NetworkSpec) -> Blueprint:
        return await load_blueprint(self.db, cpo_id, spec)

    async def _require_cpo(self, session: Any, cpo_id: int, *, live: bool = True) -> Cpo:
        if live:
            # Lock the row before reading its status, so the check holds until this transaction
            # commits. Without it a batch could read PROVISIONING, lose the race to a teardown, and
            # commit its rows after the teardown's delete (a cancel during provisioning leaked a batch).
            # Postgres: a shared row lock, so parallel batches of one CPO don't wait for each other
            # but a teardown's DESTROYING write waits for them. SQLite: the first DML opens the
            # transaction (pysqlite runs a leading SELECT outside it) and takes the one write lock.
            if session.bind.dialect.name == "postgresql":
                await session.execute(select(Cpo.id).where(Cpo.id == cpo_id).with_for_update(read=True))
            else:
                await session.execute(update(Cpo).where(Cpo.id == cpo_id).values(id=Cpo.id))  # type: ignore[arg-type]
        cpo = await session.get(Cpo, cpo_id)
        if cpo is None:
            raise ApplicationError(f"CPO {cpo_id} has no database row", type=CPO_MISSING, non_retryable=True)
        if live and cpo.status in GONE:
            raise ApplicationError(f"CPO {cpo_id} is {cpo.status}", type=CPO_GONE, non_retryable=True)
        return cpo

    @activity.defn
    async def record_status(self, rec: StatusRecord) -> None:
        """Guarded write: one UPDATE whose WHERE admits only the allowed previous statuses, so a late
        retry or a racing extend_ttl can never move a row out of DESTROYING, DESTROYED or FAILED."""
        async with self.db.session() as session, session.begin():
            before = (await self._require_cpo(session, rec.cpo_id, live=False)).status
            written = await _write_status(session, rec)
        if written and before != rec.status.value:  # transitions only, not progress updates
            error = f" ({rec.error.code}: {rec.error.message})" if rec.error is not None else ""
            log.info("CPO %s is %s%s", rec.cpo_id, rec.status.value, error)

    @activity.defn
    async def create_network(self, req: NetworkRequest) -> int:
        """Party/network level rows: the CPO's tariffs. Returns how many tariffs the network has."""
        async with heartbeating():
            rows = _tariff_rows(req.cpo_id, req.spec, await self._blueprint(req.cpo_id, req.spec))
            async with self.db.session() as session, session.begin():
                await self._require_cpo(session, req.cpo_id)
                if rows:
                    await session.execute(self.db.insert_ignore(Tariff), rows)
        return len(rows)

    @activity.defn
    async def create_location_batch(self, batch: LocationBatch) -> BatchResult:
        async with heartbeating():
            bp = await self._blueprint(batch.cpo_id, batch.spec)
            plans = generate_locations(batch.spec, bp, batch.start, batch.stop)
            rows = _network_rows(batch.cpo_id, batch.spec, plans, self.charger_key)
            async with self.db.session() as session, session.begin():
                await self._require_cpo(session, batch.cpo_id)
                await self._insert_network(session, rows)
        return _result(rows)

    @activity.defn
    async def register_routing_batch(self, batch: LocationBatch) -> int:
        """Charger identity (+ OCPP EVSE number) → cpo / location / EVSE, for the CSMS endpoint."""
        bp = await self._blueprint(batch.cpo_id, batch.spec)
        routes = _routes(batch.cpo_id, generate_locations(batch.spec, bp, batch.start, batch.stop))
        async with heartbeating(), self.db.session() as session, session.begin():
            await self._require_cpo(session, batch.cpo_id)
            await session.execute(self.db.insert_ignore(ChargerRoute), routes)
        return len(routes)

    @activity.defn
    async def provision_network(self, req: WholeNetwork) -> BatchResult:
        """A small network whole, in ONE transaction: tariffs, locations, routing, and the count check
        before the commit, so either the complete, checked network is there or nothing is. What the
        three steps and `count_network` do for a big network in one round trip instead of five."""
        async with heartbeating():
            counts, _ = await self._provision_whole(req.cpo_id, req.spec, req.expected, None)
        return counts

    @activity.defn
    async def provision_small_network(self, req: SmallNetwork) -> SmallNetworkResult:
        """`provision_network` plus, in the same transaction, the row's PROVISIONING record (the status
        write that used to be a round trip of its own before it), and the specs of the network's single
        pod, which the pod would otherwise plan in an activity of its own (`plan_pod`)."""
        async with heartbeating():
            counts, plans = await self._provision_whole(req.cpo_id, req.spec, req.expected, req.progress)
        log.info("CPO %s is %s", req.cpo_id, CpoStatus.PROVISIONING.value)
        return SmallNetworkResult(counts, sim_chargers(plans) if req.pod_chargers else None)

    async def _provision_whole(
        self, cpo_id: int, spec: NetworkSpec, expected: BatchResult, provisioning: Progress | None
    ) -> tuple[BatchResult, list[LocationPlan]]:
        bp = await self._blueprint(cpo_id, spec)
        tariffs = _tariff_rows(cpo_id, spec, bp)
        plans = generate_locations(spec, bp, 0, expected.locations)
        rows = _network_rows(cpo_id, spec, plans, self.charger_key)
        routes = _routes(cpo_id, plans)
        async with self.db.session() as session, session.begin():
            await self._require_cpo(session, cpo_id)  # locked, and not being torn down
            if provisioning is not None:
                await _write_status(session, StatusRecord(cpo_id, CpoStatus.PROVISIONING, progress=provisioning))
            if tariffs:
                await session.execute(self.db.insert_ignore(Tariff), tariffs)
            await self._insert_network(session, rows)
            if routes:
                await session.execute(self.db.insert_ignore(ChargerRoute), routes)
            got = await _count(session, cpo_id)
            if got != expected:  # raising rolls the whole network back (and the status write)
                raise ApplicationError(
                    f"network rows {got} differ from the plan {expected}", type=NETWORK_MISMATCH, non_retryable=True
                )
        return got, plans

    async def _insert_network(self, session: Any, rows: dict[type, list[dict[str, Any]]]) -> None:
        for table in (Location, Evse, Connector, Charger):
            if rows[table]:
                await session.execute(self.db.insert_ignore(table), rows[table])

    @activity.defn
    async def teardown_network(self, cpo_id: int) -> int:
        """Delete everything the CPO owns (network, tokens, party reservation). Returns rows deleted."""
        async with heartbeating(), self.db.session() as session, session.begin():
            return await delete_owned_rows(session, cpo_id)

    @activity.defn
    async def count_network(self, cpo_id: int) -> BatchResult:
        """Rows actually present, for the READY check (catches a plan/DB mismatch before users do)."""
        async with heartbeating(), self.db.session() as session:
            return await _count(session, cpo_id)


async def _count(session: Any, cpo_id: int) -> BatchResult:
    counts = {}
    for table in (Location, Charger, Evse, Connector):
        stmt = select(func.count()).select_from(table).where(table.cpo_id == cpo_id)  # type: ignore[attr-defined]
        counts[table] = (await session.execute(stmt)).scalar_one()
    return BatchResult(
        locations=counts[Location], chargers=counts[Charger], evses=counts[Evse], connectors=counts[Connector]
    )


def _result(rows: dict[type, list[dict[str, Any]]]) -> BatchResult:
    return BatchResult(
        locations=len(rows[Location]),
        chargers=len(rows[Charger]),
        evses=len(rows[Evse]),
        connectors=len(rows[Connector]),
    )


def _routes(cpo_id: int, plans: list[LocationPlan]) -> list[dict[str, Any]]:
    return [
        {
            "cpo_id": cpo_id,
            "identity": evse.charger_identity,
            "ocpp_evse_id": evse.ocpp_evse_id,
            "location_id": loc.id,
            "evse_uid": evse.uid,
        }
        for loc in plans
        for evse in loc.evses
    ]


def _tariff_rows(cpo_id: int, spec: NetworkSpec, bp: Blueprint) -> list[dict[str, Any]]:
    now = utcnow()
    return [_tariff_row(cpo_id, spec, t, now) for t in generate_tariffs(spec, bp)]


def _tariff_row(cpo_id: int, spec: NetworkSpec, tariff: TariffPlan, now: Any) -> dict[str, Any]:
    return {
        "cpo_id": cpo_id,
        "id": tariff.id,
        "currency": tariff.currency,
        "data": tariff_static(tariff, spec),
        "last_updated": now,
    }


def _network_rows(
    cpo_id: int, spec: NetworkSpec, plans: list[LocationPlan], charger_key: bytes
) -> dict[type, list[dict[str, Any]]]:
    now = utcnow()
    rows: dict[type, list[dict[str, Any]]] = {Location: [], Evse: [], Connector: [], Charger: []}
    for loc in plans:
        rows[Location].append(
            {
                "cpo_id": cpo_id,
                "id": loc.id,
                "idx": loc.index,
                "name": loc.name,
                "city": loc.city,
                "data": location_static(loc, spec),
                "last_updated": now,
            }
        )
        for evse in loc.evses:
            rows[Evse].append(
                {
                    "cpo_id": cpo_id,
                    "uid": evse.uid,
                    "location_id": loc.id,
                    "evse_id": evse.evse_id,
                    "charger_identity": evse.charger_identity,
                    "status": "UNKNOWN",
                    "data": evse_static(evse),
                    "last_updated": now,
                }
            )
            for conn in evse.connectors:
                rows[Connector].append(
                    {
                        "cpo_id": cpo_id,
                        "evse_uid": evse.uid,
                        "id": conn.id,
                        "location_id": loc.id,
                        "standard": conn.standard,
                        "format": conn.format,
                        "power_type": conn.power_type,
                        "max_voltage": conn.max_voltage,
                        "max_amperage": conn.max_amperage,
                        "max_electric_power": conn.max_electric_power,
                        # Several ids (generator 3) share the column comma-separated (app.ocpi.render).
                        "tariff_id": ",".join(conn.tariff_ids) if conn.tariff_ids else conn.tariff_id,
                        "last_updated": now,
                    }
                )
        for ch in loc.chargers:
            rows[Charger].append(
                {
                    "cpo_id": cpo_id,
                    "identity": ch.identity,
                    "location_id": loc.id,
                    "model_id": ch.model_id,
                    "vendor": ch.vendor,
                    "model": ch.model,
                    "ocpp_version": ch.ocpp_version,
                    "serial_number": ch.serial_number,
                    "status": "OFFLINE",
                    # A high-entropy HMAC: a fast hash is enough, and the CSMS checks it per connect.
                    "password_hash": password_hash(charger_password(charger_key, cpo_id, ch.identity)),
                }
            )
    return rows
