"""What a charger pod hosts: its chargers' simulator specs, derived from the generated plan (pure).

Shared by `plan_pod` (a pod of a big network plans itself) and `provision_small_network` (a small
network's single pod gets its specs from the activity that already generated the network).
"""

from __future__ import annotations

from app.lifecycle.pods import SimChargerSpec, SimEvseSpec
from app.network.generator import LocationPlan
from app.network.plans import ConnectorPlan
from app.network.topology import charger_layouts

# Chargers report no firmware of their own in the catalog: the simulator names itself.
SIM_FIRMWARE = "cpolab-sim-1"


def sim_chargers(locations: list[LocationPlan]) -> list[SimChargerSpec]:
    """The chargers of these generated locations, in generation order."""
    out: list[SimChargerSpec] = []
    for location in locations:
        layouts = charger_layouts(location)
        supply = {(e.charger_identity, e.ocpp_evse_id): e.connectors[0] for e in location.evses if e.connectors}
        for charger in location.chargers:
            out.append(
                SimChargerSpec(
                    identity=charger.identity,
                    ocpp_version=charger.ocpp_version,
                    vendor=charger.vendor,
                    model=charger.model,
                    serial_number=charger.serial_number,
                    firmware_version=SIM_FIRMWARE,
                    evses=[
                        _evse(evse_id, len(connectors), supply.get((charger.identity, evse_id)))
                        for evse_id, _, connectors in layouts[charger.identity]
                    ],
                )
            )
    return out


def _evse(evse_id: int, connectors: int, connector: ConnectorPlan | None) -> SimEvseSpec:
    """The EVSE's envelope is its connectors' (they share one power output)."""
    if connector is None:
        return SimEvseSpec(evse_id, connectors)
    return SimEvseSpec(
        evse_id,
        connectors,
        connector.power_type,
        connector.max_voltage,
        connector.max_amperage,
        connector.max_electric_power,
    )
