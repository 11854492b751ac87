"""Commands to chargers, inside each API process: a Temporal worker on task queue
`csms-{api_instance}` (the id this process writes into `charger.api_instance`) whose one activity
sends an OCPP call on a charger WebSocket held here and returns the charger's answer.

The worker connects in the background and keeps trying while Temporal is down: the API (and the
chargers' CSMS) must not depend on Temporal to start. A charger not held here → "NotConnectedHere"
(the workflow reads the route again: it may have reconnected to another process).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import timedelta
from enum import Enum
from typing import Any

import ocpp.v16.call
import ocpp.v201.call
from ocpp.exceptions import OCPPError
from starlette.websockets import WebSocketDisconnect
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from app.csms.runtime import Csms
from app.lifecycle import temporal_client
from app.observability.temporal import LogContextInterceptor
from app.ocpi.command_models import ConnectionClose, OcppAnswer, OcppCall, csms_queue
from app.settings import Settings

log = logging.getLogger("cpolab.csms.commands")

CALLS = {"1.6": ocpp.v16.call, "2.0.1": ocpp.v201.call}
RECONNECT_MAX_S = 30.0
MAX_CONCURRENT_CALLS = 200  # calls in flight from one API process (each is one await on a socket)
STOP_TIMEOUT_S = 7.0  # the worker's own graceful timeout (≤ 5 s) plus its final RPCs


def _plain(value: Any) -> Any:
    """A call result's fields as JSON values (the library's enums are str subclasses)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class CommandSender:
    def __init__(self, csms: Csms) -> None:
        self.csms = csms

    @activity.defn
    async def send_ocpp_call(self, call: OcppCall) -> OcppAnswer:
        charge_point = self.csms.charge_point((call.cpo_id, call.identity))
        if charge_point is None:
            raise ApplicationError(
                f"charger {call.identity} is not connected to this API process", type="NotConnectedHere"
            )
        payload_type = getattr(CALLS.get(call.ocpp_version), call.action, None)
        if payload_type is None:
            message = f"no OCPP {call.ocpp_version} action {call.action}"
            raise ApplicationError(message, type="BadCall", non_retryable=True)
        try:
            request = payload_type(**call.payload)
        except TypeError as exc:
            raise ApplicationError(f"bad {call.action} payload: {exc}", type="BadCall", non_retryable=True) from None
        try:
            # One bound for waiting on the socket's call lock (one CALL at a time per charger) and
            # for the answer; the library's own response timeout is longer.
            async with asyncio.timeout(call.timeout_s):
                result = await charge_point.call(request, suppress=False)
        except TimeoutError:
            raise ApplicationError(
                f"{call.identity} did not answer {call.action} within {call.timeout_s:g} s", type="ChargerTimeout"
            ) from None
        except OCPPError as exc:  # the charger's CALLERROR (or its answer failed the schema)
            return OcppAnswer(error_code=exc.code, error_description=exc.description or None)
        except (WebSocketDisconnect, RuntimeError) as exc:  # the socket closed under the call
            raise ApplicationError(f"{call.identity} disconnected: {exc}", type="ConnectionLost") from None
        fields = _plain(dataclasses.asdict(result))
        status = fields.pop("status", None)
        return OcppAnswer(status=None if status is None else str(status), payload=fields)

    @activity.defn(name="close_charger_connection")
    async def close_connection(self, close: ConnectionClose) -> bool:
        """Close the charger's socket if it is still this connection (False: not here any more)."""
        key = (close.cpo_id, close.identity)
        return await self.csms.disconnect(key, close.connection_id, close.code, close.reason)


class CommandWorker:
    """The `csms-{api_instance}` worker of one API process (started and stopped by its lifespan)."""

    def __init__(self, csms: Csms, settings: Settings) -> None:
        self.csms = csms
        self.settings = settings
        self.task_queue = csms_queue(csms.api_instance)
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _connect(self) -> Client:
        delay = 1.0
        warned = False
        while True:
            try:
                return await temporal_client.connect(self.settings)
            except Exception as exc:  # Temporal down or not yet up: commands wait, the API does not
                (log.debug if warned else log.warning)(
                    "command worker cannot reach Temporal at %s (%s); retrying", self.settings.temporal_address, exc
                )
                warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)

    async def _run(self) -> None:
        client = await self._connect()
        sender = CommandSender(self.csms)
        while True:
            self._worker = Worker(
                client,
                task_queue=self.task_queue,
                activities=[sender.send_ocpp_call, sender.close_connection],
                max_concurrent_activities=MAX_CONCURRENT_CALLS,
                graceful_shutdown_timeout=timedelta(seconds=min(self.settings.worker_shutdown_grace, 5.0)),
                interceptors=[LogContextInterceptor()],
            )
            try:
                await self._worker.run()
                return  # shutdown() was called
            except Exception:
                log.exception("command worker on %s stopped; restarting", self.task_queue)
                await asyncio.sleep(RECONNECT_MAX_S / 10)

    async def stop(self) -> None:
        """Stop polling; calls in flight finish (bounded by their own timeouts) before the sockets close."""
        if self._task is None:
            return
        if self._worker is not None and self._worker.is_running:
            # Bounded: a slow or hung Temporal must not hold up the API's exit (SIGTERM → stop grace).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._worker.shutdown(), STOP_TIMEOUT_S)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
