"""A pod: the simulators of a batch of chargers in one asyncio loop, run until cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from app.sim.charger import Charger, PodContext
from app.sim.config import ChargerConfig, Tunables
from app.sim.connector_state import Refusal
from app.sim.simulate import apply
from app.sim.state import Phase


class Pod:
    def __init__(self, chargers: Sequence[ChargerConfig], *, seed: int = 0, tunables: Tunables | None = None) -> None:
        """`seed` makes every charger's reconnect jitter reproducible (with its identity)."""
        identities = [c.identity for c in chargers]
        if len(set(identities)) != len(identities):
            raise ValueError("charger identities must be unique within a pod")
        tunables = tunables or Tunables()
        self._ctx = PodContext(seed, tunables, asyncio.Semaphore(tunables.connect_concurrency))
        self._chargers = [Charger(config, self._ctx) for config in chargers]
        self._by_identity = {c.state.config.identity: c for c in self._chargers}

    async def run(self) -> None:
        """One task per charger, until cancelled: then every charger closes its WebSocket cleanly and
        CancelledError propagates (a charger never fails the pod: each retries on its own)."""
        if not self._chargers:  # nothing to run, but the contract is the same: until cancelled
            await asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as group:
            for charger in self._chargers:
                group.create_task(charger.run(), name=f"sim:{charger.state.config.identity}")

    def simulate(self, identity: str, command: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The simulate control in-process (the same commands as the DataTransfer, app/sim/simulate.py):
        (status "Accepted" | "Rejected", data). Call it on the pod's event loop."""
        charger = self._by_identity.get(identity)
        if charger is None:
            raise KeyError(f"no charger {identity!r} in this pod")
        try:
            answer = apply(charger.state, command)
        except Refusal as exc:
            return "Rejected", {"reason": str(exc)}
        if answer.followup is not None:
            charger.state.request(answer.followup, answer.arg)
        return answer.status, answer.data or {}

    def online(self) -> int:
        """Chargers connected, registered (boot Accepted) and whose StatusNotifications went out."""
        return sum(1 for c in self._chargers if c.state.phase is Phase.ONLINE)

    def stats(self) -> dict[str, int]:
        """For heartbeat details: sockets open, online, booting (open but not online), connecting,
        reconnects (successful openings after each charger's first, reboots included),
        failed_connects (attempts that did not open: refused, unreachable, timed out), transactions
        (running), queued (messages waiting to be sent, offline ones included) and sent (queued
        messages delivered so far: statuses, Authorize, transaction messages)."""
        phases = [c.state.phase for c in self._chargers]
        online = phases.count(Phase.ONLINE)
        booting = phases.count(Phase.BOOTING)
        return {
            "chargers": len(phases),
            "connected": online + booting,
            "online": online,
            "booting": booting,
            "connecting": phases.count(Phase.CONNECTING),
            "reconnects": sum(max(c.state.connects - 1, 0) for c in self._chargers),
            "failed_connects": sum(c.state.failed_connects for c in self._chargers),
            "transactions": sum(len(c.state.sessions.transactions()) for c in self._chargers),
            "queued": sum(len(c.state.sessions.outbox) for c in self._chargers),
            "sent": sum(c.state.sessions.sent for c in self._chargers),
        }
