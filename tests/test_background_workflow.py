"""BackgroundActivityWorkflow on Temporal's time-skipping server: it continues as new before its
history grows long (carrying its simulated clock, counts and warm-up), its histories replay, a cancel
ends it wherever it waits, and the parked drivers are placed once, as soon as the eMSP has tokens."""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from app.lifecycle.background import BackgroundCounts, BackgroundInput, WarmUp, WarmUpResult
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
        warmed=True,  # its parked drivers were placed: only the ticks' timers
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


async def test_warm_up_polls_until_the_emsp_has_tokens_then_never_again() -> None:
    """The warm-up activity answers "no tokens" twice: the workflow looks again after 5 s then 10 s
    (not a whole 60 s tick at scale 1), adds the third answer's counts, and never warms up again, not
    even after continuing as new."""
    server = Path(sys.prefix) / "bin" / "temporal-test-server"
    profile = profile_for("stress-10k")
    assert profile is not None
    quiet = replace(profile, arrivals_per_hour=[0.0] * 24)
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    calls: list[WarmUp] = []

    @activity.defn(name="warm_up")
    async def warm_up(warm: WarmUp) -> WarmUpResult:
        calls.append(warm)
        return WarmUpResult(BackgroundCounts(arrivals=5, started=4, busy=1), tokens=len(calls) >= 3)

    inp = BackgroundInput(1, 40, 1.0, quiet, sim_origin=origin, real_origin=origin, max_history_events=30)
    async with (
        await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(server)) as env,
        Worker(env.client, task_queue=QUEUE, workflows=[BackgroundActivityWorkflow], activities=[warm_up]),
    ):
        handle = await env.client.start_workflow(
            BackgroundActivityWorkflow.run, inp, id=f"bg-{uuid.uuid4()}", task_queue=QUEUE
        )
        await env.sleep(16)
        assert len(calls) == 3
        gaps = [b.sim_at - a.sim_at for a, b in pairwise(calls)]
        assert gaps == [pytest.approx(5.0, abs=0.5), pytest.approx(10.0, abs=0.5)]
        assert len({c.batch_id for c in calls}) == 3 and len({c.seed for c in calls}) == 3
        await env.sleep(1200)  # 20 ticks of 60 s: more than one run of ≤ 30 events
        latest = env.client.get_workflow_handle(handle.id)
        assert (await latest.describe()).run_id != handle.first_execution_run_id
        assert len(calls) == 3
        counts = await latest.query(BackgroundActivityWorkflow.counts_so_far)
        assert counts == BackgroundCounts(arrivals=5, started=4, busy=1)
        first = await env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id).fetch_history()
        await Replayer(workflows=[BackgroundActivityWorkflow]).replay_workflow(first)
        await latest.cancel()
