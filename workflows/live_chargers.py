"""How CpoWorkflow brings a CPO's chargers to life: the pod child workflows, the wait until every
charger is online (READY means online), and the CPO's background traffic.

A mixin so workflows/cpo.py keeps to the lifecycle itself; deterministic like the workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.charger_pods import PodActivities
    from app.lifecycle.background import BackgroundInput, background_workflow_id
    from app.lifecycle.models import CpoWorkflowInput, Progress
    from app.lifecycle.pods import (
        OnlineCount,
        OnlineWait,
        PodInput,
        SimChargerSpec,
        online_timeout,
        pod_ranges,
        pod_workflow_id,
    )
    from app.network.generator import NetworkShape
    from workflows.background import BackgroundActivityWorkflow
    from workflows.charger_pod import ChargerPodWorkflow

CHARGERS_OFFLINE = "ChargersOffline"


class DestroyRequested(Exception):
    """Raised inside provisioning when a destroy arrives, to stop and tear down what exists."""


class LiveChargers:
    inp: CpoWorkflowInput
    shape: NetworkShape
    progress: Progress | None
    destroy_requested: bool
    _publish: Callable[[], None]
    _write: Callable[[Callable[..., Any], Any, str], Awaitable[Any]]
    _step: Callable[..., Awaitable[Any]]

    async def _start_background(self) -> None:
        """The CPO's own traffic, if it was created with it: a child abandoned on close (it outlives this
        run's continue-as-new; teardown cancels it by id, stop_charger_pods)."""
        sim, profile = self.inp.simulation, self.inp.activity_profile
        if sim is None or not sim.background_activity or profile is None:
            return
        await workflow.start_child_workflow(
            BackgroundActivityWorkflow.run,
            BackgroundInput(self.inp.cpo_id, self.shape.evses, sim.time_scale, profile),
            id=background_workflow_id(self.inp.cpo_id),
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary="background activity",
        )

    async def _start_pods(self, chargers: list[SimChargerSpec] | None = None) -> None:
        """One child workflow per pod, abandoned on close: they outlive this run's continue-as-new,
        and teardown stops them by id (stop_charger_pods). `chargers`: the single pod's, if known."""
        shape = self.shape
        await asyncio.gather(
            *[
                workflow.start_child_workflow(
                    ChargerPodWorkflow.run,
                    PodInput(self.inp.cpo_id, self.inp.spec, n, start, stop, self._time_scale(), chargers),
                    id=pod_workflow_id(self.inp.cpo_id, n),
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=f"locations [{start}, {stop})",
                )
                for n, (start, stop) in enumerate(pod_ranges(shape.locations, shape.chargers_per_location))
            ]
        )

    def _time_scale(self) -> float:
        return self.inp.simulation.time_scale if self.inp.simulation is not None else 1.0

    async def _wait_until_online(self) -> None:
        """READY means online: every charger booted against the CSMS (as the CSMS records it).
        `progress.chargers_online` counts up meanwhile; a charger that cannot come online within the
        bound fails the CPO at this step with the identities that are missing."""
        assert self.progress is not None
        total = self.shape.chargers
        timeout = self.inp.online_timeout_seconds or online_timeout(total)
        deadline = workflow.now() + timedelta(seconds=timeout)
        while self.progress.chargers_online < total:
            remaining = (deadline - workflow.now()).total_seconds()
            got: OnlineCount = await self._write(
                PodActivities.await_chargers_online,
                OnlineWait(self.inp.cpo_id, total, self.progress.chargers_online, max(0.0, min(10.0, remaining))),
                "chargers online",
            )
            self.progress.chargers_online = got.online
            self._publish()
            if self.destroy_requested:
                raise DestroyRequested
            if got.online < total and workflow.now() >= deadline:
                missing = ", ".join(got.not_online_sample)
                raise ApplicationError(
                    f"{total - got.online} of {total} chargers did not come online within {timeout} s"
                    f" (not online: {missing}{', …' if total - got.online > len(got.not_online_sample) else ''})",
                    type=CHARGERS_OFFLINE,
                    non_retryable=True,
                )
