"""Charging sessions on a simulated charger, version-neutral: plugs, authorizations, reservations,
faults and the CSMS's answers, on top of the state and clock of `app/sim/session_timeline.py`.

Handlers (cp16, cp201, the simulate control) call these methods; they decide at once and append
`Outgoing` items (`app/sim/connector_state.py`); the charger's session loop sends them in order
(`Charger._flush`). Every method first catches the timeline up to the charger's `now`.

Choices (OCPP leaves room): a 2.0.1 transaction starts when the cable is plugged *and* authorized
(TxStartPoint PowerPathClosed) and ends when authorization ends or the cable is unplugged; the car
stays plugged after a stop (1.6 Finishing / 2.0.1 Occupied) until `unplug`.
"""

from __future__ import annotations

import math
from collections import deque

from app.sim.connector_state import WARNINGS, End, Outgoing, Pending, Refusal, Reservation, Transaction
from app.sim.session_timeline import SessionTimeline, wall_now


class Sessions(SessionTimeline):
    """What happens to a charger's connectors: the driver's, the charger's and the CSMS's doings."""

    __slots__ = ()

    # --- actions (each at the charger's `now`) ------------------------------------------------------

    def plug(self, index: int) -> None:
        now = self.catch_up()
        c = self.connector(index)
        if c.fault:
            raise Refusal("connector faulted")
        if c.plugged:
            raise Refusal("already plugged")
        c.plugged, c.finished = True, False
        if c.pending is not None and c.pending.authorized:
            self._start(
                index, now, c.pending, "CablePluggedIn" if c.pending.trigger == "Authorized" else c.pending.trigger
            )
        else:
            self._refresh(index, now)

    def unplug(self, index: int) -> None:
        now = self.catch_up()
        c = self.connector(index)
        if not c.plugged:
            raise Refusal("not plugged")
        if c.tx is not None:
            self._end(index, End.UNPLUG, now)
        self._unplug(index, now)

    def present(
        self,
        index: int,
        id_tag: str,
        token_type: str = "ISO14443",
        *,
        remote_start_id: int | None = None,
        remote: bool = False,
    ) -> None:
        """A token at the reader (local) or a remote start: authorize (Authorize first when local, or
        remote with AuthorizeRemoteTxRequests), then start once the cable is in."""
        now = self.catch_up()
        c = self.connector(index)
        if c.fault:
            raise Refusal("connector faulted")
        if self.unavailable(index):
            raise Refusal("connector unavailable")
        if c.tx is not None or c.pending is not None:
            raise Refusal("connector occupied")
        if c.reservation is not None and c.reservation.id_tag != id_tag:
            raise Refusal("connector reserved for another token")
        trigger = "RemoteStart" if remote else "Authorized"
        ask = not remote or self.authorize_remote
        c.pending = Pending(id_tag, token_type, trigger, now + self.connection_timeout, remote_start_id, not ask)
        if ask and self.connected:
            self._queue(Outgoing("authorize", index, now, id_tag=id_tag, token_type=token_type, durable=False))
        elif ask:  # offline: local authorization (LocalAuthorizeOffline)
            c.pending.authorized = True
        if c.pending.authorized and c.plugged:
            self._start(index, now, c.pending, trigger)
        else:
            self._refresh(index, now)

    def authorized(self, index: int, id_tag: str, accepted: bool) -> None:
        """Authorize's answer for the pending start of `index`."""
        now = self.catch_up()
        c = self.connector(index)
        if c.pending is None or c.pending.id_tag != id_tag or c.pending.authorized:
            return  # the pending start expired or was replaced meanwhile
        if not accepted:
            c.pending = None
            self._refresh(index, now)
            return
        c.pending.authorized = True
        if c.plugged:
            self._start(index, now, c.pending, c.pending.trigger)

    def stop(self, index: int, end: End) -> None:
        now = self.catch_up()
        c = self.connector(index)
        if c.tx is None:
            raise Refusal("no transaction")
        self._end(index, end, now)

    def suspend_ev(self, index: int, duration: float | None) -> None:
        """The car stops drawing power, plugged in with its transaction open (its BMS pauses, a departure
        timer), for `duration` simulated seconds (None: until the transaction ends); a second call
        replaces the first's duration. It takes effect at the next whole simulated second, after any
        sample already sent, so the suspension has its own instant."""
        now = self.catch_up()
        c = self.connector(index)
        tx = c.tx
        if tx is None:
            raise Refusal("no charging session on this connector")
        at = float(math.floor(max(tx.t, now)) + 1)
        tx.suspend_at = at
        tx.resume_at = None if duration is None else at + math.ceil(duration)
        self._run(c, tx, at)
        if tx.ended:  # the driver's duration_s ended it meanwhile
            raise Refusal("no charging session on this connector")

    def unlock(self, index: int) -> None:
        """1.6 UnlockConnector: a transaction stops (UnlockCommand) and the cable is released."""
        now = self.catch_up()
        c = self.connector(index)
        if c.tx is not None:
            self._end(index, End.UNLOCK, now)
        if c.plugged:
            self._unplug(index, now)

    def set_fault(self, index: int, code: str) -> None:
        now = self.catch_up()
        c = self.connector(index)
        if code in WARNINGS:
            c.warning = code
        else:
            c.fault = code
            c.pending = None
            if c.tx is not None:
                self._end(index, End.FAULT, now, error_code=code)
        self._refresh(index, now)

    def clear_fault(self, index: int) -> None:
        now = self.catch_up()
        c = self.connector(index)
        if c.fault is None and c.warning is None:
            raise Refusal("no fault")
        c.fault = c.warning = None
        self._refresh(index, now)

    def reserve(self, index: int, reservation_id: int, id_tag: str, expires_wall: float) -> str:
        """ReserveNow → Accepted | Faulted | Occupied | Unavailable | Rejected."""
        now = self.catch_up()
        for other, c in self.connectors.items():  # the same id replaces a reservation (OCPP 1.6 §5.13)
            if c.reservation is not None and c.reservation.reservation_id == reservation_id and other != index:
                c.reservation = None
                self._refresh(other, now)
        c = self.connector(index)
        if c.fault:
            return "Faulted"
        if self.unavailable(index):
            return "Unavailable"
        if c.tx is not None or c.plugged or c.pending is not None:
            return "Occupied"
        if c.reservation is not None and c.reservation.reservation_id != reservation_id:
            return "Occupied"
        if expires_wall <= wall_now():
            return "Rejected"
        c.reservation = Reservation(reservation_id, id_tag, expires_wall)
        self._refresh(index, now)
        return "Accepted"

    def cancel_reservation(self, reservation_id: int) -> bool:
        now = self.catch_up()
        for index, c in self.connectors.items():
            if c.reservation is not None and c.reservation.reservation_id == reservation_id:
                c.reservation = None
                self._refresh(index, now)
                return True
        return False

    def end_all(self, end: End) -> None:
        now = self.catch_up()
        for index, c in sorted(self.connectors.items()):
            if c.tx is not None:
                self._end(index, end, now)

    # --- answers from the CSMS --------------------------------------------------------------------

    def started(self, tx: Transaction, ocpp_id: int | str | None, accepted: bool) -> None:
        """The CSMS's answer to the Start: 1.6 assigns the id; a refused token ends the transaction."""
        if ocpp_id is not None:
            tx.ocpp_id = ocpp_id
        if not accepted and not tx.ended:
            self.stop(tx.index, End.DEAUTHORIZED)

    # --- link -------------------------------------------------------------------------------------

    def link_up(self) -> None:
        self.catch_up()  # what happened offline is produced with `offline` set, before going online
        self.connected = True

    def link_down(self) -> None:
        self.connected = False
        self.gates.clear()
        self.outbox = deque(item for item in self.outbox if item.durable)
        for c in self.connectors.values():  # the reconnect reports every status afresh
            c.reported = None
            if c.pending is not None and not c.pending.authorized:  # its Authorize is lost: no start
                c.pending = None
