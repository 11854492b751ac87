"""An OCPP 2.0.1 charge point: the CALLs it sends and its answers to the CSMS.

Connectors are (evseId, connectorId within the EVSE). Choices where the spec leaves room:
- Reset with an `evseId` (reset one EVSE only) is Rejected; the station as a whole resets.
- TriggerMessage(BootNotification) is Rejected once a boot was Accepted (F06.FR.17); while Pending
  or Rejected it makes the station boot now, reason `Triggered`.
- Settings live on station-level components; a component addressed with an `evse` is unknown.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import (
    Action,
    AttributeEnumType,
    ChangeAvailabilityStatusEnumType,
    ConnectorStatusEnumType,
    GetVariableStatusEnumType,
    MessageTriggerEnumType,
    OperationalStatusEnumType,
    ResetStatusEnumType,
    SetVariableStatusEnumType,
    TriggerMessageStatusEnumType,
    UnlockStatusEnumType,
)

from app.sim.base import ParkedFollowups, utc_now
from app.sim.logs import ocpp_log
from app.sim.state import ChargerState, Followup
from app.sim.variables import BY_VARIABLE, COMPONENTS, Refused, Setting


class SimChargePoint201(ParkedFollowups, ChargePoint):
    def __init__(self, state: ChargerState, connection: Any, response_timeout: float) -> None:
        super().__init__(state.config.identity, connection, response_timeout, logger=ocpp_log)
        self.state = state
        self._parked = {}

    # --- CALLs we send ----------------------------------------------------------------------------

    async def boot(self, reason: str) -> tuple[str, int]:
        cfg = self.state.config
        station = {
            "model": cfg.model,
            "vendor_name": cfg.vendor,
            "serial_number": cfg.serial_number or None,
            "firmware_version": cfg.firmware_version or None,
        }
        answer = await self.call(call.BootNotification(charging_station=station, reason=reason), suppress=False)
        return answer.status, answer.interval

    async def heartbeat(self) -> None:
        await self.call(call.Heartbeat(), suppress=False)

    async def report(self, index: int) -> None:
        ref = self.state.layout[index]
        available = self.state.is_available(index)
        status = ConnectorStatusEnumType.available if available else ConnectorStatusEnumType.unavailable
        await self.call(
            call.StatusNotification(
                timestamp=utc_now(),
                connector_status=status,
                evse_id=ref.evse_id,
                connector_id=ref.connector_id,
            ),
            suppress=False,
        )

    # --- CALLs we answer --------------------------------------------------------------------------

    def _indices(self, evse: dict[str, Any] | None) -> tuple[int, ...]:
        """The connectors an optional `evse {id, connectorId?}` designates (all without one)."""
        if evse is None:
            return self.state.all_connectors()
        return self.state.evse_indices(evse["id"], evse.get("connector_id"))

    @on(Action.reset)
    def on_reset(self, type: str, call_unique_id: str, evse_id: int | None = None, **_: Any) -> call_result.Reset:
        if evse_id is not None:
            return call_result.Reset(status=ResetStatusEnumType.rejected)
        # Immediate and OnIdle alike: no transaction runs, so the station is idle.
        self._park(call_unique_id, Followup.REBOOT)
        return call_result.Reset(status=ResetStatusEnumType.accepted)

    @after(Action.reset)
    def after_reset(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.change_availability)
    def on_change_availability(
        self, operational_status: str, call_unique_id: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> call_result.ChangeAvailability:
        indices = self._indices(evse)
        if not indices:
            return call_result.ChangeAvailability(status=ChangeAvailabilityStatusEnumType.rejected)
        operative = operational_status == OperationalStatusEnumType.operative
        changed = self.state.set_availability(indices, operative=operative)
        if changed and self.state.accepted:  # before registration the boot reports every status anyway
            self._park(call_unique_id, Followup.STATUS, changed)
        return call_result.ChangeAvailability(status=ChangeAvailabilityStatusEnumType.accepted)

    @after(Action.change_availability)
    def after_change_availability(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    def _lookup(self, item: dict[str, Any]) -> tuple[Setting | None, str | None]:
        """The setting a Get/SetVariableData item names, or the status that says why there is none."""
        component, variable = item["component"], item["variable"]
        if component["name"] not in COMPONENTS or "evse" in component:
            return None, GetVariableStatusEnumType.unknown_component
        setting = BY_VARIABLE.get((component["name"], variable["name"]))
        if setting is None:
            return None, GetVariableStatusEnumType.unknown_variable
        if item.get("attribute_type", AttributeEnumType.actual) != AttributeEnumType.actual:
            return None, GetVariableStatusEnumType.not_supported_attribute_type
        return setting, None

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> call_result.GetVariables:
        results = []
        for item in get_variable_data:
            answer: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if "attribute_type" in item:
                answer["attribute_type"] = item["attribute_type"]
            setting, problem = self._lookup(item)
            if setting is None:
                answer["attribute_status"] = problem
            elif setting.read is None:  # write-only (BasicAuthPassword): never read back
                answer["attribute_status"] = GetVariableStatusEnumType.rejected
            else:
                answer["attribute_status"] = GetVariableStatusEnumType.accepted
                answer["attribute_value"] = setting.read(self.state)
            results.append(answer)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.set_variables)
    def on_set_variables(
        self, set_variable_data: list[dict[str, Any]], call_unique_id: str, **_: Any
    ) -> call_result.SetVariables:
        results = []
        for item in set_variable_data:
            answer: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if "attribute_type" in item:
                answer["attribute_type"] = item["attribute_type"]
            setting, problem = self._lookup(item)
            if setting is None:
                answer["attribute_status"] = problem  # the Get and Set status enums share these values
            elif setting.write is None:
                answer["attribute_status"] = SetVariableStatusEnumType.rejected
            else:
                try:
                    followup = setting.write(self.state, item["attribute_value"])
                except Refused:
                    answer["attribute_status"] = SetVariableStatusEnumType.rejected
                else:
                    answer["attribute_status"] = SetVariableStatusEnumType.accepted
                    if followup is not None:
                        self._park(call_unique_id, followup)
            results.append(answer)
        return call_result.SetVariables(set_variable_result=results)

    @after(Action.set_variables)
    def after_set_variables(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, call_unique_id: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> call_result.TriggerMessage:
        if requested_message == MessageTriggerEnumType.boot_notification:
            if self.state.accepted:
                return call_result.TriggerMessage(status=TriggerMessageStatusEnumType.rejected)
            self._park(call_unique_id, Followup.BOOT, "Triggered")
        elif requested_message == MessageTriggerEnumType.heartbeat:
            self._park(call_unique_id, Followup.HEARTBEAT)
        elif requested_message == MessageTriggerEnumType.status_notification:
            indices = self._indices(evse)
            if not indices:
                return call_result.TriggerMessage(status=TriggerMessageStatusEnumType.rejected)
            self._park(call_unique_id, Followup.STATUS, indices)
        else:
            return call_result.TriggerMessage(status=TriggerMessageStatusEnumType.not_implemented)
        return call_result.TriggerMessage(status=TriggerMessageStatusEnumType.accepted)

    @after(Action.trigger_message)
    def after_trigger_message(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.unlock_connector)
    def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> call_result.UnlockConnector:
        known = bool(self.state.evse_indices(evse_id, connector_id))
        return call_result.UnlockConnector(
            status=UnlockStatusEnumType.unlocked if known else UnlockStatusEnumType.unknown_connector
        )
