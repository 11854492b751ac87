"""Simulation controls (CONTRACT §3): `POST …/chargers/{identity}/actions/{action}` and the same fanned
out over a location's EVSEs.

An action is what a person does at a real charger (plug a car, hold a card, pull the cable, a fault):
it reaches the simulated charger over OCPP like any other message, as a vendor DataTransfer
(`vendorId` "cpolab", `messageId` "simulate", app/sim/simulate.py), routed through Temporal to the API
process holding the charger's WebSocket (OcpiCommandWorkflow without a response_url). So an action
works whichever process holds the charger, and an external OCPP client answers it with
`UnknownVendorId` (409) rather than being driven.

Answers: 202 `{action_id, status, message}` once the charger accepted it; 404 unknown CPO, charger,
EVSE or connector; 409 the charger is not online or refused it in its state (the charger's reason in
`detail`); 422 a bad body or an unknown action; 503 when Temporal is unreachable. `action_id` is the
workflow id (its history shows the call and the answer).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from ocpp.v16.enums import ChargePointErrorCode
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.control.charger_link import LINK_ACTIONS, switch
from app.control.chargers import MAX_IDENTITY
from app.control.common import CpoCall, cpo_call, database, gateway, owned_cpo
from app.control.temporal_gateway import BackendUnavailable
from app.ocpi.command_models import CommandOutcome
from app.ocpi.command_targets import Rejected, Target, evse_target
from app.ocpi.simulate_call import presented_id_tag, simulate_command, simulate_data
from app.store.tables import Charger as ChargerRow
from app.store.tables import Evse
from app.web.auth import WRITE
from app.web.http import from_validation_error, issue, model_response, unprocessable

WORKFLOW = "OcpiCommandWorkflow"
ONLINE = "ONLINE"
MAX_FAN_OUT = 200  # EVSEs one location action may drive
# A 1.6 ChargePointErrorCode a fault may carry (2.0.1 chargers report them as Faulted too).
ErrorCode = Literal[tuple(sorted(c.value for c in ChargePointErrorCode if c != ChargePointErrorCode.no_error))]  # type: ignore[valid-type]
Id36 = Annotated[str, StringConstraints(min_length=1, max_length=36)]


class ChargerActionRequest(BaseModel):
    """The body of every action (each reads the fields it needs; `start` requires `token_uid`)."""

    model_config = ConfigDict(extra="forbid")
    # Which EVSE / connector of the charger (OCPI ids; default: its first EVSE, that EVSE's first connector).
    evse_uid: Id36 | None = None
    connector_id: Id36 | None = None
    # start: a driver holds a card (as the eMSP pushed it) and plugs in; the simulated car charges
    # until `target_kwh`, `soc_percent` or `duration_s`, whichever comes first.
    # suspend-ev: the car stops drawing power for `duration_s` (absent: until the session ends).
    token_uid: Id36 | None = None
    target_kwh: float | None = Field(None, gt=0, le=1000)
    soc_percent: float | None = Field(None, gt=0, le=100)
    duration_s: float | None = Field(None, gt=0, le=7 * 86400)
    # fault: the OCPP error code it reports.
    error_code: ErrorCode | None = None


ACTIONS = ("plug", "unplug", "start", "stop", "fault", "clear-fault", "suspend-ev", *LINK_ACTIONS)


class ActionResult(BaseModel):
    action_id: str
    identity: str
    evse_uid: str
    # PENDING: no answer yet (the action may still happen); REJECTED / FAILED only in a location's list.
    status: Literal["ACCEPTED", "PENDING", "REJECTED", "FAILED"]
    message: str


class LocationActionResult(BaseModel):
    data: list[ActionResult]


def _body(action: str, raw: bytes) -> ChargerActionRequest | Response:
    if action not in ACTIONS:
        return unprocessable([issue(["path", "action"], f"unknown action (one of {', '.join(ACTIONS)})", "enum")])
    if len(raw) > 4096:
        return unprocessable([issue(["body"], "at most 4096 bytes", "too_long")])
    try:
        body = ChargerActionRequest.model_validate(json.loads(raw) if raw.strip() else {})
    except ValidationError as exc:
        return from_validation_error(exc, "body")
    except (ValueError, RecursionError):
        return unprocessable([issue(["body"], "not a JSON object", "json_invalid")])
    if action == "start" and body.token_uid is None:
        return unprocessable([issue(["body", "token_uid"], "required to start a session", "missing")])
    return body


async def _prologue(request: Request) -> tuple[CpoCall, str, ChargerActionRequest] | Response:
    """Token and scope, the path id, the action and its body (422), then the CPO's ownership (404)."""
    call = cpo_call(request, WRITE)
    action = request.path_params["action"]
    body = _body(action, await request.body())
    if isinstance(body, Response):
        return body
    await owned_cpo(request, call.principal, call.cpo_id)
    return call, action, body


async def charger_action(request: Request) -> Response:
    checked = await _prologue(request)
    if isinstance(checked, Response):
        return checked
    call, action, body = checked
    identity = request.path_params["identity"]
    async with database(request).session() as session:
        known = len(identity) <= MAX_IDENTITY
        charger = await session.get(ChargerRow, (call.cpo_id, identity)) if known else None
        if charger is None:
            raise HTTPException(404, f"charger {identity} not found")
        evse_uid = body.evse_uid or await _first_evse(session, call.cpo_id, identity)
        target = await _target(session, call.cpo_id, charger.location_id, evse_uid, body.connector_id, identity)
        if action in LINK_ACTIONS:
            payload = None
        else:
            payload = await _payload(session, call.cpo_id, action, body, target)
            await session.commit()  # the idTag mapping of a long token uid
    if payload is None:
        done = await switch(request, call.cpo_id, identity, action)
        result = ActionResult(
            action_id=done.action_id, identity=identity, evse_uid=evse_uid, status="ACCEPTED", message=done.message
        )
        return model_response(result, status_code=202)
    return model_response(await _run(request, call.cpo_id, target, evse_uid, payload), status_code=202)


async def location_action(request: Request) -> Response:
    """The action on every EVSE of the location (each EVSE's first connector unless `connector_id`)."""
    checked = await _prologue(request)
    if isinstance(checked, Response):
        return checked
    call, action, body = checked
    location_id = request.path_params["location_id"]
    async with database(request).session() as session:
        uids = (
            await session.execute(
                select(Evse.uid, Evse.charger_identity)
                .where(Evse.cpo_id == call.cpo_id, Evse.location_id == location_id)
                .order_by(Evse.uid)
                .limit(MAX_FAN_OUT)
            )
        ).all()
        if not uids:
            raise HTTPException(404, f"location {location_id} not found (or it has no EVSE)")
        if body.evse_uid is not None:
            uids = [(uid, ident) for uid, ident in uids if uid == body.evse_uid]
            if not uids:
                raise HTTPException(404, f"EVSE {body.evse_uid} not found at location {location_id}")
        planned = []
        for uid, identity in uids if action not in LINK_ACTIONS else ():
            target = await _target(session, call.cpo_id, location_id, uid, body.connector_id, identity)
            planned.append((target, uid, await _payload(session, call.cpo_id, action, body, target)))
        await session.commit()
    if action in LINK_ACTIONS:
        return await _switch_location(request, call.cpo_id, action, uids)
    results = await asyncio.gather(*(_run(request, call.cpo_id, t, uid, p, strict=False) for t, uid, p in planned))
    return model_response(LocationActionResult(data=list(results)), status_code=202)


async def _switch_location(request: Request, cpo_id: int, action: str, uids: Sequence[Any]) -> Response:
    """detach / attach once per charger of the location (named by its first EVSE there)."""
    firsts = {identity: uid for uid, identity in reversed(uids)}
    switched = await asyncio.gather(*(_switch_quietly(request, cpo_id, i, uid, action) for i, uid in firsts.items()))
    return model_response(LocationActionResult(data=sorted(switched, key=lambda r: r.evse_uid)), status_code=202)


async def _switch_quietly(request: Request, cpo_id: int, identity: str, evse_uid: str, action: str) -> ActionResult:
    """detach / attach of one charger of a location: a refusal is REJECTED in the list, not a 409."""
    try:
        done = await switch(request, cpo_id, identity, action)
    except HTTPException as exc:
        return ActionResult(action_id="", identity=identity, evse_uid=evse_uid, status="REJECTED", message=exc.detail)
    return ActionResult(
        action_id=done.action_id, identity=identity, evse_uid=evse_uid, status="ACCEPTED", message=done.message
    )


async def _first_evse(session: Any, cpo_id: int, identity: str) -> str:
    uid = (
        await session.execute(
            select(Evse.uid).where(Evse.cpo_id == cpo_id, Evse.charger_identity == identity).order_by(Evse.uid).limit(1)
        )
    ).scalar_one_or_none()
    if uid is None:
        raise HTTPException(409, f"charger {identity} has no EVSE")
    return str(uid)


async def _target(
    session: Any, cpo_id: int, location_id: str, evse_uid: str, connector_id: str | None, identity: str
) -> Target:
    try:
        target = await evse_target(session, cpo_id, location_id, evse_uid, connector_id)
    except Rejected as exc:
        raise HTTPException(404 if exc.status_code == 2003 else 409, exc.message) from None
    if target.identity != identity:
        raise HTTPException(404, f"EVSE {evse_uid} is not on charger {identity}")
    return target


async def _payload(
    session: Any, cpo_id: int, action: str, body: ChargerActionRequest, target: Target
) -> dict[str, Any]:
    """The `simulate` DataTransfer data (app/sim/simulate.py): the sim's action names, OCPP numbering."""
    data = simulate_data(action, target)
    if action == "start":
        data["id_tag"] = await presented_id_tag(session, cpo_id, target, str(body.token_uid))
        data |= {k: v for k in ("target_kwh", "soc_percent", "duration_s") if (v := getattr(body, k)) is not None}
    if action == "fault":
        data["error_code"] = body.error_code or "OtherError"
    if action == "suspend-ev" and body.duration_s is not None:
        data["duration_s"] = body.duration_s
    return data


async def _run(
    request: Request, cpo_id: int, target: Target, evse_uid: str, data: dict[str, Any], *, strict: bool = True
) -> ActionResult:
    """Send the action and wait (bounded) for the charger's answer. `strict`: a refusal is a 409;
    otherwise (fan-out) it is reported per EVSE in the message."""
    settings = request.app.state.settings
    if strict and target.status != ONLINE:
        raise HTTPException(409, f"charger {target.identity} is {target.status}: an action needs it online")
    action_id = f"charger-action-{cpo_id}-{uuid.uuid4().hex}"
    inp = simulate_command(cpo_id, target, data, settings.command_charger_timeout, settings.command_timeout)
    try:
        async with asyncio.timeout(settings.temporal_rpc_timeout):
            client = await gateway(request).client()
            handle = await client.start_workflow(
                WORKFLOW, inp, id=action_id, task_queue=settings.task_queue, result_type=CommandOutcome
            )
    except (BackendUnavailable, TimeoutError, OSError) as exc:
        raise HTTPException(503, f"workflow backend unavailable: {exc}") from None
    try:
        async with asyncio.timeout(settings.command_charger_timeout + 5):
            outcome: CommandOutcome = await handle.result()
    except TimeoutError:
        return ActionResult(
            action_id=action_id,
            identity=target.identity,
            evse_uid=evse_uid,
            status="PENDING",
            message="the charger has not answered yet",
        )
    if outcome.result != "ACCEPTED":
        if strict:
            raise HTTPException(409, f"charger {target.identity}: {outcome.message}")
        status = {"TIMEOUT": "PENDING", "REJECTED": "REJECTED"}.get(outcome.result, "FAILED")
        return ActionResult(
            action_id=action_id, identity=target.identity, evse_uid=evse_uid, status=status, message=outcome.message
        )
    return ActionResult(
        action_id=action_id, identity=target.identity, evse_uid=evse_uid, status="ACCEPTED", message=outcome.message
    )
