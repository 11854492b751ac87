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
    GetVariableStatusEnumType,
    MessageTriggerEnumType,
    OperationalStatusEnumType,
    RequestStartStopStatusEnumType,
    ResetEnumType,
    ResetStatusEnumType,
    SetVariableStatusEnumType,
    TriggerMessageStatusEnumType,
    UnlockStatusEnumType,
)

from app.sim.base import ParkedFollowups
from app.sim.clock import parse_stamp, stamp
from app.sim.connector_state import End, Outgoing, Refusal, Sample, fault_stopped_reason
from app.sim.logs import ocpp_log
from app.sim.simulate import simulate
from app.sim.state import ChargerState, Followup
from app.sim.variables import BY_VARIABLE, COMPONENTS, Refused, Setting

_EVENT_TYPES = {"started": "Started", "sample": "Updated", "state": "Updated", "ended": "Ended"}


def meter_value(sample: Sample) -> dict[str, Any]:
    """A 2.0.1 MeterValue: values are numbers; P = V × I per phase, summed over the phases used."""
    f, context = sample.flow, sample.context

    def value(number: float, measurand: str, unit: str, **extra: str) -> dict[str, Any]:
        return {"value": number, "context": context, "measurand": measurand, "unit_of_measure": {"unit": unit}, **extra}

    values = [
        value(sample.register_wh, "Energy.Active.Import.Register", "Wh", location="Outlet"),
        value(round(f.power_w, 1), "Power.Active.Import", "W"),
    ]
    phases = (None,) if sample.dc else ("L1", "L2", "L3")[: f.phases]
    for phase in phases:
        current, voltage = (
            value(round(f.current_a, 3), "Current.Import", "A"),
            value(round(f.voltage_v, 1), "Voltage", "V"),
        )
        if phase is not None:
            current["phase"], voltage["phase"] = phase, f"{phase}-N"
        values += [current, voltage]
    if sample.soc is not None:
        values.append(value(sample.soc, "SoC", "Percent", location="EV"))
    return {"timestamp": stamp(sample.at), "sampled_value": values}


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
        sessions = self.state.sessions
        status = sessions.status(index)
        if index in sessions.connectors:
            sessions.connectors[index].reported = status
        await self._status(index, status[1], sessions.clock.now())

    async def _status(self, index: int, status: str, at: float) -> None:
        ref = self.state.layout[index]
        await self.call(
            call.StatusNotification(
                timestamp=stamp(at),
                connector_status=status,
                evse_id=ref.evse_id,
                connector_id=ref.connector_id,
            ),
            suppress=False,
        )

    async def send(self, item: Outgoing) -> None:
        """One queued message; the answer updates the session (a CALLERROR raises)."""
        sessions, tx = self.state.sessions, item.tx
        if item.kind == "status":
            assert item.status is not None
            await self._status(item.index, item.status[1], item.at)
            return
        if item.kind == "authorize":
            token = {"id_token": item.id_tag, "type": item.token_type}
            answer = await self.call(call.Authorize(id_token=token), suppress=False)
            sessions.authorized(item.index, item.id_tag, answer.id_token_info.get("status") == "Accepted")
            return
        assert tx is not None and item.sample is not None
        info: dict[str, Any] = {"transaction_id": tx.ocpp_id, "charging_state": item.charging_state}
        event: dict[str, Any] = {}
        if item.kind == "started":
            ref = self.state.layout[item.index]
            info["remote_start_id"] = tx.remote_start_id
            event = {
                "trigger_reason": tx.trigger,
                "id_token": {"id_token": tx.id_tag, "type": tx.token_type},
                "evse": {"id": ref.evse_id, "connector_id": ref.connector_id},
                "reservation_id": tx.reservation_id,
            }
        elif item.kind == "ended":
            assert item.end is not None
            unplugged = item.end is End.UNPLUG
            info["charging_state"] = "Idle" if unplugged else "EVConnected"
            reason = fault_stopped_reason(item.error_code) if item.end is End.FAULT else item.end.value[2]
            info["stopped_reason"] = None if reason == "Local" else reason  # Local is the default
            event = {"trigger_reason": item.end.value[1]}
        else:
            event = {"trigger_reason": "MeterValuePeriodic" if item.kind == "sample" else "ChargingStateChanged"}
        answer = await self.call(
            call.TransactionEvent(
                event_type=_EVENT_TYPES[item.kind],
                timestamp=stamp(item.at),
                seq_no=item.seq_no,
                transaction_info={k: v for k, v in info.items() if v is not None},
                meter_value=[meter_value(item.sample)],
                offline=item.offline or None,
                **{k: v for k, v in event.items() if v is not None},
            ),
            suppress=False,
            # Periodic Updated events are most of a session's traffic and their answer is not used:
            # checking our own well-formed payload against the big TransactionEvent schema was ~60 % of
            # a session's CPU (the tests' CSMS peer validates every one it receives).
            skip_schema_validation=item.kind in ("sample", "state"),
        )
        if item.kind == "started":
            status = (answer.id_token_info or {}).get("status", "Accepted")
            sessions.started(tx, None, status == "Accepted")

    # --- CALLs we answer --------------------------------------------------------------------------

    def _indices(self, evse: dict[str, Any] | None) -> tuple[int, ...]:
        """The connectors an optional `evse {id, connectorId?}` designates (all without one)."""
        if evse is None:
            return self.state.all_connectors()
        return self.state.evse_indices(evse["id"], evse.get("connector_id"))

    @on(Action.reset)
    def on_reset(self, type: str, call_unique_id: str, evse_id: int | None = None, **_: Any) -> call_result.Reset:
        sessions = self.state.sessions
        if evse_id is not None:
            return call_result.Reset(status=ResetStatusEnumType.rejected)
        if type == ResetEnumType.on_idle and sessions.transactions():
            sessions.reset_when_idle = True  # the reboot follows the last transaction's end
            return call_result.Reset(status=ResetStatusEnumType.scheduled)
        sessions.end_all(End.HARD_RESET)  # Immediate: transactions end first (ImmediateReset)
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
    def on_unlock_connector(
        self, evse_id: int, connector_id: int, call_unique_id: str, **_: Any
    ) -> call_result.UnlockConnector:
        indices = self.state.evse_indices(evse_id, connector_id)
        if not indices:
            return call_result.UnlockConnector(status=UnlockStatusEnumType.unknown_connector)
        sessions = self.state.sessions
        if indices[0] in sessions.connectors and sessions.connectors[indices[0]].tx is not None:
            return call_result.UnlockConnector(status=UnlockStatusEnumType.ongoing_authorized_transaction)
        sessions.unlock(indices[0])  # the cable is released
        self._park(call_unique_id)
        return call_result.UnlockConnector(status=UnlockStatusEnumType.unlocked)

    @after(Action.unlock_connector)
    def after_unlock_connector(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.request_start_transaction)
    def on_request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        call_unique_id: str,
        evse_id: int | None = None,
        **_: Any,
    ) -> call_result.RequestStartTransaction:
        state, sessions = self.state, self.state.sessions
        if evse_id is not None:
            candidates = state.evse_indices(evse_id)[:1]
        else:  # no EVSE given: one with a cable waiting, else the first free one
            order = sorted(state.all_connectors(), key=lambda i: sessions.status(i)[0] != "Preparing")
            candidates = tuple(i for i in order if sessions.status(i)[0] in ("Preparing", "Available"))[:1]
        try:
            if not candidates:
                raise Refusal("no such EVSE")
            sessions.present(
                candidates[0], id_token["id_token"], id_token["type"], remote_start_id=remote_start_id, remote=True
            )
        except Refusal:
            return call_result.RequestStartTransaction(status=RequestStartStopStatusEnumType.rejected)
        self._park(call_unique_id)
        return call_result.RequestStartTransaction(status=RequestStartStopStatusEnumType.accepted)

    @after(Action.request_start_transaction)
    def after_request_start(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id: str, call_unique_id: str, **_: Any) -> call_result.RequestStopTransaction:
        tx = self.state.sessions.find(transaction_id)
        if tx is None:
            return call_result.RequestStopTransaction(status=RequestStartStopStatusEnumType.rejected)
        self.state.sessions.stop(tx.index, End.REMOTE)
        self._park(call_unique_id)
        return call_result.RequestStopTransaction(status=RequestStartStopStatusEnumType.accepted)

    @after(Action.request_stop_transaction)
    def after_request_stop(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.reserve_now)
    def on_reserve_now(
        self,
        id: int,
        expiry_date_time: str,
        id_token: dict[str, Any],
        call_unique_id: str,
        evse_id: int | None = None,
        **_: Any,
    ) -> call_result.ReserveNow:
        state, sessions = self.state, self.state.sessions
        if evse_id is not None:
            candidates = state.evse_indices(evse_id)[:1]
        else:  # any EVSE: the first available one
            candidates = tuple(i for i in state.all_connectors() if sessions.status(i)[1] == "Available")[:1]
        expires = parse_stamp(expiry_date_time)
        if not candidates or expires is None:
            return call_result.ReserveNow(status="Rejected")
        status = sessions.reserve(candidates[0], id, id_token["id_token"], expires)
        self._park(call_unique_id)
        return call_result.ReserveNow(status=status)

    @after(Action.reserve_now)
    def after_reserve_now(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.cancel_reservation)
    def on_cancel_reservation(
        self, reservation_id: int, call_unique_id: str, **_: Any
    ) -> call_result.CancelReservation:
        found = self.state.sessions.cancel_reservation(reservation_id)
        self._park(call_unique_id)
        return call_result.CancelReservation(status="Accepted" if found else "Rejected")

    @after(Action.cancel_reservation)
    def after_cancel_reservation(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, call_unique_id: str, message_id: str | None = None, data: Any = None, **_: Any
    ) -> call_result.DataTransfer:
        answer = simulate(self.state, vendor_id, message_id, data)
        self._park(call_unique_id, answer.followup, answer.arg)
        return call_result.DataTransfer(status=answer.status, data=answer.text())

    @after(Action.data_transfer)
    def after_data_transfer(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)
