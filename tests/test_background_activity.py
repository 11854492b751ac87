"""Background activity on the whole stack: a CPO created with `simulation.background_activity` (at a
high time scale) makes its own traffic once READY — drivers with the eMSP's tokens arrive at EVSEs,
charge and leave — so the eMSP sees EVSE status changes, Sessions and at least one CDR without any
action of ours; teardown stops it. At scale 1 the drivers already parked are there at once."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from app.lifecycle.background import BackgroundInput, background_workflow_id
from tests.charging_support import live_cpo, push_rfid_token
from tests.emsp_peer import EmspPeer, OcpiClient, new_cpo, ok, register
from tests.stack import Stack, wait_status
from workflows.background import BackgroundActivityWorkflow
from workflows.cpo import CpoWorkflow

SCALE = 600.0  # ten simulated minutes per real second: a charging stay lasts seconds


def from_party(r: object, party: str, what: str) -> bool:
    return r.headers.get("ocpi-from-party-id") == party and what in r.path  # type: ignore[attr-defined]


async def test_background_activity_makes_traffic_and_stops_at_teardown(stack: Stack, peer: EmspPeer) -> None:
    async with stack.client() as control, httpx.AsyncClient(timeout=30) as http:
        body = await new_cpo(
            control, party_id="BGA", seed=21, simulation={"time_scale": SCALE, "background_activity": True}
        )
        cpo_id = int(body["cpo_id"])
        status = await wait_status(control, body["cpo_id"], {"READY", "FAILED"}, timeout=120)
        assert status["status"] == "READY", status
        assert (await control.get(f"/ocpi/cpos/{cpo_id}")).json()["simulation"]["background_activity"] is True

        resp, _ = await register(http, body, peer)
        ocpi = OcpiClient(http, ok(resp)["token"])
        base = body["ocpi_peer_url"].removesuffix("/versions") + "/2.2.1"
        for n in range(3):
            await push_rfid_token(ocpi, base, f"BGA-DRIVER-{n:04d}", contract_id=f"NL-EMS-C{n:08d}-X")

        # Nobody drives these chargers but the background activity.
        charging = await peer.wait_for(
            lambda r: from_party(r, "BGA", "/locations/") and "CHARGING" in str(r.body), timeout=90
        )
        assert charging.method in ("PUT", "PATCH")
        session = await peer.wait_for(lambda r: from_party(r, "BGA", "/sessions/") and r.method == "PUT", 30)
        assert session.body["cdr_token"]["uid"].startswith("BGA-DRIVER-")
        cdr = (await peer.wait_for(lambda r: from_party(r, "BGA", "/cdrs") and r.method == "POST", 120)).body
        assert cdr["cdr_token"]["uid"].startswith("BGA-DRIVER-") and cdr["total_energy"] > 0

        temporal = await Client.connect(stack.temporal_address)
        handle = temporal.get_workflow_handle(background_workflow_id(cpo_id))
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        gone = await control.delete(f"/ocpi/cpos/{cpo_id}")
        assert gone.status_code in (200, 202)
        status = await wait_status(control, body["cpo_id"], {"DESTROYED"}, timeout=120)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        # Nothing more arrives from this CPO once it is gone.
        seen = sum(1 for r in peer.received if r.headers.get("ocpi-from-party-id") == "BGA")
        await asyncio.sleep(3)
        assert sum(1 for r in peer.received if r.headers.get("ocpi-from-party-id") == "BGA") == seen
        # Both histories (the CPO's, which started the child, and the traffic's) replay on today's code.
        replayer = Replayer(workflows=[CpoWorkflow, BackgroundActivityWorkflow])
        await replayer.replay_workflow(await temporal.get_workflow_handle(f"cpo-{cpo_id}").fetch_history())
        await replayer.replay_workflow(await handle.fetch_history())
        events = (await handle.fetch_history()).events
        assert any(e.HasField("activity_task_completed_event_attributes") for e in events)  # visits were sent
        # The traffic runs on the network's local clock: Amsterdam's standard time for this NL CPO.
        started = events[0].workflow_execution_started_event_attributes
        (inp,) = DataConverter.default.payload_converter.from_payloads(started.input.payloads, [BackgroundInput])
        assert inp.profile.utc_offset_s == 3600


async def test_at_scale_1_the_parked_drivers_are_there_at_once(stack: Stack, peer: EmspPeer) -> None:
    """Arrivals at scale 1 are a few per hour; yet within seconds of the eMSP's first tokens about a
    quarter of the EVSEs (stress-10k's steady state) charge: the warm-up, not the ticks."""
    async with live_cpo(
        stack,
        peer,
        party_id="BGW",
        template="stress-10k",
        overrides={"locations": 4, "chargers_per_location": 25},
        simulation={"time_scale": 1.0, "background_activity": True},
    ) as cpo:
        evses = sum(n for (n,) in stack.query("SELECT count(*) FROM evse WHERE cpo_id = ?", cpo.id))
        for n in range(3):
            await cpo.push_token(f"BGW-DRIVER-{n:04d}", contract_id=f"NL-EMS-C{n:08d}-W")

        def sessions() -> set[str]:
            return {r.path for r in peer.received if from_party(r, "BGW", "/sessions/") and r.method == "PUT"}

        await peer.wait_for(lambda r: len(sessions()) >= 3, timeout=60)
        temporal = await Client.connect(stack.temporal_address)
        handle = temporal.get_workflow_handle(background_workflow_id(cpo.id))
        counts = await handle.query(BackgroundActivityWorkflow.counts_so_far)
        # ~24 % of the EVSEs expected (AC and DC mixed): far from none, far from all.
        assert 3 <= counts.started <= evses // 2, (counts, evses)
        charging = stack.query("SELECT count(*) FROM evse WHERE cpo_id = ? AND status = 'CHARGING'", cpo.id)
        assert charging[0][0] >= 3
    async with stack.client() as control:
        assert (await control.delete(f"/ocpi/cpos/{cpo.id}")).status_code in (200, 202)
        await wait_status(control, str(cpo.id), {"DESTROYED"}, timeout=120)
