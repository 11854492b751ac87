"""BackgroundActivityWorkflow (`cpo-{id}-background`): a CPO's own traffic, started by its CpoWorkflow
once READY when the CPO was created with `simulation.background_activity`.

Once the eMSP has pushed tokens, it first places the drivers already parked (the steady state of the
simulated hour, part-way through their stays: `warm_up`), so the network looks mid-day at once
rather than filling up over hours at scale 1. Every tick it draws the drivers who arrive in the next
tick of simulated time (Poisson, the template's hourly rate per EVSE,
app/network/activity_profile.py) and hands them to one activity that starts their sessions through
the control plane's path (activities/background.py): `start` with a target energy and a stay (the
expected charging time plus a sampled idle time after full), after which the simulated driver stops
and unplugs. Deterministic: randomness from workflow.random(), time from workflow.now(); the
simulated clock is origin + (now − origin) × time_scale, like the chargers'. Continues as new before
its history grows long; teardown cancels it (activities/background.py stop_background), which ends
it wherever it waits.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.background import BackgroundActivities
    from app.lifecycle.background import (
        Arrival,
        ArrivalBatch,
        BackgroundCounts,
        BackgroundInput,
        WarmUp,
        WarmUpResult,
    )
    from app.network.activity_profile import draw_count, expected_arrivals

# Simulated seconds one tick covers, and the real bounds of a tick: short enough that arrivals are
# spread over the day, long enough that an idle CPO at scale 1 costs one timer a minute.
TICK_SIM_S = 300.0
TICK_REAL_MIN_S, TICK_REAL_MAX_S = 2.0, 60.0
MAX_ARRIVALS_PER_TICK = 500  # one activity's worth; more would find the EVSEs busy anyway
VISIT_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
WARM_UP_PATCH = "warm-up"  # runs begun before the warm-up existed replay without it
WARM_UP_POLL_S = 5.0


def tick_seconds(time_scale: float) -> float:
    """Real seconds per tick."""
    return min(TICK_REAL_MAX_S, max(TICK_REAL_MIN_S, TICK_SIM_S / time_scale))


def _add(total: BackgroundCounts, more: BackgroundCounts) -> None:
    for name in ("arrivals", "started", "busy", "no_token", "failed"):
        setattr(total, name, getattr(total, name) + getattr(more, name))


@workflow.defn
class BackgroundActivityWorkflow:
    @workflow.init
    def __init__(self, inp: BackgroundInput) -> None:
        self.inp = inp
        self.counts = inp.counts
        self.warmed = inp.warmed

    @workflow.query
    def counts_so_far(self) -> BackgroundCounts:
        return self.counts

    def _sim_now(self, origin_sim: datetime, origin_real: datetime) -> float:
        return origin_sim.timestamp() + (workflow.now() - origin_real).total_seconds() * self.inp.time_scale

    @workflow.run
    async def run(self, inp: BackgroundInput) -> None:
        origin_real = inp.real_origin or workflow.now()
        origin_sim = inp.sim_origin or origin_real
        rng = workflow.random()
        tick_real = tick_seconds(inp.time_scale)
        run_id = workflow.info().run_id
        tick = 0
        while True:
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() >= inp.max_history_events:
                workflow.continue_as_new(
                    replace(inp, sim_origin=origin_sim, real_origin=origin_real, counts=self.counts, warmed=self.warmed)
                )
            pause = tick_real
            if not self.warmed and workflow.patched(WARM_UP_PATCH):
                warm = WarmUp(
                    inp.cpo_id,
                    f"bg-{inp.cpo_id}-{run_id}-{tick}-warm",
                    inp.profile,
                    self._sim_now(origin_sim, origin_real),
                    rng.getrandbits(62),
                )
                await self._warm_up(warm)
                # Until the eMSP's tokens come, look again soon (5 s, doubling up to a tick).
                pause = tick_real if self.warmed else min(tick_real, WARM_UP_POLL_S * 2 ** min(tick, 8))
            mean = expected_arrivals(
                inp.profile, inp.evses, self._sim_now(origin_sim, origin_real), pause * inp.time_scale
            )
            count = min(MAX_ARRIVALS_PER_TICK, draw_count(rng, mean))
            arrivals = [Arrival(rng.randrange(max(1, inp.evses)), rng.getrandbits(62)) for _ in range(count)]
            if arrivals:
                await self._visit(ArrivalBatch(inp.cpo_id, f"bg-{inp.cpo_id}-{run_id}-{tick}", inp.profile, arrivals))
            tick += 1
            await workflow.sleep(pause, summary="next tick")

    async def _warm_up(self, warm: WarmUp) -> None:
        """Placed once the eMSP has tokens; tried again each tick until then. A failed warm-up is given
        up (the traffic fills the EVSEs anyway), never retried forever."""
        try:
            done: WarmUpResult = await workflow.execute_activity_method(
                BackgroundActivities.warm_up,
                warm,
                start_to_close_timeout=timedelta(seconds=120),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=VISIT_RETRY,
                summary="drivers already parked",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):  # teardown: stop here
                raise
            workflow.logger.warning("CPO %s: background warm-up lost: %s", warm.cpo_id, err)
            self.warmed = True
            return
        if done.tokens:
            self.warmed = True
            _add(self.counts, done.counts)

    async def _visit(self, batch: ArrivalBatch) -> None:
        """One tick's drivers; a tick whose activity failed is lost (its drivers went away), not retried
        forever: the traffic goes on."""
        try:
            done: BackgroundCounts = await workflow.execute_activity_method(
                BackgroundActivities.start_visits,
                batch,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=VISIT_RETRY,
                summary=f"{len(batch.arrivals)} arrivals",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):  # teardown: stop here
                raise
            workflow.logger.warning("CPO %s: background tick lost: %s", batch.cpo_id, err)
            self.counts.arrivals += len(batch.arrivals)
            self.counts.failed += len(batch.arrivals)
            return
        _add(self.counts, done)
