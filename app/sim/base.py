"""What the two version-specific charge points share: the session loop's view of them, and the rule
that follow-up CALLs wait until the CSMS has our answer.

A handler decides (and mutates `ChargerState`) while the CSMS waits for the CALLRESULT; what must
follow (a StatusNotification, a reboot) is parked under the CALL's message id and released by the
`@after` hook, which the library runs only once the CALLRESULT was sent. So the CSMS never sees the
reboot before the "Accepted" of its Reset, and no CALL is awaited inside a handler.
"""

from __future__ import annotations

from typing import Protocol

from app.sim.connector_state import Outgoing
from app.sim.state import ChargerState, Followup, Task


class Session(Protocol):
    """What the session loop needs of a charge point (either version); one per connection."""

    state: ChargerState

    async def start(self) -> None:
        """The library's receive loop; ends with ConnectionClosed."""

    async def boot(self, reason: str) -> tuple[str, int]:
        """BootNotification → (status, interval)."""

    async def heartbeat(self) -> None: ...

    async def report(self, index: int) -> None:
        """StatusNotification of the connector at `index` in the layout, with its current status."""

    async def send(self, item: Outgoing) -> None:
        """One queued message (status, Authorize, transaction message); a CALLERROR raises."""


class ParkedFollowups:
    """Mixed into the version's charge point: follow-ups parked by a handler, released by `@after`."""

    state: ChargerState
    _parked: dict[str, list[Task]]

    def _park(self, unique_id: str, kind: Followup | None = None, arg: object = None) -> None:
        """Holds the charger's queued messages (a StopTransaction after RemoteStop…) and `kind`, if
        any, until our answer to CALL `unique_id` is sent."""
        self.state.sessions.gates.add(unique_id)
        if kind is not None:
            self._parked.setdefault(unique_id, []).append(Task(kind, arg))

    def _release(self, unique_id: str) -> None:
        self.state.sessions.gates.discard(unique_id)
        for task in self._parked.pop(unique_id, ()):
            self.state.request(task.kind, task.arg)
        self.state.wake.set()
