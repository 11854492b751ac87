"""Writing to the OCPI outbox: a push recorded in the same transaction as the change it reports.

Delivery (order per object, retries, leases for several API processes) is app.ocpi.outbox's job;
this module only records. One row per registered peer, so a slow peer never holds another back.

Order per object follows row ids, so enqueue *after* the write that changes (and so locks) the
object's own row: two transactions changing one object then enqueue one after the other.
`enqueue_many` records a batch with a fixed number of statements (peers, newest rows, coalescing
updates, inserts) whatever its size: the CSMS writes the EVSE changes of many chargers at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, event, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.store.db import utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import OutboxRow

OB = cast(Table, OutboxRow.__table__)
PEER = cast(Table, OcpiPeer.__table__)

# Clearing a lapsed lease fences its holder: it can no longer delete the row with the new body.
_COALESCE = update(OB).where(OB.c.id == bindparam("b_id")).values(body=bindparam("b_body"), claimed_until=None)
# Dispatchers of this process (app.ocpi.outbox registers them): woken when a transaction that
# enqueued commits, so a local change is sent at once instead of at the next poll.
_listeners: set[Callable[[], None]] = set()
_WAKE_PENDING = "cpolab.outbox.wake_pending"


def subscribe(wake: Callable[[], None]) -> None:
    _listeners.add(wake)


def unsubscribe(wake: Callable[[], None]) -> None:
    _listeners.discard(wake)


@dataclass(frozen=True)
class Push:
    cpo_id: int
    object_key: str  # e.g. "evse:LOC00001/LOC00001-C01-1": one ordered stream per object
    module: str
    method: str
    path: list[str]
    body: dict[str, Any] | None
    coalescible: bool = False
    # Coalescing normally replaces the pending body; with `appends`, the bodies merge instead (the
    # newer fields win) and these list fields are concatenated, older items first: a PATCH whose
    # lists the receiver appends (a Session's charging_periods) folds into the pending one.
    appends: tuple[str, ...] = ()


def merged(pending: dict[str, Any] | None, push: Push) -> dict[str, Any] | None:
    """The body that replaces a pending row's when `push` coalesces into it."""
    if not push.appends or pending is None or push.body is None:
        return push.body
    body = {**pending, **push.body}
    for name in push.appends:
        if name in pending or name in push.body:
            body[name] = [*pending.get(name, []), *push.body.get(name, [])]
    return body


async def enqueue(
    session: AsyncSession,
    *,
    cpo_id: int,
    object_key: str,
    module: str,
    method: str,
    path: list[str],
    body: dict[str, Any] | None,
    coalescible: bool = False,
    now: datetime | None = None,
) -> int:
    """Record a push of `body` (JSON values only) to every registered peer of the CPO; returns the
    rows written or coalesced. A coalescible push (its body supersedes any earlier one, e.g. the
    full status of an EVSE) replaces the body of the object's newest row when that row is the same
    coalescible push (method and path) and no dispatcher holds it: the peer gets only the latest
    state, still in order."""
    push = Push(cpo_id, object_key, module, method, path, body, coalescible)
    return await enqueue_many(session, [push], now=now)


async def enqueue_many(session: AsyncSession, pushes: Sequence[Push], *, now: datetime | None = None) -> int:
    """`enqueue` for several pushes (at most one per object), in the caller's transaction."""
    now = now or utcnow()
    conn = await session.connection()
    cpo_ids = sorted({p.cpo_id for p in pushes})
    if not cpo_ids:
        return 0
    peers: dict[int, list[int]] = {}
    for cpo_id, peer_id in await conn.execute(
        select(PEER.c.cpo_id, PEER.c.id).where(PEER.c.cpo_id.in_(cpo_ids), PEER.c.registered.is_(True))
    ):
        peers.setdefault(cpo_id, []).append(peer_id)
    targets = [(push, peer_id) for push in pushes for peer_id in peers.get(push.cpo_id, ())]
    if not targets:
        return 0
    coalesce: dict[int, dict[str, Any] | None] = {}  # outbox row id → new body
    coalesced: set[tuple[int, int, str]] = set()
    wanted = [(p.cpo_id, peer_id, p.object_key) for p, peer_id in targets if p.coalescible]
    if wanted:
        newest = await _newest_coalescible(session, wanted, now)
        for push, peer_id in targets:
            key = (push.cpo_id, peer_id, push.object_key)
            row = newest.get(key)
            if push.coalescible and row is not None and (row[1], row[2]) == (push.method, push.path):
                coalesce[row[0]] = merged(row[3], push)
                coalesced.add(key)
    inserts = [
        {
            "cpo_id": push.cpo_id,
            "peer_id": peer_id,
            "object_key": push.object_key,
            "module": push.module,
            "method": push.method,
            "path": push.path,
            "body": push.body,
            "coalescible": push.coalescible,
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
        }
        for push, peer_id in targets
        if (push.cpo_id, peer_id, push.object_key) not in coalesced
    ]
    if coalesce:
        await conn.execute(_COALESCE, [{"b_id": row_id, "b_body": body} for row_id, body in coalesce.items()])
    if inserts:
        await conn.execute(insert(OB), inserts)
    _wake_after_commit(session.sync_session)
    return len(targets)


async def _newest_coalescible(
    session: AsyncSession, keys: list[tuple[int, int, str]], now: datetime
) -> dict[tuple[int, int, str], tuple[int, str, list[str], dict[str, Any] | None]]:
    """(cpo, peer, object) → (id, method, path, body) of the object's newest row, where that row is coalescible and no
    dispatcher holds it. Locked on Postgres until the commit, so a dispatcher cannot claim it between
    this read and the coalescing UPDATE (SQLite: the caller's transaction holds the write lock)."""
    conn = await session.connection()
    streams: dict[tuple[int, int], set[str]] = {}
    for cpo_id, peer_id, object_key in keys:
        streams.setdefault((cpo_id, peer_id), set()).add(object_key)
    # One lookup of ix_ocpi_outbox_object per (CPO, peer) (a row-value IN would scan on SQLite).
    in_streams = or_(
        *(
            and_(OB.c.cpo_id == cpo_id, OB.c.peer_id == peer_id, OB.c.object_key.in_(sorted(objects)))
            for (cpo_id, peer_id), objects in streams.items()
        )
    )
    newest_ids = select(func.max(OB.c.id)).where(in_streams).group_by(OB.c.cpo_id, OB.c.peer_id, OB.c.object_key)
    read = select(OB.c.id, OB.c.cpo_id, OB.c.peer_id, OB.c.object_key, OB.c.method, OB.c.path, OB.c.body).where(
        OB.c.id.in_(newest_ids),
        OB.c.coalescible.is_(True),
        or_(OB.c.claimed_until.is_(None), OB.c.claimed_until < now),
    )
    if conn.dialect.name == "postgresql":
        read = read.order_by(OB.c.id).with_for_update()
    rows = await conn.execute(read)
    return {(c, p, k): (row_id, m, list(path), body) for row_id, c, p, k, m, path, body in rows}


def _wake_after_commit(session: Session) -> None:
    if not _listeners or session.info.get(_WAKE_PENDING):
        return
    session.info[_WAKE_PENDING] = True
    event.listen(session, "after_commit", _wake_listeners, once=True)


def _wake_listeners(session: Session) -> None:
    session.info.pop(_WAKE_PENDING, None)
    for wake in list(_listeners):
        wake()
