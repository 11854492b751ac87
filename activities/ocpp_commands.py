"""The OCPI command workflow's activities on the provisioning queue (database and Temporal at hand):
where a charger is connected, which charger holds a reservation, and the CommandResult POST.

The OCPP call itself runs inside the API process holding the charger (app/csms/commands.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from app.ocpi import client as ocpi_client
from app.ocpi.command_models import (
    ChargerRoute,
    CommandOutcome,
    ReservationFound,
    ReservationQuery,
    ResultDelivery,
    RouteQuery,
)
from app.store.db import Database
from app.store.ocpi_tables import OcpiPeer
from app.store.tables import Charger

RESERVATION_WAIT_S = 5.0  # a RESERVE_NOW still running this long after is not a reservation yet
RPC_TIMEOUT = timedelta(seconds=5)


class CommandActivities:
    def __init__(self, db: Database, client: Client) -> None:
        self.db = db
        self.client = client

    @activity.defn
    async def resolve_charger_route(self, query: RouteQuery) -> ChargerRoute:
        async with self.db.session() as session:
            charger = await session.get(Charger, (query.cpo_id, query.identity))
        if charger is None:
            return ChargerRoute("GONE", None)
        holder = charger.api_instance if charger.connection_id is not None else None
        return ChargerRoute(charger.status, holder)

    @activity.defn
    async def find_reservation(self, query: ReservationQuery) -> ReservationFound:
        """The charger of the RESERVE_NOW workflow `query.workflow_id`, if the charger accepted it."""
        handle = self.client.get_workflow_handle(query.workflow_id, result_type=CommandOutcome)
        try:
            async with asyncio.timeout(RESERVATION_WAIT_S):
                outcome = await handle.result(rpc_timeout=RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return ReservationFound()
            raise
        except (WorkflowFailureError, TimeoutError):
            return ReservationFound()
        if outcome.result != "ACCEPTED":
            return ReservationFound()
        return ReservationFound(outcome.identity, outcome.ocpp_version)

    @activity.defn
    async def post_command_result(self, delivery: ResultDelivery) -> None:
        """POST the CommandResult with the peer's current Token B; any failure is retried (workflow
        policy) except a peer that is no longer registered."""
        async with self.db.session() as session:
            peer = await session.get(OcpiPeer, delivery.peer_id)
        if peer is None or peer.cpo_id != delivery.cpo_id or not peer.registered:
            raise ApplicationError("the eMSP is no longer registered with this CPO", type="PeerGone")
        result = await ocpi_client.call(
            self.db,
            cpo_id=delivery.cpo_id,
            method="POST",
            url=delivery.response_url,
            token=peer.token_b,
            version=delivery.version,
            module="commands",
            body=delivery.body,
            correlation_id=delivery.correlation_id,
            routing=ocpi_client.Routing(
                delivery.from_country_code, delivery.from_party_id, delivery.to_country_code, delivery.to_party_id
            ),
        )
        if not result.ok:
            raise ApplicationError(f"response_url did not take the result: {result.error}", type="DeliveryFailed")
