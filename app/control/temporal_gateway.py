"""The API's view of Temporal: lazy connection, workflow start, status query, destroy signal.

The API must stay up (and answer 503 quickly) while Temporal is down, so the client connects
lazily and every call has a short RPC timeout.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from app.lifecycle.models import (
    SA_CPO_ID,
    SA_ORG,
    SA_STATE,
    SA_TEMPLATE,
    CpoState,
    CpoStatus,
    CpoWorkflowInput,
    ExtendTtl,
    workflow_id,
)
from app.settings import Settings
from workflows.cpo import CpoWorkflow

STATE_TTL_S = 0.25  # how long one workflow query answers every poller of that CPO


class BackendUnavailable(Exception):
    """Temporal could not be reached (or did not answer in time)."""


class TtlRejected(Exception):
    """The workflow refused a TTL change (the CPO is being torn down or is gone)."""


class TemporalGateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._queries: dict[int, asyncio.Future[CpoState | None]] = {}
        self._states: dict[int, tuple[float, CpoState | None]] = {}

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await Client.connect(
                            self.settings.temporal_address, namespace=self.settings.temporal_namespace, lazy=True
                        )
                    except Exception as exc:  # bad address syntax, TLS setup…
                        raise BackendUnavailable(str(exc)) from exc
        return self._client

    @property
    def _rpc_timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.temporal_rpc_timeout)

    async def start(self, inp: CpoWorkflowInput, template: str) -> str:
        """Start `cpo-{id}`; returns the run id. Raises BackendUnavailable on any transport failure."""
        client = await self.client()
        try:
            handle = await client.start_workflow(
                CpoWorkflow.run,
                inp,
                id=workflow_id(inp.cpo_id),
                task_queue=self.settings.task_queue,
                # cpo ids are never reused, so a second start of the same id is always a bug.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(SA_ORG, inp.org),
                        SearchAttributePair(SA_TEMPLATE, template),
                        SearchAttributePair(SA_STATE, CpoStatus.PENDING.value),
                        SearchAttributePair(SA_CPO_ID, inp.cpo_id),
                    ]
                ),
                static_summary=f"CPO {inp.cpo_id} {inp.spec.country_code}*{inp.spec.party_id} ({template})",
                rpc_timeout=self._rpc_timeout,
            )
        except RPCError as exc:
            raise BackendUnavailable(f"{exc.status.name}: {exc.message}") from exc
        except (TimeoutError, RuntimeError) as exc:
            raise BackendUnavailable(str(exc)) from exc
        return handle.result_run_id or ""

    async def forget(self, cpo_id: int) -> None:
        """Best effort after a failed start whose outcome is unknown (the RPC may have landed)."""
        try:
            handle = (await self.client()).get_workflow_handle(workflow_id(cpo_id))
            await handle.terminate(
                "API could not confirm the start; CPO creation was rolled back", rpc_timeout=self._rpc_timeout
            )
        except Exception:
            pass

    def _handle(self, client: Client, cpo_id: int) -> WorkflowHandle:
        return client.get_workflow_handle_for(CpoWorkflow.run, workflow_id(cpo_id))

    async def query_state(self, cpo_id: int) -> CpoState | None:
        """Live state from the running workflow, or None (closed, no worker, Temporal down).

        Hundreds of clients poll the same CPO: concurrent polls share one in-flight query and its
        answer is reused for STATE_TTL_S, so the worker answers a few queries per CPO per second.
        """
        now = time.monotonic()
        cached = self._states.get(cpo_id)
        if cached is not None and now - cached[0] < STATE_TTL_S:
            return cached[1]
        task = self._queries.get(cpo_id)
        if task is None:
            task = asyncio.ensure_future(self._query_state(cpo_id))
            self._queries[cpo_id] = task
            task.add_done_callback(lambda done: self._remember(cpo_id, done))
        return await asyncio.shield(task)

    def _remember(self, cpo_id: int, done: asyncio.Future[CpoState | None]) -> None:
        self._queries.pop(cpo_id, None)
        now = time.monotonic()
        if len(self._states) > 10_000:  # forget CPOs nobody polled lately
            self._states = {k: v for k, v in self._states.items() if now - v[0] < STATE_TTL_S}
        if not done.cancelled():
            self._states[cpo_id] = (now, done.result())

    async def _query_state(self, cpo_id: int) -> CpoState | None:
        try:
            handle = self._handle(await self.client(), cpo_id)
            return await handle.query(
                CpoWorkflow.state, rpc_timeout=timedelta(seconds=self.settings.status_query_timeout)
            )
        except Exception:
            return None

    async def extend_ttl(self, cpo_id: int, ttl_seconds: int | None) -> CpoState:
        """Run the workflow's `extend_ttl` update. Raises TtlRejected when the CPO can no longer change
        (torn down, failed, or the workflow has closed) and BackendUnavailable on transport trouble."""
        try:
            handle = self._handle(await self.client(), cpo_id)
            return await handle.execute_update(
                CpoWorkflow.extend_ttl, ExtendTtl(ttl_seconds=ttl_seconds), rpc_timeout=self._rpc_timeout
            )
        except WorkflowUpdateFailedError as exc:
            raise TtlRejected(str(exc.cause or exc)) from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TtlRejected("the CPO's workflow has already finished") from exc
            raise BackendUnavailable(f"{exc.status.name}: {exc.message}") from exc

    async def request_destroy(self, cpo_id: int) -> bool:
        """Signal teardown (durable even if no worker is up). False when the workflow already closed."""
        try:
            handle = self._handle(await self.client(), cpo_id)
            await handle.signal(CpoWorkflow.request_destroy, rpc_timeout=self._rpc_timeout)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise BackendUnavailable(f"{exc.status.name}: {exc.message}") from exc
        return True
