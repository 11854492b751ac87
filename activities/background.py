"""The CPO side of background activity (task queue `provisioning`): a tick's arrivals become `start`
simulation actions, sent exactly as the control plane sends them (app/control/charger_actions.py): the
simulate DataTransfer through OcpiCommandWorkflow without a response_url, to whichever API process
holds the charger. An arrival at an EVSE that is not AVAILABLE (occupied, faulted, unknown) or whose
charger is not online goes away; so does one while the eMSP has pushed no usable token. `warm_up`
places, once, the drivers already parked when the traffic begins (the steady state of the simulated
hour), each part-way through the stay, the same way.

Only tokens the registered eMSP pushed (valid, whitelist not NEVER) are used, so every background
session and CDR goes to that eMSP. Drivers of other providers (CPO-local tokens whose sessions go to
their own eMSP) are not modelled: the CSMS has no such tokens yet.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from app.lifecycle.background import (
    ArrivalBatch,
    BackgroundCounts,
    WarmUp,
    WarmUpResult,
    background_workflow_id,
)
from app.network.activity_profile import Visit, busy_share, midway, plan_visit
from app.ocpi.command_targets import Rejected, Target, evse_target
from app.ocpi.simulate_call import presented_id_tag, simulate_command, simulate_data
from app.store.db import Database
from app.store.ocpi_tables import OcpiToken
from app.store.tables import Charger, Connector, Evse

AVAILABLE = "AVAILABLE"
ONLINE = "ONLINE"
COMMAND_WORKFLOW = "OcpiCommandWorkflow"
CHARGER_TIMEOUT_S = 15.0  # as the control plane's defaults (CPOLAB_COMMAND_CHARGER_TIMEOUT / _TIMEOUT)
COMMAND_DEADLINE_S = 30.0
RPC_TIMEOUT = timedelta(seconds=10)
WARM_UP_CHUNK = 100  # start workflows sent at once while placing the parked drivers


@dataclass(frozen=True)
class _Start:
    workflow_id: str
    target: Target
    data: dict[str, object]


class BackgroundActivities:
    def __init__(self, db: Database, client: Client, task_queue: str) -> None:
        self.db = db
        self.client = client
        self.task_queue = task_queue

    @activity.defn
    async def start_visits(self, batch: ArrivalBatch) -> BackgroundCounts:
        counts = BackgroundCounts(arrivals=len(batch.arrivals))
        starts = await self._plan(batch, counts)
        sent = await asyncio.gather(*(self._send(batch.cpo_id, s) for s in starts))
        counts.started = sum(sent)
        counts.failed = len(sent) - counts.started
        return counts

    @activity.defn
    async def warm_up(self, warm: WarmUp) -> WarmUpResult:
        """The drivers already parked when the traffic begins: each free EVSE is taken with its steady
        -state busy share, by a driver part-way through the stay (`midway`), so a CPO at scale 1 looks
        like a network mid-day at once instead of filling up over hours."""
        cpo_id, rng = warm.cpo_id, random.Random(warm.seed)
        async with self.db.session() as session:
            evses, tokens = await _network(session, cpo_id)
            if not tokens:
                return WarmUpResult(BackgroundCounts(), tokens=False)
            power = await _first_connectors(session, cpo_id)
            counts, starts = BackgroundCounts(), []
            for uid, location_id, evse_status, charger_status in evses:
                power_type, max_power = power.get(uid, ("AC_3_PHASE", None))
                draw, seed, elapsed = rng.random(), rng.getrandbits(62), rng.random()
                if draw >= busy_share(warm.profile, power_type, max_power, warm.sim_at):
                    continue
                counts.arrivals += 1
                if evse_status != AVAILABLE or charger_status != ONLINE:
                    counts.busy += 1
                    continue
                visit = plan_visit(seed, warm.profile, power_type, max_power)
                rest = midway(visit, elapsed * visit.duration_s)
                start = await _start(session, cpo_id, f"{warm.batch_id}-{uid}", location_id, uid, tokens, seed, rest)
                if start is None:
                    counts.busy += 1
                else:
                    starts.append(start)
            await session.commit()  # the idTag mappings of long token uids
        for n in range(0, len(starts), WARM_UP_CHUNK):  # a burst the Temporal frontend takes in stride
            activity.heartbeat(n)
            sent = await asyncio.gather(*(self._send(cpo_id, s) for s in starts[n : n + WARM_UP_CHUNK]))
            counts.started += sum(sent)
            counts.failed += len(sent) - sum(sent)
        return WarmUpResult(counts, tokens=True)

    async def _plan(self, batch: ArrivalBatch, counts: BackgroundCounts) -> list[_Start]:
        cpo_id = batch.cpo_id
        async with self.db.session() as session:
            evses, tokens = await _network(session, cpo_id)
            chosen = {evses[a.evse_index % len(evses)][0] for a in batch.arrivals} if evses else set()
            power = await _first_connectors(session, cpo_id, chosen)
            taken: set[str] = set()
            starts: list[_Start] = []
            for n, arrival in enumerate(batch.arrivals):
                if not evses:
                    counts.busy += 1
                    continue
                uid, location_id, evse_status, charger_status = evses[arrival.evse_index % len(evses)]
                if uid in taken or evse_status != AVAILABLE or charger_status != ONLINE:
                    counts.busy += 1
                    continue
                if not tokens:
                    counts.no_token += 1
                    continue
                visit = plan_visit(arrival.seed, batch.profile, *power[uid])
                start = await _start(
                    session, cpo_id, f"{batch.batch_id}-{n}", location_id, uid, tokens, arrival.seed, visit
                )
                if start is None:
                    counts.busy += 1
                    continue
                taken.add(uid)
                starts.append(start)
            await session.commit()  # the idTag mappings of long token uids
        return starts

    async def _send(self, cpo_id: int, start: _Start) -> bool:
        """Start the command workflow (not waiting for the charger's answer: the next tick sees the EVSE
        busy or not). A retried activity finds its workflows started already: the same ids."""
        inp = simulate_command(cpo_id, start.target, start.data, CHARGER_TIMEOUT_S, COMMAND_DEADLINE_S)
        try:
            await self.client.start_workflow(
                COMMAND_WORKFLOW, inp, id=start.workflow_id, task_queue=self.task_queue, rpc_timeout=RPC_TIMEOUT
            )
        except WorkflowAlreadyStartedError:
            pass
        except RPCError as err:
            activity.logger.warning("background start %s not sent: %s", start.workflow_id, err)
            return False
        return True


async def _network(session: AsyncSession, cpo_id: int) -> tuple[list[Row[Any]], list[tuple[str, str, str]]]:
    """The CPO's EVSEs in uid order (uid, location, EVSE status, charger status) and the usable tokens
    the registered eMSP pushed (country, party, uid), sorted."""
    evses = (
        await session.execute(
            select(Evse.uid, Evse.location_id, Evse.status, Charger.status)
            .join(Charger, and_(Charger.cpo_id == Evse.cpo_id, Charger.identity == Evse.charger_identity))
            .where(Evse.cpo_id == cpo_id)
            .order_by(Evse.uid)
        )
    ).all()
    tokens = sorted(
        (t.country_code, t.party_id, t.uid)
        for t in (await session.execute(select(OcpiToken).where(OcpiToken.cpo_id == cpo_id))).scalars()
        if t.data.get("valid") is True and t.data.get("whitelist") != "NEVER"
    )
    return list(evses), tokens


async def _first_connectors(
    session: AsyncSession, cpo_id: int, uids: set[str] | None = None
) -> dict[str, tuple[str, int | None]]:
    """{EVSE uid: (power type, max electric power W)} of each EVSE's first connector; `uids`: only those
    EVSEs (default every EVSE of the CPO)."""
    query = select(Connector.evse_uid, Connector.power_type, Connector.max_electric_power).where(
        Connector.cpo_id == cpo_id
    )
    if uids is not None:
        query = query.where(Connector.evse_uid.in_(sorted(uids)))  # type: ignore[attr-defined]
    power: dict[str, tuple[str, int | None]] = {}
    for uid, power_type, max_power in await session.execute(query.order_by(Connector.id)):
        power.setdefault(uid, (power_type, max_power))
    return power


async def _start(
    session: AsyncSession,
    cpo_id: int,
    workflow_id: str,
    location_id: str,
    uid: str,
    tokens: list[tuple[str, str, str]],
    seed: int,
    visit: Visit,
) -> _Start | None:
    """The `start` of one driver (token chosen by the seed); None when the EVSE is gone (a teardown)."""
    try:
        target = await evse_target(session, cpo_id, location_id, uid, None)
    except Rejected:
        return None
    token_uid = tokens[random.Random(seed).randrange(len(tokens))][2]
    data = simulate_data("start", target)
    data["id_tag"] = await presented_id_tag(session, cpo_id, target, token_uid)
    data |= {"target_kwh": visit.target_kwh, "soc_percent": visit.soc_percent, "duration_s": visit.duration_s}
    return _Start(workflow_id, target, data)


async def stop_background(client: Client, cpo_id: int) -> bool:
    """Cancel the CPO's background activity and wait until it has closed (idempotent). True if it ran."""
    handle = client.get_workflow_handle(background_workflow_id(cpo_id))
    try:
        desc = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return False
    await handle.cancel(rpc_timeout=RPC_TIMEOUT)
    with suppress(WorkflowFailureError):  # it ends cancelled: what was asked
        await handle.result(follow_runs=True)
    return True
