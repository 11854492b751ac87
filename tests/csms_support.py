"""Test support for the CSMS: an API process without Temporal on a seeded database, and an OCPP-J
client written directly on `websockets` (not app/sim: a client that is not ours)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.databases import AppDatabase
from tests.network_rows import SeededCharger
from tests.stack import Stack

T = TypeVar("T")

# Fast connection-table cycles, so staleness shows within seconds.
# The outbox is not delivered here: the tests read what the CSMS recorded in it.
FAST_TABLE = {"CPOLAB_CSMS_TOUCH_INTERVAL": "0.5", "CPOLAB_CSMS_STALE_AFTER": "3", "CPOLAB_OUTBOX_DISPATCH": "false"}


class CsmsApi:
    """API processes (no Temporal, no worker) on one migrated database."""

    def __init__(self, workdir: Path, database: AppDatabase, env: dict[str, str] | None = None) -> None:
        self.stack = Stack(workdir, database=database)
        self.env = {**self.stack.env, **FAST_TABLE, **(env or {})}
        self.database = database
        self.extra: list[Stack] = []

    @property
    def url(self) -> str:
        return self.stack.api_url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    async def start(self) -> CsmsApi:
        await self.stack.start_api(self.env)
        return self

    async def second(self) -> Stack:
        """Another API process on the same database (its own port and log)."""
        other = Stack(self.stack.workdir / f"api-{len(self.extra) + 2}", database=self.database)
        await other.start_api({**other.env, **FAST_TABLE})
        self.extra.append(other)
        return other

    def stop(self) -> None:
        for other in self.extra:
            other.stop()
        self.stack.stop()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def subprotocol(charger: SeededCharger) -> str:
    return f"ocpp{charger.ocpp_version}"


async def open_charger(
    ws_url: str,
    cpo_id: int,
    charger: SeededCharger,
    *,
    password: str | None = None,
    username: str | None = None,
    subprotocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    generation: int | None = None,
    auth: bool = True,
    max_size: int | None = 2**22,
) -> ClientConnection:
    all_headers = dict(headers or {})
    if auth:
        all_headers["Authorization"] = basic(username or charger.identity, password or charger.password)
    if generation is not None:
        all_headers["X-Cpolab-Pod-Generation"] = str(generation)
    return await connect(
        f"{ws_url}/ocpp/{cpo_id}/{charger.identity}",
        subprotocols=[Subprotocol(p) for p in (subprotocols if subprotocols is not None else [subprotocol(charger)])],
        additional_headers=all_headers,
        compression=None,
        open_timeout=10,
        max_size=max_size,
    )


async def upgrade_refused(connecting: Awaitable[ClientConnection]) -> tuple[int, dict[str, str], bytes]:
    """The HTTP answer of a refused upgrade, header names lower-cased (fails if it was accepted)."""
    try:
        ws = await connecting
    except InvalidStatus as refused:
        response = refused.response
        headers = {name.lower(): value for name, value in response.headers.raw_items()}
        return response.status_code, headers, response.body or b""
    await ws.close()
    raise AssertionError("the upgrade was accepted")


class OcppClient:
    """Raw OCPP-J frames over one connection: CALLs with their answers, anything else as text."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 10) -> list[Any]:
        message_id = f"m{next(self._ids)}"
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        answer = await self.recv(timeout)
        assert answer[1] == message_id, answer
        return answer

    async def raw(self, text: str | bytes, timeout: float = 10) -> list[Any]:
        await self.ws.send(text)
        return await self.recv(timeout)

    async def recv(self, timeout: float = 10) -> list[Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def boot(self, ocpp_version: str) -> list[Any]:
        if ocpp_version == "1.6":
            payload: dict[str, Any] = {"chargePointVendor": "Test", "chargePointModel": "Raw"}
        else:
            payload = {"chargingStation": {"vendorName": "Test", "model": "Raw"}, "reason": "PowerUp"}
        return await self.call("BootNotification", payload)

    async def status(self, ocpp_version: str, evse_id: int, connector_id: int, status: str) -> list[Any]:
        if ocpp_version == "1.6":
            payload: dict[str, Any] = {"connectorId": connector_id, "errorCode": "NoError", "status": status}
        else:
            payload = {
                "timestamp": "2026-01-01T00:00:00Z",
                "connectorStatus": status,
                "evseId": evse_id,
                "connectorId": connector_id,
            }
        return await self.call("StatusNotification", payload)

    async def heartbeat(self) -> list[Any]:
        return await self.call("Heartbeat", {})


async def eventually(probe: Callable[[], T], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Polls `probe` until it returns a truthy value (returned), or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)
