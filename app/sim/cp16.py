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
    CancelReservationStatus,
    ConfigurationStatus,
    MessageTrigger,
    RemoteStartStopStatus,
    ResetStatus,
    ResetType,
    TriggerMessageStatus,
    UnlockStatus,
)

from app.sim.base import ParkedFollowups
from app.sim.clock import parse_stamp, stamp
from app.sim.connector_state import End, Outgoing, Refusal, Sample
from app.sim.logs import ocpp_log
from app.sim.simulate import simulate
from app.sim.state import ChargerState, Followup
from app.sim.variables import BY_KEY16, Refused


def meter_value(sample: Sample) -> dict[str, Any]:
    """A 1.6 MeterValue: values are strings; P = V × I per phase, summed over the phases used."""
    f, context = sample.flow, sample.context
    values: list[dict[str, Any]] = [
        {
            "value": str(sample.register_wh),
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        },
        {"value": f"{f.power_w:.1f}", "context": context, "measurand": "Power.Active.Import", "unit": "W"},
    ]
    phases = (None,) if sample.dc else ("L1", "L2", "L3")[: f.phases]
    for phase in phases:
        current = {"value": f"{f.current_a:.3f}", "context": context, "measurand": "Current.Import", "unit": "A"}
        voltage = {"value": f"{f.voltage_v:.1f}", "context": context, "measurand": "Voltage", "unit": "V"}
        if phase is not None:
            current["phase"], voltage["phase"] = phase, f"{phase}-N"
        values += [current, voltage]
    if sample.soc is not None:
        values.append(
            {"value": f"{sample.soc:.1f}", "context": context, "measurand": "SoC", "location": "EV", "unit": "Percent"}
        )
    return {"timestamp": stamp(sample.at), "sampled_value": values}


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
        sessions = self.state.sessions
        status = sessions.status(index)
        if index in sessions.connectors:
            sessions.connectors[index].reported = status
        await self._status(index, status, sessions.clock.now())

    async def _status(self, index: int, status: tuple[str, str, str], at: float) -> None:
        await self.call(
            call.StatusNotification(
                connector_id=self.state.layout[index].flat_id,
                error_code=status[2],
                status=status[0],
                timestamp=stamp(at),
            ),
            suppress=False,
        )

    async def send(self, item: Outgoing) -> None:
        """One queued message; the answer updates the session (a CALLERROR raises)."""
        sessions, tx = self.state.sessions, item.tx
        connector_id = self.state.layout[item.index].flat_id
        if item.kind == "status":
            assert item.status is not None
            await self._status(item.index, item.status, item.at)
        elif item.kind == "authorize":
            answer = await self.call(call.Authorize(id_tag=item.id_tag), suppress=False)
            sessions.authorized(item.index, item.id_tag, answer.id_tag_info.get("status") == "Accepted")
        elif item.kind == "started":
            assert tx is not None
            answer = await self.call(
                call.StartTransaction(
                    connector_id=connector_id,
                    id_tag=tx.id_tag,
                    meter_start=tx.meter_start_wh,
                    timestamp=stamp(item.at),
                    reservation_id=tx.reservation_id,
                ),
                suppress=False,
            )
            sessions.started(tx, answer.transaction_id, answer.id_tag_info.get("status") == "Accepted")
        elif item.kind in ("sample", "state"):  # "state": the sample at a suspension or resumption
            assert tx is not None and item.sample is not None
            await self.call(
                call.MeterValues(
                    connector_id=connector_id,
                    transaction_id=tx.ocpp_id,  # type: ignore[arg-type]  # None: the Start never got an id
                    meter_value=[meter_value(item.sample)],
                ),
                suppress=False,
                # Periodic samples are most of a session's traffic and their answer is empty: checking
                # our own well-formed payload against the schema was ~60 % of a session's CPU (the
                # tests' CSMS peer validates every one it receives). Start/Stop/Authorize stay checked.
                skip_schema_validation=True,
            )
        elif item.kind == "ended":
            assert tx is not None and item.sample is not None and item.end is not None
            if tx.ocpp_id is None:  # the CSMS never accepted the Start (its retries ran out): nothing to stop
                return
            await self.call(
                call.StopTransaction(
                    meter_stop=item.sample.register_wh,
                    timestamp=stamp(item.at),
                    transaction_id=tx.ocpp_id,  # type: ignore[arg-type]
                    reason=item.end.value[0],
                    id_tag=tx.id_tag,
                    transaction_data=[meter_value(item.sample)],
                ),
                suppress=False,
            )

    # --- CALLs we answer --------------------------------------------------------------------------

    @on(Action.reset)
    def on_reset(self, type: str, call_unique_id: str, **_: Any) -> call_result.Reset:
        # Running transactions stop first (their StopTransaction is queued before the reboot).
        self.state.sessions.end_all(End.HARD_RESET if type == ResetType.hard else End.SOFT_RESET)
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
    def on_unlock_connector(self, connector_id: int, call_unique_id: str, **_: Any) -> call_result.UnlockConnector:
        # 1.6 has no "unknown connector" answer: a connector we do not have has no lock to open.
        index = self.state.flat_index(connector_id)
        if index is None:
            return call_result.UnlockConnector(status=UnlockStatus.not_supported)
        self.state.sessions.unlock(index)  # a transaction stops (UnlockCommand), the cable is released
        self._park(call_unique_id)
        return call_result.UnlockConnector(status=UnlockStatus.unlocked)

    @after(Action.unlock_connector)
    def after_unlock_connector(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.remote_start_transaction)
    def on_remote_start(
        self, id_tag: str, call_unique_id: str, connector_id: int | None = None, **_: Any
    ) -> call_result.RemoteStartTransaction:
        state, sessions = self.state, self.state.sessions
        if connector_id is not None:
            index = state.flat_index(connector_id)
            candidates = () if index is None else (index,)
        else:  # no connector given: the one with a cable waiting, else the first free one
            order = sorted(state.all_connectors(), key=lambda i: sessions.status(i)[0] != "Preparing")
            candidates = tuple(i for i in order if sessions.status(i)[0] in ("Preparing", "Available"))[:1]
        try:
            if not candidates:
                raise Refusal("no such connector")
            sessions.present(candidates[0], id_tag, remote=True)
        except Refusal:
            return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.rejected)
        self._park(call_unique_id)
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @after(Action.remote_start_transaction)
    def after_remote_start(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int, call_unique_id: str, **_: Any) -> call_result.RemoteStopTransaction:
        tx = self.state.sessions.find(transaction_id)
        if tx is None:
            return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.rejected)
        self.state.sessions.stop(tx.index, End.REMOTE)
        self._park(call_unique_id)
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)

    @after(Action.remote_stop_transaction)
    def after_remote_stop(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.reserve_now)
    def on_reserve_now(
        self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int, call_unique_id: str, **_: Any
    ) -> call_result.ReserveNow:
        index = self.state.flat_index(connector_id)  # connector 0: ReserveConnectorZeroSupported is false
        expires = parse_stamp(expiry_date)
        if index is None or expires is None:
            return call_result.ReserveNow(status="Rejected")
        status = self.state.sessions.reserve(index, reservation_id, id_tag, expires)
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
        status = CancelReservationStatus.accepted if found else CancelReservationStatus.rejected
        return call_result.CancelReservation(status=status)

    @after(Action.cancel_reservation)
    def after_cancel_reservation(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, call_unique_id: str, message_id: str | None = None, data: str | None = None, **_: Any
    ) -> call_result.DataTransfer:
        answer = simulate(self.state, vendor_id, message_id, data)
        self._park(call_unique_id, answer.followup, answer.arg)
        return call_result.DataTransfer(status=answer.status, data=answer.text())

    @after(Action.data_transfer)
    def after_data_transfer(self, call_unique_id: str, **_: Any) -> None:
        self._release(call_unique_id)
