"""ChargerPodWorkflow (`cpo-{id}-pod-{n}`): one pod of a CPO's chargers, a child of the CPO workflow.

A child workflow, not an activity of the CPO workflow, so the CPO workflow can continue-as-new
without touching running pods (it starts them with ParentClosePolicy.ABANDON and teardown cancels
them by id). Its history is a handful of events for the pod's whole life: the plan, then one
activity whose retries (sim worker lost → heartbeat timeout → another sim worker) the server runs.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

from workflows.teardown import CLEANUP_RETRY, WRITE_TIMEOUTS

with workflow.unsafe.imports_passed_through():
    from activities.charger_pods import PodActivities
    from activities.charger_runtime import ChargerRuntime
    from app.lifecycle.pods import CHARGER_RUNTIME_QUEUE, PodInput, PodRun

# A pod must run for as long as its CPO lives: retried without limit, quickly (its chargers are
# offline meanwhile). Each attempt is bounded to a day, so a wedged sim worker cannot hold a pod
# forever; the retry reconnects the chargers under a new generation.
POD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10))
# How long a silent pod counts as alive. A sim worker booting hundreds of chargers at once on a
# loaded box can starve its event loop for seconds; a retry then would reboot them all again.
POD_HEARTBEAT_TIMEOUT = timedelta(seconds=20)


@workflow.defn
class ChargerPodWorkflow:
    @workflow.run
    async def run(self, inp: PodInput) -> None:
        # A small network's pod comes with its chargers (its input decides, so replay is unaffected).
        chargers = inp.chargers
        if chargers is None:
            chargers = await workflow.execute_activity_method(
                PodActivities.plan_pod, inp, retry_policy=CLEANUP_RETRY, summary="plan", **WRITE_TIMEOUTS
            )
        await workflow.execute_activity_method(
            ChargerRuntime.run_charger_pod,
            PodRun(inp.cpo_id, inp.index, chargers, inp.time_scale),
            task_queue=CHARGER_RUNTIME_QUEUE,
            start_to_close_timeout=timedelta(days=1),
            heartbeat_timeout=POD_HEARTBEAT_TIMEOUT,
            retry_policy=POD_RETRY,
            # Teardown waits for the pod's chargers to disconnect, not just for the request to land.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"{len(chargers)} chargers",
        )
