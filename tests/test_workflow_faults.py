"""CpoWorkflow on the real dev server: a real-time TTL expiry, and a non-retryable failure that
compensates and ends FAILED. Rows are created the way the API does; the workflow is started directly
so the TTL can be seconds (the API enforces ≥ 60 s) and a faulty activity can be swapped in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.charger_pods import PodActivities
from activities.provisioning import ProvisioningActivities
from app.lifecycle.models import (
    SA_CPO_ID,
    SA_ORG,
    SA_STATE,
    SA_TEMPLATE,
    CpoWorkflowInput,
    LocationBatch,
    SmallNetwork,
    SmallNetworkResult,
    workflow_id,
)
from app.network.generator import NetworkSpec
from app.network.legacy import legacy_shape
from app.store.db import Database, utcnow
from app.store.tables import CredentialToken, Location, PartyReservation
from tests.rows import cpo_row
from tests.stack import Stack, wait_status
from workflows.cpo import CpoWorkflow

QUEUE = "fault-tests"
TEST_CHARGER_KEY = b"test-charger-key"


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[Database]:
    database = Database(stack.database_url)
    yield database
    await database.dispose()


async def insert_cpo(db: Database, party: str) -> int:
    now = utcnow()
    async with db.session() as session, session.begin():
        cpo = cpo_row(
            "acme",
            party,
            country_code="ES",
            name_prefix="fault",
            seed=5,
            locations=2,
            chargers=6,
            evses=6,
            connectors=6,
        )
        session.add(cpo)
        await session.flush()
        assert cpo.id is not None
        session.add(PartyReservation(org="acme", country_code="ES", party_id=party, cpo_id=cpo.id))
        session.add(CredentialToken(cpo_id=cpo.id, token_hash=f"hash-{cpo.id}", kind="A", created_at=now))
    return cpo.id


def workflow_input(
    cpo_id: int, party: str, expires_in: timedelta | None, *, batch_chargers: int = 250
) -> CpoWorkflowInput:
    """What the API would pass: the shape resolved up front (the rows carry no blueprint, so the
    activities fall back to the catalog, as for CPOs created before blueprints)."""
    spec = NetworkSpec(template="small-urban-ac", seed=5, country_code="ES", party_id=party, name_prefix="fault")
    return CpoWorkflowInput(
        cpo_id=cpo_id,
        org="acme",
        spec=spec,
        expires_at=None if expires_in is None else utcnow() + expires_in,
        shape=legacy_shape(spec),
        template_version=1,
        batch_chargers=batch_chargers,
    )


async def start_cpo(temporal: Client, inp: CpoWorkflowInput, task_queue: str = "provisioning") -> WorkflowHandle:
    """Start the CPO workflow as the API would (its id and search attributes), without the API."""
    return await temporal.start_workflow(
        CpoWorkflow.run,
        inp,
        id=workflow_id(inp.cpo_id),
        task_queue=task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SA_ORG, "acme"),
                SearchAttributePair(SA_TEMPLATE, "t"),
                SearchAttributePair(SA_STATE, "PENDING"),
                SearchAttributePair(SA_CPO_ID, inp.cpo_id),
            ]
        ),
    )


async def test_real_time_ttl_expiry_destroys(stack: Stack, db: Database, client: httpx.AsyncClient) -> None:
    cpo_id = await insert_cpo(db, "TT1")
    temporal = await Client.connect(stack.temporal_address)
    handle = await start_cpo(temporal, workflow_input(cpo_id, "TT1", timedelta(seconds=3)))
    # READY lasts 3 s: a loaded box's poll may first see the CPO already going.
    await wait_status(client, str(cpo_id), {"READY", "DESTROYING", "DESTROYED"})
    assert await handle.result() == "DESTROYED"
    status = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
    assert status["status"] == "DESTROYED" and status["provisioned_at"] is not None  # READY, then expired
    assert stack.count("location", cpo_id) == 0 and stack.count("party_reservation", cpo_id) == 0
    # Search attributes make the run findable in the Web UI by org, state and id.
    found = [w.id async for w in temporal.list_workflows(f"CpoId = {cpo_id} AND CpoOrg = 'acme'")]
    assert found == [f"cpo-{cpo_id}"]


def _routing_rejected() -> ApplicationError:
    return ApplicationError("routing table rejected the identity", type="RoutingRejected", non_retryable=True)


@activity.defn(name="register_routing_batch")
async def broken_routing(batch: LocationBatch) -> int:
    raise _routing_rejected()


@activity.defn(name="provision_small_network")
async def broken_network(req: SmallNetwork) -> SmallNetworkResult:
    """A small network's single step includes the routing, so the same rejection fails it."""
    raise _routing_rejected()


def faulty_worker(temporal: Client, db: Database, queue: str) -> Worker:
    """A worker whose routing step fails for good: provisioning must compensate and end FAILED."""
    acts = ProvisioningActivities(db, TEST_CHARGER_KEY)
    pods = PodActivities(db, temporal)
    return Worker(
        temporal,
        task_queue=queue,
        workflows=[CpoWorkflow],
        activities=[
            acts.record_status,
            acts.create_network,
            acts.create_location_batch,
            broken_routing,
            broken_network,
            acts.teardown_network,
            acts.count_network,
            pods.stop_charger_pods,
        ],
    )


# 6 chargers: one activity writes the whole network; with 1 charger per batch, the batched steps do.
@pytest.mark.parametrize(("batch_chargers", "step"), [(250, "create_network"), (1, "register_routing")])
async def test_non_retryable_failure_compensates_and_ends_failed(
    stack: Stack, db: Database, client: httpx.AsyncClient, batch_chargers: int, step: str
) -> None:
    party = f"FL{batch_chargers % 10}"
    cpo_id = await insert_cpo(db, party)
    temporal = await Client.connect(stack.temporal_address)
    async with faulty_worker(temporal, db, QUEUE):
        handle = await start_cpo(temporal, workflow_input(cpo_id, party, None, batch_chargers=batch_chargers), QUEUE)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        history = await handle.fetch_history()
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    # The path the size picks: one activity for a small network, the batched steps otherwise.
    assert ("provision_small_network" in scheduled) == (step == "create_network")
    assert ("register_routing_batch" in scheduled) == (step == "register_routing")
    status = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
    assert status["status"] == "FAILED"
    assert status["error"] == {
        "code": "RoutingRejected",
        "message": "routing table rejected the identity",
        "retryable": False,
        "step": step,
    }
    # Compensation removed what the first steps wrote, and freed the party id and tokens.
    for table in ("tariff", "location", "evse", "connector", "charger", "party_reservation", "credential_token"):
        assert stack.count(table, cpo_id) == 0, table
    # DELETE on a FAILED CPO is a clean no-op.
    resp = await client.delete(f"/ocpi/cpos/{cpo_id}")
    assert resp.status_code == 200 and resp.json()["status"] == "FAILED"


async def test_small_network_whose_rows_differ_from_the_plan_fails_in_its_one_step(
    stack: Stack, db: Database, client: httpx.AsyncClient
) -> None:
    """The single step checks the counts before it commits: a stray row makes it fail for good (no
    retry can fix it), the CPO ends FAILED at create_network and compensation removes everything."""
    cpo_id = await insert_cpo(db, "MM1")
    async with db.session() as session, session.begin():
        stray = Location(cpo_id=cpo_id, id="STRAY", idx=999, name="stray", city="x", data={}, last_updated=utcnow())
        session.add(stray)
    temporal = await Client.connect(stack.temporal_address)
    handle = await start_cpo(temporal, workflow_input(cpo_id, "MM1", None))
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    error = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()["error"]
    assert error["code"] == "NetworkMismatch" and error["step"] == "create_network" and not error["retryable"]
    assert "locations=3" in error["message"] and "locations=2" in error["message"]
    for table in ("tariff", "location", "evse", "connector", "charger", "charger_route", "party_reservation"):
        assert stack.count(table, cpo_id) == 0, table
