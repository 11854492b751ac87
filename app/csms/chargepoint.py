"""What the CSMS's ChargePoint classes of both versions share: the link to the domain side, the
socket, a quiet library logger, and the bookkeeping of our own CALLs for the frame log."""

from __future__ import annotations

import functools
import inspect
import logging
import time
import uuid
from typing import Any

import jsonschema_rs
import ocpp.messages
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, get_validator, validate_payload

from app.csms import frames, routing
from app.csms.session import ChargerLink
from app.csms.transactions import Transactions
from app.csms.wire import OcppSocket
from app.ocpi.authorize import RealtimeAuthorizer
from app.settings import get_settings

# The library logs every frame at INFO and every handler error (a charger's schema violation too)
# with the whole message at ERROR. Frames go to our own OCPP log; errors that are ours are logged
# by ChargerLink. So the library's logger for CSMS connections stays silent.
LIBRARY_LOG = logging.getLogger("cpolab.csms.ocpp_library")
LIBRARY_LOG.setLevel(logging.CRITICAL + 1)
logging.getLogger("ocpp").setLevel(logging.WARNING)
# Schema validation in the caller's thread: a small payload validates in ~0.1 ms, less than the
# round trip to the library's default thread pool, and the event loop then has the whole GIL.
ocpp.messages.ASYNC_VALIDATION = False


CALL = 2

_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def ocpp_now() -> str:
    """OCPP dateTime: UTC with milliseconds and `Z` (the seconds' text formatted once a second)."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


class CsmsChargePointMixin:
    """Mixed in before `ocpp.v16.ChargePoint` / `ocpp.v201.ChargePoint`."""

    _validated_requests: frozenset[str] = frozenset()
    _plain_routes: frozenset[str] = frozenset()  # actions `_handle_call` answers itself (see there)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        validated = set(cls._validated_requests)
        plain, after = set(cls._plain_routes), set()
        for value in vars(cls).values():
            # The library calls inspect.signature(handler) for every CALL; a stored signature is its
            # fast path (a third of the cost).
            if hasattr(value, "_on_action") or hasattr(value, "_after_action"):
                value.__signature__ = inspect.signature(value)
            if hasattr(value, "_after_action"):
                after.add(value._after_action)
            elif hasattr(value, "_on_action") and "call_unique_id" not in value.__signature__.parameters:
                plain.add(value._on_action)
            # The library validates a handler's request and its answer, or neither. Only the request
            # comes from the charger: our answers are built from the library's own typed dataclasses.
            # So the library skips both and the requests are validated here (`_handle_call`); a
            # handler that asked to skip validation keeps that.
            if hasattr(value, "_on_action") and not value._skip_schema_validation:
                value._skip_schema_validation = True
                validated.add(value._on_action)
        cls._validated_requests = frozenset(validated)
        cls._plain_routes = frozenset(plain - after)

    def __init__(self, link: ChargerLink, socket: OcppSocket, *, response_timeout: float = 30) -> None:
        self.link = link
        self.socket = socket
        super().__init__(link.key[1], socket, response_timeout=response_timeout, logger=LIBRARY_LOG)  # type: ignore[call-arg]

    @functools.cached_property
    def transactions(self) -> Transactions:
        """This connection's transactions (made at the first transaction message)."""
        db = self.link.writer.table.db
        settings = get_settings()
        return Transactions(self.link, db, settings, RealtimeAuthorizer(db, settings))

    async def route_message(self, raw_msg: str) -> None:
        # A CALL was parsed already by OcppSocket.recv (frames.parse, which checked its shape): the
        # library's `unpack` would only parse the same text again. Anything else takes its path.
        frame = self.socket.frame
        if frame is None or self.socket.frame_text is not raw_msg:
            await super().route_message(raw_msg)  # type: ignore[misc]
            return
        msg = Call(frame.message_id, frame.action, frame.payload)
        try:
            await self._handle_call(msg)
        except OCPPError as error:  # as the library's route_message: a CALLERROR for it
            await self._send(msg.create_call_error(error).to_json())  # type: ignore[attr-defined]

    async def _handle_call(self, msg: Call) -> Any:
        if msg.action in self._validated_requests and not _valid_request(self._ocpp_version, msg):  # type: ignore[attr-defined]
            await validate_payload(msg, self._ocpp_version)  # type: ignore[attr-defined]
        if msg.action not in self._plain_routes:  # no handler, an @after hook, or one that wants the id
            return await super()._handle_call(msg)  # type: ignore[misc]
        # The library's steps for a plain @on handler (its validation is ours, above), with memoised
        # key conversions and no inspect.signature per CALL (app.csms.routing).
        handler = self.route_map[msg.action]["_on_action"]  # type: ignore[attr-defined]
        try:
            answer = handler(**routing.snake_case_payload(msg.payload))
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as error:  # as the library: a CALLERROR (an OCPPError's code, else InternalError)
            self.logger.exception("Error while handling request '%s'", msg)  # type: ignore[attr-defined]
            await self._send(msg.create_call_error(error).to_json())  # type: ignore[attr-defined]
            return None
        await self.socket.send(routing.call_result_text(msg.unique_id, answer), frames.CALLRESULT, msg.unique_id)
        return answer

    async def call(
        self, payload: Any, suppress: bool = True, unique_id: str | None = None, skip_schema_validation: bool = False
    ) -> Any:
        # Results reach the library only for a CALL of ours in flight (OcppSocket.recv): the library
        # would queue unsolicited ones without bound.
        unique_id = unique_id or str(uuid.uuid4())
        self.socket.pending[unique_id] = payload.__class__.__name__
        try:
            return await super().call(payload, suppress, unique_id, skip_schema_validation)  # type: ignore[misc]
        finally:
            del self.socket.pending[unique_id]


_fast_validators: dict[tuple[str, str], jsonschema_rs.Draft4Validator] = {}


def _valid_request(ocpp_version: str, msg: Call) -> bool:
    """Whether a charger's request matches the library's schema, checked by a compiled validator of
    that same schema (~1 µs instead of the library's 200–500 µs; formats unchecked, as the library
    does). Only a yes is trusted: on a no the library validates again and raises its own error, so
    the error codes stay the library's."""
    key = (ocpp_version, msg.action)
    validator = _fast_validators.get(key)
    if validator is None:
        try:
            schema = get_validator(CALL, msg.action, ocpp_version).schema
        except Exception:  # no schema for the action: the library decides (and answers) as before
            return False
        validator = _fast_validators[key] = jsonschema_rs.Draft4Validator(schema, validate_formats=False)
    return validator.is_valid(msg.payload)
