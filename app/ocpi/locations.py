"""OCPI Locations module, Sender interface (the CPO owns the data): list, Location, EVSE, Connector.

Hot path: a page is one indexed query (ids + last_updated of the page, plus the total unless the
network is READY and unfiltered: then an index range, and the CPO row's size as total), then the
cached JSON of the whole page, or else of each location. Cache entries are stamped with Location
`last_updated`, which is sound because the spec makes every EVSE/Connector change bump its Location
(`set_evse_status` below does, atomically). Only locations new to this process (or changed) are
rendered, with three more queries for the batch (locations, their EVSEs, their connectors). No ORM.
The page query goes through app.ocpi.reads (inline on SQLite).
"""

from __future__ import annotations

import functools
from collections import OrderedDict, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Select,
    String,
    Table,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.lifecycle.models import CpoStatus
from app.network.ocpi_enums import EvseStatus, values
from app.ocpi import render
from app.ocpi.pagination import PageParams, parse_page, raw_ocpi_response, raw_paginated
from app.ocpi.reads import read_rows
from app.ocpi.resolve import CpoInfo
from app.ocpi.transport import OcpiContext, OcpiError, ocpi_response, ocpi_route
from app.store.db import Database, as_utc
from app.store.tables import Connector, Evse, Location

MAX_LIMIT = 100
EVSE_STATUSES = frozenset(values(EvseStatus))
_ONE_MICROSECOND = timedelta(microseconds=1)

L = cast(Table, Location.__table__)
E = cast(Table, Evse.__table__)
C = cast(Table, Connector.__table__)


# ---- rendered-location cache ---------------------------------------------------------------------


class _RenderCache:
    """Byte-budgeted LRU of serialised JSON: key → (stamp, bytes); a hit needs the same stamp.

    Stamps are what make an entry current: a Location's stored `last_updated` (`_STAMP`), or for a
    whole page the tuple of (id, stamp) of its rows."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()

    def get(self, key: Hashable, stamp: Hashable) -> bytes | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] != stamp:
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: Hashable, stamp: Hashable, body: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old[1])
        if len(body) > self.max_bytes // 4:
            return  # one huge page must not flush everything else
        self._entries[key] = (stamp, body)
        self.size += len(body)
        while self.size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.size -= len(evicted)

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0


# Per process. Locations: ~0.5-5 kB each. Pages: the joined JSON array of one list request, so the
# hot path (a peer crawling an unchanged network) sends a cached buffer without copying it.
location_cache = _RenderCache(max_bytes=128 * 2**20)
page_cache = _RenderCache(max_bytes=64 * 2**20)


# The cache stamp: `last_updated` as text, made by the database (on SQLite it is stored as text; on
# Postgres a text column costs the API less than decoding a timestamp, on 100 rows per page). Only
# ever compared for equality, with stamps read by the same expression.
_STAMP = sql_cast(L.c.last_updated, String).label("stamp")


async def _location_objects(
    conn: AsyncConnection, cpo_id: int, version: str, ids: Sequence[str]
) -> dict[str, tuple[Hashable, dict[str, Any]]]:
    """Render Locations `ids` (with EVSEs and connectors) → {id: (stamp read, OCPI dict)}.

    Children are read before the Location rows: a child change commits together with its parent
    bump, so a parent timestamp read afterwards that equals the one the caller saw earlier proves
    the children belong to that version (see `_serialised`)."""
    evse_rows = (
        await conn.execute(
            select(E.c.uid, E.c.location_id, E.c.status, E.c.data, E.c.last_updated).where(
                E.c.cpo_id == cpo_id, E.c.location_id.in_(ids)
            )
        )
    ).all()
    connector_rows = (await conn.execute(select(C).where(C.c.cpo_id == cpo_id, C.c.location_id.in_(ids)))).all()
    location_rows = (
        await conn.execute(
            select(L.c.id, L.c.data, L.c.last_updated, _STAMP).where(L.c.cpo_id == cpo_id, L.c.id.in_(ids))
        )
    ).all()
    evses_by_location: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in evse_rows:
        evses_by_location[row.location_id].append(row._mapping)
    connectors_by_evse: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in connector_rows:
        connectors_by_evse[row.evse_uid].append(row._mapping)
    return {
        row.id: (
            row.stamp,
            render.location(row._mapping, evses_by_location[row.id], connectors_by_evse, version),
        )
        for row in location_rows
    }


async def _serialised(
    engine: AsyncEngine, cpo_id: int, version: str, wanted: Sequence[tuple[str, Hashable]]
) -> list[bytes]:
    """JSON of each (location_id, stamp) in order, from the cache or freshly rendered."""
    parts: list[bytes | None] = []
    missing: dict[str, int] = {}
    for i, (location_id, stamp) in enumerate(wanted):
        body = location_cache.get((cpo_id, version, location_id), stamp)
        parts.append(body)
        if body is None:
            missing[location_id] = i
    if missing:
        async with engine.connect() as conn:
            fresh = await _location_objects(conn, cpo_id, version, list(missing))
        for location_id, i in missing.items():
            if location_id not in fresh:
                continue  # removed meanwhile (teardown): leave it out
            stamp, obj = fresh[location_id]
            body = render.dumps(obj)
            parts[i] = body
            # Unchanged since the caller's read ⇒ children are consistent with it: cacheable.
            if stamp == wanted[i][1]:
                location_cache.put((cpo_id, version, location_id), stamp, body)
    return [p for p in parts if p is not None]


async def _page_json(
    engine: AsyncEngine, cpo_id: int, version: str, key: Hashable, rows: Sequence[tuple[str, Hashable]]
) -> tuple[bytes, int]:
    """(JSON array, item count) of one page; reused as a whole while its rows are unchanged."""
    stamp = tuple(rows)
    body = page_cache.get(key, stamp)
    if body is not None:
        return body, len(rows)
    items = await _serialised(engine, cpo_id, version, rows)
    body = b"[" + b",".join(items) + b"]"
    if len(items) == len(rows):
        page_cache.put(key, stamp, body)
    return body, len(items)


def _db(request: Request, ctx: OcpiContext) -> Database:
    return ctx.db or request.app.state.db


@functools.cache
def _page_statements(with_from: bool, with_to: bool) -> tuple[Select[Any], Select[Any]]:
    """(page, count) statements for one combination of date filters, built once: executing a
    prepared statement skips SQLAlchemy's per-request construction and cache-key work.

    Page rows: id, stamp, and the total as an uncorrelated scalar subquery (evaluated once), in
    generation-index order straight off ix_location_cpo_idx. Window: date_from <= last_updated < date_to."""
    where = [L.c.cpo_id == bindparam("cpo_id")]
    if with_from:
        where.append(L.c.last_updated >= bindparam("date_from", type_=L.c.last_updated.type))
    if with_to:
        where.append(L.c.last_updated < bindparam("date_to", type_=L.c.last_updated.type))
    count = select(func.count()).select_from(L).where(*where)
    page = (
        select(L.c.id, _STAMP, count.correlate(None).scalar_subquery().label("total"))
        .where(*where)
        .order_by(L.c.idx)
        .offset(bindparam("offset", type_=BigInteger))
        .limit(bindparam("limit", type_=BigInteger))
    )
    return page, count


# A READY network's Locations are exactly its generation indexes 0 … size-1 (provisioned whole, never
# added or removed until teardown), so the page at `offset` is an index range and the total is the
# size the CPO row already carries: no count and no skipped rows per request. On Postgres the count
# alone was most of the page's server time (it visits every Location's row versions).
_READY_PAGE = (
    select(L.c.id, _STAMP)
    .where(
        L.c.cpo_id == bindparam("cpo_id"),
        L.c.idx >= bindparam("first", type_=BigInteger),
        L.c.idx < bindparam("end", type_=BigInteger),
    )
    .order_by(L.c.idx)
)


async def _page_rows(db: Database, cpo: CpoInfo, params: PageParams) -> tuple[Sequence[Any], int]:
    """Rows of the page (id, stamp, …) and the total. Read by position: cheaper than a Row's
    attribute access by name, on 100 rows per request."""
    if cpo.status == CpoStatus.READY and params.date_from is None and params.date_to is None:
        if params.offset >= cpo.locations:
            return [], cpo.locations
        window = {"cpo_id": cpo.id, "first": params.offset, "end": params.offset + params.limit}
        return await read_rows(db, _READY_PAGE, window), cpo.locations
    page_stmt, count_stmt = _page_statements(params.date_from is not None, params.date_to is not None)
    values = {"cpo_id": cpo.id, "offset": params.offset, "limit": params.limit}
    if params.date_from is not None:
        values["date_from"] = params.date_from
    if params.date_to is not None:
        values["date_to"] = params.date_to
    rows = await read_rows(db, page_stmt, values)
    if rows:  # the total rides on every row; past the end no row carries it
        return rows, rows[0][2]
    if params.offset == 0:  # nothing at the start is nothing at all, in the page's own snapshot (a
        return rows, 0  # count read after it could see Locations committed since: 25 total, no item)
    return rows, (await read_rows(db, count_stmt, values))[0][0]


# ---- handlers ------------------------------------------------------------------------------------


async def list_locations(request: Request, ctx: OcpiContext) -> Response:
    params = parse_page(request, MAX_LIMIT)
    db = _db(request, ctx)
    rows, total = await _page_rows(db, ctx.cpo, params)
    key = (ctx.cpo_id, ctx.version, params)
    page, returned = await _page_json(db.engine, ctx.cpo_id, ctx.version, key, [(r[0], r[1]) for r in rows])
    return raw_paginated(request, page, returned, total, params, MAX_LIMIT)


async def _find_location(conn: AsyncConnection, cpo_id: int, location_id: str) -> tuple[str, Hashable] | None:
    """(id, stamp) of a location; ids are CiStrings: exact match first, then case-insensitive."""
    for condition in (L.c.id == location_id, func.upper(L.c.id) == location_id.upper()):
        row = (await conn.execute(select(L.c.id, _STAMP).where(L.c.cpo_id == cpo_id, condition))).first()
        if row is not None:
            return row.id, row.stamp
    return None


async def _find_evse(conn: AsyncConnection, cpo_id: int, location_id: str, evse_uid: str) -> Any:
    base = select(E).where(E.c.cpo_id == cpo_id, E.c.location_id == location_id)
    for condition in (E.c.uid == evse_uid, func.upper(E.c.uid) == evse_uid.upper()):
        row = (await conn.execute(base.where(condition))).first()
        if row is not None:
            return row
    return None


def _unknown(what: str) -> OcpiError:
    """HTTP 404 with OCPI 2003 (unknown location), for a location and for anything under it."""
    return OcpiError(2003, f"unknown {what}", http_status=404)


async def get_location(request: Request, ctx: OcpiContext) -> Response:
    location_id = request.path_params["location_id"]
    engine = _db(request, ctx).engine
    async with engine.connect() as conn:
        found = await _find_location(conn, ctx.cpo_id, location_id)
    if found is None:
        raise _unknown(f"location {location_id!r}")
    parts = await _serialised(engine, ctx.cpo_id, ctx.version, [found])
    if not parts:
        raise _unknown(f"location {location_id!r}")
    return raw_ocpi_response(parts[0])


async def _evse_and_connectors(
    conn: AsyncConnection, ctx: OcpiContext, location_id: str, evse_uid: str
) -> tuple[Any, list[Any]]:
    found = await _find_location(conn, ctx.cpo_id, location_id)
    if found is None:
        raise _unknown(f"location {location_id!r}")
    evse_row = await _find_evse(conn, ctx.cpo_id, found[0], evse_uid)
    if evse_row is None:
        raise _unknown(f"EVSE {evse_uid!r} at location {found[0]!r}")
    connectors = (await conn.execute(select(C).where(C.c.cpo_id == ctx.cpo_id, C.c.evse_uid == evse_row.uid))).all()
    return evse_row, connectors


async def get_evse(request: Request, ctx: OcpiContext) -> Response:
    async with _db(request, ctx).engine.connect() as conn:
        evse_row, connectors = await _evse_and_connectors(
            conn, ctx, request.path_params["location_id"], request.path_params["evse_uid"]
        )
    return ocpi_response(render.evse(evse_row._mapping, [c._mapping for c in connectors], ctx.version))


async def get_connector(request: Request, ctx: OcpiContext) -> Response:
    connector_id = request.path_params["connector_id"]
    async with _db(request, ctx).engine.connect() as conn:
        evse_row, connectors = await _evse_and_connectors(
            conn, ctx, request.path_params["location_id"], request.path_params["evse_uid"]
        )
    match = [c for c in connectors if c.id == connector_id] or [
        c for c in connectors if c.id.upper() == connector_id.upper()
    ]
    if not match:
        raise _unknown(f"connector {connector_id!r} of EVSE {evse_row.uid!r}")
    return ocpi_response(render.connector(match[0]._mapping, ctx.version))


_BASE = "/ocpi/peer/{cpo_id:int}/{version}/locations"
routes: list[BaseRoute] = [
    ocpi_route(_BASE, list_locations, methods=["GET"], module="locations"),
    ocpi_route(_BASE + "/{location_id}", get_location, methods=["GET"], module="locations"),
    ocpi_route(_BASE + "/{location_id}/{evse_uid}", get_evse, methods=["GET"], module="locations"),
    ocpi_route(_BASE + "/{location_id}/{evse_uid}/{connector_id}", get_connector, methods=["GET"], module="locations"),
]


# ---- for other modules (CSMS, pushes) ------------------------------------------------------------


@dataclass(frozen=True)
class EvseStatusChange:
    location_id: str
    evse_uid: str
    status: str
    last_updated: datetime  # aware UTC, as stored on both the EVSE and its Location
    changed: bool  # False: the EVSE already had this status, nothing was written


async def set_evse_status(
    session: AsyncSession | AsyncConnection, cpo_id: int, evse_uid: str, status: str, now: datetime
) -> EvseStatusChange | None:
    """Set an EVSE's status and bump its own and its Location's `last_updated` (spec: a child change
    MUST bump the parent, or `date_from` pulls miss it). Runs in the caller's transaction; returns
    None for an unknown EVSE. A repeated status writes nothing, so pulls don't see phantom changes.

    The Location timestamp always moves strictly forward (by 1 µs if `now` is not later): the
    render cache and `date_from` crawls both key on it."""
    if status not in EVSE_STATUSES:
        raise ValueError(f"not an OCPI EVSE status: {status!r}")
    row = (
        await session.execute(
            select(E.c.location_id, E.c.status, E.c.last_updated, L.c.last_updated.label("location_updated"))
            .join(L, (L.c.cpo_id == E.c.cpo_id) & (L.c.id == E.c.location_id))
            .where(E.c.cpo_id == cpo_id, E.c.uid == evse_uid)
        )
    ).first()
    if row is None:
        return None
    if row.status == status:
        return EvseStatusChange(row.location_id, evse_uid, status, as_utc(row.last_updated), changed=False)
    stamp = _next_stamp(now, row.location_updated, row.last_updated)
    await session.execute(
        update(E).where(E.c.cpo_id == cpo_id, E.c.uid == evse_uid).values(status=status, last_updated=stamp)
    )
    await session.execute(update(L).where(L.c.cpo_id == cpo_id, L.c.id == row.location_id).values(last_updated=stamp))
    return EvseStatusChange(row.location_id, evse_uid, status, stamp, changed=True)


async def bump_location(
    session: AsyncSession | AsyncConnection, cpo_id: int, location_id: str, now: datetime
) -> datetime | None:
    """Move a Location's `last_updated` forward after a change to one of its children made by other
    code (a connector, EVSE data): without it, `date_from` pulls and the render cache miss the change.
    Runs in the caller's transaction (commit the child change in the same one); returns the new
    timestamp, or None for an unknown location."""
    current = (
        await session.execute(select(L.c.last_updated).where(L.c.cpo_id == cpo_id, L.c.id == location_id))
    ).scalar_one_or_none()
    if current is None:
        return None
    stamp = _next_stamp(now, current)
    await session.execute(update(L).where(L.c.cpo_id == cpo_id, L.c.id == location_id).values(last_updated=stamp))
    return stamp


def _next_stamp(now: datetime, *previous: datetime) -> datetime:
    """`now`, or 1 µs after the latest previous stamp if `now` is not later (clock skew, a caller
    reusing one `now`): the same stamp must never name two different contents."""
    return max(as_utc(now), *(as_utc(p) + _ONE_MICROSECOND for p in previous))
