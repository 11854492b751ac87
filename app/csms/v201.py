"""OCPP 2.0.1 handlers of the CSMS.

Implemented: BootNotification (always Accepted, `interval` = CPOLAB_CSMS_HEARTBEAT_INTERVAL),
Heartbeat, StatusNotification (evseId + connectorId within the EVSE), Authorize and
TransactionEvent (app.csms.transactions). Any other action the station sends (MeterValues outside a
transaction, NotifyEvent …) is answered by the library with a `NotImplemented` CALLERROR.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.enums import Action, RegistrationStatusEnumType

from app.charging.authorization import OCPP201_STATUS
from app.csms.chargepoint import CsmsChargePointMixin, ocpp_now


def _id_token_info(allowed: str | None) -> dict[str, str]:
    """A token with no authorization (NoAuthorization) is accepted as it is."""
    return {"status": OCPP201_STATUS.get(allowed or "ALLOWED", "Invalid")}


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
        connector = self.link.topology.connector(evse_id, connector_id)
        await self.link.connector_status(connector, connector_status)
        if connector_status == "Available" and self.link.rebooted:
            await self.transactions.end_lost(connector)
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **_: Any) -> call_result.Authorize:
        if id_token.get("type") == "NoAuthorization":
            return call_result.Authorize(id_token_info=_id_token_info(None))
        decision = await self.transactions.authorize(id_token["id_token"], id_token.get("type"))
        return call_result.Authorize(id_token_info=_id_token_info(decision.allowed))

    @on(Action.transaction_event)
    async def on_transaction_event(
        self,
        event_type: str,
        timestamp: str,
        seq_no: int,
        transaction_info: dict[str, Any],
        meter_value: list[dict[str, Any]] | None = None,
        evse: dict[str, Any] | None = None,
        id_token: dict[str, Any] | None = None,
        **_: Any,
    ) -> call_result.TransactionEvent:
        allowed = await self.transactions.transaction_event(
            event_type, timestamp, seq_no, transaction_info, meter_value, evse, id_token
        )
        if id_token is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info=_id_token_info(allowed))
