"""OCPP 2.0.1 handlers of the CSMS.

Implemented: BootNotification (always Accepted, `interval` = CPOLAB_CSMS_HEARTBEAT_INTERVAL),
Heartbeat, StatusNotification (evseId + connectorId within the EVSE). Every other action the
station sends (Authorize, TransactionEvent, MeterValues, NotifyEvent …) is answered by the library
with a `NotImplemented` CALLERROR until sessions are built.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action, RegistrationStatusEnumType

from app.csms.chargepoint import CsmsChargePointMixin, ocpp_now


class CsmsChargePointV201(CsmsChargePointMixin, ChargePoint):
    @on(Action.boot_notification)
    async def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        await self.link.boot_accepted()
        return call_result.BootNotification(
            current_time=ocpp_now(), interval=self.link.heartbeat_interval, status=RegistrationStatusEnumType.accepted
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=ocpp_now())

    @on(Action.status_notification)
    async def on_status_notification(
        self, evse_id: int, connector_id: int, connector_status: str, **_: Any
    ) -> call_result.StatusNotification:
        await self.link.connector_status(self.link.topology.connector(evse_id, connector_id), connector_status)
        return call_result.StatusNotification()
