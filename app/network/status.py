"""OCPP connector status → OCPI EVSE status (pure): the mapping of both versions and the rule that
aggregates the connectors of one EVSE (reference/ocpp-sim.md §5). Also the charger's own state.

OCPI 2.2.1 keeps status on the EVSE only, so an EVSE's status is computed from the last status each
of its connectors reported; a charger that is offline has UNKNOWN EVSEs (the caller's job: it
knows when the charger went away).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

UNKNOWN = "UNKNOWN"


class ChargerState(StrEnum):
    """`charger.status`: the connection as the CSMS sees it."""

    BOOTING = "BOOTING"  # connected, no BootNotification accepted yet, or no StatusNotification since
    ONLINE = "ONLINE"  # booted (on this connection or before) and reporting statuses
    OFFLINE = "OFFLINE"  # no connection (closed, replaced away, or not seen within the staleness bound)
    DETACHED = "DETACHED"  # taken off the network on purpose (simulation control), not a failure


# A connection that holds the row: the states the sweeper may turn OFFLINE.
CONNECTED_STATES = frozenset({ChargerState.BOOTING, ChargerState.ONLINE})

OCPP16_TO_OCPI: dict[str, str] = {
    "Available": "AVAILABLE",
    "Preparing": "CHARGING",
    "Charging": "CHARGING",
    "SuspendedEV": "CHARGING",
    "SuspendedEVSE": "CHARGING",
    "Finishing": "CHARGING",
    "Reserved": "RESERVED",
    "Unavailable": "INOPERATIVE",
    "Faulted": "OUTOFORDER",
}

OCPP201_TO_OCPI: dict[str, str] = {
    "Available": "AVAILABLE",
    "Occupied": "CHARGING",
    "Reserved": "RESERVED",
    "Unavailable": "INOPERATIVE",
    "Faulted": "OUTOFORDER",
}

_MAPPINGS = {"1.6": OCPP16_TO_OCPI, "2.0.1": OCPP201_TO_OCPI}

# Several connectors on one EVSE: the first of these any connector shows wins (in use beats reserved
# beats available beats inoperative beats broken); none of them → UNKNOWN.
AGGREGATION_ORDER = ("CHARGING", "RESERVED", "AVAILABLE", "INOPERATIVE", "OUTOFORDER")


def connector_status_values(ocpp_version: str) -> frozenset[str]:
    """The OCPP connector statuses a StatusNotification of this version may carry."""
    return frozenset(_mapping(ocpp_version))


def ocpi_status(ocpp_version: str, ocpp_status: str | None) -> str:
    """One connector's OCPP status as an OCPI EVSE status (None: never reported → UNKNOWN)."""
    if ocpp_status is None:
        return UNKNOWN
    return _mapping(ocpp_version).get(ocpp_status, UNKNOWN)


def evse_status(ocpp_version: str, connector_statuses: Iterable[str | None]) -> str:
    """The OCPI status of an EVSE from its connectors' last OCPP statuses."""
    seen = {ocpi_status(ocpp_version, s) for s in connector_statuses}
    return next((status for status in AGGREGATION_ORDER if status in seen), UNKNOWN)


def _mapping(ocpp_version: str) -> dict[str, str]:
    try:
        return _MAPPINGS[ocpp_version]
    except KeyError:
        raise ValueError(f"unknown OCPP version {ocpp_version!r}") from None
