"""Rows written after the fact (buffered logs, deliveries in flight) must not outlive their CPO."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.tables import Cpo

GONE = ("DESTROYING", "DESTROYED")  # a CPO being or already torn down keeps no new rows


async def of_live_cpos(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows (each with a `cpo_id`) but those of a CPO being or already torn down: a frame or a push
    logged after its CPO's teardown deleted the log would otherwise stay behind it."""
    gone = await gone_cpos(session, {row["cpo_id"] for row in rows})
    return [row for row in rows if row["cpo_id"] not in gone] if gone else rows


async def gone_cpos(session: AsyncSession, cpo_ids: set[int]) -> set[int]:
    """Those of these CPOs that are being or already torn down."""
    if not cpo_ids:
        return set()
    query = select(Cpo.id).where(Cpo.id.in_(cpo_ids), Cpo.status.in_(GONE))  # type: ignore[attr-defined]
    return set((await session.execute(query)).scalars())
