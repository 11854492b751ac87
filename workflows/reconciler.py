"""ReconcilerWorkflow: one pass of the lifecycle reconciler, started by the `cpolab-reconciler`
Temporal Schedule (every `CPOLAB_RECONCILE_INTERVAL` seconds, overlapping runs skipped)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities
    from app.lifecycle.models import ReconcileInput, ReconcileReport


@workflow.defn
class ReconcilerWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileReport:
        return await workflow.execute_activity_method(
            ReconcileActivities.reconcile,
            inp,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=30),
            # The next scheduled run retries anyway; a few attempts ride out a short DB or Temporal blip.
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)),
        )
