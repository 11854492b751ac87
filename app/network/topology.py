"""How a charger's OCPP connectors map onto its OCPI EVSEs and connectors (one rule for everyone).

The CSMS reads it from the routing rows, the simulator pods from the generated plan: both must
number connectors the same way, or a StatusNotification lands on the wrong EVSE.
- OCPP 2.0.1: `(evseId, connectorId)` = (the EVSE's `ocpp_evse_id`, the OCPI connector's number
  within that EVSE).
- OCPP 1.6 has no EVSE level: `connectorId` counts 1..n across the charger, EVSE by EVSE (in
  `ocpp_evse_id` order), connector by connector; `ocpp_evse_id` still names the EVSE it belongs to.

`charger_layouts` reads a generated location into the input `ocpp_connectors` takes, per charger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.network.plans import LocationPlan

# One EVSE of a charger as `ocpp_connectors` takes it: (ocpp_evse_id, evse_uid, OCPI connector ids).
EvseConnectorIds = tuple[int, str, tuple[str, ...]]


@dataclass(frozen=True)
class OcppConnector:
    ocpp_evse_id: int
    ocpp_connector_id: int  # 1.6: the charger-wide connectorId; 2.0.1: connectorId within the EVSE
    evse_uid: str
    connector_id: str  # the OCPI connector id


def ocpp_connectors(ocpp_version: str, evses: Iterable[tuple[int, str, Sequence[str]]]) -> list[OcppConnector]:
    """`evses`: (ocpp_evse_id, evse_uid, OCPI connector ids) of one charger, in any order."""
    out: list[OcppConnector] = []
    running = 0
    for ocpp_evse_id, evse_uid, connector_ids in sorted(evses, key=lambda e: e[0]):
        for connector_id in sorted(connector_ids, key=int):
            running += 1
            number = running if ocpp_version == "1.6" else int(connector_id)
            out.append(OcppConnector(ocpp_evse_id, number, evse_uid, connector_id))
    return out


def charger_layouts(location: LocationPlan) -> dict[str, tuple[EvseConnectorIds, ...]]:
    """Per charger identity of a generated location, its EVSEs in `ocpp_evse_id` order, each with its
    OCPI connector ids in order; chargers in generation order."""
    layouts: dict[str, list[EvseConnectorIds]] = {charger.identity: [] for charger in location.chargers}
    for evse in location.evses:
        layouts[evse.charger_identity].append((evse.ocpp_evse_id, evse.uid, tuple(c.id for c in evse.connectors)))
    return {identity: tuple(sorted(evses, key=lambda e: e[0])) for identity, evses in layouts.items()}
