"""Which charger (and which of its OCPP EVSE / connector numbers) an OCPI command is for, read from the
network tables; and what STOP_SESSION's session id means on the charger.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.network.topology import ocpp_connectors
from app.store.tables import Charger, ChargerRoute, Connector, Evse, Location

ONLINE = "ONLINE"
RESERVABLE = "RESERVABLE"


class Rejected(Exception):
    """The command names something this CPO does not have (or cannot do): CommandResponse REJECTED."""

    def __init__(self, message: str, status_code: int = 2003) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code  # 2003 unknown location/EVSE/connector; 1000 otherwise


@dataclass(frozen=True)
class Target:
    identity: str
    ocpp_version: str
    status: str
    ocpp_evse_id: int | None = None  # None: the charger as a whole
    ocpp_connector_id: int | None = None  # 1.6: charger-wide connectorId; 2.0.1: within the EVSE


async def _charger(session: AsyncSession, cpo_id: int, identity: str) -> Charger:
    charger = await session.get(Charger, (cpo_id, identity))
    if charger is None:  # a network row without its charger: torn down meanwhile
        raise Rejected(f"charge point {identity} does not exist any more")
    return charger


async def evse_target(
    session: AsyncSession,
    cpo_id: int,
    location_id: str,
    evse_uid: str,
    connector_id: str | None,
    *,
    reservable: bool = False,
) -> Target:
    """The charger of an EVSE and the OCPP numbers of the EVSE (and connector, else its first one)."""
    if await session.get(Location, (cpo_id, location_id)) is None:
        raise Rejected(f"unknown location {location_id}")
    evse = await session.get(Evse, (cpo_id, evse_uid))
    if evse is None or evse.location_id != location_id:
        raise Rejected(f"unknown EVSE {evse_uid} at location {location_id}")
    if connector_id is not None and await session.get(Connector, (cpo_id, evse_uid, connector_id)) is None:
        raise Rejected(f"unknown connector {connector_id} on EVSE {evse_uid}")
    if reservable and RESERVABLE not in (evse.data.get("capabilities") or []):
        raise Rejected(f"EVSE {evse_uid} cannot be reserved (no RESERVABLE capability)", 1000)
    charger = await _charger(session, cpo_id, evse.charger_identity)
    routes = (
        await session.execute(
            select(ChargerRoute.ocpp_evse_id, ChargerRoute.evse_uid).where(
                ChargerRoute.cpo_id == cpo_id, ChargerRoute.identity == charger.identity
            )
        )
    ).all()
    uids = [uid for _, uid in routes]
    connectors: dict[str, list[str]] = {uid: [] for uid in uids}
    rows = await session.execute(
        select(Connector.evse_uid, Connector.id).where(Connector.cpo_id == cpo_id, Connector.evse_uid.in_(uids))
    )
    for uid, cid in rows:
        connectors[uid].append(cid)
    numbered = [
        c
        for c in ocpp_connectors(charger.ocpp_version, [(n, uid, connectors[uid]) for n, uid in routes])
        if c.evse_uid == evse_uid and connector_id in (None, c.connector_id)
    ]
    if not numbered:
        raise Rejected(f"EVSE {evse_uid} has no OCPP route on charge point {charger.identity}", 1000)
    first = numbered[0]
    return Target(charger.identity, charger.ocpp_version, charger.status, first.ocpp_evse_id, first.ocpp_connector_id)


async def location_target(session: AsyncSession, cpo_id: int, location_id: str, *, reservable: bool = False) -> Target:
    """A charger of the location (an online one if any) for a command naming no EVSE; with
    `reservable`, only chargers with a RESERVABLE EVSE count."""
    if await session.get(Location, (cpo_id, location_id)) is None:
        raise Rejected(f"unknown location {location_id}")
    evses = (
        await session.execute(
            select(Evse.charger_identity, Evse.data).where(Evse.cpo_id == cpo_id, Evse.location_id == location_id)
        )
    ).all()
    identities = sorted({i for i, data in evses if not reservable or RESERVABLE in (data.get("capabilities") or [])})
    if not identities:
        what = "no reservable EVSE" if reservable else "no charge point"
        raise Rejected(f"location {location_id} has {what}", 1000)
    chargers = (
        await session.execute(
            select(Charger.identity, Charger.ocpp_version, Charger.status)
            .where(Charger.cpo_id == cpo_id, Charger.identity.in_(identities))
            .order_by(Charger.identity)
        )
    ).all()
    if not chargers:
        raise Rejected(f"location {location_id} has no charge point", 1000)
    pick = next((c for c in chargers if c.status == ONLINE), chargers[0])
    return Target(pick.identity, pick.ocpp_version, pick.status)
