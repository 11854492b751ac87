"""The one writer of EVSE status: connector OCPP statuses in, OCPI EVSE status (+ its push) out.

Everything runs in the caller's transaction, so a status change, the Location bump that the OCPI
rules demand (a child change MUST move its parent's `last_updated`, or `date_from` pulls and the
locations render cache miss it) and the outbox row that pushes it to the eMSP commit together or
not at all. Nothing here waits on an eMSP: the outbox is delivered elsewhere.

Writers of one charger's EVSEs hold that charger's row first (the CSMS's fenced UPDATE of `charger`,
the sweeper's conditional one), so they never interleave on the same EVSE, and the holder may keep
an `EvseView` of its EVSEs in memory instead of reading them back for every report.

`last_updated` never moves backwards, whatever the clocks of several API processes say: the
Locations are locked first (Postgres: SELECT … FOR UPDATE in (cpo_id, id) order, so two batches never
deadlock; SQLite: a no-op UPDATE, which takes the database's single write lock), then each stamp is
max(now, the Location's stamp + 1 µs). Every writer bumps the Location together with its EVSEs, so
the Location's stamp is the newest of its EVSEs' too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.network.status import UNKNOWN, evse_status
from app.store.db import as_utc
from app.store.outbox import Push, enqueue_many
from app.store.tables import ChargerRoute, Connector, Evse, Location

_ONE_MICROSECOND = timedelta(microseconds=1)

L = cast(Table, Location.__table__)
E = cast(Table, Evse.__table__)
C = cast(Table, Connector.__table__)
R = cast(Table, ChargerRoute.__table__)

LocationKey = tuple[int, str]  # (cpo_id, location_id)

# Built once: executed many times per second, with executemany where a batch has several rows.
_SET_CONNECTOR = (
    update(C)
    .where(C.c.cpo_id == bindparam("b_cpo"), C.c.evse_uid == bindparam("b_evse"), C.c.id == bindparam("b_id"))
    .values(ocpp_status=bindparam("b_status"))
)
_SET_EVSE = (
    update(E)
    .where(E.c.cpo_id == bindparam("b_cpo"), E.c.uid == bindparam("b_uid"))
    .values(status=bindparam("b_status"), last_updated=bindparam("b_stamp"))
)
_READ_EVSES = select(E.c.uid, E.c.location_id, E.c.status).where(
    E.c.cpo_id == bindparam("b_cpo"), E.c.uid.in_(bindparam("b_uids", expanding=True))
)
_READ_CONNECTORS = select(C.c.evse_uid, C.c.id, C.c.ocpp_status).where(
    C.c.cpo_id == bindparam("b_cpo"), C.c.evse_uid.in_(bindparam("b_uids", expanding=True))
)
_SET_LOCATION = (
    update(L)
    .where(L.c.cpo_id == bindparam("b_cpo"), L.c.id == bindparam("b_id"))
    .values(last_updated=bindparam("b_stamp"))
)


@dataclass
class EvseView:
    """The holder's copy of one EVSE and its connectors' last OCPP statuses (valid while it holds
    the charger; only `settle` changes it, after the commit)."""

    cpo_id: int
    location_id: str
    uid: str
    status: str
    connectors: dict[str, str | None]  # OCPI connector id → last OCPP status (None: never reported)


@dataclass(frozen=True)
class ConnectorReport:
    view: EvseView
    connector_id: str
    ocpp_status: str
    ocpp_version: str


@dataclass(frozen=True)
class EvseChange:
    cpo_id: int
    location_id: str
    evse_uid: str
    status: str  # the new OCPI status
    last_updated: datetime  # aware UTC, as stored on the EVSE and its Location


async def load_views(session: AsyncSession, evses: Iterable[tuple[int, str]]) -> dict[tuple[int, str], EvseView]:
    """These EVSEs ((cpo_id, uid) pairs) with their connectors, as stored now, by (cpo_id, uid)."""
    by_cpo: dict[int, set[str]] = defaultdict(set)
    for cpo_id, uid in evses:
        by_cpo[cpo_id].add(uid)
    conn = await session.connection()
    views: dict[tuple[int, str], EvseView] = {}
    for cpo_id, uids in by_cpo.items():
        params = {"b_cpo": cpo_id, "b_uids": sorted(uids)}
        for uid, location_id, status in await conn.execute(_READ_EVSES, params):
            views[(cpo_id, uid)] = EvseView(cpo_id, location_id, uid, status, {})
        for evse_uid, connector_id, ocpp_status in await conn.execute(_READ_CONNECTORS, params):
            if (cpo_id, evse_uid) in views:
                views[(cpo_id, evse_uid)].connectors[connector_id] = ocpp_status
    return views


async def apply_reports(session: AsyncSession, reports: Sequence[ConnectorReport], now: datetime) -> list[EvseChange]:
    """Record connector statuses and write the EVSE statuses they change; returns those changes.
    The views stay as they were: call `settle` once the transaction committed."""
    if not reports:
        return []
    conn = await session.connection()
    await conn.execute(
        _SET_CONNECTOR,
        [
            {"b_cpo": r.view.cpo_id, "b_evse": r.view.uid, "b_id": r.connector_id, "b_status": r.ocpp_status}
            for r in reports
        ],
    )
    wanted: dict[LocationKey, dict[str, str]] = defaultdict(dict)
    for report in reports:
        new = new_status(report)
        if new != report.view.status:
            wanted[(report.view.cpo_id, report.view.location_id)][report.view.uid] = new
    return await set_statuses(session, wanted, now)


def new_status(report: ConnectorReport) -> str:
    """The EVSE's OCPI status once this report is applied."""
    statuses = {**report.view.connectors, report.connector_id: report.ocpp_status}
    return evse_status(report.ocpp_version, statuses.values())


def settle(reports: Sequence[ConnectorReport]) -> None:
    """After the commit: the views take the reported statuses."""
    for report in reports:
        report.view.status = new_status(report)
        report.view.connectors[report.connector_id] = report.ocpp_status


async def charger_unknown(session: AsyncSession, *, cpo_id: int, identity: str, now: datetime) -> list[EvseChange]:
    """Every EVSE of an offline charger becomes UNKNOWN ("also used when offline", OCPI); returns the
    EVSEs that changed. The connectors keep their last OCPP status."""
    conn = await session.connection()
    known = select(E.c.uid, E.c.location_id).where(*_of_charger(cpo_id, identity), E.c.status != UNKNOWN)
    rows = await conn.execute(known)
    wanted: dict[LocationKey, dict[str, str]] = defaultdict(dict)
    for uid, location_id in rows:
        wanted[(cpo_id, location_id)][uid] = UNKNOWN
    return await set_statuses(session, wanted, now)


def _of_charger(cpo_id: int, identity: str) -> list[ColumnElement[bool]]:
    """The charger's EVSEs, found through its routing rows (their key starts with the identity; no
    index of `evse` does)."""
    uids = select(R.c.evse_uid).where(R.c.cpo_id == cpo_id, R.c.identity == identity)
    return [E.c.cpo_id == cpo_id, E.c.uid.in_(uids)]


async def set_statuses(
    session: AsyncSession, wanted: Mapping[LocationKey, Mapping[str, str]], now: datetime
) -> list[EvseChange]:
    """Write EVSE statuses (by Location: {evse_uid: OCPI status}), bump their Locations, record the
    pushes; returns the changes."""
    if not wanted:
        return []
    conn = await session.connection()
    keys = sorted(wanted)
    by_cpo: dict[int, list[str]] = defaultdict(list)
    for cpo_id, location_id in keys:
        by_cpo[cpo_id].append(location_id)
    # One index lookup per CPO (a row-value IN would scan the table on SQLite).
    at_keys = or_(*(and_(L.c.cpo_id == cpo_id, L.c.id.in_(ids)) for cpo_id, ids in by_cpo.items()))
    read = select(L.c.cpo_id, L.c.id, L.c.last_updated).where(at_keys)
    if conn.dialect.name == "postgresql":
        read = read.order_by(L.c.cpo_id, L.c.id).with_for_update()
    else:
        await conn.execute(update(L).where(at_keys).values(last_updated=L.c.last_updated))
    previous = {(c, i): at for c, i, at in await conn.execute(read)}
    now = cast(datetime, as_utc(now))
    changes: list[EvseChange] = []
    stamps: list[dict[str, object]] = []
    for key in keys:
        if key not in previous:
            continue  # the Location is gone (a teardown): nothing to report
        stamp = max(now, cast(datetime, as_utc(previous[key])) + _ONE_MICROSECOND)
        stamps.append({"b_cpo": key[0], "b_id": key[1], "b_stamp": stamp})
        changes += [EvseChange(key[0], key[1], uid, status, stamp) for uid, status in wanted[key].items()]
    if not changes:
        return []
    await conn.execute(
        _SET_EVSE,
        [{"b_cpo": c.cpo_id, "b_uid": c.evse_uid, "b_status": c.status, "b_stamp": c.last_updated} for c in changes],
    )
    await conn.execute(_SET_LOCATION, stamps)
    pushes = [
        status_push(c.cpo_id, c.location_id, c.evse_uid, c.status, ocpi_timestamp(c.last_updated)) for c in changes
    ]
    await enqueue_many(session, pushes, now=now)
    return changes


def status_push(cpo_id: int, location_id: str, evse_uid: str, status: str, last_updated: str) -> Push:
    """The eMSP's PATCH of an EVSE's status. Coalescible: while the peer has not taken the previous
    one, a newer status replaces it (the peer sees the latest state, never an older one after it)."""
    return Push(
        cpo_id=cpo_id,
        object_key=f"evse:{location_id}/{evse_uid}",
        module="locations",
        method="PATCH",
        path=[location_id, evse_uid],
        body={"status": status, "last_updated": last_updated},
        coalescible=True,
    )


def ocpi_timestamp(at: datetime) -> str:
    """OCPI DateTime as the platform renders it: UTC, whole seconds, `Z`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
