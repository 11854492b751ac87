"""How CpoWorkflow makes its state seen: the queried state, the Web UI's details and search
attribute, and the CPO's database row (the status endpoint's fallback and the list filter).

A mixin so workflows/cpo.py keeps to the lifecycle itself; deterministic like the workflow."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

from workflows.teardown import CLEANUP_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.provisioning import ProvisioningActivities
    from app.lifecycle.models import SA_STATE, CpoError, CpoStatus, CpoWorkflowInput, Progress, StatusRecord

PATCH_LOCAL_STATUS = "status-records-as-local-activities"


class Bookkeeping:
    inp: CpoWorkflowInput
    status: CpoStatus
    progress: Progress | None
    error: CpoError | None
    expires_at: datetime | None
    provisioned_at: datetime | None
    updated_at: datetime | None
    lean: bool

    def _publish(self) -> None:
        """Progress for the Web UI: free markdown details + one search-attribute upsert per change."""
        self.updated_at = workflow.now()
        p = self.progress
        detail = f"**{self.status.value}**"
        if p is not None:
            detail += (
                f" — step {p.steps_done}/{p.steps_total} `{p.current_step or '-'}`, "
                f"locations {p.locations_done}/{p.locations_total}, chargers {p.chargers_done}/{p.chargers_total}"
            )
        if self.error is not None:
            detail += f"\n\nerror `{self.error.code}` at `{self.error.step}`: {self.error.message}"
        workflow.set_current_details(detail)
        if workflow.info().typed_search_attributes.get(SA_STATE) != self.status.value:
            workflow.upsert_search_attributes([SA_STATE.value_set(self.status.value)])

    async def _transition(self, status: CpoStatus, *, provisioned: bool = False, destroyed: bool = False) -> None:
        """Database first, then the queried state: whoever sees the new status via the query also
        sees it in the row (GET, DELETE), never the other way round."""
        await self._record(status, provisioned=provisioned, destroyed=destroyed)
        self.status = status
        self._publish()

    async def _record(
        self,
        status: CpoStatus | None = None,
        *,
        provisioned: bool = False,
        destroyed: bool = False,
        set_expires_at: bool = False,
    ) -> None:
        status = status or self.status
        rec = StatusRecord(
            cpo_id=self.inp.cpo_id,
            status=status,
            progress=self.progress,
            error=self.error,
            provisioned_at=self.provisioned_at if provisioned else None,
            destroyed_at=workflow.now() if destroyed and status == CpoStatus.DESTROYED else None,
            expires_at=self.expires_at,
            set_expires_at=set_expires_at,
        )
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=30),
            "retry_policy": CLEANUP_RETRY,
            "summary": f"status {status.value}",
        }
        # A local activity: a single-row UPDATE needs no task-queue round trip, and the six status
        # records per CPO were a third of the server's work per create (bench/bench_create.py).
        # Runs started before this change keep their regular activities (patch marker).
        # A lean run (workflows/cpo.py, PATCH_LEAN) implies this patch without recording its marker.
        if self.lean or workflow.patched(PATCH_LOCAL_STATUS):
            await workflow.execute_local_activity_method(ProvisioningActivities.record_status, rec, **options)
        else:
            await workflow.execute_activity_method(ProvisioningActivities.record_status, rec, **options)
