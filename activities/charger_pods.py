"""The CPO side of the charger pods (task queue `provisioning`, DB and Temporal client at hand):
what a pod hosts, how many chargers are online, and stopping every pod of a CPO at teardown.

The pods themselves run on the sim workers (activities/charger_runtime.py), which need neither the
database nor the generator: a pod's input lists its chargers.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.background import stop_background
from activities.heartbeat import heartbeating
from activities.pod_plan import sim_chargers
from activities.provisioning import load_blueprint
from app.lifecycle.pods import OnlineCount, OnlineWait, PodInput, SimChargerSpec, pod_workflow_id
from app.network.blueprint import Blueprint
from app.network.generator import generate_locations
from app.store.db import Database
from app.store.tables import Charger

ONLINE = "ONLINE"
POLL_S = 0.25
RPC_TIMEOUT = timedelta(seconds=10)
# Report movement at most every 2 s: a bounded history while thousands of chargers come online.
MIN_REPORT_S = 2.0


def pod_chargers(inp: PodInput, bp: Blueprint) -> list[SimChargerSpec]:
    """The chargers of one pod, from the generated plan (pure: the same input gives the same list)."""
    return sim_chargers(generate_locations(inp.spec, bp, inp.location_start, inp.location_stop))


class PodActivities:
    def __init__(self, db: Database, client: Client) -> None:
        self.db = db
        self.client = client

    @activity.defn
    async def plan_pod(self, inp: PodInput) -> list[SimChargerSpec]:
        """What one pod hosts (run here, beside the DB, so sim workers need neither it nor the generator)."""
        async with heartbeating():
            bp = await load_blueprint(self.db, inp.cpo_id, inp.spec)
            return pod_chargers(inp, bp)

    @activity.defn
    async def await_chargers_online(self, wait: OnlineWait) -> OnlineCount:
        """Polls the CSMS's view (charger.status) until the count moves or reaches the total, at most
        `max_wait_seconds`: the workflow sees progress every few seconds without a signal per charger."""
        started = time.monotonic()
        async with heartbeating():
            while True:
                online = await self._online(wait.cpo_id)
                waited = time.monotonic() - started
                moved = online != wait.seen and waited >= MIN_REPORT_S
                if online >= wait.total or moved or waited >= wait.max_wait_seconds:
                    break
                await asyncio.sleep(POLL_S)
            sample: list[str] = []
            if online < wait.total:
                async with self.db.session() as session:
                    rows = await session.execute(
                        select(Charger.identity)
                        .where(Charger.cpo_id == wait.cpo_id, Charger.status != ONLINE)
                        .order_by(Charger.identity)
                        .limit(5)
                    )
                    sample = list(rows.scalars())
        return OnlineCount(online=online, not_online_sample=sample)

    async def _online(self, cpo_id: int) -> int:
        async with self.db.session() as session:
            stmt = select(func.count()).select_from(Charger).where(Charger.cpo_id == cpo_id, Charger.status == ONLINE)
            return int((await session.execute(stmt)).scalar_one())

    @activity.defn
    async def stop_charger_pods(self, cpo_id: int) -> int:
        """Cancel the CPO's background activity, then every pod of the CPO, and wait until each has
        closed (idempotent)."""
        async with heartbeating():
            await stop_background(self.client, cpo_id)
            return await stop_pods(self.client, cpo_id)


async def stop_pods(client: Client, cpo_id: int) -> int:
    """Cancel every pod workflow of the CPO, then wait until each has closed (its chargers have
    disconnected). All are cancelled before any is waited for: a pod learns of its cancellation only
    at its next heartbeat (up to HEARTBEAT_S of activities/charger_runtime.py), and one pod at a time
    a 10,000-charger CPO (20 pods) spent ~20 such waits tearing down. Pods are numbered from 0 without
    gaps, so the first unknown id ends the scan. Closed pods are skipped. Returns how many pods were
    running."""
    running = []
    index = 0
    while True:
        handle = client.get_workflow_handle(pod_workflow_id(cpo_id, index))
        try:
            desc = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                break
            raise
        if desc.status == WorkflowExecutionStatus.RUNNING:
            await handle.cancel(rpc_timeout=RPC_TIMEOUT)
            running.append(handle)
        index += 1
    # Every wait runs to its end before an error is raised, so none is left behind in this worker.
    outcomes = await asyncio.gather(*(_closed(handle) for handle in running), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return len(running)


async def _closed(handle: WorkflowHandle[Any, Any]) -> None:
    with suppress(WorkflowFailureError):  # it ends cancelled: what was asked
        await handle.result(follow_runs=True)
