"""The state of a simulated charger's sessions and what time does to it: the car's physics on the
simulated clock, meter samples, the car reaching its target, a duration ending, expiries, and the
ordered queue of messages they produce (`Outgoing`, `app/sim/connector_state.py`).

Time-driven events are processed in simulated-time order by `catch_up(now)`, which every entry point
calls first: so after an offline spell the missed samples are produced with their own timestamps, and
the same seed gives the same payloads whenever the events are processed. What handlers do to it
(plug, authorize, stop, fault…) is `app/sim/transactions.py`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from app.sim.clock import SimClock
from app.sim.config import ChargerConfig, ConnectorRef
from app.sim.connector_state import Connector, End, Outgoing, Pending, Sample, Transaction
from app.sim.ev import advance, draw_ev, flow, session_seed

MIN_REAL_INTERVAL = 0.05  # real seconds between two samples of one transaction, whatever the scale
MAX_QUEUE = 5_000  # queued messages per charger; beyond, periodic samples are dropped (never Start/Stop)
MAX_HORIZON = 3_600.0  # simulated seconds looked ahead for the car reaching its target


class SessionTimeline:
    """Every connector's session state and the outbox of one charger, and what time does to them.
    Connectors are created on first use, so an idle charger holds an empty dict."""

    __slots__ = (
        "authorize_remote",
        "clock",
        "config",
        "connected",
        "connection_timeout",
        "connectors",
        "counter",
        "gates",
        "layout",
        "meter_interval",
        "notify",
        "outbox",
        "reboot_due",
        "reset_when_idle",
        "retry_attempts",
        "retry_interval",
        "seed",
        "sent",
        "unavailable",
    )

    def __init__(
        self, config: ChargerConfig, layout: tuple[ConnectorRef, ...], seed: int, notify: Callable[[], None]
    ) -> None:
        self.config = config
        self.layout = layout
        self.seed = seed
        self.notify = notify  # wakes the session loop
        self.clock = SimClock(config.time_scale)
        self.connectors: dict[int, Connector] = {}
        self.outbox: deque[Outgoing] = deque()
        self.gates: set[str] = set()  # CALLs whose answer is not sent yet: hold the outbox
        self.connected = False
        self.counter = 0
        self.sent = 0  # queued messages delivered (answered)
        self.meter_interval = 60
        self.connection_timeout = 120
        self.authorize_remote = False
        self.retry_attempts = 3
        self.retry_interval = 60
        self.reset_when_idle = False
        self.reboot_due = False  # the session loop reboots once our answers and the queue are out
        self.unavailable = lambda index: False  # set by ChargerState

    # --- queries ----------------------------------------------------------------------------------

    def connector(self, index: int) -> Connector:
        c = self.connectors.get(index)
        if c is None:
            c = self.connectors[index] = Connector()
        return c

    def status(self, index: int) -> tuple[str, str, str]:
        """(1.6 status, 2.0.1 connectorStatus, 1.6 errorCode) of the connector now."""
        c = self.connectors.get(index)
        unavailable = self.unavailable(index)
        if c is None:
            return ("Unavailable", "Unavailable", "NoError") if unavailable else ("Available", "Available", "NoError")
        code = c.fault or c.warning or "NoError"
        if c.fault:
            return "Faulted", "Faulted", code
        if c.tx is not None:
            return c.tx.charging_state, "Occupied", code
        if unavailable:
            return "Unavailable", "Unavailable", code
        if c.plugged:
            return ("Finishing" if c.finished else "Preparing"), "Occupied", code
        if c.pending is not None:
            return "Preparing", "Available", code
        if c.reservation is not None:
            return "Reserved", "Reserved", code
        return "Available", "Available", code

    def transactions(self) -> list[Transaction]:
        return [c.tx for c in self.connectors.values() if c.tx is not None]

    def find(self, ocpp_id: int | str) -> Transaction | None:
        return next((tx for tx in self.transactions() if tx.ocpp_id == ocpp_id), None)

    def interval(self) -> float:
        """Simulated seconds between samples: the configured interval, but never more often than
        MIN_REAL_INTERVAL real seconds (a tiny interval at a high scale must not flood the CSMS)."""
        return float(max(self.meter_interval, -(-self.clock.scale * MIN_REAL_INTERVAL // 1)))

    def ready(self) -> bool:
        """A queued message can be sent now."""
        if not (self.connected and self.outbox) or self.gates:
            return False
        return self.outbox[0].retry_at <= self.clock.now()

    def next_wake(self) -> float | None:
        """Simulated time of the next time-driven event (None: nothing scheduled)."""
        times: list[float] = []
        wall_offset = self.clock.now() - wall_now()
        for c in self.connectors.values():
            if (tx := c.tx) is not None:
                horizon = min(tx.next_sample_at, *_scheduled(tx), tx.t + MAX_HORIZON)
                times.append(horizon)
                if not tx.ev.done:
                    _, done_after = advance(tx.ev, tx.supply, horizon - tx.t, _limit(tx))
                    if done_after is not None:
                        times.append(tx.t + done_after)
            if c.pending is not None and not c.plugged:
                times.append(c.pending.expires_at)
            if c.reservation is not None:
                times.append(c.reservation.expires_at + wall_offset)
        if self.outbox and self.outbox[0].retry_at:
            times.append(self.outbox[0].retry_at)
        return min(times) if times else None

    # --- time -------------------------------------------------------------------------------------

    def catch_up(self, now: float | None = None) -> float:
        """Processes every time-driven event up to `now` (simulated), in time order; returns `now`."""
        now = self.clock.now() if now is None else now
        wall = wall_now()
        for index in sorted(self.connectors):
            c = self.connectors[index]
            if c.tx is not None:
                self._run(c, c.tx, now)
            if c.pending is not None and not c.plugged and c.pending.expires_at <= now:
                c.pending = None  # no cable within ConnectionTimeOut: the start is dropped
                self._refresh(index, now)
            if c.reservation is not None and c.reservation.expires_at <= wall:
                c.reservation = None
                self._refresh(index, now)
        return now

    def _run(self, c: Connector, tx: Transaction, now: float) -> None:
        """Advances one transaction's physics to `now`, emitting its samples and state changes."""
        while tx.t < now and not tx.ended:
            target = min(now, tx.next_sample_at, *_scheduled(tx))
            before = tx.ev
            tx.ev, done_after = advance(tx.ev, tx.supply, target - tx.t, _limit(tx))
            c.register_wh += tx.ev.delivered_wh - before.delivered_wh
            if done_after is not None:  # the car reached its target inside the span: parking from here
                tx.t += done_after
                tx.charging_state = "SuspendedEV"
                self._state_changed(tx)
                continue
            tx.t = target
            if tx.stop_at is not None and target >= tx.stop_at:  # the driver is back: stop, unplug
                self._end(tx.index, End.LOCAL, target)
                self._unplug(tx.index, target)
                continue
            # A suspension or resumption reports a sample at its instant: a periodic one due then is it.
            reported = tx.suspend_at is not None and target >= tx.suspend_at and self._pause(tx)
            reported = (tx.resume_at is not None and target >= tx.resume_at and self._resume(tx)) or reported
            if target >= tx.next_sample_at:
                if not reported and len(self.outbox) < MAX_QUEUE:
                    self._queue(Outgoing("sample", tx.index, target, tx, self._sample(tx, "Sample.Periodic")))
                tx.next_sample_at = target + self.interval()

    def _pause(self, tx: Transaction) -> bool:
        """The car holds off from now (suspend-ev); returns whether that changed its charging state."""
        tx.suspend_at, tx.ev_paused = None, True
        if tx.charging_state != "Charging":  # full already (or paused): nothing changes at the plug
            return False
        tx.charging_state = "SuspendedEV"
        self._state_changed(tx, sample=True)
        return True

    def _resume(self, tx: Transaction) -> bool:
        """The car draws again unless it is full; returns whether that changed its charging state."""
        tx.resume_at, tx.ev_paused = None, False
        if tx.ev.done or tx.charging_state != "SuspendedEV":
            return False
        tx.charging_state = "Charging"
        self._state_changed(tx, sample=True)
        return True

    # --- internals --------------------------------------------------------------------------------

    def _queue(self, item: Outgoing) -> None:
        item.offline = not self.connected
        if item.tx is not None:
            item.charging_state = item.tx.charging_state
        if item.tx is not None and self.config.ocpp_version == "2.0.1":
            item.seq_no = item.tx.seq_no
            item.tx.seq_no += 1
        self.outbox.append(item)
        self.notify()

    def _refresh(self, index: int, at: float) -> None:
        """A StatusNotification when the connector's status changed (only while online: a reconnect
        reports the current status anyway, OCPP 1.6 §4.9)."""
        status = self.status(index)
        c = self.connector(index)
        if status != c.reported:
            c.reported = status
            if self.connected:
                self._queue(Outgoing("status", index, at, status=status, durable=False))

    def _sample(self, tx: Transaction, context: str) -> Sample:
        now_flow = flow(tx.ev, tx.supply, _limit(tx))
        register = round(self.connector(tx.index).register_wh)
        dc = tx.supply.dc
        return Sample(tx.t, context, register, now_flow, round(tx.ev.soc, 1) if dc else None, dc)

    def _start(self, index: int, now: float, pending: Pending, trigger: str) -> None:
        c = self.connector(index)
        at = float(int(now))  # whole simulated seconds: every scheduled time after it is whole too
        self.counter += 1
        ref = self.layout[index]
        supply = next(e for e in self.config.evses if e.evse_id == ref.evse_id).supply
        overrides = c.overrides
        ev = draw_ev(
            session_seed(self.seed, self.config.identity, self.counter),
            supply,
            soc_percent=overrides.get("soc_percent"),
            target_kwh=overrides.get("target_kwh"),
        )
        duration = overrides.get("duration_s")
        reservation = c.reservation.reservation_id if c.reservation is not None else None
        tx = Transaction(
            number=self.counter,
            index=index,
            id_tag=pending.id_tag,
            token_type=pending.token_type,
            started_at=at,
            meter_start_wh=round(c.register_wh),
            ev=ev,
            supply=supply,
            ocpp_id=f"{self.config.identity[:16]}-{int(at):x}-{self.counter}"  # ≤ 36 characters
            if self.config.ocpp_version == "2.0.1"
            else None,
            remote_start_id=pending.remote_start_id,
            reservation_id=reservation,
            trigger=trigger,
            t=at,
            next_sample_at=at + self.interval(),
            stop_at=None if duration is None else at + duration,
        )
        if ev.done:
            tx.charging_state = "SuspendedEV"
        c.tx, c.pending, c.reservation, c.overrides, c.finished = tx, None, None, {}, False
        self._queue(Outgoing("started", index, at, tx, self._sample(tx, "Transaction.Begin")))
        self._refresh(index, at)

    def _state_changed(self, tx: Transaction, *, sample: bool = False) -> None:
        """2.0.1: a TransactionEvent (ChargingStateChanged, with a sample); 1.6: the status, and with
        `sample` a MeterValues at the instant (context Other), so a CSMS sees where power stopped or
        restarted rather than at the next periodic sample."""
        self._refresh(tx.index, tx.t)
        if self.config.ocpp_version == "2.0.1":
            self._queue(Outgoing("state", tx.index, tx.t, tx, self._sample(tx, "Sample.Periodic")))
        elif sample:
            self._queue(Outgoing("state", tx.index, tx.t, tx, self._sample(tx, "Other")))

    def _end(self, index: int, end: End, at: float, error_code: str | None = None) -> None:
        c = self.connector(index)
        tx = c.tx
        assert tx is not None
        tx.t = max(tx.t, at)
        tx.ended = True
        tx.charging_state = "Idle"
        self._queue(Outgoing("ended", index, tx.t, tx, self._sample(tx, "Transaction.End"), end, error_code))
        c.tx, c.finished = None, c.plugged
        self._refresh(index, tx.t)
        if self.reset_when_idle and not self.transactions():
            self.reset_when_idle, self.reboot_due = False, True  # Reset OnIdle: the last one ended
            self.notify()

    def _unplug(self, index: int, at: float) -> None:
        c = self.connector(index)
        c.plugged = c.finished = False
        self._refresh(index, at)


def _scheduled(tx: Transaction) -> list[float]:
    """The transaction's timed events besides samples: the driver back, a suspension, a resumption."""
    return [t for t in (tx.stop_at, tx.suspend_at, tx.resume_at) if t is not None]


def _limit(tx: Transaction) -> float | None:
    """What the car may draw (W): nothing while it holds off (suspend-ev), else no limit of its own."""
    return 0.0 if tx.ev_paused else None


def wall_now() -> float:
    return time.time()
