"""A charger's clock under a time scale.

With `time_scale` s, the charger lives in simulated time: sim = t0 + (now − t0) · s, where t0 is when
the charger was created (wall clock). At s = 1 it is the wall clock. Every timestamp the charger sends
(StatusNotification, Start/StopTransaction, MeterValues, TransactionEvent) is on this clock, and its
meter values are coherent with it (ΔE = P · Δt in simulated seconds), so a CSMS computes durations,
energy rates and tariff periods from the charger's timestamps as it would for a real charger. Under a
scale > 1 those timestamps run ahead of the CSMS's own clock by (s − 1) · (now − t0): a CSMS must
take session times from the messages, not from when it received them.

What stays on the wall clock: link timing (Heartbeat interval, response timeouts, reconnect backoff)
and absolute times the CSMS sends (a reservation's expiryDate is compared with the wall clock).
Intervals and durations the CSMS configures for transactions (MeterValueSampleInterval /
TxUpdatedInterval, ConnectionTimeOut, transaction-message retries) and the simulate control's
`duration_s` are simulated seconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class SimClock:
    __slots__ = ("_mono0", "_wall0", "scale")

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        """Simulated POSIX seconds."""
        return self._wall0 + (time.monotonic() - self._mono0) * self.scale

    def real_delay(self, sim_at: float) -> float:
        """Real seconds until simulated time `sim_at` (0 if past)."""
        return max(0.0, (sim_at - self.now()) / self.scale)


def stamp(sim_seconds: float) -> str:
    """OCPP timestamp (UTC, whole seconds: scheduled events fall on whole simulated seconds)."""
    return datetime.fromtimestamp(int(sim_seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: str) -> float | None:
    """A CSMS-sent date-time → POSIX seconds; None when unreadable or without a zone."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return None if value.tzinfo is None else value.timestamp()
