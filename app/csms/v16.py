"""OCPP 1.6J handlers of the CSMS.

Implemented: BootNotification (always Accepted, `interval` = CPOLAB_CSMS_HEARTBEAT_INTERVAL),
Heartbeat, StatusNotification (connector 0, the charger as a whole, is acknowledged and not mapped:
its status is independent of the connectors', OCPP 1.6 §4.9). Every other action the charger sends
(Authorize, Start/StopTransaction, MeterValues, DataTransfer …) is answered by the library with a
`NotImplemented` CALLERROR until sessions are built; a 1.6 charger retries its transaction messages.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus

from app.csms.chargepoint import CsmsChargePointMixin, ocpp_now


class CsmsChargePointV16(CsmsChargePointMixin, ChargePoint):
    @on(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        await self.link.boot_accepted()
        return call_result.BootNotification(
            current_time=ocpp_now(), interval=self.link.heartbeat_interval, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=ocpp_now())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, status: str, **_: Any) -> call_result.StatusNotification:
        if connector_id != 0:
            await self.link.connector_status(self.link.topology.connector(0, connector_id), status)
        return call_result.StatusNotification()
