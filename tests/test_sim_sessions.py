"""Charging sessions on the simulators (app/sim) against the test CSMS peer, at high time scales."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from app.sim.config import ChargerConfig, SimEvse, Tunables
from app.sim.connector_state import ERROR_CODES
from app.sim.ev import draw_ev, flow, session_seed
from app.sim.pod import Pod
from tests.ocpp_csms_peer import CsmsPeer, Record

FAST = Tunables(
    open_timeout=2, response_timeout=2, close_timeout=1, backoff_min=0.05, backoff_range=0.05, reboot_delay=0
)
DC = SimEvse(1, 1, "DC", 920, 125, 50_000)
AC = SimEvse(1, 1, "AC_3_PHASE", 230, 32, 22_080)


def config(identity: str, version: str, url: str, evses: tuple[SimEvse, ...], scale: float) -> ChargerConfig:
    return ChargerConfig(
        identity=identity,
        password="pw-0123456789abcdef",
        ocpp_version=version,
        vendor="SimVendor",
        model="SimModel",
        serial_number="",
        firmware_version="",
        evses=evses,
        csms_url=url,
        time_scale=scale,
    )


@pytest.fixture
async def peer() -> AsyncIterator[CsmsPeer]:
    csms = CsmsPeer(None)
    await csms.start()
    yield csms
    await csms.stop()


class Run:
    """One pod of one charger, running."""

    def __init__(self, peer: CsmsPeer, pod: Pod, identity: str, version: str) -> None:
        self.peer, self.pod, self.id, self.version = peer, pod, identity, version

    @property
    def rec(self) -> Record:
        return self.peer.rec(self.id)

    async def call(self, payload: Any) -> Any:
        return await self.peer.call(self.id, payload)

    async def simulate(self, **body: Any) -> tuple[str, dict[str, Any]]:
        module = call16 if self.version == "1.6" else call201
        answer = await self.call(module.DataTransfer(vendor_id="cpolab", message_id="simulate", data=json.dumps(body)))
        return answer.status, json.loads(answer.data) if answer.data else {}

    async def until(self, what: str, predicate: Any, timeout: float = 8.0) -> None:
        await self.peer.wait_until(predicate, timeout, what)

    def statuses(self) -> list[str]:
        key = "status" if self.version == "1.6" else "connector_status"
        return [s[key] for s in self.rec.statuses]

    def actions(self, start: int = 0) -> list[str]:
        """Calls after the `start`-th, with runs of periodic samples collapsed to one."""
        out: list[str] = []
        for action, payload in self.rec.calls[start:]:
            name = action
            if action == "StatusNotification":
                name = f"Status:{payload.get('status') or payload.get('connector_status')}"
            elif action == "TransactionEvent":
                name = f"{payload['event_type']}:{payload['trigger_reason']}"
            if not out or out[-1] != name or name not in ("MeterValues", "Updated:MeterValuePeriodic"):
                out.append(name)
        return out


@asynccontextmanager
async def running(peer: CsmsPeer, cfg: ChargerConfig, seed: int = 1) -> AsyncIterator[Run]:
    pod = Pod([cfg], seed=seed, tunables=FAST)
    task = asyncio.create_task(pod.run())
    run = Run(peer, pod, cfg.identity, cfg.ocpp_version)
    try:
        await run.until("online", lambda: pod.online() == 1)
        yield run
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def values16(meter_value: dict[str, Any]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for v in meter_value["sampled_value"]:
        out.setdefault(v["measurand"], []).append(float(v["value"]))
    return out


def assert_coherent(samples: list[dict[str, list[float]]], dc: bool) -> None:
    """P = V × I × phases (within rounding), energy register and SoC never decrease."""
    for s in samples:
        phases = len(s["Current.Import"])
        assert phases == (1 if dc else 3)
        power = sum(v * i for v, i in zip(s["Voltage"], s["Current.Import"], strict=True))
        assert s["Power.Active.Import"][0] == pytest.approx(power, rel=0.002, abs=1)
        assert ("SoC" in s) is dc
    energy = [s["Energy.Active.Import.Register"][0] for s in samples]
    assert energy == sorted(energy)
    if dc:
        soc = [s["SoC"][0] for s in samples]
        assert soc == sorted(soc)


# --- full sessions --------------------------------------------------------------------------------


async def test_16_local_dc_session_end_to_end(peer: CsmsPeer) -> None:
    cfg = config("D16", "1.6", peer.url(), (DC,), scale=600)
    async with running(peer, cfg) as run:
        mark = len(run.rec.calls)
        assert await run.simulate(action="start", connector_id=1, id_tag="TAG1", target_kwh=10) == (
            "Accepted",
            {"action": "start", "connector_id": 1, "status": "Preparing"},
        )
        await run.until("car full", lambda: "SuspendedEV" in run.statuses())
        status, data = await run.simulate(action="stop", connector_id=1)
        assert (status, data["status"]) == ("Accepted", "Finishing")
        await run.until("stop", lambda: run.rec.of("StopTransaction"))
        assert (await run.simulate(action="unplug", connector_id=1))[0] == "Accepted"
        await run.until("available", lambda: run.statuses()[-1] == "Available")
        actions = run.actions(mark)
        assert actions[4] == "MeterValues"  # samples while charging (and maybe a few while parked)
        assert [a for a in actions if a != "MeterValues"] == [
            "Status:Preparing",
            "Authorize",
            "StartTransaction",
            "Status:Charging",
            "Status:SuspendedEV",
            "StopTransaction",
            "Status:Finishing",
            "Status:Available",
        ]
    (start,) = run.rec.of("StartTransaction")
    assert start["connector_id"] == 1 and start["id_tag"] == "TAG1" and start["meter_start"] == 0
    (stop,) = run.rec.of("StopTransaction")
    assert stop["transaction_id"] == 100 and stop["reason"] == "Local" and stop["id_tag"] == "TAG1"
    assert stop["meter_stop"] == 10_000  # the car stopped drawing exactly at its target energy
    meters = run.rec.of("MeterValues")
    assert all(m["transaction_id"] == 100 and m["connector_id"] == 1 for m in meters)
    samples = [values16(m["meter_value"][0]) for m in meters] + [values16(stop["transaction_data"][0])]
    assert_coherent(samples, dc=True)
    assert all(v["unit"] == "Wh" for v in meters[0]["meter_value"][0]["sampled_value"][:1])
    # the simulated clock: one sample per 60 simulated seconds from the start, ~10 kWh at ≤ 50 kW
    times = [at(start["timestamp"])] + [at(m["meter_value"][0]["timestamp"]) for m in meters]
    assert {b - a for a, b in itertools.pairwise(times)} == {60}
    assert 10_000 / 50_000 * 3600 <= at(stop["timestamp"]) - times[0] <= 3600
    # the first sample is the seeded car's power
    car = draw_ev(session_seed(1, "D16", 1), DC.supply, target_kwh=10)
    assert samples[0]["Power.Active.Import"][0] == pytest.approx(flow(car, DC.supply).power_w, rel=0.01)


async def test_201_remote_ac_session_of_three_hours(peer: CsmsPeer) -> None:
    cfg = config("A201", "2.0.1", peer.url(), (AC, SimEvse(2, 1)), scale=3600)
    async with running(peer, cfg) as run:
        var = {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}}
        result = await run.call(call201.SetVariables(set_variable_data=[{**var, "attribute_value": "600"}]))
        assert result.set_variable_result[0]["attribute_status"] == "Accepted"
        assert (await run.simulate(action="plug", evse_id=1))[1]["status"] == "Occupied"
        token = {"id_token": "APP-USER-1", "type": "Central"}
        answer = await run.call(call201.RequestStartTransaction(id_token=token, remote_start_id=42, evse_id=1))
        assert answer.status == "Accepted"

        def events() -> list[dict[str, Any]]:
            return run.rec.of("TransactionEvent")

        await run.until("18 samples (3 h)", lambda: len(events()) >= 19, timeout=10)
        tx_id = events()[0]["transaction_info"]["transaction_id"]
        assert (await run.call(call201.RequestStopTransaction(transaction_id="nope"))).status == "Rejected"
        assert (await run.call(call201.RequestStopTransaction(transaction_id=tx_id))).status == "Accepted"
        await run.until("ended", lambda: events()[-1]["event_type"] == "Ended")
        await run.simulate(action="unplug", evse_id=1, connector_id=1)
        await run.until("available", lambda: run.statuses()[-1] == "Available")
    started, *updates, ended = run.rec.of("TransactionEvent")
    assert started["trigger_reason"] == "RemoteStart" and started["id_token"] == token
    assert started["transaction_info"] == {"transaction_id": tx_id, "charging_state": "Charging", "remote_start_id": 42}
    assert started["evse"] == {"id": 1, "connector_id": 1}
    assert started["meter_value"][0]["sampled_value"][0]["context"] == "Transaction.Begin"
    assert ended["trigger_reason"] == "RemoteStop"
    assert ended["transaction_info"]["stopped_reason"] == "Remote"
    assert ended["transaction_info"]["charging_state"] == "EVConnected"
    assert [e["seq_no"] for e in run.rec.of("TransactionEvent")] == list(range(len(updates) + 2))
    assert "offline" not in started
    periodic = [u for u in updates if u["trigger_reason"] == "MeterValuePeriodic"]
    times = [at(u["timestamp"]) for u in periodic]
    assert {b - a for a, b in itertools.pairwise(times)} == {600}
    samples = []
    for event in [started, *periodic, ended]:
        values: dict[str, list[float]] = {}
        for v in event["meter_value"][0]["sampled_value"]:
            assert isinstance(v["value"], int | float)  # 2.0.1 values are numbers
            values.setdefault(v["measurand"], []).append(v["value"])
        samples.append(values)
    assert_coherent(samples, dc=False)
    assert samples[1]["Energy.Active.Import.Register"][0] > 0


async def test_same_seed_same_session(peer: CsmsPeer) -> None:
    async def session(seed: int) -> list[Any]:
        peer.records.clear()
        peer.transaction_ids.clear()
        cfg = config("D16", "1.6", peer.url(), (DC,), scale=600)
        async with running(peer, cfg, seed=seed) as run:
            # full after ~7 simulated minutes, the driver back after 15: every event is time-driven
            await run.simulate(action="start", connector_id=1, id_tag="TAG1", target_kwh=6, duration_s=900)
            await run.until("stop", lambda: run.rec.of("StopTransaction"))
        start = run.rec.of("StartTransaction")[0]
        t0 = at(start.pop("timestamp"))
        out: list[Any] = [start]
        for payload in run.rec.of("MeterValues"):
            mv = payload["meter_value"][0]
            out.append((at(mv["timestamp"]) - t0, mv["sampled_value"]))
        stop = run.rec.of("StopTransaction")[0]
        end = stop["transaction_data"][0]
        end["timestamp"] = at(end["timestamp"]) - t0
        out.append((at(stop.pop("timestamp")) - t0, stop))
        return out

    first, again, other = await session(5), await session(5), await session(6)
    # The same car and start exactly. Simulated time is wall time × scale, so on a loaded box a sample
    # can slip by a few simulated seconds: the samples then agree closely rather than byte for byte.
    assert first[0] == again[0] and len(first) > 5

    def energy(sample: Any) -> float:
        return next(float(v["value"]) for v in sample[1] if v.get("measurand") == "Energy.Active.Import.Register")

    for a, b in zip(first[1:-1], again[1:-1], strict=False):
        assert abs(a[0] - b[0]) <= 60 and abs(energy(a) - energy(b)) <= max(50.0, 0.05 * energy(a)), (a, b)
    assert other != first


# --- commands -------------------------------------------------------------------------------------


async def test_16_remote_start_unlock_and_reservations(peer: CsmsPeer) -> None:
    cfg = config("R16", "1.6", peer.url(), (DC, SimEvse(2, 1, "DC", 920, 125, 50_000)), scale=600)
    async with running(peer, cfg) as run:
        change = call16.ChangeConfiguration(key="AuthorizeRemoteTxRequests", value="true")
        assert (await run.call(change)).status == "Accepted"
        # 120 simulated s to plug in is 0.2 real s at this scale: a loaded box would let it lapse.
        patience = call16.ChangeConfiguration(key="ConnectionTimeOut", value="36000")
        assert (await run.call(patience)).status == "Accepted"
        remote = call16.RemoteStartTransaction(id_tag="R1", connector_id=1)
        assert (await run.call(remote)).status == "Accepted"  # before the plug: waits for it
        await run.until("authorize", lambda: run.rec.of("Authorize"))
        await run.until("preparing", lambda: run.statuses()[-1] == "Preparing")  # once the Authorize is answered
        assert not run.rec.of("StartTransaction")
        assert (await run.call(remote)).status == "Rejected"  # already waiting
        await run.simulate(action="plug", connector_id=1)
        await run.until("start", lambda: run.rec.of("StartTransaction"))
        assert run.rec.of("StartTransaction")[0]["id_tag"] == "R1"
        await run.until("charging", lambda: run.statuses()[-1] == "Charging")
        assert (await run.call(call16.UnlockConnector(connector_id=1))).status == "Unlocked"
        await run.until("stop", lambda: run.rec.of("StopTransaction"))
        assert run.rec.of("StopTransaction")[0]["reason"] == "UnlockCommand"
        await run.until("available", lambda: run.statuses()[-2:] == ["Finishing", "Available"])

        expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        reserve = call16.ReserveNow(connector_id=2, expiry_date=expiry, id_tag="RES", reservation_id=7)
        assert (await run.call(reserve)).status == "Accepted"
        await run.until("reserved", lambda: run.statuses()[-1] == "Reserved")
        other = call16.ReserveNow(connector_id=2, expiry_date=expiry, id_tag="X", reservation_id=8)
        assert (await run.call(other)).status == "Occupied"
        zero = call16.ReserveNow(connector_id=0, expiry_date=expiry, id_tag="X", reservation_id=9)
        assert (await run.call(zero)).status == "Rejected"
        assert (await run.call(call16.CancelReservation(reservation_id=99))).status == "Rejected"
        assert await run.simulate(action="start", connector_id=2, id_tag="SOMEONE") == (
            "Rejected",
            {"reason": "connector reserved for another token"},
        )
        assert (await run.simulate(action="start", connector_id=2, id_tag="RES"))[0] == "Accepted"
        await run.until("second start", lambda: len(run.rec.of("StartTransaction")) == 2)
        second = run.rec.of("StartTransaction")[1]
        assert second["reservation_id"] == 7 and second["connector_id"] == 2
        await run.until("second id", lambda: run.pod._by_identity["R16"].state.sessions.find(101) is not None)
        assert (await run.call(call16.RemoteStopTransaction(transaction_id=9999))).status == "Rejected"
        assert (await run.call(call16.RemoteStopTransaction(transaction_id=101))).status == "Accepted"
        await run.until("remote stop", lambda: len(run.rec.of("StopTransaction")) == 2)
        assert run.rec.of("StopTransaction")[1]["reason"] == "Remote"

        soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
        await run.simulate(action="unplug", connector_id=2)
        reserve = call16.ReserveNow(connector_id=2, expiry_date=soon, id_tag="RES", reservation_id=10)
        assert (await run.call(reserve)).status == "Accepted"
        await run.until("reserved", lambda: run.statuses()[-1] == "Reserved")
        await run.until("expired", lambda: run.statuses()[-1] == "Available", timeout=3)
        reserve = call16.ReserveNow(connector_id=1, expiry_date=expiry, id_tag="RES", reservation_id=11)
        assert (await run.call(reserve)).status == "Accepted"
        assert (await run.call(call16.CancelReservation(reservation_id=11))).status == "Accepted"
        await run.until("cancelled", lambda: run.statuses()[-2:] == ["Reserved", "Available"])


async def test_201_unlock_reserve_and_reset_on_idle(peer: CsmsPeer) -> None:
    cfg = config("U201", "2.0.1", peer.url(), (AC,), scale=600)
    async with running(peer, cfg) as run:
        assert (await run.simulate(action="start", evse_id=1, id_tag="T1"))[0] == "Accepted"
        await run.until("started", lambda: run.rec.of("TransactionEvent"))
        assert run.rec.of("Authorize")[0]["id_token"] == {"id_token": "T1", "type": "ISO14443"}
        unlock = call201.UnlockConnector(evse_id=1, connector_id=1)
        assert (await run.call(unlock)).status == "OngoingAuthorizedTransaction"
        expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        reserve = call201.ReserveNow(id=3, expiry_date_time=expiry, id_token={"id_token": "T2", "type": "Central"})
        assert (await run.call(reserve)).status == "Rejected"  # no free EVSE
        assert (await run.call(call201.Reset(type="OnIdle"))).status == "Scheduled"
        assert len(run.rec.boots) == 1
        tx_id = run.rec.of("TransactionEvent")[0]["transaction_info"]["transaction_id"]
        assert (await run.call(call201.RequestStopTransaction(transaction_id=tx_id))).status == "Accepted"
        await run.until("reboot after the end", lambda: len(run.rec.boots) == 2 and run.pod.online() == 1)
        ended = run.rec.of("TransactionEvent")[-1]
        assert ended["event_type"] == "Ended" and ended["transaction_info"]["stopped_reason"] == "Remote"
        assert (await run.call(unlock)).status == "Unlocked"
        await run.until("available", lambda: run.statuses()[-1] == "Available")
        assert (await run.call(reserve)).status == "Accepted"
        await run.until("reserved", lambda: run.statuses()[-1] == "Reserved")
        assert (await run.call(call201.CancelReservation(reservation_id=3))).status == "Accepted"
        assert (await run.call(call201.CancelReservation(reservation_id=3))).status == "Rejected"


async def test_16_reset_during_a_session_stops_it_before_the_reboot(peer: CsmsPeer) -> None:
    cfg = config("S16", "1.6", peer.url(), (AC,), scale=600)
    async with running(peer, cfg) as run:
        await run.simulate(action="start", connector_id=1, id_tag="T1")
        await run.until("start", lambda: run.rec.of("StartTransaction"))
        assert (await run.call(call16.Reset(type="Soft"))).status == "Accepted"
        await run.until("reboot", lambda: len(run.rec.boots) == 2 and run.pod.online() == 1)
    assert run.rec.of("StopTransaction")[0]["reason"] == "SoftReset"


# --- faults, links, hostile answers -----------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_fault_mid_session_ends_it(peer: CsmsPeer, version: str) -> None:
    cfg = config("F", version, peer.url(), (DC,), scale=600)
    where = {"connector_id": 1} if version == "1.6" else {"evse_id": 1}
    async with running(peer, cfg) as run:
        await run.simulate(action="start", id_tag="T1", **where)
        await run.until("first sample", lambda: run.rec.of("MeterValues", "TransactionEvent")[1:])
        assert await run.simulate(action="fault", error_code="Nope", **where) == (
            "Rejected",
            {"reason": f"error_code must be one of {sorted(ERROR_CODES)}"},
        )
        assert (await run.simulate(action="fault", error_code="GroundFailure", **where))[1]["status"] == "Faulted"
        await run.until("faulted", lambda: run.statuses()[-1] == "Faulted")
        assert (await run.simulate(action="start", id_tag="T2", **where)) == (
            "Rejected",
            {"reason": "connector faulted"},
        )
        assert (await run.simulate(action="clear_fault", **where))[0] == "Accepted"
        await run.until("cleared", lambda: run.statuses()[-1] != "Faulted")
    if version == "1.6":
        (stop,) = run.rec.of("StopTransaction")
        assert stop["reason"] == "Other"
        faulted = [s for s in run.rec.statuses if s["status"] == "Faulted"]
        assert faulted[0]["error_code"] == "GroundFailure"
        assert run.statuses()[-1] == "Finishing"  # the cable is still in
    else:
        ended = run.rec.of("TransactionEvent")[-1]
        assert ended["trigger_reason"] == "AbnormalCondition"
        assert ended["transaction_info"]["stopped_reason"] == "GroundFault"
        assert run.statuses()[-1] == "Occupied"


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_offline_messages_are_queued_and_delivered_in_order(peer: CsmsPeer, version: str) -> None:
    cfg = config("O", version, peer.url(), (DC,), scale=600)
    where = {"connector_id": 1} if version == "1.6" else {"evse_id": 1}
    async with running(peer, cfg) as run:
        # the driver leaves after 30 simulated minutes, while the charger is offline (3 s real)
        await run.simulate(action="start", id_tag="T1", duration_s=1800, **where)
        await run.until("two samples", lambda: len(run.rec.of("MeterValues", "TransactionEvent")) >= 3)
        assert (await run.simulate(action="go_offline", duration_s=1800))[0] == "Accepted"
        await run.until("offline", lambda: run.rec.disconnects == 1)
        await asyncio.sleep(1)
        assert run.rec.connects == 1 and run.pod.online() == 0
        await run.until("back", lambda: run.rec.connects == 2 and run.pod.online() == 1, timeout=6)
        await run.until("stopped", lambda: run.statuses()[-1] == "Available")
    assert len(run.rec.boots) == 1  # a reconnect, not a reboot
    if version == "1.6":
        meters = run.rec.of("MeterValues")
        times = [at(m["meter_value"][0]["timestamp"]) for m in meters]
        stop = run.rec.of("StopTransaction")[0]
        assert (
            stop["reason"] == "Local"
            and at(stop["timestamp"]) - at(run.rec.of("StartTransaction")[0]["timestamp"]) == 1800
        )
    else:
        events = run.rec.of("TransactionEvent")
        assert [e["seq_no"] for e in events] == list(range(len(events)))
        assert any(e.get("offline") for e in events) and not events[0].get("offline")
        assert events[-1]["event_type"] == "Ended" and events[-1]["trigger_reason"] == "StopAuthorized"
        times = [at(e["timestamp"]) for e in events if e["trigger_reason"] == "MeterValuePeriodic"]
    assert {b - a for a, b in itertools.pairwise(times)} <= {60}  # every sample, none lost, in order
    assert len(times) >= 25


async def test_a_resent_start_does_not_start_twice(peer: CsmsPeer) -> None:
    peer.misbehave[("I16", "StartTransaction")] = ["drop"]  # the first one gets no answer
    cfg = config("I16", "1.6", peer.url(), (DC,), scale=600)
    async with running(peer, cfg) as run:
        await run.simulate(action="start", connector_id=1, id_tag="T1", target_kwh=3)
        await run.until("resent", lambda: len(run.rec.of("StartTransaction")) == 2, timeout=8)
        await run.until("car full", lambda: "SuspendedEV" in run.statuses())
        await run.simulate(action="stop", connector_id=1)
        await run.until("stop", lambda: run.rec.of("StopTransaction"))
    first, second = run.rec.of("StartTransaction")
    assert first == second  # byte-identical: the CSMS can key it
    assert len(peer.transaction_ids) == 1 and run.rec.connects == 2
    assert {m["transaction_id"] for m in run.rec.of("MeterValues")} == {100}
    assert run.rec.of("StopTransaction")[0]["transaction_id"] == 100


async def test_a_callerror_is_retried_after_the_interval(peer: CsmsPeer) -> None:
    peer.misbehave[("E16", "MeterValues")] = ["error"]
    cfg = config("E16", "1.6", peer.url(), (DC,), scale=600)
    async with running(peer, cfg) as run:
        await run.call(call16.ChangeConfiguration(key="TransactionMessageRetryInterval", value="120"))
        await run.simulate(action="start", connector_id=1, id_tag="T1")
        await run.until("three samples", lambda: len(run.rec.of("MeterValues")) >= 4)
    meters = [at(m["meter_value"][0]["timestamp"]) for m in run.rec.of("MeterValues")]
    assert meters[0] == meters[1] and meters[2] > meters[1]  # the same sample again, then the next
    assert run.rec.connects == 1


async def test_a_refused_token_at_start_deauthorizes(peer: CsmsPeer) -> None:
    peer.token_status["BLOCKED"] = "Blocked"
    cfg = config("B16", "1.6", peer.url(), (DC,), scale=600)
    async with running(peer, cfg) as run:
        await run.simulate(action="plug", connector_id=1)
        assert (await run.call(call16.RemoteStartTransaction(id_tag="BLOCKED"))).status == "Accepted"
        await run.until("stop", lambda: run.rec.of("StopTransaction"))
        assert run.rec.of("StopTransaction")[0]["reason"] == "DeAuthorized"
        # a local start with a refused card never starts
        await run.simulate(action="unplug", connector_id=1)
        await run.simulate(action="start", connector_id=1, id_tag="BLOCKED")
        await run.until("authorize", lambda: len(run.rec.of("Authorize")) == 1)
        await asyncio.sleep(0.2)
        assert len(run.rec.of("StartTransaction")) == 1 and run.statuses()[-1] == "Preparing"


async def test_hostile_intervals_do_not_spin_or_stall(peer: CsmsPeer) -> None:
    cfg = config("H16", "1.6", peer.url(), (DC,), scale=600)
    async with running(peer, cfg) as run:
        for bad in ("0", "-5", "x", "1e9"):
            change = call16.ChangeConfiguration(key="MeterValueSampleInterval", value=bad)
            assert (await run.call(change)).status == "Rejected"
        change = call16.ChangeConfiguration(key="MeterValueSampleInterval", value="86400")
        assert (await run.call(change)).status == "Accepted"
        await run.simulate(action="start", connector_id=1, id_tag="T1", target_kwh=2)
        await run.until("car full", lambda: "SuspendedEV" in run.statuses())  # without any sample meanwhile
        assert run.rec.of("MeterValues") == []
        change = call16.ChangeConfiguration(key="MeterValueSampleInterval", value="1")
        assert (await run.call(change)).status == "Accepted"
        await asyncio.sleep(0.5)
        # 1 s at scale 600 would be 600 samples per second: clamped to one per 0.05 s at most
        assert len(run.rec.of("MeterValues")) <= 0.5 / 0.05 + 2


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        ({"action": "dance", "connector_id": 1}, "action must be one of"),
        ({"action": "plug"}, "connector_id is required"),
        ({"action": "plug", "connector_id": 3}, "no connector 3"),
        ({"action": "plug", "connector_id": True}, "connector_id must be an integer"),
        ({"action": "plug", "connector_id": 1, "colour": "red"}, "unknown fields: colour"),
        ({"action": "plug", "connector_id": 1, "id_tag": "X"}, "plug takes only the connector"),
        ({"action": "start", "connector_id": 1}, "id_tag must be 1-20"),
        ({"action": "start", "connector_id": 1, "id_tag": "x" * 21}, "id_tag must be 1-20"),
        ({"action": "start", "connector_id": 1, "id_tag": "A", "target_kwh": -1}, "target_kwh must be in"),
        ({"action": "start", "connector_id": 1, "id_tag": "A", "soc_percent": "5"}, "soc_percent must be a number"),
        ({"action": "stop", "connector_id": 1}, "no transaction"),
        ({"action": "unplug", "connector_id": 1}, "not plugged"),
        ({"action": "clear_fault", "connector_id": 1}, "no fault"),
        ({"action": "plug", "evse_id": 1}, "evse_id is for OCPP 2.0.1"),
    ],
)
async def test_simulate_control_rejects_bad_commands(peer: CsmsPeer, body: dict[str, Any], answer: str) -> None:
    cfg = config("V16", "1.6", peer.url(), (AC,), scale=1)
    async with running(peer, cfg) as run:
        status, data = await run.simulate(**body)
        assert status == "Rejected" and data["reason"].startswith(answer), data


async def test_simulate_control_vendor_and_message(peer: CsmsPeer) -> None:
    cfg = config("W201", "2.0.1", peer.url(), (AC,), scale=1)
    async with running(peer, cfg) as run:
        other = await run.call(call201.DataTransfer(vendor_id="acme", message_id="simulate", data="{}"))
        assert other.status == "UnknownVendorId"
        other = await run.call(call201.DataTransfer(vendor_id="cpolab", message_id="x", data="{}"))
        assert other.status == "UnknownMessageId"
        bad = await run.call(call201.DataTransfer(vendor_id="cpolab", message_id="simulate", data="[1"))
        assert (bad.status, json.loads(bad.data)) == ("Rejected", {"reason": "data must be a JSON object"})
        as_object = call201.DataTransfer(
            vendor_id="cpolab", message_id="simulate", data={"action": "plug", "evse_id": 1}
        )
        assert (await run.call(as_object)).status == "Accepted"
        assert run.pod.simulate("W201", {"action": "unplug", "evse_id": 1}) == (
            "Accepted",
            {"action": "unplug", "evse_id": 1, "connector_id": 1, "status": "Available"},
        )
        assert run.pod.simulate("W201", {"action": "unplug", "evse_id": 1})[0] == "Rejected"


async def test_a_remote_start_without_a_cable_expires_after_connection_timeout(peer: CsmsPeer) -> None:
    cfg = config("T16", "1.6", peer.url(), (DC,), scale=600)
    async with running(peer, cfg) as run:
        assert (await run.call(call16.ChangeConfiguration(key="ConnectionTimeOut", value="300"))).status == "Accepted"
        assert (await run.call(call16.RemoteStartTransaction(id_tag="LATE", connector_id=1))).status == "Accepted"
        await run.until("preparing", lambda: run.statuses()[-1] == "Preparing")
        await run.until("expired (300 simulated s = 0.5 s)", lambda: run.statuses()[-1] == "Available", timeout=3)
        await run.simulate(action="plug", connector_id=1)
        await run.until("plugged", lambda: run.statuses()[-1] == "Preparing")
        await asyncio.sleep(0.2)
        assert run.rec.of("StartTransaction") == []
