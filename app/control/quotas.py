"""Per-org quotas on live CPOs and live chargers: one tenant cannot take the shared workers and
database for itself (ten 10k-charger CPOs from one org slowed every other tenant's create 20×).

A CPO is live until it is FAILED or DESTROYED (a DESTROYING one still holds its rows). The create
handler calls `quota_problem` before it commits a new row.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse

from app.lifecycle.models import TERMINAL
from app.settings import Settings
from app.store.tables import Cpo

_cpo = Cpo.__table__.c  # type: ignore[attr-defined]


async def quota_problem(
    session: AsyncSession, settings: Settings, org: str, new_chargers: int, *, exclude_cpo_id: int | None = None
) -> JSONResponse | None:
    """A 429 naming the quota the new CPO (with `new_chargers` chargers) would exceed, else None.

    Race-free when run in the transaction that inserts the new row, after `serialize_on` the org:
    pass that row's id as `exclude_cpo_id` so it is not counted twice.
    """
    stmt = select(func.count(), func.coalesce(func.sum(_cpo.chargers), 0)).where(
        _cpo.org == org, _cpo.status.not_in([s.value for s in TERMINAL])
    )
    if exclude_cpo_id is not None:
        stmt = stmt.where(_cpo.id != exclude_cpo_id)
    live_cpos, live_chargers = (await session.execute(stmt)).one()
    if live_cpos + 1 > settings.quota_live_cpos:
        return _exceeded(
            "live_cpos",
            settings.quota_live_cpos,
            f"org {org!r} already has {live_cpos} live CPOs (quota {settings.quota_live_cpos}); "
            "destroy one before creating another",
        )
    if live_chargers + new_chargers > settings.quota_live_chargers:
        return _exceeded(
            "live_chargers",
            settings.quota_live_chargers,
            f"this CPO's {new_chargers} chargers on top of the {live_chargers} of org {org!r}'s live CPOs "
            f"exceed the quota of {settings.quota_live_chargers} live chargers; destroy a CPO or ask for fewer",
        )
    return None


def _exceeded(quota: str, limit: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": "quota_exceeded", "quota": quota, "limit": limit}, status_code=429)
