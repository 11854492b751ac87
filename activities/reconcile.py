"""The reconciler's activity: every CPO row is either live with a running workflow, or torn down.

It repairs what no workflow can: rows whose workflow never started (the API died between the
INSERT and the start), creates whose workflow started but whose 202 was never sent (the API died
before recording the run id), and rows whose workflow closed without a teardown (terminated, or
lost with a reset namespace). Runs from a Temporal Schedule (see worker.py), so it is itself durable.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.heartbeat import heartbeating
from app.lifecycle.client import start_teardown
from app.lifecycle.models import TERMINAL, CpoStatus, ReconcileInput, ReconcileReport, workflow_id
from app.store.db import Database, delete_owned_rows, utcnow
from app.store.tables import Cpo
from workflows.cpo import CpoWorkflow

log = logging.getLogger("cpolab.reconciler")
NOT_TERMINAL = [s.value for s in CpoStatus if s not in TERMINAL]
RPC_TIMEOUT = timedelta(seconds=10)


class ReconcileActivities:
    def __init__(self, db: Database, client: Client, task_queue: str) -> None:
        self.db = db
        self.client = client
        self.task_queue = task_queue

    @activity.defn
    async def reconcile(self, inp: ReconcileInput) -> ReconcileReport:
        report = ReconcileReport()
        cutoff = utcnow() - timedelta(seconds=inp.grace_seconds)
        async with heartbeating():
            async with self.db.session() as session:
                rows = (
                    await session.execute(
                        select(Cpo.id, Cpo.status, Cpo.workflow_run_id).where(
                            Cpo.status.in_(NOT_TERMINAL),  # type: ignore[attr-defined]
                            Cpo.created_at < cutoff,
                        )
                    )
                ).all()
            running = await self._running_ids()
            for cpo_id, status, run_id in rows:
                if workflow_id(cpo_id) in running:
                    unanswered = run_id is None and status != CpoStatus.DESTROYING  # (signalled already)
                    if unanswered and await self._never_answered(cpo_id, cutoff):
                        report.unanswered_destroyed.append(cpo_id)
                    continue
                state = await self._describe(cpo_id)
                if state == WorkflowExecutionStatus.RUNNING:
                    continue  # visibility lagged behind; the next pass sees it running
                if state is None and status == CpoStatus.PENDING and run_id is None:
                    if await self._remove_orphan(cpo_id):
                        report.orphans_removed.append(cpo_id)
                else:
                    why = "workflow never started" if state is None else f"workflow {state.name.lower()}"
                    await start_teardown(self.client, self.task_queue, cpo_id, f"reconciler: {why}")
                    report.teardowns_started.append(cpo_id)
        if report.orphans_removed or report.teardowns_started or report.unanswered_destroyed:
            log.warning(
                "reconciler: removed orphans %s, started teardowns %s, destroyed unanswered creates %s",
                report.orphans_removed,
                report.teardowns_started,
                report.unanswered_destroyed,
            )
        return report

    async def _running_ids(self) -> set[str]:
        """Open CPO workflows per visibility (a cheap first pass; `_describe` confirms the rest)."""
        query = "WorkflowType = 'CpoWorkflow' AND ExecutionStatus = 'Running'"
        return {wf.id async for wf in self.client.list_workflows(query, rpc_timeout=RPC_TIMEOUT)}

    async def _never_answered(self, cpo_id: int, cutoff: datetime) -> bool:
        """A running workflow whose row never got its run id, started before `cutoff`: the API died
        between starting it and recording the run id, and it answers 202 only after that record, so
        nobody holds this CPO's id or Token A (issued once, in the 202). Nobody can use or delete it,
        so it is destroyed like a DELETE would (the workflow tears itself down)."""
        handle = self.client.get_workflow_handle(workflow_id(cpo_id))
        desc = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        if desc.status != WorkflowExecutionStatus.RUNNING or desc.start_time >= cutoff:
            return False  # closed meanwhile (the next pass handles it), or the API may still record it
        await handle.signal(CpoWorkflow.request_destroy, rpc_timeout=RPC_TIMEOUT)
        return True

    async def _describe(self, cpo_id: int) -> WorkflowExecutionStatus | None:
        try:
            desc = await self.client.get_workflow_handle(workflow_id(cpo_id)).describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return desc.status

    async def _remove_orphan(self, cpo_id: int) -> bool:
        """The API died before starting the workflow: nobody got a 202, so the row, its Token A and
        its party reservation go, in one transaction (a late start then finds no row and fails)."""
        async with self.db.session() as session, session.begin():
            cpo = await session.get(Cpo, cpo_id)
            if cpo is None or cpo.status != CpoStatus.PENDING or cpo.workflow_run_id is not None:
                return False  # it moved on meanwhile
            await delete_owned_rows(session, cpo_id)
            await session.delete(cpo)
        return True
