"""A charger's memory across connections: registration, availability, settings, pending follow-ups.

One per charger for the life of the pod (10,000 of them per process), so slotted and flat: the
availability of every connector is one int bitmask, the connector layout is shared between chargers of
the same shape.

The OCPP handlers (`cp16`, `cp201`) decide and mutate this state; the CALLs that follow a decision
(a StatusNotification after ChangeAvailability, the reboot after Reset) are queued here and sent by
the session loop, never from inside a handler.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from app.sim.config import ChargerConfig, ConnectorRef, connector_layout
from app.sim.transactions import Sessions


class Phase(enum.IntEnum):
    DOWN = 0  # no socket (waiting to reconnect)
    CONNECTING = 1  # opening handshake
    BOOTING = 2  # socket open, not (yet) registered and reported
    ONLINE = 3  # socket open, boot Accepted, StatusNotifications sent


class Followup(enum.Enum):
    BOOT = "boot"  # arg: the 2.0.1 boot reason
    HEARTBEAT = "heartbeat"
    STATUS = "status"  # arg: tuple of connector indices (positions in the layout)
    REBOOT = "reboot"  # close, reconnect, BootNotification again
    RECONNECT = "reconnect"  # close, reconnect with the new password, no boot (OCPP-J §5.4)
    WAKE = "wake"  # a setting changed: recompute the next Heartbeat
    OFFLINE = "offline"  # arg: real seconds; close and stay away (the simulate control's go_offline)


@dataclass(frozen=True, slots=True)
class Task:
    kind: Followup
    arg: object = None


class ChargerState:
    __slots__ = (
        "accepted",
        "boot_reason",
        "config",
        "connects",
        "failed_connects",
        "failures",
        "followups",
        "heartbeat_interval",
        "jitter_draws",
        "layout",
        "offline_until",
        "password_override",
        "phase",
        "sessions",
        "unavailable",
        "wake",
    )

    def __init__(self, config: ChargerConfig, heartbeat_interval: int, seed: int = 0) -> None:
        self.config = config
        self.layout: tuple[ConnectorRef, ...] = connector_layout(config.evses)
        self.offline_until = 0.0  # loop time until which the charger stays disconnected (go_offline)
        self.phase = Phase.DOWN
        self.accepted = False  # a BootNotification was Accepted since start / the last reset
        self.boot_reason: str | None = "PowerUp"  # a BootNotification is due (None: not needed)
        self.heartbeat_interval = heartbeat_interval
        self.unavailable = 0  # bit i set: connector layout[i] is Unavailable (ChangeAvailability)
        self.password_override: str | None = None  # set by AuthorizationKey / BasicAuthPassword
        self.followups: list[Task] = []
        self.wake = asyncio.Event()
        self.sessions = Sessions(config, self.layout, seed, self.wake.set)
        self.sessions.unavailable = self.is_unavailable
        self.connects = 0  # successful WebSocket openings
        self.failed_connects = 0  # attempts that did not open (refused, unreachable, timed out)
        self.failures = 0  # consecutive failed connections (backoff exponent)
        self.jitter_draws = 0  # how many jitter values were drawn (the deterministic sequence)

    @property
    def password(self) -> str:
        return self.password_override or self.config.password

    def request(self, kind: Followup, arg: object = None) -> None:
        self.followups.append(Task(kind, arg))
        self.wake.set()

    def take_followups(self) -> list[Task]:
        tasks, self.followups = self.followups, []
        return tasks

    # --- connectors -------------------------------------------------------------------------------

    def all_connectors(self) -> tuple[int, ...]:
        return tuple(range(len(self.layout)))

    def flat_index(self, flat_id: int) -> int | None:
        """1.6 connectorId → layout index (None when the charger has no such connector)."""
        return flat_id - 1 if 1 <= flat_id <= len(self.layout) else None

    def evse_indices(self, evse_id: int, connector_id: int | None = None) -> tuple[int, ...]:
        """2.0.1 (evseId[, connectorId]) → layout indices; empty when unknown."""
        return tuple(
            i
            for i, ref in enumerate(self.layout)
            if ref.evse_id == evse_id and (connector_id is None or ref.connector_id == connector_id)
        )

    def is_available(self, index: int) -> bool:
        return not self.unavailable >> index & 1

    def is_unavailable(self, index: int) -> bool:
        return bool(self.unavailable >> index & 1)

    def set_availability(self, indices: tuple[int, ...], operative: bool) -> tuple[int, ...]:
        """Apply ChangeAvailability to `indices`; returns those whose status changed (they get a
        StatusNotification). Kept in memory, so it survives reconnects and resets (OCPP 1.6 §5.2)."""
        changed = tuple(i for i in indices if self.is_available(i) != operative)
        for i in changed:
            self.unavailable ^= 1 << i
        return changed
