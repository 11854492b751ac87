"""Bounded history: a READY CPO continues-as-new, so thousands of TTL extensions leave one READY CPO
whose current run's history stays small (before: ~8 events per extension, terminated at 51,200 events).

The suite runs 2,500 extensions (runs chained by continue-as-new every 2,000 events); `CPOLAB_TEST_EXTENSIONS=10000`
runs the original 10,000 (~17 runs, ~6 min)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from app.lifecycle.models import CpoStatus, ExtendTtl
from tests.stack import Stack, wait_status
from workflows.cpo import CpoWorkflow

EXTENSIONS = int(os.environ.get("CPOLAB_TEST_EXTENSIONS", "2500"))
CALLERS = 8  # the server admits at most 10 in-flight updates per workflow


# What it bounds is the Temporal history; its database writes (expires_at per update) are the same
# statements test_control_plane's extend_ttl tests run on both backends. Run once: it takes minutes.
@pytest.mark.sqlite_only
@pytest.mark.timeout(900)
async def test_thousands_of_ttl_extensions_stay_bounded(stack: Stack) -> None:
    async with stack.client(org="extend-org") as c:
        resp = await c.post(
            "/ocpi/cpos",
            json={
                "template": "small-urban-ac",
                "country_code": "LU",
                "party_id": "EXT",
                "name_prefix": "extend",
                "ttl_seconds": None,
                "overrides": {"locations": 1, "chargers_per_location": 1},
            },
        )
        cpo_id = resp.json()["cpo_id"]
        await wait_status(c, cpo_id, {"READY"})
        temporal = await Client.connect(stack.temporal_address)
        handle = temporal.get_workflow_handle_for(CpoWorkflow.run, f"cpo-{cpo_id}")
        todo = iter(range(EXTENSIONS))
        started = time.monotonic()

        aborted = 0

        async def caller() -> None:
            nonlocal aborted
            for i in todo:
                while True:  # what a client does on a 503: retry the same update (same id)
                    try:
                        state = await handle.execute_update(
                            CpoWorkflow.extend_ttl, ExtendTtl(ttl_seconds=3600 + i % 600), id=f"ext-{i}"
                        )
                        break
                    except RPCError as exc:
                        # An update caught in flight by a continue-as-new is aborted by the server.
                        assert exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED), exc
                        aborted += 1
                assert state.status == CpoStatus.READY

        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        took = time.monotonic() - started
        print(f"{EXTENSIONS} extend_ttl updates in {took:.1f} s ({EXTENSIONS / took:.0f}/s), {aborted} retried")

        desc = await handle.describe()
        runs = 0
        async for _ in temporal.list_workflows(f"WorkflowId = 'cpo-{cpo_id}'"):
            runs += 1
        print(f"current run: {desc.history_length} events; {runs} runs in all")
        assert desc.history_length < 2500
        assert runs >= 2 * EXTENSIONS // 2000  # each update adds ≥ 2 events: the bound held by continuing as new
        status = (await c.get(f"/ocpi/cpos/{cpo_id}/status")).json()
        assert status["status"] == "READY" and status["expires_at"] is not None
        # Still fully alive after all those runs: DELETE tears it down.
        assert (await c.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 202
        await wait_status(c, cpo_id, {"DESTROYED"})
