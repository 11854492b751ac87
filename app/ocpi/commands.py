"""Commands module, CPO = Receiver: POST `/commands/{command}`.

The body is validated in full (2001, app.ocpi.command_bodies); the location / EVSE / connector are
checked (2003 with REJECTED; RESERVE_NOW on an EVSE without RESERVABLE: REJECTED); the command is
resolved to its charger and OCPP call, and handed to a Temporal workflow (workflows/ocpi_command.py)
before the `CommandResponse` ACCEPTED is answered. The workflow sends the call on the charger's
WebSocket in whichever API process holds it and POSTs the `CommandResult` to `response_url` within
the advertised timeout. Its id comes from the command (peer, type, response_url): an eMSP retrying
the same POST does not send the call twice.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from app.charging.authorization import remember_id_tag
from app.charging.sessions import ACTIVE, PENDING, expect_remote_start
from app.control.temporal_gateway import BackendUnavailable
from app.ocpi.command_bodies import (
    COMMANDS,
    COMMANDS_211,
    CancelReservation,
    Command,
    ReserveNow,
    StartSession,
    StopSession,
    UnlockConnector,
    parse_command,
)
from app.ocpi.command_models import (
    ID_TOKEN_TYPES,
    CommandInput,
    OcppCall,
    ResultDelivery,
    command_workflow_id,
    ocpp_reservation_id,
    remote_start_id,
    reservation_workflow_id,
)
from app.ocpi.command_targets import Rejected, Target, evse_target, location_target
from app.ocpi.transport import OcpiContext, OcpiError, json_body, ocpi_datetime, ocpi_response, ocpi_route
from app.settings import Settings
from app.store.charging_tables import ChargingSession, RemoteStart
from app.store.db import utcnow
from app.store.tables import Evse

WORKFLOW = "OcpiCommandWorkflow"
REMOTE_START_GRACE_S = 180  # after the command's timeout: a charger may wait this long for the cable
RUN_SLACK_S = 60  # a command workflow's run timeout: its deadline plus this


def _text(message: str) -> list[dict[str, str]]:
    return [{"language": "en", "text": message}]


def _command_response(result: str, timeout: int, message: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"result": result, "timeout": timeout}
    if message:
        out["message"] = _text(message)
    return out


def _ocpp_call(target: Target, action: str, payload: dict[str, Any], settings: Settings, cpo_id: int) -> OcppCall:
    return OcppCall(
        cpo_id,
        target.identity,
        target.ocpp_version,
        action,
        {k: v for k, v in payload.items() if v is not None},
        settings.command_charger_timeout,
    )


def _id_token(token: dict[str, Any]) -> dict[str, str]:
    return {"id_token": token["uid"], "type": ID_TOKEN_TYPES.get(token["type"], "Central")}


class _UnknownSession(Exception):
    """STOP_SESSION of a session this CPO does not have: CommandResponse UNKNOWN_SESSION."""


async def _expect_start(
    session: AsyncSession, cpo_id: int, target: Target, cmd: StartSession, start_id: int, settings: Settings
) -> RemoteStart:
    """Record the START_SESSION the charger is about to get, so the transaction it starts takes the
    token, `authorization_reference` and auth method COMMAND (app.charging.sessions.take_remote_start).
    On 1.6 the idTag sent is the uid's (stored when longer than 20 characters)."""
    token = cmd.token
    uid = str(token["uid"])
    start = RemoteStart(
        cpo_id=cpo_id,
        identity=target.identity,
        ocpp_evse_id=target.ocpp_evse_id,
        ocpp_connector_id=target.ocpp_connector_id,
        id_tag=await remember_id_tag(session, cpo_id, uid) if target.ocpp_version == "1.6" else uid,
        remote_start_id=start_id,
        token_uid=uid,
        token_type=str(token["type"]),
        token_country_code=str(token.get("country_code", "")),
        token_party_id=str(token.get("party_id", "")),
        contract_id=str(token.get("contract_id") or token.get("auth_id") or uid),
        authorization_reference=cmd.authorization_reference,
        # The charger may wait for the cable (ConnectionTimeOut) after accepting.
        expires_at=utcnow() + timedelta(seconds=settings.command_timeout + REMOTE_START_GRACE_S),
    )
    await expect_remote_start(session, start)
    return start


async def _plan(ctx: OcpiContext, cmd: Command, workflow_id: str, settings: Settings) -> dict[str, Any]:
    """CommandInput fields for the workflow (identity, call or a known result); raises Rejected or
    _UnknownSession."""
    assert ctx.db is not None
    cpo_id = ctx.cpo_id
    async with ctx.db.session() as session:
        if isinstance(cmd, StartSession):
            if cmd.evse_uid is None:
                target = await location_target(session, cpo_id, cmd.location_id)
            else:
                target = await evse_target(session, cpo_id, cmd.location_id, cmd.evse_uid, cmd.connector_id)
            start = await _expect_start(session, cpo_id, target, cmd, remote_start_id(workflow_id), settings)
            if target.ocpp_version == "1.6":
                action, payload = (
                    "RemoteStartTransaction",
                    {"id_tag": start.id_tag, "connector_id": target.ocpp_connector_id},
                )
            else:
                action, payload = (
                    "RequestStartTransaction",
                    {
                        "id_token": _id_token(cmd.token),
                        "remote_start_id": start.remote_start_id,
                        "evse_id": target.ocpp_evse_id,
                    },
                )
            await session.commit()  # the transaction the charger starts finds its remote start
        elif isinstance(cmd, StopSession):
            found = (
                await session.execute(
                    select(ChargingSession).where(
                        ChargingSession.cpo_id == cpo_id, ChargingSession.session_id == cmd.session_id
                    )
                )
            ).scalar_one_or_none()
            if found is None:
                raise _UnknownSession(f"unknown session {cmd.session_id}")
            evse = await session.get(Evse, (cpo_id, found.evse_uid))
            if evse is None:
                raise _UnknownSession(f"unknown session {cmd.session_id}")
            target = await evse_target(session, cpo_id, evse.location_id, evse.uid, None)
            if found.status not in (ACTIVE, PENDING):
                message = f"session {cmd.session_id} is {found.status}: nothing to stop"
                return {"identity": target.identity, "call": None, "result": "REJECTED", "message": message}
            transaction_id: int | str = (
                int(found.transaction_id) if found.ocpp_version == "1.6" else found.transaction_id
            )
            action = "RemoteStopTransaction" if found.ocpp_version == "1.6" else "RequestStopTransaction"
            payload = {"transaction_id": transaction_id}
        elif isinstance(cmd, UnlockConnector):
            target = await evse_target(session, cpo_id, cmd.location_id, cmd.evse_uid, cmd.connector_id)
            action, payload = "UnlockConnector", {"connector_id": target.ocpp_connector_id}
            if target.ocpp_version != "1.6":
                payload["evse_id"] = target.ocpp_evse_id
        elif isinstance(cmd, ReserveNow):
            if cmd.evse_uid is None:
                target = await location_target(session, cpo_id, cmd.location_id, reservable=True)
            else:
                target = await evse_target(session, cpo_id, cmd.location_id, cmd.evse_uid, None, reservable=True)
            expiry = ocpi_datetime(cmd.expiry())
            reservation = ocpp_reservation_id(cmd.reservation_id)
            if target.ocpp_version == "1.6":
                action, payload = (
                    "ReserveNow",
                    {
                        "connector_id": target.ocpp_connector_id or 0,  # 0: any connector of the charger
                        "expiry_date": expiry,
                        "id_tag": await remember_id_tag(session, cpo_id, str(cmd.token["uid"])),
                        "reservation_id": reservation,
                    },
                )
            else:
                action, payload = (
                    "ReserveNow",
                    {
                        "id": reservation,
                        "expiry_date_time": expiry,
                        "id_token": _id_token(cmd.token),
                        "evse_id": target.ocpp_evse_id,
                    },
                )
        else:
            assert isinstance(cmd, CancelReservation)
            assert ctx.peer_id is not None
            return {
                "identity": None,
                "call": None,
                "reservation_workflow_id": reservation_workflow_id(cpo_id, ctx.peer_id, cmd.reservation_id),
                "reservation_id": ocpp_reservation_id(cmd.reservation_id),
            }
    return {"identity": target.identity, "call": _ocpp_call(target, action, payload, settings, cpo_id)}


async def _start(request: Request, workflow_id: str, command_key: str, inp: CommandInput, settings: Settings) -> None:
    """Start the command's workflow. The same command again (an eMSP's retry: same `command_key`) is
    not started twice. A RESERVE_NOW's workflow is per reservation id (CANCEL_RESERVATION finds it):
    another command for a reservation whose workflow still runs is Rejected, a finished one is
    replaced by a new run."""
    gateway = request.app.state.temporal
    reservation = workflow_id != command_key
    try:
        async with asyncio.timeout(settings.temporal_rpc_timeout):
            client = await gateway.client()
            if reservation:
                try:
                    described = await client.get_workflow_handle(workflow_id).describe()
                except RPCError as exc:
                    if exc.status != RPCStatusCode.NOT_FOUND:
                        raise
                else:
                    if (await described.memo()).get("command_key") == command_key:
                        return  # this very command, running or done
                    if described.status == WorkflowExecutionStatus.RUNNING:
                        raise Rejected(f"reservation {workflow_id} has a command in progress: retry shortly", 1000)
            await client.start_workflow(
                WORKFLOW,
                inp,
                id=workflow_id,
                task_queue=settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL
                if reservation
                else WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if reservation
                else WorkflowIDReusePolicy.REJECT_DUPLICATE,
                execution_timeout=timedelta(seconds=inp.deadline_s + RUN_SLACK_S),
                memo={"command_key": command_key},
                static_summary=f"{inp.command} for CPO {inp.cpo_id}",
            )
    except WorkflowAlreadyStartedError:
        if reservation:  # started by another command between the look and the start
            raise Rejected("this reservation has a command in progress: retry shortly", 1000) from None
        return  # this very command ran already: its result went to response_url
    except TimeoutError:
        raise OcpiError(3000, "commands cannot be executed right now: Temporal did not answer in time", 503) from None
    except (BackendUnavailable, RPCError, RuntimeError) as exc:  # RuntimeError: the SDK's failed connect
        raise OcpiError(3000, f"commands cannot be executed right now: {exc}", 503) from None


async def post_command(request: Request, ctx: OcpiContext) -> Response:
    settings: Settings = request.app.state.settings
    timeout = settings.command_timeout
    command = request.path_params["command"].upper()
    supported = COMMANDS_211 if ctx.version == "2.1.1" else tuple(COMMANDS)
    if command not in supported:
        raise OcpiError(2000, f"unknown command {command}; supported: {', '.join(supported)}", http_status=404)
    cmd = parse_command(command, await json_body(request), ctx.version)
    assert ctx.peer_id is not None
    command_key = command_workflow_id(ctx.cpo_id, ctx.peer_id, command, cmd.response_url)
    workflow_id = (  # CANCEL_RESERVATION finds a RESERVE_NOW by its reservation id
        reservation_workflow_id(ctx.cpo_id, ctx.peer_id, cmd.reservation_id)
        if isinstance(cmd, ReserveNow)
        else command_key
    )
    try:
        plan = await _plan(ctx, cmd, workflow_id, settings)
    except Rejected as exc:
        return ocpi_response(
            _command_response("REJECTED", 0, exc.message), status_code=exc.status_code, status_message=exc.message
        )
    except _UnknownSession as exc:
        return ocpi_response(_command_response("UNKNOWN_SESSION", 0, str(exc)))
    assert ctx.peer is not None and ctx.peer_id is not None
    delivery = ResultDelivery(
        cpo_id=ctx.cpo_id,
        peer_id=ctx.peer_id,
        version=ctx.version,
        response_url=cmd.response_url,
        body={},
        correlation_id=ctx.correlation_id,
        from_country_code=ctx.cpo.country_code,
        from_party_id=ctx.cpo.party_id,
        to_country_code=ctx.peer.country_code,
        to_party_id=ctx.peer.party_id,
        attempt_s=settings.outbound_timeout + 2,
    )
    inp = CommandInput(command=command, cpo_id=ctx.cpo_id, delivery=delivery, deadline_s=timeout, **plan)
    try:
        await _start(request, workflow_id, command_key, inp, settings)
    except Rejected as exc:
        return ocpi_response(_command_response("REJECTED", 0, exc.message))
    return ocpi_response(_command_response("ACCEPTED", timeout))


routes: list[BaseRoute] = [
    ocpi_route(
        "/ocpi/peer/{cpo_id:int}/{version}/commands/{command}",
        post_command,
        methods=["POST"],
        module="commands",
        needs_peer=True,
    )
]
