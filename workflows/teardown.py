"""Teardown: the steps every path that removes a CPO shares, and the workflow that runs them for a
CPO whose own workflow can no longer (terminated, lost with a reset namespace, never started).

Idempotent end to end: stopping stopped pods and deleting deleted rows are no-ops, and the status
writes are guarded, so a row that already reached DESTROYED or FAILED stays as it is.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.charger_pods import PodActivities
    from activities.provisioning import CPO_MISSING, ProvisioningActivities
    from app.lifecycle.models import TEARDOWN_WORKFLOW, CpoStatus, StatusRecord, TeardownInput

# Teardown and status bookkeeping must eventually succeed: unbounded attempts, capped interval.
CLEANUP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[CPO_MISSING],
)
# The DB activities heartbeat every couple of seconds for as long as they work (a SQLite writer may
# wait up to 30 s for its lock), so a killed worker's batch is re-dispatched after 10 s, not after the
# full start-to-close timeout, and a slow but alive one is not retried on top of itself.
WRITE_TIMEOUTS = {
    "start_to_close_timeout": timedelta(seconds=120),
    "heartbeat_timeout": timedelta(seconds=10),
}


async def run_teardown(cpo_id: int) -> None:
    """Stop the charger pods (their chargers disconnect), then delete everything the CPO owns."""
    await workflow.execute_activity_method(
        PodActivities.stop_charger_pods,
        cpo_id,
        start_to_close_timeout=timedelta(minutes=2),
        # A worker killed while holding the task must not stall the teardown for the whole 2 min.
        heartbeat_timeout=WRITE_TIMEOUTS["heartbeat_timeout"],
        retry_policy=CLEANUP_RETRY,
        summary="stop charger pods",
    )
    await workflow.execute_activity_method(
        ProvisioningActivities.teardown_network,
        cpo_id,
        start_to_close_timeout=timedelta(minutes=5),
        heartbeat_timeout=WRITE_TIMEOUTS["heartbeat_timeout"],
        retry_policy=CLEANUP_RETRY,
        summary="delete network",
    )


@workflow.defn(name=TEARDOWN_WORKFLOW)
class CpoTeardownWorkflow:
    @workflow.run
    async def run(self, inp: TeardownInput) -> str:
        workflow.logger.info("CPO %s: teardown by the platform (%s)", inp.cpo_id, inp.reason)
        try:
            await self._record(StatusRecord(cpo_id=inp.cpo_id, status=CpoStatus.DESTROYING))
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and err.cause.type == CPO_MISSING:
                return "MISSING"  # nothing left to tear down
            raise
        await run_teardown(inp.cpo_id)
        await self._record(StatusRecord(cpo_id=inp.cpo_id, status=CpoStatus.DESTROYED, destroyed_at=workflow.now()))
        return CpoStatus.DESTROYED.value

    async def _record(self, rec: StatusRecord) -> None:
        await workflow.execute_local_activity_method(
            ProvisioningActivities.record_status,
            rec,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=CLEANUP_RETRY,
        )
