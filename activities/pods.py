"""Charger runtime ("container task") activities: the seam the live-charger work fills in.

Provisioning already routes every charger identity; starting the OCPP simulators that connect
to the CSMS is a later milestone. Until then these report that no pod was started, so the
status endpoint shows `chargers_online: 0` honestly instead of pretending chargers booted.

Both run under a heartbeat timeout (a killed worker's task is retried within seconds, not after
the start-to-close timeout), so they heartbeat for as long as they work.
"""

from __future__ import annotations

from temporalio import activity

from activities.heartbeat import heartbeating
from app.lifecycle.models import NetworkRequest


@activity.defn
async def start_charger_pods(req: NetworkRequest) -> int:
    """Returns how many chargers are online after the pods started (none: no simulators yet)."""
    async with heartbeating():
        return 0


@activity.defn
async def stop_charger_pods(cpo_id: int) -> None:
    """Nothing runs yet, so nothing to stop; teardown calls it so the workflow shape is final."""
    async with heartbeating():
        return None
