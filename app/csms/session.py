"""One charger connection's domain side: what the OCPP handlers of both versions call.

It owns the connection's view of the charger (its connector numbering and its EVSEs, read once after
the claim: while this connection holds the row nobody else writes them) and turns OCPP events into
fenced writes through the process's WriteBatcher: the charger's state in `charger`, connector and
EVSE statuses through app.network.evse_state (the one writer of those).

ONLINE = a BootNotification was accepted (on this connection or an earlier one) and a
StatusNotification arrived since the connection was made; a charger that had booted before is
ONLINE from the claim on, as OCPP chargers do not boot again on a mere reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ocpp.exceptions import GenericError, InternalError, PropertyConstraintViolationError

from app.csms.connections import ChargerKey, ConnectionLost, Fence, Route
from app.csms.writer import ChargerWrite, WriteBatcher
from app.network.evse_state import ConnectorReport, EvseView, new_status
from app.network.status import ChargerState
from app.network.topology import OcppConnector, ocpp_connectors

log = logging.getLogger("cpolab.csms")


@dataclass(frozen=True)
class Topology:
    """OCPP connector numbers → OCPI EVSE and connector, for one charger."""

    ocpp_version: str
    by_number: dict[tuple[int, int], OcppConnector]  # (evseId, or 0 on 1.6; connectorId)

    @classmethod
    def build(cls, ocpp_version: str, routes: list[Route], views: dict[str, EvseView]) -> Topology:
        known = [r for r in routes if r.evse_uid in views]
        evses = [(r.ocpp_evse_id, r.evse_uid, list(views[r.evse_uid].connectors)) for r in known]
        numbered = ocpp_connectors(ocpp_version, evses)
        if ocpp_version == "1.6":  # one connectorId space across the charger
            return cls(ocpp_version, {(0, c.ocpp_connector_id): c for c in numbered})
        return cls(ocpp_version, {(c.ocpp_evse_id, c.ocpp_connector_id): c for c in numbered})

    def connector(self, evse_id: int, connector_id: int) -> OcppConnector:
        found = self.by_number.get((evse_id, connector_id))
        if found is None:
            if self.ocpp_version == "1.6":
                where = f"connectorId {connector_id}"
            else:
                where = f"evseId {evse_id} connectorId {connector_id}"
            raise PropertyConstraintViolationError(description=f"this charger has no {where}")
        return found


class ChargerLink:
    def __init__(
        self,
        writer: WriteBatcher,
        key: ChargerKey,
        connection_id: str,
        topology: Topology,
        views: dict[str, EvseView],
        *,
        booted_before: bool,
        heartbeat_interval: int,
        on_lost: Callable[[], None],
    ) -> None:
        self.writer = writer
        self.key = key
        self.connection_id = connection_id
        self.topology = topology
        self.views = views
        self.heartbeat_interval = heartbeat_interval
        self.booted = booted_before
        self.rebooted = False  # booted on this connection after an earlier boot: it may have lost transactions
        self.status_seen = booted_before  # the claim made it ONLINE already
        self._on_lost = on_lost

    @property
    def ocpp_version(self) -> str:
        return self.topology.ocpp_version

    async def boot_accepted(self) -> None:
        state = ChargerState.ONLINE if self.status_seen else ChargerState.BOOTING
        await self._write(Fence(self.key, self.connection_id, state, booted=True), None, "boot")
        self.rebooted = self.rebooted or self.booted
        self.booted = True

    async def connector_status(self, connector: OcppConnector, ocpp_status: str) -> None:
        view = self.views[connector.evse_uid]
        report = ConnectorReport(view, connector.connector_id, ocpp_status, self.ocpp_version)
        unchanged = view.connectors.get(connector.connector_id) == ocpp_status and new_status(report) == view.status
        if unchanged and self.status_seen:
            return  # nothing to write: the periodic touch keeps last_seen_at
        state = ChargerState.ONLINE if self.booted else ChargerState.BOOTING
        await self._write(Fence(self.key, self.connection_id, state), report, "status")
        self.status_seen = True

    async def _write(self, fence: Fence, report: ConnectorReport | None, what: str) -> None:
        try:
            await self.writer.submit(ChargerWrite(fence, report))
        except ConnectionLost:
            self._on_lost()
            raise GenericError(description="this connection was replaced by a newer one") from None
        except Exception:
            log.exception("%s of charger %r (CPO %s) not recorded", what, self.key[1], self.key[0])
            raise InternalError(description=f"could not record the {what}") from None
