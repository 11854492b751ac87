"""What the CSMS's ChargePoint classes of both versions share: the link to the domain side, the
socket, a quiet library logger, and the bookkeeping of our own CALLs for the frame log."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import ocpp.messages
from ocpp.messages import Call, get_validator, validate_payload

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


def ocpp_now() -> str:
    """OCPP dateTime: UTC with milliseconds and `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


class CsmsChargePointMixin:
    """Mixed in before `ocpp.v16.ChargePoint` / `ocpp.v201.ChargePoint`."""

    _validated_requests: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        validated = set(cls._validated_requests)
        for value in vars(cls).values():
            # The library calls inspect.signature(handler) for every CALL; a stored signature is its
            # fast path (a third of the cost).
            if hasattr(value, "_on_action") or hasattr(value, "_after_action"):
                value.__signature__ = inspect.signature(value)
            # The library validates a handler's request and its answer, or neither. Only the request
            # comes from the charger: our answers are built from the library's own typed dataclasses.
            # So the library skips both and the requests are validated here (`_handle_call`); a
            # handler that asked to skip validation keeps that.
            if hasattr(value, "_on_action") and not value._skip_schema_validation:
                value._skip_schema_validation = True
                validated.add(value._on_action)
        cls._validated_requests = frozenset(validated)

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

    async def _handle_call(self, msg: Call) -> Any:
        if msg.action in self._validated_requests and not _valid_request(self._ocpp_version, msg):  # type: ignore[attr-defined]
            await validate_payload(msg, self._ocpp_version)  # type: ignore[attr-defined]
        return await super()._handle_call(msg)  # type: ignore[misc]

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
