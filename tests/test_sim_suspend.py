"""The simulate control's `suspend_ev` on the simulators against the test CSMS peer: the car stops drawing
power mid-session (plugged in, the transaction open) and resumes, as a real EV's BMS or departure timer
does, reported per OCPP version."""

from __future__ import annotations

from typing import Any

from app.sim.config import SimEvse
from app.sim.connector_state import Transaction
from tests.ocpp_csms_peer import CsmsPeer
from tests.test_sim_sessions import AC, DC, Run, at, config, peer, running, values16

__all__ = ["peer"]  # the CSMS peer fixture


def meters16(run: Run) -> list[tuple[float, str, dict[str, list[float]]]]:
    """(time, context, values) of every MeterValues."""
    out = []
    for m in run.rec.of("MeterValues"):
        mv = m["meter_value"][0]
        out.append((at(mv["timestamp"]), mv["sampled_value"][0]["context"], values16(mv)))
    return out


def transaction(run: Run) -> Transaction:
    (tx,) = run.pod._by_identity[run.id].state.sessions.transactions()
    return tx


async def test_16_suspend_for_a_while_then_resume(peer: CsmsPeer) -> None:
    cfg = config("S16", "1.6", peer.url(), (DC,), scale=600)
    async with running(peer, cfg) as run:
        await run.simulate(action="start", connector_id=1, id_tag="T1", target_kwh=40)
        await run.until("two samples", lambda: len(run.rec.of("MeterValues")) >= 2)
        status, data = await run.simulate(action="suspend_ev", connector_id=1, duration_s=600)
        assert (status, data["status"], data["charging_state"]) == ("Accepted", "SuspendedEV", "SuspendedEV")
        assert data["transaction_id"] == 100
        await run.until("resumed", lambda: run.statuses()[-2:] == ["SuspendedEV", "Charging"], timeout=8)
        await run.until("a sample after it", lambda: [s[1] for s in meters16(run)][-2:] == ["Other", "Sample.Periodic"])
        assert (await run.simulate(action="stop", connector_id=1))[0] == "Accepted"
        await run.until("stop", lambda: run.rec.of("StopTransaction"))
        await run.until("finishing", lambda: run.statuses()[-1] == "Finishing")
    statuses = [a for a in run.actions() if a.startswith("Status:")]
    # A slow box lets the scaled clock run on before the stop: the car may also get full (SuspendedEV).
    suspended = statuses.index("Status:SuspendedEV")
    assert statuses[suspended - 1 : suspended + 2] == ["Status:Charging", "Status:SuspendedEV", "Status:Charging"]
    assert statuses[-1] == "Status:Finishing"
    samples = meters16(run)
    edges = [s for s in samples if s[1] == "Other"]
    assert len(edges) == 2  # one MeterValues where the car stopped, one where it drew again
    (t_off, _, off), (t_on, _, on) = edges
    assert t_on - t_off == 600
    assert off["Power.Active.Import"] == [0.0] and all(c == 0 for c in off["Current.Import"])
    assert off["Voltage"][0] > 0  # the charger still measures its voltage
    assert on["Power.Active.Import"][0] > 0
    register = off["Energy.Active.Import.Register"][0]
    assert register > 0 and on["Energy.Active.Import.Register"][0] == register  # flat while suspended
    inside = [s for s in samples if t_off < s[0] < t_on]
    assert len(inside) >= 5 and all(s[1] == "Sample.Periodic" for s in inside)  # a periodic sample each minute
    assert all(
        s[2]["Power.Active.Import"] == [0.0] and s[2]["Energy.Active.Import.Register"] == [register] for s in inside
    )
    before = [s for s in samples if s[0] < t_off]
    assert before[-1][2]["Energy.Active.Import.Register"][0] < register  # it charged up to the suspension
    after = [s for s in samples if s[0] > t_on]
    assert after and after[-1][2]["Energy.Active.Import.Register"][0] > register  # and after it
    times = [s[0] for s in samples]
    assert times == sorted(times) and len(set(times)) == len(times)  # no two samples at one instant


async def test_201_suspend_until_the_end(peer: CsmsPeer) -> None:
    cfg = config("S201", "2.0.1", peer.url(), (AC,), scale=600)
    async with running(peer, cfg) as run:
        await run.simulate(action="start", evse_id=1, id_tag="T1")
        await run.until("a sample", lambda: len(run.rec.of("TransactionEvent")) >= 2)
        status, data = await run.simulate(action="suspend_ev", evse_id=1)
        assert (status, data["status"], data["charging_state"]) == ("Accepted", "Occupied", "SuspendedEV")
        await run.until("three samples suspended", lambda: len(run.rec.of("TransactionEvent")) >= 6)
        assert transaction(run).charging_state == "SuspendedEV"  # no duration: it stays suspended
        assert (await run.simulate(action="stop", evse_id=1))[0] == "Accepted"
        await run.until("ended", lambda: run.rec.of("TransactionEvent")[-1]["event_type"] == "Ended")
    events = run.rec.of("TransactionEvent")
    assert [e["seq_no"] for e in events] == list(range(len(events)))
    (i,) = [n for n, e in enumerate(events) if e["trigger_reason"] == "ChargingStateChanged"]
    changed = events[i]
    assert changed["event_type"] == "Updated" and changed["transaction_info"]["charging_state"] == "SuspendedEV"

    def value(event: dict[str, Any], measurand: str) -> float:
        sampled = event["meter_value"][0]["sampled_value"]
        return float(next(v["value"] for v in sampled if v["measurand"] == measurand))

    register = value(changed, "Energy.Active.Import.Register")
    assert value(changed, "Power.Active.Import") == 0 and register > value(
        events[i - 1], "Energy.Active.Import.Register"
    )
    later = events[i + 1 : -1]
    assert len(later) >= 3 and all(e["trigger_reason"] == "MeterValuePeriodic" for e in later)
    assert all(e["transaction_info"]["charging_state"] == "SuspendedEV" for e in later)
    assert all(value(e, "Power.Active.Import") == 0 for e in later)
    assert value(events[-1], "Energy.Active.Import.Register") == register
    assert all(s["connector_status"] == "Occupied" for s in run.rec.statuses[1:])  # no status change for it


async def test_a_full_car_stays_suspended_and_a_second_suspension_replaces_the_first(peer: CsmsPeer) -> None:
    cfg = config("F16", "1.6", peer.url(), (DC, SimEvse(2, 1, "DC", 920, 125, 50_000)), scale=600)
    async with running(peer, cfg) as run:
        await run.simulate(action="start", connector_id=1, id_tag="T1", target_kwh=1)
        await run.until("car full", lambda: "SuspendedEV" in run.statuses())
        status, data = await run.simulate(action="suspend_ev", connector_id=1, duration_s=60)
        assert (status, data["charging_state"]) == ("Accepted", "SuspendedEV")
        await run.until("a minute later", lambda: at_least(run, 1, 120) > 0, timeout=4)
        assert run.statuses()[-1] == "SuspendedEV" and not [s for s in meters16(run) if s[1] == "Other"]

        await run.simulate(action="start", connector_id=2, id_tag="T2", target_kwh=40)
        await run.until("second start", lambda: len(run.rec.of("StartTransaction")) == 2)
        assert (await run.simulate(action="suspend_ev", connector_id=2, duration_s=60))[0] == "Accepted"
        assert (await run.simulate(action="suspend_ev", connector_id=2))[0] == "Accepted"  # now without an end
        await run.until("two minutes later", lambda: at_least(run, 2, 180) > 0, timeout=4)
        second = run.pod._by_identity["F16"].state.sessions.connectors[1].tx
        assert second is not None and second.charging_state == "SuspendedEV" and second.resume_at is None
        edges = [s for s in meters16(run) if s[1] == "Other"]
        assert len(edges) == 1 and edges[0][2]["Power.Active.Import"] == [0.0]  # suspended once, never resumed


def at_least(run: Run, connector_id: int, seconds: float) -> float:
    """How far (simulated s) the connector's transaction is past `seconds` after its start (≤ 0: not yet)."""
    tx = run.pod._by_identity[run.id].state.sessions.connectors[connector_id - 1].tx
    assert tx is not None
    return tx.t - tx.started_at - seconds


async def test_suspend_ev_refusals(peer: CsmsPeer) -> None:
    cfg = config("R16", "1.6", peer.url(), (AC,), scale=600)
    async with running(peer, cfg) as run:
        for body, reason in (
            ({"connector_id": 1}, "no charging session on this connector"),
            ({"connector_id": 1, "duration_s": 0}, "duration_s must be in (0, 604800]"),
            ({"connector_id": 1, "duration_s": "5"}, "duration_s must be a number"),
            ({"connector_id": 1, "id_tag": "X"}, "suspend_ev takes only the connector and duration_s"),
            ({"connector_id": 2}, "no connector 2"),
        ):
            assert await run.simulate(action="suspend_ev", **body) == ("Rejected", {"reason": reason})
        await run.simulate(action="plug", connector_id=1)
        assert (await run.simulate(action="suspend_ev", connector_id=1))[1] == {
            "reason": "no charging session on this connector"  # a cable without a transaction
        }
