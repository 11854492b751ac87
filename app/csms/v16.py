"""OCPP 1.6J handlers of the CSMS.

Implemented: BootNotification (always Accepted, `interval` = CPOLAB_CSMS_HEARTBEAT_INTERVAL),
Heartbeat, StatusNotification (connector 0, the charger as a whole, is acknowledged and not mapped:
its status is independent of the connectors', OCPP 1.6 §4.9), and the transaction messages
Authorize, StartTransaction, MeterValues, StopTransaction (app.csms.transactions). Any other action
is answered by the library with a `NotImplemented` CALLERROR.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus

from app.charging.authorization import OCPP16_STATUS
from app.csms.chargepoint import CsmsChargePointMixin, ocpp_now


def _id_tag_info(allowed: str) -> dict[str, str]:
    return {"status": OCPP16_STATUS.get(allowed, "Invalid")}


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
            connector = self.link.topology.connector(0, connector_id)
            await self.link.connector_status(connector, status)
            if status == "Available" and self.link.rebooted:
                await self.transactions.end_lost(connector)
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        decision = await self.transactions.authorize(id_tag)
        return call_result.Authorize(id_tag_info=_id_tag_info(decision.allowed))

    @on(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **_: Any
    ) -> call_result.StartTransaction:
        transaction_id, allowed = await self.transactions.start_16(connector_id, id_tag, meter_start, timestamp)
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=_id_tag_info(allowed))

    @on(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], transaction_id: int | None = None, **_: Any
    ) -> call_result.MeterValues:
        await self.transactions.meter_values_16(transaction_id, meter_value)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        reason: str | None = None,
        id_tag: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> call_result.StopTransaction:
        await self.transactions.stop_16(transaction_id, meter_stop, timestamp, reason, transaction_data)
        # The stop cannot be refused (OCPP 1.6 §4.10); an idTag presented to stop is acknowledged.
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"} if id_tag is not None else None)
