"""TTL timers on Temporal's time-skipping test server: days pass in milliseconds, same workflow code."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from app.lifecycle.models import SEARCH_ATTRIBUTES, CpoStatus, CpoWorkflowInput, ExtendTtl, workflow_id
from app.lifecycle.pods import CHARGER_RUNTIME_QUEUE, PodRun
from app.network.generator import NetworkSpec
from app.store.db import Database
from app.store.tables import Charger, Cpo
from tests.databases import DatabaseFactory
from tests.rows import cpo_row
from worker import make_worker
from workflows.cpo import CpoWorkflow

QUEUE = "ttl-tests"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    server = Path(sys.prefix) / "bin" / "temporal-test-server"
    environment = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(server))
    await environment.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace="default",
            search_attributes={
                k.name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{k.indexed_value_type.name}")
                for k in SEARCH_ATTRIBUTES
            },
        )
    )
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture(scope="module")
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    async with databases.opened("ttl") as database:
        yield database


async def start_cpo(env: WorkflowEnvironment, db: Database, ttl: timedelta | None) -> tuple[int, WorkflowHandle]:
    async with db.session() as session, session.begin():
        cpo = cpo_row("ttl", "TTL", country_code="FR", name_prefix="ttl")
        session.add(cpo)
    assert cpo.id is not None
    current = await env.get_current_time()
    expires = None if ttl is None else current + ttl
    spec = NetworkSpec(template="small-urban-ac", seed=1, country_code="FR", party_id="TTL", name_prefix="ttl")
    handle = await env.client.start_workflow(
        CpoWorkflow.run,
        CpoWorkflowInput(cpo_id=cpo.id, org="ttl", spec=spec, expires_at=expires),
        id=workflow_id(cpo.id),
        task_queue=QUEUE,
    )
    return cpo.id, handle


async def wait_ready(env: WorkflowEnvironment, handle: WorkflowHandle, db: Database) -> None:
    """No CSMS or sim worker runs here (the pods wait on `charger-runtime`): the test plays the CSMS and
    marks the chargers online once provisioning wrote them, which is what READY waits for."""
    cpo_id = int(handle.id.removeprefix("cpo-"))
    for _ in range(200):
        if (await handle.query(CpoWorkflow.state)).status == CpoStatus.READY:
            return
        async with db.session() as session, session.begin():
            await session.execute(update(Charger).where(Charger.cpo_id == cpo_id).values(status="ONLINE"))
        await env.sleep(timedelta(milliseconds=50))
    raise AssertionError("never READY")


async def db_status(db: Database, cpo_id: int) -> tuple[str, datetime | None]:
    async with db.session() as session:
        cpo = await session.get(Cpo, cpo_id)
        assert cpo is not None
        return cpo.status, cpo.destroyed_at


@activity.defn(name="run_charger_pod")
async def pod_that_ends(run: PodRun) -> None:
    """The time-skipping server skips no time while an activity runs, and a real pod runs for its
    CPO's whole life: here each pod ends at once (its child workflow completes), and the tests play
    the CSMS's part by marking the chargers online. Live pods are tested on the dev server
    (tests/test_charger_pods.py)."""


def sim_worker(env: WorkflowEnvironment) -> Worker:
    return Worker(env.client, task_queue=CHARGER_RUNTIME_QUEUE, activities=[pod_that_ends])


async def test_week_long_ttl_destroys_the_cpo(env: WorkflowEnvironment, db: Database) -> None:
    async with make_worker(env.client, db, QUEUE, b"test-charger-key"), sim_worker(env):
        started = await env.get_current_time()
        cpo_id, handle = await start_cpo(env, db, timedelta(days=7))
        await wait_ready(env, handle, db)
        assert await handle.result() == "DESTROYED"  # result() lets the server skip the 7 days
    status, destroyed_at = await db_status(db, cpo_id)
    assert status == "DESTROYED" and destroyed_at is not None
    # Destroyed by the timer, in workflow time: a week after creation, not before, not much after.
    # (The server's own clock may skip further once nothing is left to wait for.)
    elapsed = destroyed_at.replace(tzinfo=UTC) - started
    assert timedelta(days=7) <= elapsed < timedelta(days=7, hours=1)


async def test_null_ttl_never_expires(env: WorkflowEnvironment, db: Database) -> None:
    async with make_worker(env.client, db, QUEUE, b"test-charger-key"), sim_worker(env):
        cpo_id, handle = await start_cpo(env, db, None)
        await wait_ready(env, handle, db)
        await env.sleep(timedelta(days=365))
        assert (await handle.query(CpoWorkflow.state)).status == CpoStatus.READY
        assert await handle.execute_update(CpoWorkflow.destroy) == "DESTROYED"
    assert (await db_status(db, cpo_id))[0] == "DESTROYED"


async def test_extend_ttl_moves_the_deadline(env: WorkflowEnvironment, db: Database) -> None:
    async with make_worker(env.client, db, QUEUE, b"test-charger-key"), sim_worker(env):
        cpo_id, handle = await start_cpo(env, db, timedelta(hours=1))
        await wait_ready(env, handle, db)
        state = await handle.execute_update(CpoWorkflow.extend_ttl, ExtendTtl(ttl_seconds=3 * 86400))
        assert state.expires_at is not None
        assert state.expires_at - await env.get_current_time() > timedelta(days=2, hours=23)
        await env.sleep(timedelta(hours=2))  # the original deadline passes
        assert (await handle.query(CpoWorkflow.state)).status == CpoStatus.READY
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await handle.execute_update(CpoWorkflow.extend_ttl, ExtendTtl(ttl_seconds=5))
        assert "ttl_seconds" in str(rejected.value.cause)
        assert await handle.result() == "DESTROYED"
    async with db.session() as session:
        cpo = await session.get(Cpo, cpo_id)
        assert cpo is not None and cpo.expires_at is not None
        assert cpo.expires_at.replace(tzinfo=UTC) > state.expires_at - timedelta(seconds=1)
