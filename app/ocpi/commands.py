"""Commands module, CPO = Receiver: POST `/commands/{command}`.

The body is validated (2001), locations/EVSEs/connectors are checked (2003 with REJECTED), then a
`CommandResponse` is answered at once and the `CommandResult` is POSTed to `response_url` exactly
once, in the background, with Token B (no retry: spec). Chargers are not driven over OCPP yet, so a
command that reaches a charge point always ends FAILED with a message naming the charge point.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.ocpi import client
from app.ocpi.egress import PeerUrl
from app.ocpi.transport import OcpiContext, OcpiError, json_body, ocpi_response, ocpi_route, parse_ocpi_datetime
from app.store.ocpi_tables import OcpiSession
from app.store.tables import Charger, Connector, Evse, Location

RESPONSE_TIMEOUT_S = 30  # CommandResponse.timeout: how long the eMSP should wait for the result
RESULT_DELAY_S = 0.05  # the result follows the response, as it would after a round trip to the charger
ONLINE = "ONLINE"

Id36 = Annotated[str, StringConstraints(min_length=1, max_length=36)]


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="allow")
    response_url: PeerUrl  # no userinfo, http(s) only: checked here (2001), vetted again on the call


class _TokenRef(BaseModel):
    """The eMSP already authorized the token: only its shape is checked (spec: SHALL NOT validate)."""

    model_config = ConfigDict(extra="allow")
    uid: Id36
    type: str


class StartSession(_Cmd):
    token: _TokenRef
    location_id: Id36
    evse_uid: Id36 | None = None
    connector_id: Id36 | None = None
    authorization_reference: Id36 | None = None

    @model_validator(mode="after")
    def _connector_needs_evse(self) -> StartSession:
        if self.connector_id is not None and self.evse_uid is None:
            raise ValueError("evse_uid is required when connector_id is given")
        return self


class StopSession(_Cmd):
    session_id: Id36


class ReserveNow(_Cmd):
    token: _TokenRef
    expiry_date: str
    reservation_id: Id36
    location_id: Id36
    evse_uid: Id36 | None = None
    authorization_reference: Id36 | None = None

    @model_validator(mode="after")
    def _expiry_is_datetime(self) -> ReserveNow:
        parse_ocpi_datetime(self.expiry_date)  # ValueError → validation error
        return self


class CancelReservation(_Cmd):
    reservation_id: Id36


class UnlockConnector(_Cmd):
    location_id: Id36
    evse_uid: Id36
    connector_id: Id36


COMMANDS: dict[str, type[_Cmd]] = {
    "START_SESSION": StartSession,
    "STOP_SESSION": StopSession,
    "RESERVE_NOW": ReserveNow,
    "CANCEL_RESERVATION": CancelReservation,
    "UNLOCK_CONNECTOR": UnlockConnector,
}
COMMANDS_211 = ("START_SESSION", "STOP_SESSION", "RESERVE_NOW", "UNLOCK_CONNECTOR")


def _text(message: str) -> list[dict[str, str]]:
    return [{"language": "en", "text": message}]


def _command_response(result: str, message: str | None = None, timeout: int = RESPONSE_TIMEOUT_S) -> dict[str, Any]:
    out: dict[str, Any] = {"result": result, "timeout": timeout}
    if message:
        out["message"] = _text(message)
    return out


def _parse(command: str, body: Any) -> _Cmd:
    if not isinstance(body, dict):
        raise OcpiError(2001, f"{command} body must be an object")
    try:
        return COMMANDS[command].model_validate(body)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise OcpiError(2001, f"invalid {command}: {detail}") from None


class _Rejected(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


async def _charge_point_status(ctx: OcpiContext, cmd: _Cmd) -> tuple[str, str]:
    """Checks the referenced location/EVSE/connector exist (raises _Rejected → 2003) and returns the
    (identity, status) of the charge point the command would go to."""
    assert ctx.db is not None
    location_id: str = cmd.location_id  # type: ignore[attr-defined]
    evse_uid: str | None = getattr(cmd, "evse_uid", None)
    connector_id: str | None = getattr(cmd, "connector_id", None)
    async with ctx.db.session() as session:
        if await session.get(Location, (ctx.cpo_id, location_id)) is None:
            raise _Rejected(f"unknown location {location_id}")
        if evse_uid is None:
            rows = await session.execute(
                select(Charger.identity, Charger.status).where(
                    Charger.cpo_id == ctx.cpo_id, Charger.location_id == location_id
                )
            )
            chargers = rows.all()
            online = [c for c in chargers if c.status == ONLINE]
            pick = (online or chargers or [(f"(none at {location_id})", "OFFLINE")])[0]
            return str(pick[0]), str(pick[1])
        evse = await session.get(Evse, (ctx.cpo_id, evse_uid))
        if evse is None or evse.location_id != location_id:
            raise _Rejected(f"unknown EVSE {evse_uid} at location {location_id}")
        if connector_id is not None and await session.get(Connector, (ctx.cpo_id, evse_uid, connector_id)) is None:
            raise _Rejected(f"unknown connector {connector_id} on EVSE {evse_uid}")
        charger = await session.get(Charger, (ctx.cpo_id, evse.charger_identity))
    return evse.charger_identity, charger.status if charger else "OFFLINE"


def _not_executed(identity: str, status: str) -> dict[str, Any]:
    if status != ONLINE:
        why = f"charge point {identity} is not online (status {status}): chargers are not connected yet"
    else:
        why = f"charge point {identity} is online but remote commands are not forwarded to chargers yet"
    return {"result": "FAILED", "message": _text(why)}


async def _outcome(ctx: OcpiContext, cmd: _Cmd) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(CommandResponse, CommandResult to post or None)."""
    if isinstance(cmd, StopSession):
        assert ctx.db is not None
        async with ctx.db.session() as session:
            found = await session.get(OcpiSession, (ctx.cpo_id, cmd.session_id))
        if found is None:
            return _command_response("UNKNOWN_SESSION", f"unknown session {cmd.session_id}", 0), None
        evse = found.data.get("evse_uid", "?")
        return _command_response("ACCEPTED"), _not_executed(f"of EVSE {evse}", "OFFLINE")
    if isinstance(cmd, CancelReservation):
        # RESERVE_NOW never succeeds while chargers are offline, so no reservation can exist.
        message = f"unknown reservation {cmd.reservation_id}: no reservation exists while chargers are offline"
        return _command_response("ACCEPTED"), {"result": "UNKNOWN_RESERVATION", "message": _text(message)}
    identity, status = await _charge_point_status(ctx, cmd)
    return _command_response("ACCEPTED"), _not_executed(identity, status)


_background: set[asyncio.Task[None]] = set()


async def _post_result(ctx: OcpiContext, response_url: str, result: dict[str, Any]) -> None:
    await asyncio.sleep(RESULT_DELAY_S)
    assert ctx.db is not None and ctx.peer is not None
    if ctx.version == "2.1.1":  # 2.1.1 posts a CommandResponse-shaped result without FAILED
        result = {**result, "result": "REJECTED" if result["result"] == "FAILED" else result["result"]}
    await client.call(
        ctx.db,
        cpo_id=ctx.cpo_id,
        method="POST",
        url=response_url,
        token=ctx.peer.token_b,
        version=ctx.version,
        module="commands",
        body=result,
        correlation_id=ctx.correlation_id,
        routing=client.Routing(ctx.cpo.country_code, ctx.cpo.party_id, ctx.peer.country_code, ctx.peer.party_id),
    )


def _schedule(ctx: OcpiContext, response_url: str, result: dict[str, Any]) -> None:
    task = asyncio.get_running_loop().create_task(_post_result(ctx, response_url, result))
    _background.add(task)  # the loop only keeps weak references to tasks
    task.add_done_callback(_background.discard)


async def post_command(request: Request, ctx: OcpiContext) -> Response:
    command = request.path_params["command"].upper()
    supported = COMMANDS_211 if ctx.version == "2.1.1" else tuple(COMMANDS)
    if command not in supported:
        raise OcpiError(2000, f"unknown command {command}; supported: {', '.join(supported)}", http_status=404)
    cmd = _parse(command, await json_body(request))
    try:
        response, result = await _outcome(ctx, cmd)
    except _Rejected as exc:
        return ocpi_response(
            _command_response("REJECTED", exc.message, 0), status_code=2003, status_message=exc.message
        )
    if result is not None:
        _schedule(ctx, cmd.response_url, result)
    return ocpi_response(response)


routes: list[BaseRoute] = [
    ocpi_route(
        "/ocpi/peer/{cpo_id:int}/{version}/commands/{command}",
        post_command,
        methods=["POST"],
        module="commands",
        needs_peer=True,
    )
]
