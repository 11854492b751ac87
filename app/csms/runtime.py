"""The CSMS of one API process: the `/ocpp/{cpo_id}/{identity}` WebSocket endpoint, the sockets it
holds, and the background loop that touches and sweeps the connection table.

A connection's life: upgrade checks (app.csms.upgrade) → claim of the charger's row and read of its
layout, in the group commit (newest wins; 409 for an older pod generation) → the previous socket of
that charger in this process is closed → accept → the version's ChargePoint runs until the socket
closes → release (OFFLINE and EVSEs UNKNOWN, if the row is still this connection's). A socket of
another process that lost the row notices at its next write or periodic touch, and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from contextvars import ContextVar

from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.csms import ocpp_log, upgrade
from app.csms.connections import ChargerKey, Claim, ConnectionTable, Layout
from app.csms.session import ChargerLink, Topology
from app.csms.v16 import CsmsChargePointV16
from app.csms.v201 import CsmsChargePointV201
from app.csms.wire import OcppSocket
from app.csms.writer import WriteBatcher
from app.settings import Settings
from app.store.db import Database, utcnow

log = logging.getLogger("cpolab.csms")

CHARGE_POINTS = {"1.6": CsmsChargePointV16, "2.0.1": CsmsChargePointV201}
REPLACED = 4000  # close code (private range) for a socket a newer connection of its charger replaced
LOST = 4001  # ... for a socket whose row was taken elsewhere (another process, the sweeper, a teardown)
DETACHED = 4002  # ... for our pod's socket when its charger is detached (handed to the user's client)
ATTACHED = 4003  # ... for the user's client's socket when the charger is attached back to our pod
CLOSE_WAIT_S = 5.0  # how long a disconnect waits for the socket's task to finish
CLAIM_STRIPES = 64
# Set in the connection's own task once a denial response went out (see DenialLogFilter).
_denied: ContextVar[bool] = ContextVar("cpolab_csms_denied", default=False)
INCOMPLETE_HANDSHAKE = "ASGI callable returned without completing handshake"


class DenialLogFilter(logging.Filter):
    """uvicorn's websockets-sansio protocol logs "ASGI callable returned without completing handshake."
    at ERROR after every denial response it sent on our behalf (it never marks that handshake done;
    Kludex/uvicorn#3138). A client refused for bad credentials is no server error, and a hostile one
    could fill the log with them. The record is dropped only when this connection's task did send a
    denial: uvicorn logs it from that task, once the endpoint returned, so the flag is visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_denied.get() and record.getMessage().startswith(INCOMPLETE_HANDSHAKE))


def install_denial_log_filter() -> None:
    """On uvicorn's error logger, once per process (an app built twice must not stack filters)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DenialLogFilter) for f in logger.filters):
        logger.addFilter(DenialLogFilter())


class Connection:
    """One accepted charger socket in this process."""

    def __init__(self, key: ChargerKey, connection_id: str, websocket: WebSocket) -> None:
        self.key = key
        self.connection_id = connection_id
        self.websocket = websocket
        self.claimed_at = float("inf")  # set once the claim committed
        self.task: asyncio.Task[None] | None = None
        self.close_code = 1000
        self.close_reason = ""
        self.ended = False
        self.charge_point: CsmsChargePointV16 | CsmsChargePointV201 | None = None  # once accepted

    def end(self, code: int, reason: str) -> None:
        """Stop serving this socket (from any task); the serving task closes it and cleans up."""
        self.close_code, self.close_reason = code, reason
        self.ended = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class Csms:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.api_instance = str(uuid.uuid4())  # this process, in charger.api_instance
        self.table = ConnectionTable(db, self.api_instance)
        self.writer = WriteBatcher(self.table)
        self.live: dict[ChargerKey, Connection] = {}
        self._claiming: set[str] = set()  # connection ids claimed but not yet in `live`
        self._stripes = [asyncio.Lock() for _ in range(CLAIM_STRIPES)]
        self._loop_task: asyncio.Task[None] | None = None

    # ---- lifecycle (app lifespan) ----

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._maintain())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        for connection in list(self.live.values()):
            connection.end(1012, "server restarting")
        tasks = [c.task for c in self.live.values() if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await ocpp_log.flush(self.db)

    async def _maintain(self) -> None:
        interval = self.settings.csms_touch_interval
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))  # replicas spread their sweeps
            try:
                await self.touch()
                swept = await self.table.sweep(utcnow(), self.settings.csms_stale_after)
                if swept:
                    log.info("%d stale charger(s) marked OFFLINE", swept)
            except Exception:
                log.exception("touching/sweeping the connection table failed; retrying in %.0f s", interval)

    async def touch(self) -> None:
        """Mark our chargers seen; close sockets whose row went elsewhere; release rows we hold
        without a socket (a release that failed earlier)."""
        started = time.monotonic()
        held = await self.table.touch()
        for key, connection in list(self.live.items()):
            if connection.claimed_at < started and held.get(key) != connection.connection_id:
                connection.end(LOST, "this connection no longer holds the charger")
        for key, connection_id in held.items():
            live = self.live.get(key)
            if (live is None or live.connection_id != connection_id) and connection_id not in self._claiming:
                await self.table.release(key, connection_id)

    def charge_point(self, key: ChargerKey) -> CsmsChargePointV16 | CsmsChargePointV201 | None:
        """The live ChargePoint of a charger held by this process (commands call it), else None."""
        connection = self.live.get(key)
        if connection is None or connection.ended:
            return None
        return connection.charge_point

    async def disconnect(self, key: ChargerKey, connection_id: str, code: int, reason: str) -> bool:
        """Close this connection of the charger if this process serves it (detach / attach, whose
        database write already took the row from it); returns whether it was here."""
        connection = self.live.get(key)
        if connection is None or connection.connection_id != connection_id:
            return False
        connection.end(code, reason)
        if connection.task is not None:
            await asyncio.wait({connection.task}, timeout=CLOSE_WAIT_S)
        return True

    # ---- the endpoint ----

    async def serve(self, websocket: WebSocket) -> None:
        cpo_id_text, identity = websocket.path_params["cpo_id"], websocket.path_params["identity"]
        try:
            decision = await upgrade.check(
                self.table, cpo_id_text, identity, websocket.headers, list(websocket.scope.get("subprotocols", []))
            )
        except Exception:
            log.exception("OCPP upgrade check failed")
            decision = upgrade.Denial(503, "the CSMS cannot check this charger now")
        if isinstance(decision, upgrade.Denial):
            await self._deny(websocket, decision, cpo_id_text, identity)
            return
        record = decision.record
        key = (record.cpo_id, record.identity)
        connection = Connection(key, str(uuid.uuid4()), websocket)
        async with self._stripes[hash(key) % CLAIM_STRIPES]:  # claims of one charger: DB order = `live` order
            self._claiming.add(connection.connection_id)
            try:
                layout = await self.writer.claim(Claim(record, connection.connection_id, decision.generation))
                if layout is not None:
                    connection.claimed_at = time.monotonic()  # a touch that started earlier may miss it
                    previous = self.live.get(key)
                    self.live[key] = connection
                    if previous is not None:
                        previous.end(REPLACED, "replaced by a newer connection")
            except Exception:
                log.exception("claiming charger %r of CPO %s failed", identity, record.cpo_id)
                await self._deny(
                    websocket, upgrade.Denial(503, "the CSMS cannot take this charger now"), cpo_id_text, identity
                )
                return
            finally:
                self._claiming.discard(connection.connection_id)
        if layout is None:
            # (or a `detach` committed between the upgrade's check and this claim: the pod then
            # waits its plain refusal backoff, ≤ refused_wait, once)
            reason = "a newer simulator pod generation holds this charger, or it was just detached"
            await self._deny(websocket, upgrade.Denial(409, reason), cpo_id_text, identity)
            return
        if connection.ended:  # replaced while being claimed
            await self._deny(websocket, upgrade.Denial(409, "replaced by a newer connection"), cpo_id_text, identity)
            return
        connection.task = asyncio.create_task(self._run(connection, decision, layout))
        try:
            await connection.task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the server is cancelling us (the child was cancelled with us)
            # else: ended on purpose (Connection.end)
        except Exception:
            log.exception("charger %r of CPO %s: connection failed", record.identity, record.cpo_id)
            connection.close_code, connection.close_reason = 1011, "internal error"
        finally:
            await self._finish(connection)

    async def _run(self, connection: Connection, admission: upgrade.Admission, layout: Layout) -> None:
        record = admission.record
        link = ChargerLink(
            self.writer,
            connection.key,
            connection.connection_id,
            Topology.build(record.ocpp_version, layout.routes, layout.views),
            layout.views,
            booted_before=record.booted_before,
            heartbeat_interval=self.settings.csms_heartbeat_interval,
            on_lost=lambda: connection.end(LOST, "this connection no longer holds the charger"),
        )
        socket = OcppSocket(
            connection.websocket,
            ocpp_version=record.ocpp_version,
            max_frame=self.settings.csms_max_frame,
            rate=self.settings.csms_rate,
            log_frame=ocpp_log.frame_logger(self.db, *connection.key),
        )
        try:
            await connection.websocket.accept(subprotocol=admission.subprotocol)
        except OSError:  # the charger gave up (its opening timeout) before the accept: nothing to serve
            log.info("charger %r of CPO %s left before its upgrade was accepted", record.identity, record.cpo_id)
            return
        charge_point = CHARGE_POINTS[record.ocpp_version](link, socket)
        connection.charge_point = charge_point
        with contextlib.suppress(WebSocketDisconnect):  # the charger closed: a normal end
            await charge_point.start()

    async def _finish(self, connection: Connection) -> None:
        if self.live.get(connection.key) is connection:
            del self.live[connection.key]
        with contextlib.suppress(Exception):  # already closed by the charger
            await connection.websocket.close(connection.close_code, connection.close_reason)
        try:
            await self.table.release(connection.key, connection.connection_id)
        except Exception:  # the periodic touch releases it later, or the sweeper
            log.exception("releasing charger %r of CPO %s failed", connection.key[1], connection.key[0])

    async def _deny(self, websocket: WebSocket, denial: upgrade.Denial, cpo_id: str, identity: str) -> None:
        log.info(
            "refused OCPP connection to CPO %.20r charger %.64r: %d %s", cpo_id, identity, denial.status, denial.reason
        )
        headers = {"WWW-Authenticate": 'Basic realm="cpolab OCPP", charset="UTF-8"'} if denial.status == 401 else {}
        if denial.retry_after is not None:
            headers["Retry-After"] = str(denial.retry_after)
        try:
            await websocket.send_denial_response(
                PlainTextResponse(denial.reason, status_code=denial.status, headers=headers)
            )
            _denied.set(True)
        except RuntimeError:  # a server without the denial-response extension: close before accept = 403
            await websocket.close()


async def ocpp_endpoint(websocket: WebSocket) -> None:
    await websocket.app.state.csms.serve(websocket)


routes = [WebSocketRoute("/ocpp/{cpo_id}/{identity}", ocpp_endpoint)]
