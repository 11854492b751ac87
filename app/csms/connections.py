"""The connection table (columns of `charger`): who holds each charger's WebSocket, fenced writes.

- The upgrade's lookup (`find`): concurrent upgrades share one query.
- A claim (at the upgrade) writes this API process's id and a fresh connection id: the newest
  connection wins. With a pod generation, the claim only succeeds when it is not lower than the
  stored one (a zombie simulator pod cannot take a charger back). Claims run in the group commit
  (app.csms.writer), with the claimed chargers' layout read in the same transaction.
- Every later write of a connection is conditioned on `connection_id = mine` (`fence`); a write that
  finds 0 rows means another connection (or the sweeper, or a teardown) took the row, and the
  socket must close. The claiming and fencing UPDATEs come first in their transaction: they are also
  the lock that orders writers of one charger (the sweeper takes the same row).
- Each API process touches `last_seen_at` of the chargers it holds; a sweeper in every process turns
  chargers not seen within the staleness bound OFFLINE (their API process died), EVSEs UNKNOWN.

Every CSMS write transaction (the OCPP log's too) runs inside `write_lock`:
- SQLite has one writer at a time: concurrent transactions of one process would wait for each other
  in SQLite's busy handler (sleeps of up to 100 ms), so they queue on one asyncio lock instead.
- Postgres orders writers by row locks, but a mass disconnect (a big CPO torn down, a sim worker's
  failover) opened one transaction per charger and held every connection of the process's pool for
  seconds: other tenants' OCPI handshakes waited for a connection. CSMS writers hold at most
  `PG_CSMS_WRITERS` connections at once; the rest of the pool stays free for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
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
MAX_LOOKUPS = 500  # upgrade lookups answered by one query
_KEYS = {"b_cpos": bindparam("b_cpos", expanding=True), "b_ids": bindparam("b_ids", expanding=True)}

# Separate INs use the (cpo_id, identity) key on both databases (a row-value IN scans on SQLite); the
# rows they return beyond the pairs asked for are dropped in Python.
_FIND = (
    select(  # type: ignore[call-overload]
        CH.c.cpo_id,
        CH.c.identity,
        CH.c.ocpp_version,
        CH.c.password_hash,
        CH.c.last_boot_at,
        CH.c.status.label("charger_status"),
        Cpo.status,
    )
    .join(Cpo, Cpo.id == CH.c.cpo_id)  # type: ignore[arg-type]
    .where(CH.c.cpo_id.in_(_KEYS["b_cpos"]), CH.c.identity.in_(_KEYS["b_ids"]))
)
_DETACHED = ChargerState.DETACHED.value
_CLAIM_VALUES = {
    "api_instance": bindparam("b_instance"),
    "connection_id": bindparam("b_connection"),
    # A detached charger stays DETACHED while the user's own client holds it.
    "status": case((CH.c.status == _DETACHED, CH.c.status), else_=bindparam("b_status")),
    "last_seen_at": bindparam("b_now"),
}
_AT_KEY = (CH.c.cpo_id == bindparam("b_cpo"), CH.c.identity == bindparam("b_identity"))
_CLAIM = update(CH).where(*_AT_KEY).values(**_CLAIM_VALUES)
# With a pod generation (our simulator): only when it is not lower than the stored one, and never a
# detached charger (the upgrade refused it already; this closes the race with a `detach`).
_CLAIM_FENCED = (
    update(CH)
    .where(
        *_AT_KEY,
        or_(CH.c.pod_generation.is_(None), CH.c.pod_generation <= bindparam("b_gen")),
        CH.c.status != _DETACHED,
    )
    .values(**_CLAIM_VALUES, pod_generation=bindparam("b_gen"))
)
_HOLDERS = select(CH.c.connection_id).where(
    CH.c.cpo_id.in_(_KEYS["b_cpos"]),
    CH.c.identity.in_(_KEYS["b_ids"]),
    CH.c.connection_id.in_(bindparam("b_connections", expanding=True)),
)
# A batch's charger states, one statement per (state, booted) group: prebuilt, so a batch neither builds
# an expression nor coerces every key of its IN lists (SQLAlchemy's cost, not the database's).
_FENCE_WHERE = (
    # The connection ids, unique per socket, keep only the pairs meant.
    CH.c.cpo_id.in_(_KEYS["b_cpos"]),
    CH.c.identity.in_(_KEYS["b_ids"]),
    CH.c.connection_id.in_(bindparam("b_connections", expanding=True)),
)
_FENCE_VALUES = {"status": _CLAIM_VALUES["status"], "last_seen_at": bindparam("b_now")}
_FENCE = {
    booted: update(CH)
    .where(*_FENCE_WHERE)
    .values(**_FENCE_VALUES, **({"last_boot_at": bindparam("b_now")} if booted else {}))
    .returning(CH.c.connection_id)
    for booted in (False, True)
}
_ROUTES = select(R.c.cpo_id, R.c.identity, R.c.ocpp_evse_id, R.c.location_id, R.c.evse_uid).where(
    R.c.cpo_id.in_(_KEYS["b_cpos"]), R.c.identity.in_(_KEYS["b_ids"])
)


# Of the main pool's 30 connections (app.store.db): enough for the group commit, the OCPP log and a
# few releases at once; more only lengthens the queue on one Location's row lock.
PG_CSMS_WRITERS = 6

_write_locks: weakref.WeakKeyDictionary[Database, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def write_lock(db: Database) -> contextlib.AbstractAsyncContextManager[object]:
    """Held around a write transaction of the CSMS: one at a time on SQLite, `PG_CSMS_WRITERS` on
    Postgres (never nested: a holder never takes it again)."""
    lock = _write_locks.get(db)
    if lock is None:
        writers = 1 if db.engine.dialect.name == "sqlite" else PG_CSMS_WRITERS
        lock = _write_locks[db] = asyncio.Semaphore(writers)
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
    detached: bool = False  # handed to the user's own OCPP client (our pods are refused)


@dataclass(frozen=True)
class Route:
    """One OCPI EVSE of the charger and where its OCPP EVSE number lands."""

    ocpp_evse_id: int
    location_id: str
    evse_uid: str


@dataclass(frozen=True)
class Layout:
    """A claimed charger's routing rows and its EVSEs as stored, read in the claim's transaction (so
    nobody else writes them while this connection holds the row)."""

    routes: list[Route]
    views: dict[str, evse_state.EvseView]


@dataclass(frozen=True)
class Claim:
    """A connection taking its charger's row (newest wins): with a pod generation, only when it is
    not lower than the stored one (a zombie simulator pod cannot take a charger back)."""

    record: ChargerRecord
    connection_id: str
    generation: int | None

    @property
    def key(self) -> ChargerKey:
        return (self.record.cpo_id, self.record.identity)


@dataclass(frozen=True)
class Fence:
    """One connection's fenced write of its charger's row."""

    key: ChargerKey
    connection_id: str
    state: ChargerState
    booted: bool = False  # a BootNotification was accepted now: record last_boot_at


def _keep_detached(state: ChargerState) -> Any:
    """`status = state`, except a DETACHED charger stays DETACHED (simulation control set it)."""
    return case((CH.c.status == _DETACHED, CH.c.status), else_=state.value)


def _row(key: ChargerKey) -> ColumnElement[bool]:
    return and_(CH.c.cpo_id == key[0], CH.c.identity == key[1])


class ConnectionTable:
    def __init__(self, db: Database, api_instance: str) -> None:
        self.db = db
        self.api_instance = api_instance
        self._lookups: dict[ChargerKey, list[asyncio.Future[ChargerRecord | None]]] = {}
        self._lookup_task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with write_lock(self.db), self.db.session() as session, session.begin():
            yield session

    async def find(self, cpo_id: int, identity: str) -> ChargerRecord | None:
        """The charger, if it belongs to a live CPO (not being torn down, destroyed or failed).
        Concurrent upgrades share one query (chargers connect in waves)."""
        found: asyncio.Future[ChargerRecord | None] = asyncio.get_running_loop().create_future()
        self._lookups.setdefault((cpo_id, identity), []).append(found)
        if self._lookup_task is None or self._lookup_task.done():
            self._lookup_task = asyncio.get_running_loop().create_task(self._look_up())
        return await found

    async def _look_up(self) -> None:
        # Runs while lookups wait, then exits; the next `find` starts it again.
        while self._lookups:
            keys = list(itertools.islice(self._lookups, MAX_LOOKUPS))
            batch = {key: self._lookups.pop(key) for key in keys}
            try:
                records = await self._find_many(keys)
            except Exception as exc:
                for futures in batch.values():
                    for found in futures:
                        if not found.done():
                            found.set_exception(exc)
                continue
            for key, futures in batch.items():
                for found in futures:
                    if not found.done():  # else its upgrade was abandoned meanwhile
                        found.set_result(records.get(key))

    async def _find_many(self, keys: list[ChargerKey]) -> dict[ChargerKey, ChargerRecord]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(_FIND, _key_params(keys))
        wanted = set(keys)
        return {
            (row.cpo_id, row.identity): ChargerRecord(
                row.cpo_id,
                row.identity,
                row.ocpp_version,
                row.password_hash,
                row.last_boot_at is not None,
                row.charger_status == _DETACHED,
            )
            for row in rows
            if (row.cpo_id, row.identity) in wanted and row.status not in GONE
        }

    async def claim(self, session: AsyncSession, claims: Sequence[Claim], now: datetime) -> dict[str, Layout]:
        """Take the chargers' rows for these connections and read the layout of those taken; returns
        {connection id: layout} of the claims that won (a missing one: a newer pod generation holds
        the row, or the row is gone)."""
        if not claims:
            return {}
        conn = await session.connection()
        fenced: list[dict[str, Any]] = []
        plain: list[dict[str, Any]] = []
        # In key order: two processes claiming the same rows lock them in the same order (Postgres).
        for claim in sorted(claims, key=lambda c: c.key):
            state = ChargerState.ONLINE if claim.record.booted_before else ChargerState.BOOTING
            params = {
                "b_cpo": claim.record.cpo_id,
                "b_identity": claim.record.identity,
                "b_instance": self.api_instance,
                "b_connection": claim.connection_id,
                "b_status": state.value,
                "b_now": now,
            }
            if claim.generation is None:
                plain.append(params)
            else:
                fenced.append({**params, "b_gen": claim.generation})
        for stmt, rows in ((_CLAIM, plain), (_CLAIM_FENCED, fenced)):
            if rows:
                await conn.execute(stmt, rows)
        keys = [c.key for c in claims]
        params = {**_key_params(keys), "b_connections": [c.connection_id for c in claims]}
        won = set((await conn.execute(_HOLDERS, params)).scalars())
        taken = {c.key: c.connection_id for c in claims if c.connection_id in won}
        if not taken:
            return {}
        routes: dict[ChargerKey, list[Route]] = {key: [] for key in taken}
        for cpo_id, identity, ocpp_evse_id, location_id, evse_uid in await conn.execute(
            _ROUTES, _key_params(list(taken))
        ):
            if (cpo_id, identity) in routes:
                routes[(cpo_id, identity)].append(Route(ocpp_evse_id, location_id, evse_uid))
        views = await evse_state.load_views(session, [(k[0], r.evse_uid) for k, rs in routes.items() for r in rs])
        layouts: dict[str, Layout] = {}
        for (cpo_id, identity), rs in routes.items():
            mine = {r.evse_uid: views[(cpo_id, r.evse_uid)] for r in rs if (cpo_id, r.evse_uid) in views}
            layouts[taken[(cpo_id, identity)]] = Layout(rs, mine)
        return layouts

    async def fence(self, session: AsyncSession, fences: Iterable[Fence], now: datetime) -> set[str]:
        """Write each connection's charger state (and last_seen_at) where the row is still its own;
        returns the connection ids that still hold their rows."""
        groups: dict[tuple[ChargerState, bool], list[Fence]] = {}
        for fence in fences:
            groups.setdefault((fence.state, fence.booted), []).append(fence)
        conn = await session.connection()
        held: set[str] = set()
        for (state, booted), group in groups.items():
            params = {
                "b_cpos": sorted({f.key[0] for f in group}),
                "b_ids": sorted({f.key[1] for f in group}),
                "b_connections": [f.connection_id for f in group],
                "b_status": state.value,
                "b_now": now,
            }
            held.update((await conn.execute(_FENCE[booted], params)).scalars())
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
            # A detached charger held by a dead process (the user's client) loses its connection too.
            or_(
                CH.c.status.in_([s.value for s in CONNECTED_STATES]),
                and_(CH.c.status == _DETACHED, CH.c.connection_id.is_not(None)),
            ),
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
                    .values(status=_keep_detached(ChargerState.OFFLINE), api_instance=None, connection_id=None)
                )
                if result.rowcount:
                    await evse_state.charger_unknown(session, cpo_id=cpo_id, identity=identity, now=now)
                    swept += 1
        return swept


def _key_params(keys: Iterable[ChargerKey]) -> dict[str, list[Any]]:
    """Bind values of a `cpo_id IN … AND identity IN …` lookup of these chargers."""
    keys = list(keys)
    return {"b_cpos": sorted({k[0] for k in keys}), "b_ids": sorted({k[1] for k in keys})}
