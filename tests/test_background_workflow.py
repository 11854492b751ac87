"""BackgroundActivityWorkflow on Temporal's time-skipping server: it continues as new before its
history grows long (carrying its simulated clock and counts), its histories replay, and a cancel ends
it wherever it waits."""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from app.lifecycle.background import BackgroundCounts, BackgroundInput
from app.network.activity_profile import profile_for
from workflows.background import BackgroundActivityWorkflow

QUEUE = "background-tests"


async def test_continues_as_new_keeps_clock_and_counts_and_cancels() -> None:
    server = Path(sys.prefix) / "bin" / "temporal-test-server"
    profile = profile_for("small-urban-ac")
    assert profile is not None
    quiet = replace(profile, arrivals_per_hour=[0.0] * 24)  # no arrivals: only the ticks' timers
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    inp = BackgroundInput(
        1,
        4,
        60.0,
        quiet,
        sim_origin=origin,
        real_origin=origin,
        counts=BackgroundCounts(arrivals=3, started=2),
        max_history_events=12,
    )
    async with (
        await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(server)) as env,
        Worker(env.client, task_queue=QUEUE, workflows=[BackgroundActivityWorkflow]),
    ):
        handle = await env.client.start_workflow(
            BackgroundActivityWorkflow.run, inp, id=f"bg-{uuid.uuid4()}", task_queue=QUEUE
        )
        await env.sleep(120)  # 24 ticks of 5 s: several runs of ≤ 12 events
        latest = env.client.get_workflow_handle(handle.id)
        desc = await latest.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING and desc.run_id != handle.first_execution_run_id
        assert await latest.query(BackgroundActivityWorkflow.counts_so_far) == BackgroundCounts(arrivals=3, started=2)
        first = await env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id).fetch_history()
        assert len(first.events) <= 12 + 5  # the check runs once per tick (5 events)
        await Replayer(workflows=[BackgroundActivityWorkflow]).replay_workflow(first)
        await latest.cancel()
        with pytest.raises(WorkflowFailureError):
            await latest.result()
        assert (await latest.describe()).status == WorkflowExecutionStatus.CANCELED
