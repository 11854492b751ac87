"""Replay: every lifecycle path's history replays against today's workflow code.

`test_every_path_replays` runs each path on the real stack (READY→TTL, extend then delete, destroy
during provisioning, FAILED, cancel, continue-as-new, platform teardown after a terminate, a
reconciler pass) and replays what it recorded. With CPOLAB_RECORD_HISTORY=1 it also refreshes the
committed fixtures in tests/histories/, which `test_committed_histories_replay` replays in every run:
a code change that would break a running CPO's replay fails there. `legacy_*` files were recorded by
older code (before the input carried its resolved shape)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.service import RPCError
from temporalio.worker import Replayer

from app.lifecycle.models import ExtendTtl, ReconcileInput
from app.network import catalog
from app.network.generator import NetworkSpec
from app.network.legacy import legacy_shape
from app.store.db import Database
from tests.stack import Stack, wait_status
from tests.test_workflow_faults import faulty_worker, insert_cpo, start_cpo, workflow_input
from workflows.cpo import CpoWorkflow
from workflows.reconciler import ReconcilerWorkflow
from workflows.teardown import CpoTeardownWorkflow

HISTORIES = Path(__file__).parent / "histories"
WORKFLOWS = [CpoWorkflow, CpoTeardownWorkflow, ReconcilerWorkflow]
TINY = {
    "template": "small-urban-ac",
    "country_code": "AT",
    "name_prefix": "replay",
    "overrides": {"locations": 1, "chargers_per_location": 2},
}


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[Database]:
    database = Database(stack.database_url)
    yield database
    await database.dispose()


async def _histories(temporal: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow id, oldest first (continue-as-new makes several)."""
    runs = [wf async for wf in temporal.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda wf: wf.start_time)
    return [await temporal.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history() for wf in runs]


async def _create(c: httpx.AsyncClient, party: str, **extra: object) -> str:
    resp = await c.post("/ocpi/cpos", json={**TINY, "party_id": party, **extra})
    assert resp.status_code == 202, resp.text
    return resp.json()["cpo_id"]


async def _record_paths(stack: Stack, db: Database, temporal: Client) -> dict[str, list[WorkflowHistory]]:
    paths: dict[str, list[WorkflowHistory]] = {}
    async with stack.client(org="replay-org") as c:
        # READY → TTL expiry (a 2 s TTL: started directly, the API enforces ≥ 60 s).
        cpo_id = await insert_cpo(db, "RP1")
        handle = await start_cpo(temporal, workflow_input(cpo_id, "RP1", timedelta(seconds=2)))
        assert await handle.result() == "DESTROYED"
        paths["ready_ttl_expired"] = await _histories(temporal, f"cpo-{cpo_id}")

        # READY, two TTL extensions, DELETE.
        cpo = await _create(c, "RP2")
        await wait_status(c, cpo, {"READY"})
        for ttl in (600, 1200):
            assert (await c.patch(f"/ocpi/cpos/{cpo}", json={"ttl_seconds": ttl})).status_code == 200
        assert (await c.delete(f"/ocpi/cpos/{cpo}")).status_code == 202
        await wait_status(c, cpo, {"DESTROYED"})
        paths["extend_then_delete"] = await _histories(temporal, f"cpo-{cpo}")

        # DELETE while provisioning.
        cpo = await _create(c, "RP3", overrides={"locations": 40, "chargers_per_location": 25})
        await wait_status(c, cpo, {"PROVISIONING"})
        assert (await c.delete(f"/ocpi/cpos/{cpo}")).status_code == 202
        await wait_status(c, cpo, {"DESTROYED"})
        paths["destroy_during_provisioning"] = await _histories(temporal, f"cpo-{cpo}")

        # Cancel of a READY CPO (Web UI "Request Cancellation").
        cpo = await _create(c, "RP4")
        await wait_status(c, cpo, {"READY"})
        await temporal.get_workflow_handle(f"cpo-{cpo}").cancel()
        await wait_status(c, cpo, {"DESTROYED"})
        paths["cancel_ready"] = await _histories(temporal, f"cpo-{cpo}")

        # Continue-as-new: a tiny history bound makes a handful of extensions roll the run over.
        cpo_id = await insert_cpo(db, "RP5")
        handle = await start_cpo(temporal, replace(workflow_input(cpo_id, "RP5", None), max_history_events=40))
        async with stack.client() as acme:  # insert_cpo's rows belong to org "acme"
            await wait_status(acme, str(cpo_id), {"READY"})
        update = temporal.get_workflow_handle_for(CpoWorkflow.run, f"cpo-{cpo_id}")
        for i in range(8):
            for _ in range(5):  # an update caught by the continue-as-new is aborted: retry it, same id
                try:
                    await update.execute_update(CpoWorkflow.extend_ttl, ExtendTtl(ttl_seconds=600 + i), id=f"rp5-{i}")
                    break
                except RPCError:
                    await asyncio.sleep(0.2)
        await temporal.get_workflow_handle(f"cpo-{cpo_id}").signal(CpoWorkflow.request_destroy)
        assert await temporal.get_workflow_handle(f"cpo-{cpo_id}").result() == "DESTROYED"
        runs = await _histories(temporal, f"cpo-{cpo_id}")
        assert len(runs) >= 2, "no continue-as-new happened"
        paths["continue_as_new"] = runs

        # Terminate (no code runs) → DELETE starts the platform's teardown workflow.
        cpo = await _create(c, "RP6")
        await wait_status(c, cpo, {"READY"})
        await temporal.get_workflow_handle(f"cpo-{cpo}").terminate("replay fixture")
        assert (await c.delete(f"/ocpi/cpos/{cpo}")).status_code == 202
        await wait_status(c, cpo, {"DESTROYED"})
        paths["teardown_after_terminate"] = await _histories(temporal, f"cpo-{cpo}-teardown")

    # FAILED: a non-retryable activity failure compensates (a worker with a broken routing step).
    cpo_id = await insert_cpo(db, "RP7")
    async with faulty_worker(temporal, db, "replay-faults"):
        handle = await start_cpo(temporal, workflow_input(cpo_id, "RP7", None), "replay-faults")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    paths["failed_compensated"] = await _histories(temporal, f"cpo-{cpo_id}")

    # One reconciler pass.
    await temporal.execute_workflow(
        ReconcilerWorkflow.run, ReconcileInput(grace_seconds=3600), id="replay-reconcile", task_queue="provisioning"
    )
    paths["reconciler_pass"] = await _histories(temporal, "replay-reconcile")
    return paths


async def _replay(histories: list[WorkflowHistory]) -> dict[str, Exception]:
    async def feed() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    results = await Replayer(workflows=WORKFLOWS).replay_workflows(feed(), raise_on_replay_failure=False)
    return results.replay_failures


async def test_every_path_replays(stack: Stack, db: Database) -> None:
    temporal = await Client.connect(stack.temporal_address)
    paths = await _record_paths(stack, db, temporal)
    assert await _replay([h for runs in paths.values() for h in runs]) == {}
    if os.environ.get("CPOLAB_RECORD_HISTORY"):
        for name, runs in paths.items():
            for i, history in enumerate(runs):
                suffix = f"_run{i + 1}" if len(runs) > 1 else ""
                (HISTORIES / f"{name}{suffix}.json").write_text(history.to_json())


def committed() -> list[WorkflowHistory]:
    files = sorted(HISTORIES.glob("*.json"))
    return [WorkflowHistory.from_json(f.stem, f.read_text()) for f in files]


async def test_committed_histories_replay() -> None:
    histories = committed()
    names = {h.workflow_id for h in histories}
    for path in ("ready_ttl_expired", "extend_then_delete", "destroy_during_provisioning", "cancel_ready"):
        assert path in names, f"missing fixture {path}.json (record with CPOLAB_RECORD_HISTORY=1)"
    assert {"continue_as_new_run1", "continue_as_new_run2", "failed_compensated"} <= names
    # Recorded before the lean small-network path (workflows/cpo.py PATCH_LEAN): runs in flight then.
    assert {f"pre_lean_{p}" for p in ("ready_ttl_expired", "cancel_ready", "failed_compensated")} <= names
    assert await _replay(histories) == {}


def test_current_fixtures_take_the_lean_path() -> None:
    """The fixtures of today's code provision a small network in one activity that also records
    PROVISIONING (no status write before it) and record one patch marker, not three."""
    events = json.loads((HISTORIES / "ready_ttl_expired.json").read_text())["events"]
    activities = [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in events
        if "activityTaskScheduledEventAttributes" in e
    ]
    assert activities[0] == "provision_small_network", activities
    markers = [e for e in events if e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_patch"]
    assert len(markers) == 1


def _edited_catalog() -> catalog.Catalog:
    """A deploy that edits small-urban-ac in place (default size, charger mix) and the AC tariff."""
    docs = {name: json.loads((catalog.DATA_DIR / name).read_text()) for name in ("templates.json", "chargers.json")}
    docs["streets.json"] = json.loads((catalog.DATA_DIR / "streets.json").read_text())
    template = next(t for t in docs["templates.json"]["templates"] if t["slug"] == "small-urban-ac")
    template["locations"] += 3
    template["charger_mix"][0]["share"] += 5
    docs["templates.json"]["tariffs"][0]["elements"][0]["price_components"][0]["price_eur"] = "9.99"
    return catalog.load_catalog(docs["templates.json"], docs["chargers.json"], docs["streets.json"])


async def test_committed_histories_replay_against_an_edited_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workflows never read the live catalog: an in-place template edit cannot break a running CPO."""
    histories = [h for h in committed() if not h.workflow_id.startswith("legacy_")]
    spec = NetworkSpec(template="small-urban-ac", seed=5, country_code="ES", party_id="RP1", name_prefix="fault")
    before = legacy_shape(spec)
    monkeypatch.setattr(catalog, "CATALOG", _edited_catalog())
    assert legacy_shape(spec) != before  # the edit is real: read live, the plan would change
    assert await _replay(histories) == {}
