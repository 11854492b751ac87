"""The connection table (columns of `charger`): who holds each charger's WebSocket, fenced writes.

- A claim (at the upgrade) writes this API process's id and a fresh connection id: the newest
  connection wins. With a pod generation, the claim only succeeds when it is not lower than the
  stored one (a zombie simulator pod cannot take a charger back).
- Every later write of a connection is conditioned on `connection_id = mine` (`fence`); a write that
  finds 0 rows means another connection (or the sweeper, or a teardown) took the row, and the
  socket must close. The fencing UPDATE comes first in its transaction: it is also the lock that
  orders writers of one charger (the sweeper takes the same row).
- Each API process touches `last_seen_at` of the chargers it holds; a sweeper in every process turns
  chargers not seen within the staleness bound OFFLINE (their API process died), EVSEs UNKNOWN.

SQLite has one writer at a time: concurrent transactions of one process would wait for each other in
SQLite's busy handler (sleeps of up to 100 ms), so this process's CSMS writes (the OCPP log's too)
queue on one asyncio lock per database there instead (`write_lock`). Postgres needs none (row locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, case

from app.lifecycle.models import GONE
from app.network import evse_state
from app.network.status import CONNECTED_STATES, ChargerState
from app.store.db import Database, utcnow
from app.store.tables import Charger, ChargerRoute, Cpo

CH = cast(Table, Charger.__table__)
R = cast(Table, ChargerRoute.__table__)
ChargerKey = tuple[int, str]  # (cpo_id, identity)
SWEEP_BATCH = 500  # stale chargers one sweep handles (the rest in the next)

_FIND = (
    select(CH.c.ocpp_version, CH.c.password_hash, CH.c.last_boot_at, Cpo.status)  # type: ignore[call-overload]
    .join(Cpo, Cpo.id == CH.c.cpo_id)  # type: ignore[arg-type]
    .where(CH.c.cpo_id == bindparam("b_cpo"), CH.c.identity == bindparam("b_identity"))
)


_write_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_lock(db: Database) -> contextlib.AbstractAsyncContextManager[object]:
    """Held around a write transaction of the CSMS: the process's writers take turns on SQLite."""
    if db.engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _write_locks.get(db)
    if lock is None:
        lock = _write_locks[db] = asyncio.Lock()
    return lock


class ConnectionLost(Exception):
    """This connection no longer holds the charger's row (replaced, swept, or the CPO is gone)."""


@dataclass(frozen=True)
class ChargerRecord:
    """What the upgrade checks against."""

    cpo_id: int
    identity: str
    ocpp_version: str
    password_hash: str
    booted_before: bool  # a BootNotification was accepted on some earlier connection


@dataclass(frozen=True)
class Route:
    """One OCPI EVSE of the charger and where its OCPP EVSE number lands."""

    ocpp_evse_id: int
    location_id: str
    evse_uid: str


@dataclass(frozen=True)
class Fence:
    """One connection's fenced write of its charger's row."""

    key: ChargerKey
    connection_id: str
    state: ChargerState
    booted: bool = False  # a BootNotification was accepted now: record last_boot_at


def _keep_detached(state: ChargerState) -> Any:
    """`status = state`, except a DETACHED charger stays DETACHED (simulation control set it)."""
    return case((CH.c.status == ChargerState.DETACHED.value, CH.c.status), else_=state.value)


def _row(key: ChargerKey) -> ColumnElement[bool]:
    return and_(CH.c.cpo_id == key[0], CH.c.identity == key[1])


class ConnectionTable:
    def __init__(self, db: Database, api_instance: str) -> None:
        self.db = db
        self.api_instance = api_instance

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with write_lock(self.db), self.db.session() as session, session.begin():
            yield session

    async def find(self, cpo_id: int, identity: str) -> ChargerRecord | None:
        """The charger, if it belongs to a live CPO (not being torn down, destroyed or failed)."""
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(_FIND, {"b_cpo": cpo_id, "b_identity": identity})).first()
        if row is None or row.status in GONE:
            return None
        return ChargerRecord(cpo_id, identity, row.ocpp_version, row.password_hash, row.last_boot_at is not None)

    async def claim(self, record: ChargerRecord, connection_id: str, generation: int | None) -> bool:
        """Take the charger's row for this connection. False: a newer pod generation holds it (or
        the row is gone)."""
        values: dict[str, Any] = {
            "api_instance": self.api_instance,
            "connection_id": connection_id,
            "status": (ChargerState.ONLINE if record.booted_before else ChargerState.BOOTING).value,
        }
        where = [_row((record.cpo_id, record.identity))]
        if generation is not None:
            values["pod_generation"] = generation
            where.append(or_(CH.c.pod_generation.is_(None), CH.c.pod_generation <= generation))
        async with self.transaction() as session:
            conn = await session.connection()
            result = await conn.execute(update(CH).where(*where).values(last_seen_at=utcnow(), **values))
        return bool(result.rowcount)

    async def fence(self, session: AsyncSession, fences: Iterable[Fence], now: datetime) -> set[str]:
        """Write each connection's charger state (and last_seen_at) where the row is still its own;
        returns the connection ids that still hold their rows."""
        groups: dict[tuple[ChargerState, bool], list[Fence]] = {}
        for fence in fences:
            groups.setdefault((fence.state, fence.booted), []).append(fence)
        conn = await session.connection()
        held: set[str] = set()
        for (state, booted), group in groups.items():
            values: dict[str, Any] = {"status": _keep_detached(state), "last_seen_at": now}
            if booted:
                values["last_boot_at"] = now
            stmt = (
                update(CH)
                .where(
                    # Separate INs use the (cpo_id, identity) key on both databases (a row-value IN
                    # scans on SQLite); the connection ids, unique per socket, keep only the pairs meant.
                    CH.c.cpo_id.in_({f.key[0] for f in group}),
                    CH.c.identity.in_({f.key[1] for f in group}),
                    CH.c.connection_id.in_([f.connection_id for f in group]),
                )
                .values(**values)
                .returning(CH.c.connection_id)
            )
            held.update((await conn.execute(stmt)).scalars())
        return held

    async def release(self, key: ChargerKey, connection_id: str) -> bool:
        """The connection ended: OFFLINE and its EVSEs UNKNOWN, if the row is still its own."""
        async with self.transaction() as session:
            conn = await session.connection()
            result = await conn.execute(
                update(CH)
                .where(_row(key), CH.c.connection_id == connection_id)
                .values(status=_keep_detached(ChargerState.OFFLINE), api_instance=None, connection_id=None)
            )
            if not result.rowcount:
                return False
            await evse_state.charger_unknown(session, cpo_id=key[0], identity=key[1], now=utcnow())
        return True

    async def touch(self) -> dict[ChargerKey, str]:
        """Mark every charger this process holds as seen; returns {charger: connection id} of the rows
        it still holds (a live socket missing here lost its row)."""
        async with self.transaction() as session:
            conn = await session.connection()
            now = utcnow()  # once the write lock is ours: a stamp taken before a long wait would be stale
            rows = await conn.execute(
                update(CH)
                .where(CH.c.api_instance == self.api_instance, CH.c.connection_id.is_not(None))
                .values(last_seen_at=now)
                .returning(CH.c.cpo_id, CH.c.identity, CH.c.connection_id)
            )
            return {(cpo_id, identity): connection_id for cpo_id, identity, connection_id in rows}

    async def sweep(self, now: datetime, stale_after: float) -> int:
        """Chargers whose holder stopped touching them (a dead API process): OFFLINE, EVSEs UNKNOWN.
        Idempotent, and safe in every API process at once: each row is re-checked by its UPDATE."""
        cutoff = now - timedelta(seconds=stale_after)
        stale = and_(
            CH.c.status.in_([s.value for s in CONNECTED_STATES]),
            or_(CH.c.last_seen_at.is_(None), CH.c.last_seen_at < cutoff),
            # Our own rows are kept by our touch: a busy (not dead) process must not sweep itself.
            or_(CH.c.api_instance.is_(None), CH.c.api_instance != self.api_instance),
        )
        async with self.db.engine.connect() as conn:
            candidates = (
                await conn.execute(
                    select(CH.c.cpo_id, CH.c.identity, CH.c.connection_id).where(stale).limit(SWEEP_BATCH)
                )
            ).all()
        swept = 0
        for cpo_id, identity, connection_id in candidates:
            async with self.transaction() as session:
                conn = await session.connection()
                result = await conn.execute(
                    update(CH)
                    .where(_row((cpo_id, identity)), stale, CH.c.connection_id.is_not_distinct_from(connection_id))
                    .values(status=ChargerState.OFFLINE.value, api_instance=None, connection_id=None)
                )
                if result.rowcount:
                    await evse_state.charger_unknown(session, cpo_id=cpo_id, identity=identity, now=now)
                    swept += 1
        return swept

    async def layout(self, key: ChargerKey) -> tuple[list[Route], dict[str, evse_state.EvseView]]:
        """The charger's routing rows and its EVSEs as stored, read once per connection (after the
        claim, so nobody else writes them while this connection holds the row)."""
        cpo_id, identity = key
        async with self.db.session() as session:
            conn = await session.connection()
            mine = (R.c.cpo_id == cpo_id) & (R.c.identity == identity)
            routes = await conn.execute(select(R.c.ocpp_evse_id, R.c.location_id, R.c.evse_uid).where(mine))
            route_list = [Route(*row) for row in routes]
            views = await evse_state.load_views(session, cpo_id, identity)
        return route_list, views
