"""DETACHED: a charger handed to the user's own OCPP client (`detach`) and given back (`attach`).

The state lives in `charger.status` (so it survives restarts): every write of the CSMS keeps DETACHED
(app.csms.connections), the upgrade refuses our pods while it lasts (app.csms.upgrade) and accepts any
other client with the charger's password. Both transitions also take the row from whatever connection
held it (and turn its EVSEs UNKNOWN): that connection loses its fenced writes and closes; the caller
closes it at once through the process holding it (workflows/charger_link.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from app.csms.connections import CH, ChargerKey, write_lock
from app.network import evse_state
from app.network.status import ChargerState
from app.store.db import Database, utcnow

ATTEMPTS = 5  # the holder changed between our read and our write this often: give up (never seen)


class NotFound(Exception):
    pass


class WrongState(Exception):
    """`detach` of a detached charger, `attach` of one that is not."""


@dataclass(frozen=True)
class Holder:
    """The connection that held the charger when its state changed."""

    api_instance: str
    connection_id: str


async def set_detached(db: Database, key: ChargerKey, detached: bool) -> Holder | None:
    """DETACHED (`detached`) or back to OFFLINE until our pod reconnects; returns the connection that
    held the charger, which must now close. Raises NotFound, WrongState."""
    at_key = (CH.c.cpo_id == key[0], CH.c.identity == key[1])
    for _ in range(ATTEMPTS):
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(select(CH.c.status, CH.c.api_instance, CH.c.connection_id).where(*at_key))
            ).first()
        if row is None:
            raise NotFound
        if (row.status == ChargerState.DETACHED) == detached:
            raise WrongState(row.status)
        new = ChargerState.DETACHED if detached else ChargerState.OFFLINE
        was_detached = CH.c.status == ChargerState.DETACHED.value
        async with write_lock(db), db.session() as session, session.begin():
            conn = await session.connection()
            # Conditioned on the connection we read: a claim or release in between makes us read again.
            changed = await conn.execute(
                update(CH)
                .where(
                    *at_key,
                    ~was_detached if detached else was_detached,
                    CH.c.connection_id.is_not_distinct_from(row.connection_id),
                )
                .values(status=new.value, api_instance=None, connection_id=None)
            )
            if not changed.rowcount:
                continue
            if row.connection_id is not None:
                await evse_state.charger_unknown(session, cpo_id=key[0], identity=key[1], now=utcnow())
        if row.connection_id is None or row.api_instance is None:
            return None
        return Holder(row.api_instance, row.connection_id)
    raise RuntimeError(f"charger {key[1]}: its connection kept changing")
