"""A small CSMS for testing the charger simulators: the `ocpp` library's server side on `websockets.serve`.

- Checks Basic auth in `process_request`, before the upgrade: unknown identity → 404, bad password → 401.
- Negotiates `ocpp1.6` / `ocpp2.0.1` and runs one library ChargePoint per connection.
- Records, per identity: upgrade attempts (with their headers), connections, disconnects, boots,
  StatusNotifications and Heartbeats (times on the loop clock).
- Answers BootNotification from a per-identity plan (e.g. Pending then Accepted), else the default.
- Transactions: answers Authorize / StartTransaction / MeterValues / StopTransaction (1.6) and
  Authorize / TransactionEvent (2.0.1), records every such call in order (`Record.calls`, with the
  StatusNotifications), mints 1.6 transaction ids idempotently (the same id for a resent
  StartTransaction), answers tokens from `token_status`, and can misbehave once per action
  (`misbehave`: drop the link before answering, or answer a CALLERROR).
- Sends CALLs to a charger (`call`), drops connections (cleanly or not), stops and restarts on the
  same port.

Run as a script it serves the benchmark (`bench/bench_sim.py`): counts only, no per-frame records.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import logging
import resource
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import ocpp.messages
from ocpp import v16, v201
from ocpp.exceptions import InternalError
from ocpp.routing import on
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

PREFIX = "/ocpp/"
_quiet = logging.getLogger("tests.csms_peer.ocpp")
_quiet.setLevel(logging.CRITICAL)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Record:
    """What one identity did."""

    attempts: list[float] = field(default_factory=list)  # upgrade requests, accepted or not (loop time)
    headers: list[dict[str, str]] = field(default_factory=list)  # of every upgrade request
    refusals: list[int] = field(default_factory=list)  # HTTP statuses we answered instead of upgrading
    connects: int = 0
    disconnects: int = 0
    subprotocols: list[str] = field(default_factory=list)
    boots: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # status + transaction calls, in order

    def of(self, *actions: str) -> list[dict[str, Any]]:
        return [payload for action, payload in self.calls if action in actions]


class _Csms16(v16.ChargePoint):
    def __init__(self, peer: CsmsPeer, identity: str, ws: ServerConnection) -> None:
        super().__init__(identity, ws, response_timeout=5, logger=_quiet)
        self.peer = peer

    @on(v16.enums.Action.boot_notification)
    def on_boot(self, **payload: Any) -> v16.call_result.BootNotification:
        status, interval = self.peer.boot_answer(self.id, payload)
        return v16.call_result.BootNotification(current_time=_now(), interval=interval, status=status)

    @on(v16.enums.Action.status_notification)
    def on_status(self, **payload: Any) -> v16.call_result.StatusNotification:
        self.peer.record_status(self.id, payload)
        return v16.call_result.StatusNotification()

    @on(v16.enums.Action.heartbeat)
    async def on_heartbeat(self) -> v16.call_result.Heartbeat:
        await self.peer.record_heartbeat(self.id)
        return v16.call_result.Heartbeat(current_time=_now())

    @on(v16.enums.Action.authorize)
    async def on_authorize(self, **payload: Any) -> v16.call_result.Authorize:
        await self.peer.record_call(self.id, "Authorize", payload)
        return v16.call_result.Authorize(id_tag_info={"status": self.peer.token(payload["id_tag"])})

    @on(v16.enums.Action.start_transaction)
    async def on_start(self, **payload: Any) -> v16.call_result.StartTransaction:
        await self.peer.record_call(self.id, "StartTransaction", payload)
        key = (self.id, payload["connector_id"], payload["timestamp"], payload["meter_start"])
        transaction_id = self.peer.transaction_ids.setdefault(key, 100 + len(self.peer.transaction_ids))
        return v16.call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": self.peer.token(payload["id_tag"])}
        )

    @on(v16.enums.Action.meter_values)
    async def on_meter_values(self, **payload: Any) -> v16.call_result.MeterValues:
        await self.peer.record_call(self.id, "MeterValues", payload)
        return v16.call_result.MeterValues()

    @on(v16.enums.Action.stop_transaction)
    async def on_stop(self, **payload: Any) -> v16.call_result.StopTransaction:
        await self.peer.record_call(self.id, "StopTransaction", payload)
        return v16.call_result.StopTransaction()


class _Csms201(v201.ChargePoint):
    def __init__(self, peer: CsmsPeer, identity: str, ws: ServerConnection) -> None:
        super().__init__(identity, ws, response_timeout=5, logger=_quiet)
        self.peer = peer

    @on(v201.enums.Action.boot_notification)
    def on_boot(self, **payload: Any) -> v201.call_result.BootNotification:
        status, interval = self.peer.boot_answer(self.id, payload)
        return v201.call_result.BootNotification(current_time=_now(), interval=interval, status=status)

    @on(v201.enums.Action.status_notification)
    def on_status(self, **payload: Any) -> v201.call_result.StatusNotification:
        self.peer.record_status(self.id, payload)
        return v201.call_result.StatusNotification()

    @on(v201.enums.Action.heartbeat)
    async def on_heartbeat(self, **_: Any) -> v201.call_result.Heartbeat:
        await self.peer.record_heartbeat(self.id)
        return v201.call_result.Heartbeat(current_time=_now())

    @on(v201.enums.Action.authorize)
    async def on_authorize(self, **payload: Any) -> v201.call_result.Authorize:
        await self.peer.record_call(self.id, "Authorize", payload)
        return v201.call_result.Authorize(id_token_info={"status": self.peer.token(payload["id_token"]["id_token"])})

    @on(v201.enums.Action.transaction_event)
    async def on_transaction_event(self, **payload: Any) -> v201.call_result.TransactionEvent:
        await self.peer.record_call(self.id, "TransactionEvent", payload)
        if payload["event_type"] == "Started" and "id_token" in payload:
            status = self.peer.token(payload["id_token"]["id_token"])
            return v201.call_result.TransactionEvent(id_token_info={"status": status})
        return v201.call_result.TransactionEvent()


class CsmsPeer:
    def __init__(
        self,
        passwords: dict[str, str] | None = None,
        *,
        boot_status: str = "Accepted",
        interval: int = 60,
        record: bool = True,
        compression: str | None = "deflate",
        ping_interval: float | None = 20,
    ) -> None:
        """`passwords`: identity → password; None accepts any identity and password."""
        self.passwords = passwords
        self.boot_status, self.interval = boot_status, interval
        self.boot_plans: dict[str, list[tuple[str, int]]] = {}  # identity → answers, consumed in order
        self.unavailable: set[str] = set()  # identities answered HTTP 503 at the upgrade
        self.heartbeat_delay = 0.0  # seconds before a Heartbeat is answered (an unresponsive CSMS)
        self.record = record  # False: counters only (benchmarks)
        self.compression = compression
        self.ping_interval = ping_interval  # WebSocket pings to each charger (websockets' and uvicorn's default: 20 s)
        self.records: dict[str, Record] = {}
        self.connections: dict[str, tuple[ServerConnection, v16.ChargePoint | v201.ChargePoint]] = {}
        self.port = 0
        self.token_status: dict[str, str] = {}  # id tag → Authorize / Start answer (default Accepted)
        self.transaction_ids: dict[tuple[str, int, str, int], int] = {}  # 1.6 Start key → id (idempotent)
        self.misbehave: dict[tuple[str, str], list[str]] = {}  # (identity, action) → "drop" | "error", in order
        self.totals = {"connects": 0, "disconnects": 0, "boots": 0, "statuses": 0, "heartbeats": 0, "transactions": 0}
        self._server: Server | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> int:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            port or self.port,
            subprotocols=["ocpp1.6", "ocpp2.0.1"],
            process_request=self._check_request,
            compression=self.compression,
            ping_interval=self.ping_interval,
            max_size=64 * 1024,
            logger=_quiet,  # the test's log then holds only what the simulators log
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Closes every connection (close code 1001) and the listening socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def restart(self) -> None:
        await self.stop()
        await self.start(self.port)

    def url(self, cpo: str = "7") -> str:
        return f"ws://127.0.0.1:{self.port}{PREFIX}{cpo}"

    # --- what the chargers did --------------------------------------------------------------------

    def rec(self, identity: str) -> Record:
        return self.records.setdefault(identity, Record())

    def boot_answer(self, identity: str, payload: dict[str, Any]) -> tuple[str, int]:
        self.totals["boots"] += 1
        if self.record:
            self.rec(identity).boots.append(payload)
        plan = self.boot_plans.get(identity)
        return plan.pop(0) if plan else (self.boot_status, self.interval)

    def record_status(self, identity: str, payload: dict[str, Any]) -> None:
        self.totals["statuses"] += 1
        if self.record:
            self.rec(identity).statuses.append(payload)
            self.rec(identity).calls.append(("StatusNotification", payload))

    def token(self, id_tag: str) -> str:
        return self.token_status.get(id_tag, "Accepted")

    async def record_call(self, identity: str, action: str, payload: dict[str, Any]) -> None:
        """Records a transaction call, then misbehaves if planned: "drop" aborts the TCP connection
        (the charger never gets an answer), "error" answers an InternalError CALLERROR."""
        self.totals["transactions"] += 1
        if self.record:
            self.rec(identity).calls.append((action, payload))
        plan = self.misbehave.get((identity, action))
        if plan:
            mode = plan.pop(0)
            if mode == "drop":
                self.connections[identity][0].transport.abort()  # the answer below can no longer be sent
            raise InternalError("planned failure")

    async def record_heartbeat(self, identity: str) -> None:
        self.totals["heartbeats"] += 1
        if self.record:
            self.rec(identity).heartbeats.append(asyncio.get_running_loop().time())
        if self.heartbeat_delay:
            await asyncio.sleep(self.heartbeat_delay)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.02)

    # --- acting on chargers -----------------------------------------------------------------------

    async def call(self, identity: str, payload: Any) -> Any:
        """Sends a CALL (a `v16.call.*` / `v201.call.*` payload) and returns the charger's answer;
        a CALLERROR raises."""
        return await self.connections[identity][1].call(payload, suppress=False)

    async def drop(self, identity: str, *, clean: bool = True) -> None:
        """Closes the charger's socket: a close handshake, or (clean=False) a TCP abort."""
        ws = self.connections[identity][0]
        if clean:
            await ws.close()
        else:
            ws.transport.abort()

    # --- the server -------------------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not request.path.startswith(PREFIX) or "/" not in request.path[len(PREFIX) :]:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        identity = unquote(request.path.rsplit("/", 1)[1])
        if self.record:
            record = self.rec(identity)
            record.attempts.append(asyncio.get_running_loop().time())
            record.headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        status = self._authenticate(identity, request.headers.get("Authorization", ""))
        if status is None:
            return None
        if self.record:
            self.rec(identity).refusals.append(status)
        response = connection.respond(status, f"{status.phrase}\n")
        if status == HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
        return response

    def _authenticate(self, identity: str, authorization: str) -> HTTPStatus | None:
        if identity in self.unavailable:
            return HTTPStatus.SERVICE_UNAVAILABLE
        if self.passwords is not None and identity not in self.passwords:
            return HTTPStatus.NOT_FOUND  # OCPP 2.0.1 part 4 §3.2: unknown charger
        scheme, _, token = authorization.partition(" ")
        try:
            username, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return HTTPStatus.UNAUTHORIZED
        if scheme != "Basic" or username != identity:
            return HTTPStatus.UNAUTHORIZED
        if self.passwords is not None and password != self.passwords[identity]:
            return HTTPStatus.UNAUTHORIZED
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        identity = unquote(ws.request.path.rsplit("/", 1)[1])
        if ws.subprotocol not in ("ocpp1.6", "ocpp2.0.1"):
            await ws.close(1002, "an OCPP subprotocol is required")
            return
        cp = _Csms16(self, identity, ws) if ws.subprotocol == "ocpp1.6" else _Csms201(self, identity, ws)
        self.connections[identity] = (ws, cp)
        self.totals["connects"] += 1
        if self.record:
            record = self.rec(identity)
            record.connects += 1
            record.subprotocols.append(ws.subprotocol)
        try:
            await cp.start()
        except ConnectionClosed:
            pass
        finally:
            if self.connections.get(identity, (None,))[0] is ws:
                del self.connections[identity]
            self.totals["disconnects"] += 1
            if self.record:
                self.rec(identity).disconnects += 1


async def _serve_forever(port: int, interval: int, ping_interval: float | None) -> None:
    """Benchmark mode: accept anyone, answer Accepted with `interval`, print one line of totals on SIGUSR1."""
    peer = CsmsPeer(interval=interval, record=False, compression=None, ping_interval=ping_interval)
    await peer.start(port)
    print(f"READY {peer.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(f"TOTALS {peer.totals}", flush=True))
    await stop.wait()
    await peer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interval", type=int, default=300, help="heartbeat interval in BootNotification answers")
    parser.add_argument("--ping", type=float, default=20, help="WebSocket ping interval, s (0: none)")
    parser.add_argument("--inline-validation", action="store_true", help="ocpp schema checks on the loop")
    args = parser.parse_args()
    ocpp.messages.ASYNC_VALIDATION = not args.inline_validation
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one descriptor per charger
    asyncio.run(_serve_forever(args.port, args.interval, args.ping or None))


if __name__ == "__main__":
    sys.exit(main())
