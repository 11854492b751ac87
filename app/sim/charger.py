"""One simulated charger's life: connect, boot or report, heartbeat, answer, reconnect, forever.

Each connection is a *session*: the library's receive loop (which answers the CSMS) runs beside our
behaviour loop (which sends our CALLs); whichever ends first ends the session. Between sessions the
charger waits a jittered exponential backoff, or reconnects at once after a Reset / password change.

Registration (OCPP 1.6 §4.2, OCPP-J §5.4): BootNotification on start, after a Reset and when the CSMS
triggers it; after a mere reconnect only the current StatusNotifications. Pending: retry after
`interval`, answer the CSMS meanwhile, send only what it triggers. Rejected: silent for `interval`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import websockets
from ocpp.exceptions import OCPPError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.typing import Subprotocol

from app.sim.backoff import reconnect_wait, retry_after, unit_jitter
from app.sim.base import Session
from app.sim.config import ChargerConfig, Tunables
from app.sim.cp16 import SimChargePoint16
from app.sim.cp201 import SimChargePoint201
from app.sim.logs import LogOnce, ws_log
from app.sim.state import ChargerState, Followup, Phase

MIN_WAKE = 0.02  # real seconds: the shortest sleep of a session loop with transaction events due
# The CSMS does not know or accept us (bad key, CPO gone, a newer pod holds the charger): retry slowly.
_REFUSED = {401, 403, 404, 409, 410}


@dataclass
class PodContext:
    """What the chargers of one pod share."""

    seed: int
    tunables: Tunables
    connecting: asyncio.Semaphore
    once: LogOnce = field(default_factory=LogOnce)


class Charger:
    __slots__ = ("ctx", "state")

    def __init__(self, config: ChargerConfig, ctx: PodContext) -> None:
        self.ctx = ctx
        self.state = ChargerState(config, heartbeat_interval=ctx.tunables.fallback_interval, seed=ctx.seed)

    async def run(self) -> None:
        """Until cancelled; the open socket (if any) is closed cleanly on the way out."""
        delay = 0.0
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            await self._stay_offline()
            try:
                delay = await self._connect_and_serve()
            except Exception as exc:  # a bug must not take the pod's other chargers down
                self.ctx.once.warning(f"bug:{type(exc).__name__}", "charger %s: unexpected %r", self._id, exc)
                delay = self._backoff(refused=False)

    async def _stay_offline(self) -> None:
        """While a go_offline lasts (go_online ends it early)."""
        st = self.state
        loop = asyncio.get_running_loop()
        while loop.time() < st.offline_until:
            st.wake.clear()
            timer = loop.call_at(st.offline_until, st.wake.set)
            try:
                await st.wake.wait()
            finally:
                timer.cancel()
        st.offline_until = 0.0

    @property
    def _id(self) -> str:
        return self.state.config.identity

    def _backoff(self, *, refused: bool, retry_after: float | None = None) -> float:
        st = self.state
        jitter = unit_jitter(self.ctx.seed, st.config.identity, st.jitter_draws)
        st.jitter_draws += 1
        wait = reconnect_wait(self.ctx.tunables, st.failures, jitter, refused=refused, retry_after=retry_after)
        st.failures += 1
        return wait

    async def _connect_and_serve(self) -> float:
        """One connection attempt and, if it opens, its session; returns the wait before the next."""
        st, cfg, t = self.state, self.state.config, self.ctx.tunables
        st.phase = Phase.CONNECTING
        try:
            async with self.ctx.connecting:
                ws = await websockets.connect(
                    cfg.url,
                    subprotocols=[Subprotocol(cfg.subprotocol)],
                    compression=None,  # ~28 KB per idle connection instead of ~70 KB
                    additional_headers=cfg.upgrade_headers(st.password),
                    proxy=None,
                    open_timeout=t.open_timeout,
                    ping_interval=t.ping_interval,
                    ping_timeout=t.ping_timeout,
                    close_timeout=t.close_timeout,
                    max_size=t.max_size,
                    logger=ws_log,
                )
        except InvalidStatus as exc:
            st.phase, st.failed_connects = Phase.DOWN, st.failed_connects + 1
            code = exc.response.status_code
            self.ctx.once.warning(f"http:{code}", "charger %s: the CSMS refused the upgrade (HTTP %d)", self._id, code)
            return self._backoff(refused=code in _REFUSED, retry_after=retry_after(exc.response.headers))
        except (OSError, TimeoutError, WebSocketException) as exc:
            st.phase, st.failed_connects = Phase.DOWN, st.failed_connects + 1
            self.ctx.once.warning(f"connect:{type(exc).__name__}", "charger %s: cannot connect: %r", self._id, exc)
            return self._backoff(refused=False)
        try:
            if ws.subprotocol != cfg.subprotocol:
                self.ctx.once.warning("subprotocol", "charger %s: CSMS refused %s", self._id, cfg.subprotocol)
                return self._backoff(refused=True)
            st.connects += 1
            outcome = await self._session(ws)
        finally:
            st.phase = Phase.DOWN
            await ws.close()  # bounded by close_timeout; also on cancel, so the CSMS sees a clean close
        return self._after_session(outcome)

    def _after_session(self, outcome: Followup | None) -> float:
        st = self.state
        # Follow-ups released after the session's last look (the link dropped meanwhile) still count.
        for task in st.take_followups():
            if task.kind is Followup.REBOOT:
                outcome = Followup.REBOOT
            elif task.kind is Followup.OFFLINE:
                self._go_offline(task.arg)
                outcome = outcome or Followup.OFFLINE
            elif task.kind is Followup.BOOT and st.boot_reason is None:
                st.boot_reason = str(task.arg)
        if outcome is Followup.OFFLINE:
            return 0.0  # run() waits in _stay_offline
        if outcome is Followup.REBOOT:
            st.accepted = False
            st.boot_reason = "RemoteReset"
            return self.ctx.tunables.reboot_delay
        if outcome is Followup.RECONNECT:
            return 0.0
        return self._backoff(refused=False)

    async def _session(self, ws: ClientConnection) -> Followup | None:
        """Runs until the socket closes (None), our behaviour ends it (REBOOT / RECONNECT), or a CALL
        goes unanswered (None: the link is considered dead)."""
        timeout = self.ctx.tunables.response_timeout
        cp: Session
        if self.state.config.ocpp_version == "1.6":
            cp = SimChargePoint16(self.state, ws, timeout)
        else:
            cp = SimChargePoint201(self.state, ws, timeout)
        reader = asyncio.create_task(cp.start())
        behave = asyncio.create_task(self._behave(cp))
        try:
            await asyncio.wait((reader, behave), return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            behave.cancel()
            # Closing first also ends a task whose cancel got lost (Python 3.11's wait_for, inside the
            # library's call(), returns a result that races a cancel): its next send or recv fails.
            await ws.close()
            await asyncio.gather(reader, behave, return_exceptions=True)
            self.state.sessions.link_down()
        if behave.cancelled():  # the receive loop ended first: normally the socket closed under us
            if (exc := reader.exception()) is not None and not isinstance(exc, WebSocketException):
                self.ctx.once.warning(f"reader:{type(exc).__name__}", "charger %s: receive loop: %r", self._id, exc)
            return None
        if (exc := behave.exception()) is not None:
            if not isinstance(exc, WebSocketException):
                self.ctx.once.warning(f"session:{type(exc).__name__}", "charger %s: link dropped: %r", self._id, exc)
            return None
        return behave.result()

    async def _behave(self, cp: Session) -> Followup:
        """Our side of the session: boot or report, Heartbeats, follow-ups. Returns REBOOT or
        RECONNECT when the session must end; exceptions (no answer, closed socket) end it too."""
        st, t = self.state, self.ctx.tunables
        loop = asyncio.get_running_loop()
        st.phase = Phase.BOOTING
        next_boot = loop.time()
        silent = False  # boot Rejected: send nothing until next_boot
        if st.boot_reason is None:  # a reconnect: no BootNotification (OCPP-J §5.4), just the state
            await self._registered(cp)
        last_sent = loop.time()
        while True:
            if st.boot_reason is not None and loop.time() >= next_boot:
                status, interval = await self._boot(cp, st.boot_reason)
                interval = interval if interval > 0 else t.fallback_interval
                last_sent = loop.time()
                if status == "Accepted":
                    st.boot_reason, st.accepted, silent = None, True, False
                    st.heartbeat_interval = interval
                    await self._registered(cp)
                else:
                    st.accepted, silent = False, status == "Rejected"
                    st.phase = Phase.BOOTING
                    next_boot = loop.time() + interval
            deadline = next_boot if st.boot_reason is not None else last_sent + st.heartbeat_interval
            await self._sleep_until(min(deadline, self._sessions_deadline()))
            if st.sessions.connected:
                st.sessions.catch_up()
                if await self._flush(cp):
                    last_sent = loop.time()
                if st.sessions.reboot_due and not st.sessions.gates:  # Reset OnIdle, now idle
                    st.sessions.reboot_due = False
                    return Followup.REBOOT
            for task in st.take_followups():
                if task.kind in (Followup.REBOOT, Followup.RECONNECT):
                    return task.kind
                if task.kind is Followup.OFFLINE:
                    self._go_offline(task.arg)
                    return task.kind
                if silent:
                    continue
                if task.kind is Followup.BOOT:
                    st.boot_reason, next_boot = str(task.arg), loop.time()
                elif task.kind is Followup.HEARTBEAT:
                    await self._heartbeat(cp)
                    last_sent = loop.time()
                elif task.kind is Followup.STATUS:
                    await self._report(cp, task.arg)  # type: ignore[arg-type]
                    last_sent = loop.time()
            if st.boot_reason is None and loop.time() >= last_sent + st.heartbeat_interval:
                await self._heartbeat(cp)
                last_sent = loop.time()

    def _go_offline(self, real_seconds: object) -> None:
        self.state.offline_until = asyncio.get_running_loop().time() + float(real_seconds)  # type: ignore[arg-type]

    def _sessions_deadline(self) -> float:
        """Loop time of the next transaction event (samples, the car full, expiries, a retry); never
        sooner than MIN_WAKE from now, so nothing due but blocked can make the loop spin."""
        sessions = self.state.sessions
        loop = asyncio.get_running_loop()
        at = sessions.next_wake() if sessions.connected else None
        if at is None:
            return float("inf")
        return loop.time() + max(sessions.clock.real_delay(at), MIN_WAKE)

    async def _registered(self, cp: Session) -> None:
        """Registered (boot Accepted, or a reconnect): the transaction messages queued meanwhile first,
        in order, then every connector's current status."""
        self.state.sessions.link_up()
        await self._flush(cp)
        await self._report(cp, self.state.all_connectors())

    async def _flush(self, cp: Session) -> bool:
        """Sends the queued messages in order; returns whether any was sent. A CALLERROR (or an answer
        that breaks the schema) is a failure to process: retried after TransactionMessageRetryInterval ×
        attempts, up to TransactionMessageAttempts, then dropped (OCPP 1.6 §3.7.1); statuses and
        Authorize are not retried. No answer ends the link and the message is sent again after the
        reconnect (the CSMS must accept it idempotently)."""
        sessions = self.state.sessions
        sent = False
        while sessions.outbox and sessions.connected and not sessions.gates:
            item = sessions.outbox[0]
            now = sessions.clock.now()
            if item.retry_at > now:
                break
            try:
                await cp.send(item)
            except OCPPError as exc:
                item.attempts += 1
                if item.durable and item.attempts < sessions.retry_attempts:
                    item.retry_at = now + sessions.retry_interval * item.attempts
                    break
                self.ctx.once.warning(
                    f"dropped:{item.kind}", "charger %s: %s dropped after %r", self._id, item.kind, exc
                )
            sent = True
            sessions.sent += 1
            if sessions.outbox and sessions.outbox[0] is item:
                sessions.outbox.popleft()
        return sent

    async def _sleep_until(self, deadline: float) -> None:
        """Until `deadline` (loop time) or a follow-up arrives."""
        st = self.state
        if st.followups or st.sessions.ready():  # queued meanwhile (e.g. during a Heartbeat): no sleep
            return
        if asyncio.current_task().cancelling():  # type: ignore[union-attr]  # a cancel lost in call()
            raise asyncio.CancelledError
        st.wake.clear()
        # A timer that sets the event, not asyncio.timeout: no cancellation and exception per wait.
        timer = asyncio.get_running_loop().call_at(deadline, st.wake.set)
        try:
            await st.wake.wait()
        finally:
            timer.cancel()

    async def _boot(self, cp: Session, reason: str) -> tuple[str, int]:
        try:
            return await cp.boot(reason)
        except OCPPError as exc:  # a CALLERROR is no registration: treat it as Rejected
            self.ctx.once.warning("boot-error", "charger %s: BootNotification answered %r", self._id, exc)
            return "Rejected", 0

    async def _heartbeat(self, cp: Session) -> None:
        try:
            await cp.heartbeat()
        except OCPPError as exc:
            self.ctx.once.warning("heartbeat-error", "charger %s: Heartbeat answered %r", self._id, exc)

    async def _report(self, cp: Session, indices: tuple[int, ...]) -> None:
        try:
            for index in indices:
                await cp.report(index)
        except OCPPError as exc:
            self.ctx.once.warning("status-error", "charger %s: StatusNotification answered %r", self._id, exc)
        st = self.state
        if st.boot_reason is None and st.phase is Phase.BOOTING:
            st.phase, st.failures = Phase.ONLINE, 0
