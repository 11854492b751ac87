"""An OCPP 1.6J charge point: the CALLs it sends and its answers to the CSMS.

Connector numbering: connectorId 1..n across the charger, EVSE by EVSE (`config.connector_layout`).
Connector 0 (the charger as a whole) is never reported: the CSMS maps statuses per connector, and 1.6
makes connector 0's status optional. ChangeAvailability on connector 0 changes every connector (each
gets its StatusNotification); TriggerMessage(StatusNotification) for connector 0 is Rejected.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    AvailabilityType,
    ChargePointErrorCode,
    ChargePointStatus,
    ConfigurationStatus,
    MessageTrigger,
    ResetStatus,
    TriggerMessageStatus,
    UnlockStatus,
)

from app.sim.base import ParkedFollowups, utc_now
from app.sim.logs import ocpp_log
from app.sim.state import ChargerState, Followup
from app.sim.variables import BY_KEY16, Refused


class SimChargePoint16(ParkedFollowups, ChargePoint):
    def __init__(self, state: ChargerState, connection: Any, response_timeout: float) -> None:
        super().__init__(state.config.identity, connection, response_timeout, logger=ocpp_log)
        self.state = state
        self._parked = {}

    # --- CALLs we send ----------------------------------------------------------------------------

    async def boot(self, reason: str) -> tuple[str, int]:  # 1.6 has no boot reason
        cfg = self.state.config
        answer = await self.call(
            call.BootNotification(
                charge_point_model=cfg.model,
                charge_point_vendor=cfg.vendor,
                charge_point_serial_number=cfg.serial_number or None,
                firmware_version=cfg.firmware_version or None,
            ),
            suppress=False,
        )
        return answer.status, answer.interval

    async def heartbeat(self) -> None:
        await self.call(call.Heartbeat(), suppress=False)

    async def report(self, index: int) -> None:
        available = self.state.is_available(index)
        await self.call(
            call.StatusNotification(
                connector_id=self.state.layout[index].flat_id,
                error_code=ChargePointErrorCode.no_error,
                status=ChargePointStatus.available if available else ChargePointStatus.unavailable,
                timestamp=utc_now(),
            ),
            suppress=False,
        )

    # --- CALLs we answer --------------------------------------------------------------------------

    @on(Action.reset)
    def on_reset(self, type: str, call_unique_id: str, **_: Any) -> call_result.Reset:
        # Soft and Hard alike: no transaction to stop yet, so both are an immediate reboot.
        self._park(call_unique_id, Followup.REBOOT)
        return call_result.Reset(status=ResetStatus.accepted)

    @after(Action.reset)
    def after_reset(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.change_availability)
    def on_change_availability(
        self, connector_id: int, type: str, call_unique_id: str, **_: Any
    ) -> call_result.ChangeAvailability:
        if connector_id == 0:
            indices = self.state.all_connectors()
        elif (index := self.state.flat_index(connector_id)) is not None:
            indices = (index,)
        else:
            return call_result.ChangeAvailability(status=AvailabilityStatus.rejected)
        changed = self.state.set_availability(indices, operative=type == AvailabilityType.operative)
        if changed and self.state.accepted:  # before registration the boot reports every status anyway
            self._park(call_unique_id, Followup.STATUS, changed)
        return call_result.ChangeAvailability(status=AvailabilityStatus.accepted)

    @after(Action.change_availability)
    def after_change_availability(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> call_result.GetConfiguration:
        wanted = key or [k for k, s in BY_KEY16.items() if s.read]
        known: list[dict[str, Any]] = []
        unknown: list[str] = []
        for name in wanted:
            setting = BY_KEY16.get(name)
            if setting is None:
                unknown.append(name)
            elif setting.read:  # a write-only key (AuthorizationKey) is recognised but never returned
                known.append({"key": name, "readonly": setting.write is None, "value": setting.read(self.state)})
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(
        self, key: str, value: str, call_unique_id: str, **_: Any
    ) -> call_result.ChangeConfiguration:
        setting = BY_KEY16.get(key)
        if setting is None:
            return call_result.ChangeConfiguration(status=ConfigurationStatus.not_supported)
        if setting.write is None:
            return call_result.ChangeConfiguration(status=ConfigurationStatus.rejected)
        try:
            followup = setting.write(self.state, value)
        except Refused:
            return call_result.ChangeConfiguration(status=ConfigurationStatus.rejected)
        if followup is not None:
            self._park(call_unique_id, followup)
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)

    @after(Action.change_configuration)
    def after_change_configuration(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, call_unique_id: str, connector_id: int | None = None, **_: Any
    ) -> call_result.TriggerMessage:
        if requested_message == MessageTrigger.boot_notification:
            self._park(call_unique_id, Followup.BOOT, "Triggered")
        elif requested_message == MessageTrigger.heartbeat:
            self._park(call_unique_id, Followup.HEARTBEAT)
        elif requested_message == MessageTrigger.status_notification:
            if connector_id is None:
                indices = self.state.all_connectors()
            elif (index := self.state.flat_index(connector_id)) is not None:
                indices = (index,)
            else:  # includes connector 0, which this charger does not report
                return call_result.TriggerMessage(status=TriggerMessageStatus.rejected)
            self._park(call_unique_id, Followup.STATUS, indices)
        else:
            return call_result.TriggerMessage(status=TriggerMessageStatus.not_implemented)
        return call_result.TriggerMessage(status=TriggerMessageStatus.accepted)

    @after(Action.trigger_message)
    def after_trigger_message(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int, **_: Any) -> call_result.UnlockConnector:
        # 1.6 has no "unknown connector" answer: a connector we do not have has no lock to open.
        known = self.state.flat_index(connector_id) is not None
        return call_result.UnlockConnector(status=UnlockStatus.unlocked if known else UnlockStatus.not_supported)
