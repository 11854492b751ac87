"""Writing to the OCPI outbox: a push recorded in the same transaction as the change it reports.

Delivery (order per object, retries, leases for several API processes) is app.ocpi.outbox's job;
this module only records. One row per registered peer, so a slow peer never holds another back.

Order per object follows row ids, so enqueue *after* the write that changes (and so locks) the
object's own row: two transactions changing one object then enqueue one after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import event, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.store.db import utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import OutboxRow

# Dispatchers of this process (app.ocpi.outbox registers them): woken when a transaction that
# enqueued commits, so a local change is sent at once instead of at the next poll.
_listeners: set[Callable[[], None]] = set()
_WAKE_PENDING = "cpolab.outbox.wake_pending"


def subscribe(wake: Callable[[], None]) -> None:
    _listeners.add(wake)


def unsubscribe(wake: Callable[[], None]) -> None:
    _listeners.discard(wake)


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
    now = now or utcnow()
    peers = (
        await session.execute(
            select(OcpiPeer.id).where(OcpiPeer.cpo_id == cpo_id, OcpiPeer.registered.is_(True))  # type: ignore[attr-defined]
        )
    ).scalars()
    written = 0
    for peer_id in list(peers):
        if coalescible and await _coalesce(session, cpo_id, peer_id, object_key, method, path, body, now):
            written += 1
            continue
        session.add(
            OutboxRow(
                cpo_id=cpo_id,
                peer_id=peer_id,
                object_key=object_key,
                module=module,
                method=method,
                path=path,
                body=body,
                coalescible=coalescible,
                created_at=now,
                next_attempt_at=now,
            )
        )
        written += 1
    if written:
        _wake_after_commit(session.sync_session)
    return written


async def _coalesce(
    session: AsyncSession,
    cpo_id: int,
    peer_id: int,
    object_key: str,
    method: str,
    path: list[str],
    body: dict[str, Any] | None,
    now: datetime,
) -> bool:
    newest = (
        await session.execute(
            select(OutboxRow.id, OutboxRow.coalescible, OutboxRow.method, OutboxRow.path)
            .where(OutboxRow.cpo_id == cpo_id, OutboxRow.peer_id == peer_id, OutboxRow.object_key == object_key)
            .order_by(OutboxRow.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
    ).first()
    if newest is None or not newest.coalescible or newest.method != method or list(newest.path) != path:
        return False
    # Re-checked by the UPDATE itself: a dispatcher that claimed the row meanwhile keeps it intact.
    # Clearing a lapsed lease fences its holder: it can no longer delete the row with the new body.
    result = await session.execute(
        update(OutboxRow)
        .where(
            OutboxRow.id == newest.id,  # type: ignore[arg-type]
            or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),  # type: ignore[union-attr,operator]
        )
        .values(body=body, claimed_until=None)
    )
    return bool(result.rowcount)


def _wake_after_commit(session: Session) -> None:
    if not _listeners or session.info.get(_WAKE_PENDING):
        return
    session.info[_WAKE_PENDING] = True
    event.listen(session, "after_commit", _wake_listeners, once=True)


def _wake_listeners(session: Session) -> None:
    session.info.pop(_WAKE_PENDING, None)
    for wake in list(_listeners):
        wake()
