"""The API's view of Temporal: lazy connection, workflow start, status query, destroy, TTL update.

The API must stay up (and answer quickly) while Temporal is down: the client connects lazily, the
SDK's own retries are bounded, and every call runs under one overall deadline (`asyncio.timeout`),
so "Temporal unavailable" costs at most `temporal_rpc_timeout` (status: `status_query_timeout`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from enum import Enum
from typing import TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from app.lifecycle import temporal_client
from app.lifecycle.client import start_teardown
from app.lifecycle.models import (
    CPO_DESTROY_SIGNAL,
    CPO_EXTEND_TTL_UPDATE,
    CPO_STATE_QUERY,
    CPO_WORKFLOW,
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

log = logging.getLogger("cpolab.temporal")

STATE_TTL_S = 0.25  # how long one workflow query answers every poller of that CPO
LIVENESS_TTL_S = 5.0  # how long a "the workflow is running" answer is reused by the status endpoint
T = TypeVar("T")


class BackendUnavailable(Exception):
    """Temporal could not be reached (or did not answer in time)."""


class WorkflowIdTaken(Exception):
    """`cpo-{id}` already exists: this database and the Temporal namespace are out of step."""


class TtlRejected(Exception):
    """The workflow refused a TTL change (the CPO is being torn down or is gone)."""


class Liveness(Enum):
    RUNNING = "running"
    CLOSED = "closed"  # completed, failed, cancelled, terminated or timed out
    MISSING = "missing"  # never started, or deleted by retention / a reset namespace


class TemporalGateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._queries: dict[int, asyncio.Future[CpoState | None]] = {}
        self._states: dict[int, tuple[float, CpoState | None]] = {}
        self._running: dict[int, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    budget_ms = int(self.settings.temporal_rpc_timeout * 1000)
                    try:
                        self._client = await temporal_client.connect(
                            self.settings,
                            lazy=True,
                            # The SDK retries unavailable servers on its own; keep that inside our deadline.
                            retry_config=RetryConfig(max_retries=3, max_elapsed_time_millis=budget_ms),
                        )
                    except Exception as exc:  # bad address syntax, TLS setup…
                        raise BackendUnavailable(str(exc)) from exc
        return self._client

    @property
    def _rpc_timeout(self) -> timedelta:
        return timedelta(seconds=self.settings.temporal_rpc_timeout)

    async def _bounded(self, call: Awaitable[T], seconds: float | None = None) -> T:
        """One deadline for connect + RPC + the SDK's retries; transport trouble → BackendUnavailable."""
        try:
            async with asyncio.timeout(seconds or self.settings.temporal_rpc_timeout):
                return await call
        except TimeoutError as exc:
            raise BackendUnavailable("Temporal did not answer in time") from exc
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.ALREADY_EXISTS):
                raise
            raise BackendUnavailable(f"{exc.status.name}: {exc.message}") from exc
        except RuntimeError as exc:  # the SDK's "failed client connect" and friends
            raise BackendUnavailable(str(exc)) from exc

    async def start(self, inp: CpoWorkflowInput, template: str, timeout: float | None = None) -> str:
        """Start `cpo-{id}` within `timeout` s (default `temporal_rpc_timeout`); returns the run id.
        BackendUnavailable on transport trouble, WorkflowIdTaken when a workflow of that id already
        exists (a reset database reusing ids)."""

        async def _start() -> str:
            handle = await (await self.client()).start_workflow(
                CPO_WORKFLOW,
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
            return handle.result_run_id or ""

        try:
            return await self._bounded(_start(), timeout)
        except WorkflowAlreadyStartedError as exc:
            raise WorkflowIdTaken(str(exc)) from exc

    def forget(self, cpo_id: int) -> None:
        """After a start whose outcome is unknown (the RPC may have landed), terminate it in the
        background: the answer to the client must not wait for it, and a workflow that did start
        finds no row and ends FAILED on its own anyway."""

        async def _terminate() -> None:
            try:
                handle = (await self.client()).get_workflow_handle(workflow_id(cpo_id))
                await self._bounded(
                    handle.terminate("API could not confirm the start; CPO creation was rolled back"), 10
                )
            except (BackendUnavailable, RPCError) as exc:
                log.info("CPO %s: no workflow to terminate after a failed start (%s)", cpo_id, exc)

        task = asyncio.get_running_loop().create_task(_terminate())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _handle(self, client: Client, cpo_id: int) -> WorkflowHandle:
        return client.get_workflow_handle(workflow_id(cpo_id))

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
        timeout = self.settings.status_query_timeout
        try:
            handle = self._handle(await self.client(), cpo_id)
            query = handle.query(CPO_STATE_QUERY, rpc_timeout=timedelta(seconds=timeout), result_type=CpoState)
            return await self._bounded(query, timeout)
        except (BackendUnavailable, RPCError) as exc:
            log.debug("CPO %s: state query failed (%s); answering from the DB", cpo_id, exc)
            return None

    async def liveness(self, cpo_id: int) -> Liveness | None:
        """Whether `cpo-{id}` still runs; None when Temporal cannot tell us now. A RUNNING answer is
        reused for LIVENESS_TTL_S (status is polled every second by many clients)."""
        now = time.monotonic()
        if now - self._running.get(cpo_id, -LIVENESS_TTL_S) < LIVENESS_TTL_S:
            return Liveness.RUNNING
        timeout = self.settings.status_query_timeout
        try:
            handle = self._handle(await self.client(), cpo_id)
            desc = await self._bounded(handle.describe(rpc_timeout=timedelta(seconds=timeout)), timeout)
        except RPCError as exc:
            return Liveness.MISSING if exc.status == RPCStatusCode.NOT_FOUND else None
        except BackendUnavailable:
            return None
        if desc.status == WorkflowExecutionStatus.RUNNING:
            if len(self._running) > 10_000:
                self._running.clear()
            self._running[cpo_id] = now
            return Liveness.RUNNING
        return Liveness.CLOSED

    async def extend_ttl(self, cpo_id: int, ttl_seconds: int | None, update_id: str | None = None) -> CpoState:
        """Run the workflow's `extend_ttl` update. The update id makes a client's retry attach to the
        same update. TtlRejected when the CPO can no longer change; BackendUnavailable when Temporal or
        every worker is unreachable within the deadline."""
        try:
            handle = self._handle(await self.client(), cpo_id)
            return await self._bounded(
                handle.execute_update(
                    CPO_EXTEND_TTL_UPDATE,
                    ExtendTtl(ttl_seconds=ttl_seconds),
                    result_type=CpoState,
                    id=update_id or str(uuid.uuid4()),
                    rpc_timeout=self._rpc_timeout,
                )
            )
        except WorkflowUpdateFailedError as exc:
            raise TtlRejected(str(exc.cause or exc)) from exc
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            raise BackendUnavailable("no worker answered the update in time") from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise TtlRejected("the CPO's workflow has already finished") from exc
            raise BackendUnavailable(f"{exc.status.name}: {exc.message}") from exc

    async def request_destroy(self, cpo_id: int) -> bool:
        """Signal teardown (durable even if no worker is up). False when the workflow is closed or
        missing (its row then needs `start_teardown`)."""
        try:
            handle = self._handle(await self.client(), cpo_id)
            await self._bounded(handle.signal(CPO_DESTROY_SIGNAL, rpc_timeout=self._rpc_timeout))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise BackendUnavailable(f"{exc.status.name}: {exc.message}") from exc
        return True

    async def start_teardown(self, cpo_id: int, reason: str) -> None:
        """Tear down a CPO whose own workflow is gone (idempotent: one teardown workflow per CPO)."""
        await self._bounded(start_teardown(await self.client(), self.settings.task_queue, cpo_id, reason))
