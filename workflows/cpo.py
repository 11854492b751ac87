"""CpoWorkflow: one durable workflow per CPO (id `cpo-{cpo_id}`) owning its whole lifecycle.

PENDING → PROVISIONING (plan from the seed, batched idempotent activities) → READY (durable TTL
timer, `destroy` / `extend_ttl` updates) → DESTROYING → DESTROYED; any non-retryable provisioning
failure compensates with the same teardown and ends FAILED; a cancellation of the workflow (Web UI,
`temporal workflow cancel`) runs the same teardown and ends DESTROYED. A READY CPO continues-as-new
when its history grows (10,000 TTL extensions stay bounded). Deterministic: no I/O, clock or
randomness outside `workflow.*`; the input is self-contained (the API resolved the template), so
nothing here reads the live catalog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

from workflows.bookkeeping import Bookkeeping
from workflows.live_chargers import DestroyRequested, LiveChargers
from workflows.teardown import WRITE_TIMEOUTS, run_teardown

with workflow.unsafe.imports_passed_through():
    from activities.provisioning import CPO_GONE, CPO_MISSING, NETWORK_MISMATCH, ProvisioningActivities
    from app.lifecycle.models import (
        CPO_DESTROY_SIGNAL,
        CPO_EXTEND_TTL_UPDATE,
        CPO_STATE_QUERY,
        CPO_WORKFLOW,
        STEPS,
        TERMINAL,
        BatchResult,
        CpoError,
        CpoState,
        CpoStatus,
        CpoWorkflowInput,
        ExtendTtl,
        LocationBatch,
        NetworkRequest,
        Progress,
        Resume,
        SmallNetwork,
        SmallNetworkResult,
        Step,
        WholeNetwork,
    )
    from app.lifecycle.pods import INLINE_POD_CHARGERS, pod_ranges
    from app.network.generator import NetworkShape, NetworkSpec
    from app.network.legacy import legacy_shape

# Provisioning writes: transient DB trouble (locks, restarts) is retried with backoff, bounded so a
# broken CPO ends FAILED within minutes instead of hanging; a missing CPO row is final.
WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=8,
    non_retryable_error_types=[CPO_MISSING, CPO_GONE],
)
MAX_PARALLEL_BATCHES = 4
# A network that fits one batch is written by one activity (`_provision_in_one_activity`); runs
# started before keep their five steps and per-step records.
PATCH_ONE_ACTIVITY = "small-network-in-one-activity"
# Live chargers: pods as child workflows and READY only once every charger is online. Runs started
# before called a no-op `start_charger_pods` activity (kept by name for their replay).
PATCH_LIVE_CHARGERS = "live-chargers"
# A small network in the fewest round trips (`_provision_lean`). One patch standing for the three
# above, whose markers such a run no longer records: each marker is also a search-attribute upsert.
PATCH_LEAN = "lean-small-network"
T = TypeVar("T")


def _legacy_shape(spec: NetworkSpec) -> NetworkShape:
    """Runs started before the input carried its shape derive it from the catalog (the only catalog
    read left). The data files are pinned and read-only, so this is deterministic; the sandbox blocks
    the file reads that pycountry does lazily, hence the unrestricted block."""
    with workflow.unsafe.sandbox_unrestricted():
        return legacy_shape(spec)


@workflow.defn(name=CPO_WORKFLOW)
class CpoWorkflow(Bookkeeping, LiveChargers):
    @workflow.init
    def __init__(self, inp: CpoWorkflowInput) -> None:
        self.inp = inp
        self.shape = inp.shape if inp.shape is not None else _legacy_shape(inp.spec)
        self.status = CpoStatus.PENDING if inp.resume is None else CpoStatus.READY
        self.progress: Progress | None = inp.resume.progress if inp.resume else None
        self.error: CpoError | None = None
        self.expires_at: datetime | None = inp.resume.expires_at if inp.resume else inp.expires_at
        self.provisioned_at: datetime | None = inp.resume.provisioned_at if inp.resume else None
        self.updated_at: datetime | None = None
        self.destroy_requested = False
        self.ttl_changed = False
        self.lean = False  # this run took the lean path (PATCH_LEAN); see Bookkeeping._record

    # ---- queries and updates -------------------------------------------------------------

    @workflow.query(name=CPO_STATE_QUERY)
    def state(self) -> CpoState:
        return CpoState(
            status=self.status,
            progress=self.progress,
            error=self.error,
            expires_at=self.expires_at,
            provisioned_at=self.provisioned_at,
            updated_at=self.updated_at,
        )

    @workflow.signal(name=CPO_DESTROY_SIGNAL)
    def request_destroy(self) -> None:
        """Fire-and-forget teardown (what DELETE sends): recorded even while no worker runs."""
        self.destroy_requested = True

    @workflow.update
    async def destroy(self) -> str:
        """Teardown that answers once the CPO is gone (for callers that want to wait)."""
        self.destroy_requested = True
        await workflow.wait_condition(lambda: self.status in TERMINAL)
        return self.status.value

    @workflow.update(name=CPO_EXTEND_TTL_UPDATE)
    async def extend_ttl(self, req: ExtendTtl) -> CpoState:
        self.expires_at = None if req.ttl_seconds is None else workflow.now() + timedelta(seconds=req.ttl_seconds)
        self.ttl_changed = True
        await self._record(set_expires_at=True)
        return self.state()

    @extend_ttl.validator
    def _validate_extend_ttl(self, req: ExtendTtl) -> None:
        if self.destroy_requested or self.status in (*TERMINAL, CpoStatus.DESTROYING):
            raise ValueError(f"CPO is {self.status.value}; its TTL can no longer change")
        if req.ttl_seconds is not None and not 60 <= req.ttl_seconds <= 604800:
            raise ValueError("ttl_seconds must be between 60 and 604800, or null")

    # ---- main -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: CpoWorkflowInput) -> str:
        try:
            if inp.resume is None:
                await self._provision()
            if not self.destroy_requested and await self._wait_for_expiry_or_destroy():
                await self._continue_as_new()
        except DestroyRequested:
            pass
        except BaseException as err:
            if is_cancelled_exception(err):
                # Cancellation asks for the CPO to go away: tear it down like a DELETE would.
                workflow.logger.info("CPO %s: workflow cancelled, tearing down", inp.cpo_id)
            elif isinstance(err, FailureError):
                await self._fail(err)
                await workflow.wait_condition(workflow.all_handlers_finished)
                raise ApplicationError(
                    f"provisioning failed: {self.error.message if self.error else err}",
                    type="ProvisioningFailed",
                    non_retryable=True,
                ) from err
            else:
                raise
        await self._teardown(CpoStatus.DESTROYED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status.value

    async def _continue_as_new(self) -> None:
        """Carry the READY state into a fresh run once every update in flight has answered."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        resume = Resume(progress=self.progress, expires_at=self.expires_at, provisioned_at=self.provisioned_at)
        workflow.continue_as_new(replace(self.inp, resume=resume))

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= self.inp.max_history_events

    async def _provision(self) -> None:
        shape = self.shape
        self.status = CpoStatus.PROVISIONING
        self.progress = Progress(
            steps_total=len(STEPS),
            steps_done=0,
            current_step=Step.CREATE_NETWORK.value,
            locations_total=shape.locations,
            locations_done=0,
            chargers_total=shape.chargers,
            chargers_done=0,
            chargers_online=0,
        )
        self._publish()
        if self._fits_one_batch() and workflow.patched(PATCH_LEAN):
            self.lean = True
            await self._provision_lean()
        else:
            await self._record()
            if self._fits_one_batch() and workflow.patched(PATCH_ONE_ACTIVITY):
                await self._provision_in_one_activity()
            else:
                await self._provision_in_batches()
            if workflow.patched(PATCH_LIVE_CHARGERS):
                await self._step(Step.START_CHARGER_PODS, self._start_pods(), record=False)
                await self._step(Step.WAIT_CHARGERS_ONLINE, self._wait_until_online(), record=False)
            else:
                await self._start_no_pods()
        assert self.progress is not None
        self.progress.current_step = None

        self.provisioned_at = workflow.now()
        await self._transition(CpoStatus.READY, provisioned=True)
        await self._start_background()

    async def _provision_lean(self) -> None:
        """A small network: one activity writes the PROVISIONING record, the whole network and its
        routing in one transaction and returns the chargers of its single pod, which then starts
        without planning itself. Per tiny CPO one activity (plan_pod), one local activity (the
        PROVISIONING record), one workflow task and two patch markers (each a search-attribute
        upsert) fewer than before (bench/bench_cost.py)."""
        assert self.progress is not None
        want = self._planned_counts()
        pods = pod_ranges(self.shape.locations, self.shape.chargers_per_location)
        after = replace(
            self.progress,
            steps_done=STEPS.index(Step.START_CHARGER_PODS),
            current_step=Step.START_CHARGER_PODS.value,
            locations_done=want.locations,
            chargers_done=want.chargers,
        )
        inline = len(pods) == 1 and self.shape.chargers <= INLINE_POD_CHARGERS
        got: SmallNetworkResult = await self._step(
            Step.CREATE_NETWORK,
            self._write(
                ProvisioningActivities.provision_small_network,
                SmallNetwork(self.inp.cpo_id, self.inp.spec, want, after, inline),
                "network",
            ),
            record=False,
        )
        self.progress.steps_done = after.steps_done
        self.progress.locations_done = got.counts.locations
        self.progress.chargers_done = got.counts.chargers
        await self._step(Step.START_CHARGER_PODS, self._start_pods(got.pod_chargers), record=False)
        await self._step(Step.WAIT_CHARGERS_ONLINE, self._wait_until_online(), record=False)

    async def _start_no_pods(self) -> None:
        """Replay of runs from before live chargers: a no-op activity that reported 0 online."""
        online = await self._step(
            Step.START_CHARGER_PODS,
            workflow.execute_activity(
                "start_charger_pods",
                NetworkRequest(self.inp.cpo_id, self.inp.spec),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=WRITE_TIMEOUTS["heartbeat_timeout"],
                retry_policy=WRITE_RETRY,
                summary="charger pods",
                result_type=int,
            ),
            record=not workflow.patched(PATCH_ONE_ACTIVITY),
        )
        assert self.progress is not None
        self.progress.chargers_online = online

    def _fits_one_batch(self) -> bool:
        return self.shape.locations <= self._locations_per_batch()

    def _locations_per_batch(self) -> int:
        return max(1, self.inp.batch_chargers // max(1, self.shape.chargers_per_location))

    async def _provision_in_one_activity(self) -> None:
        """Network, locations, routing and the count check as one activity in one transaction: for a
        small network the round trips, not the rows, were the cost (bench/bench_cost.py). The row is
        not written between the steps (no one could see the intermediate record: the status endpoint
        asks the workflow while it provisions); the READY record carries the final progress."""
        want = self._planned_counts()
        got: BatchResult = await self._step(
            Step.CREATE_NETWORK,
            self._write(
                ProvisioningActivities.provision_network, WholeNetwork(self.inp.cpo_id, self.inp.spec, want), "network"
            ),
            record=False,
        )
        assert self.progress is not None
        self.progress.steps_done = STEPS.index(Step.START_CHARGER_PODS)
        self.progress.locations_done = got.locations
        self.progress.chargers_done = got.chargers

    async def _provision_in_batches(self) -> None:
        await self._step(
            Step.CREATE_NETWORK,
            self._write(
                ProvisioningActivities.create_network, NetworkRequest(self.inp.cpo_id, self.inp.spec), "tariffs"
            ),
        )

        def on_locations(result: BatchResult) -> None:
            assert self.progress is not None
            self.progress.locations_done += result.locations
            self.progress.chargers_done += result.chargers

        await self._step(
            Step.CREATE_LOCATIONS,
            self._batches(ProvisioningActivities.create_location_batch, "locations", on_locations),
        )
        await self._step(
            Step.REGISTER_ROUTING, self._batches(ProvisioningActivities.register_routing_batch, "routing", None)
        )
        await self._verify_counts()

    async def _step(self, step: Step, work: Awaitable[T], *, record: bool = True) -> T:
        """Run one provisioning step; a destroy that arrived meanwhile stops provisioning here."""
        assert self.progress is not None
        self.progress.current_step = step.value
        self._publish()
        result = await work
        self.progress.steps_done += 1
        if self.destroy_requested:
            raise DestroyRequested
        if record:
            await self._record()
        return result

    def _write(self, fn: Callable[..., Any], arg: Any, summary: str) -> Awaitable[Any]:
        return workflow.execute_activity_method(fn, arg, retry_policy=WRITE_RETRY, summary=summary, **WRITE_TIMEOUTS)

    async def _batches(
        self, fn: Callable[..., Any], label: str, on_result: Callable[[BatchResult], None] | None
    ) -> None:
        """Locations in batches of ~batch_chargers chargers, a few in flight at once.

        Failures are collected per batch (gather with return_exceptions) so no sibling's result is
        lost; compensation deletes by cpo_id anyway, so nothing half-written can leak.
        """
        per_batch = self._locations_per_batch()
        ranges = [(s, min(s + per_batch, self.shape.locations)) for s in range(0, self.shape.locations, per_batch)]
        for i in range(0, len(ranges), MAX_PARALLEL_BATCHES):
            window = ranges[i : i + MAX_PARALLEL_BATCHES]
            results = await asyncio.gather(
                *[
                    self._write(fn, LocationBatch(self.inp.cpo_id, self.inp.spec, a, b), f"{label} [{a}, {b})")
                    for a, b in window
                ],
                return_exceptions=True,
            )
            for res in results:
                if isinstance(res, BaseException):
                    raise res
                if on_result is not None:
                    on_result(res)
            self._publish()
            if self.destroy_requested:
                raise DestroyRequested

    async def _verify_counts(self) -> None:
        """Never report READY over a network that differs from the plan (no duplicates, no gaps)."""
        got = await self._write(ProvisioningActivities.count_network, self.inp.cpo_id, "verify counts")
        want = self._planned_counts()
        if got != want:
            raise ApplicationError(
                f"network rows {got} differ from the plan {want}", type=NETWORK_MISMATCH, non_retryable=True
            )

    def _planned_counts(self) -> BatchResult:
        shape = self.shape
        return BatchResult(
            locations=shape.locations, chargers=shape.chargers, evses=shape.evses, connectors=shape.connectors
        )

    async def _wait_for_expiry_or_destroy(self) -> bool:
        """Until the TTL expires or a destroy arrives (False), or the history is long enough to
        continue as new (True)."""
        while not self.destroy_requested:
            if self._history_is_long():
                return True
            self.ttl_changed = False
            wake = lambda: self.destroy_requested or self.ttl_changed or self._history_is_long()  # noqa: E731
            if self.expires_at is None:
                await workflow.wait_condition(wake)
                continue
            remaining = (self.expires_at - workflow.now()).total_seconds()
            if remaining <= 0:
                return False
            try:
                await workflow.wait_condition(wake, timeout=remaining, timeout_summary="ttl")
            except TimeoutError:
                return False
        return False

    async def _fail(self, err: FailureError) -> None:
        cause = err.cause if isinstance(err, ActivityError) and err.cause is not None else err
        non_retryable = isinstance(cause, ApplicationError) and (cause.non_retryable or cause.type == CPO_MISSING)
        code = cause.type if isinstance(cause, ApplicationError) and cause.type else type(cause).__name__
        self.error = CpoError(
            code=code,
            message=cause.message or str(cause),
            retryable=not non_retryable,
            step=self.progress.current_step if self.progress else None,
        )
        workflow.logger.warning("CPO %s failed at %s: %s", self.inp.cpo_id, self.error.step, self.error.message)
        await self._teardown(CpoStatus.FAILED)

    async def _teardown(self, final: CpoStatus) -> None:
        """Stop pods, delete everything the CPO owns (idempotent), then mark the final state.

        Every step is idempotent, so a cancellation that lands mid-teardown just runs it again: a
        cancel asks for exactly this, and the CPO must never be left half torn down.
        """
        while True:
            try:
                await self._teardown_steps(final)
                return
            except BaseException as err:
                if not is_cancelled_exception(err):
                    raise
                workflow.logger.info("CPO %s: cancelled during teardown, finishing it", self.inp.cpo_id)

    async def _teardown_steps(self, final: CpoStatus) -> None:
        if final == CpoStatus.DESTROYED and self.status != CpoStatus.DESTROYING:
            await self._transition(CpoStatus.DESTROYING)
        await run_teardown(self.inp.cpo_id)
        await self._transition(final, destroyed=True)
