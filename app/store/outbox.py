"""Writing to the OCPI outbox: a push recorded in the same transaction as the change it reports.

Delivery (order per object, retries, leases for several API processes) is app.ocpi.outbox's job;
this module only records. One row per registered peer, so a slow peer never holds another back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.db import utcnow
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import OutboxRow


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
    """Record a push of `body` to every registered peer of the CPO; returns the rows written or
    coalesced. A coalescible push replaces the body of the object's newest row when that row is
    coalescible too and no dispatcher holds it (the peer then gets only the latest state, in order)."""
    now = now or utcnow()
    peers = (
        await session.execute(
            select(OcpiPeer.id).where(OcpiPeer.cpo_id == cpo_id, OcpiPeer.registered.is_(True))  # type: ignore[attr-defined]
        )
    ).scalars()
    written = 0
    for peer_id in list(peers):
        if coalescible and await _coalesce(session, cpo_id, peer_id, object_key, body, now):
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
    return written


async def _coalesce(
    session: AsyncSession, cpo_id: int, peer_id: int, object_key: str, body: dict[str, Any] | None, now: datetime
) -> bool:
    newest = (
        await session.execute(
            select(OutboxRow.id, OutboxRow.coalescible)
            .where(OutboxRow.cpo_id == cpo_id, OutboxRow.peer_id == peer_id, OutboxRow.object_key == object_key)
            .order_by(OutboxRow.id.desc())  # type: ignore[union-attr]
            .limit(1)
        )
    ).first()
    if newest is None or not newest.coalescible:
        return False
    # Re-checked by the UPDATE itself: a dispatcher that claimed the row meanwhile keeps it intact.
    result = await session.execute(
        update(OutboxRow)
        .where(
            OutboxRow.id == newest.id,  # type: ignore[arg-type]
            or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),  # type: ignore[union-attr,operator]
        )
        .values(body=body)
    )
    return bool(result.rowcount)
