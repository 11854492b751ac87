"""Workflow starts shared by the API and the reconciler (both hold a Temporal client)."""

from __future__ import annotations

from contextlib import suppress

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from app.lifecycle.models import TEARDOWN_WORKFLOW, TeardownInput, teardown_workflow_id


async def start_teardown(client: Client, task_queue: str, cpo_id: int, reason: str) -> None:
    """Tear down a CPO whose own workflow is gone. Idempotent: one teardown workflow per CPO, a second
    call while it runs attaches to it, and one after it finished is a no-op (the row is terminal)."""
    with suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            TEARDOWN_WORKFLOW,
            TeardownInput(cpo_id=cpo_id, reason=reason),
            id=teardown_workflow_id(cpo_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"teardown of CPO {cpo_id}: {reason}",
        )
