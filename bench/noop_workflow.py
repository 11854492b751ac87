"""The minimal Temporal baseline of bench_cost.py: one workflow that runs one no-op activity.

Bench-only (never registered in worker.py); bench/noop_worker.py serves it. Kept free of side
effects at import, as the workflow sandbox re-imports this module."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

TASK_QUEUE = "bench-noop"


@activity.defn
async def noop() -> None:
    """The cheapest activity there is: the round trip through the server is all it costs."""


@workflow.defn
class NoopWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
