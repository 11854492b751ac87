"""party_id reservation with deterministic collision mangling (CONTRACT §1).

Within one org a live CPO holds (country_code, party_id) exclusively. On collision we keep the
first two characters and walk the third over A–Z0–9 in order; when all 36 are taken the
namespace is exhausted.
"""

from __future__ import annotations

import string

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.store.tables import PartyReservation

ALPHABET = string.ascii_uppercase + string.digits


def candidates(party_id: str) -> list[str]:
    prefix = party_id[:2]
    return [party_id] + [prefix + c for c in ALPHABET if prefix + c != party_id]


async def reserve(session: AsyncSession, org: str, country_code: str, party_id: str, cpo_id: int) -> str | None:
    """Reserve the first free candidate inside the caller's transaction; None when exhausted."""
    taken = set(
        (
            await session.execute(
                select(PartyReservation.party_id).where(
                    PartyReservation.org == org,
                    PartyReservation.country_code == country_code,
                    PartyReservation.party_id.startswith(party_id[:2]),  # type: ignore[attr-defined]
                )
            )
        ).scalars()
    )
    for candidate in candidates(party_id):
        if candidate not in taken:
            session.add(PartyReservation(org=org, country_code=country_code, party_id=candidate, cpo_id=cpo_id))
            await session.flush()
            return candidate
    return None
