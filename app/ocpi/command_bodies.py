"""The bodies of the five OCPI commands, validated in full (OCPI 2001 with every problem named):
lengths, the response_url, datetimes, and the Token of START_SESSION / RESERVE_NOW as the CPO's
version defines it (type enum included). The eMSP authorized the token already: only its shape is
checked (spec: the CPO SHALL NOT validate it again).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from app.ocpi.egress import PeerUrl
from app.ocpi.tokens import Token211, Token221
from app.ocpi.transport import OcpiError, parse_ocpi_datetime

Id36 = Annotated[str, StringConstraints(min_length=1, max_length=36)]


def _reservation_id(value: Any) -> Any:
    """2.1.1 sends reservation_id as an integer; it is kept as its decimal text."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    return value


ReservationId = Annotated[Id36, BeforeValidator(_reservation_id)]


class Command(BaseModel):
    model_config = ConfigDict(extra="allow")
    response_url: PeerUrl  # no userinfo, http(s) only: checked here (2001), vetted again on the call


class StartSession(Command):
    token: dict[str, Any]
    location_id: Id36
    evse_uid: Id36 | None = None
    connector_id: Id36 | None = None
    authorization_reference: Id36 | None = None

    @model_validator(mode="after")
    def _connector_needs_evse(self) -> StartSession:
        if self.connector_id is not None and self.evse_uid is None:
            raise ValueError("evse_uid is required when connector_id is given")
        return self


class StopSession(Command):
    session_id: Id36


class ReserveNow(Command):
    token: dict[str, Any]
    expiry_date: str
    reservation_id: ReservationId
    location_id: Id36
    evse_uid: Id36 | None = None
    authorization_reference: Id36 | None = None

    def expiry(self) -> datetime:
        return parse_ocpi_datetime(self.expiry_date)

    @field_validator("expiry_date")
    @classmethod
    def _expiry_is_a_future_datetime(cls, value: str) -> str:
        if parse_ocpi_datetime(value) <= datetime.now(UTC):  # its ValueError → a validation error too
            raise ValueError(f"{value} is not in the future")
        return value


class CancelReservation(Command):
    reservation_id: ReservationId


class UnlockConnector(Command):
    location_id: Id36
    evse_uid: Id36
    connector_id: Id36


COMMANDS: dict[str, type[Command]] = {
    "START_SESSION": StartSession,
    "STOP_SESSION": StopSession,
    "RESERVE_NOW": ReserveNow,
    "CANCEL_RESERVATION": CancelReservation,
    "UNLOCK_CONNECTOR": UnlockConnector,
}
COMMANDS_211 = ("START_SESSION", "STOP_SESSION", "RESERVE_NOW", "UNLOCK_CONNECTOR")


def _problems(exc: ValidationError, prefix: str = "") -> str:
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
    )


def parse_command(command: str, body: Any, version: str) -> Command:
    """The command's body, or OcpiError 2001 saying what is wrong."""
    if not isinstance(body, dict):
        raise OcpiError(2001, f"{command} body must be an object")
    try:
        cmd = COMMANDS[command].model_validate(body)
    except ValidationError as exc:
        raise OcpiError(2001, f"invalid {command}: {_problems(exc)}") from None
    token = getattr(cmd, "token", None)
    if token is not None:
        try:
            (Token211 if version == "2.1.1" else Token221).model_validate(token)
            parse_ocpi_datetime(str(token["last_updated"]))
        except ValidationError as exc:
            raise OcpiError(2001, f"invalid {command}: {_problems(exc, 'token.')}") from None
        except ValueError as exc:
            raise OcpiError(2001, f"invalid {command}: token.last_updated: {exc}") from None
    return cmd
