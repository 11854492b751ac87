"""What the CSMS's ChargePoint classes of both versions share: the link to the domain side, the
socket, a quiet library logger, and the bookkeeping of our own CALLs for the frame log."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import ocpp.messages

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


def ocpp_now() -> str:
    """OCPP dateTime: UTC with milliseconds and `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


class CsmsChargePointMixin:
    """Mixed in before `ocpp.v16.ChargePoint` / `ocpp.v201.ChargePoint`."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The library calls inspect.signature(handler) for every CALL; a stored signature is its
        # fast path (a third of the cost).
        for value in vars(cls).values():
            if hasattr(value, "_on_action") or hasattr(value, "_after_action"):
                value.__signature__ = inspect.signature(value)

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
