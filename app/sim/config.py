"""What a simulated charger is (its configuration) and how a pod's timing is tuned.

Pure data, validated up front so a bad plan fails when the pod is built, not as a schema error deep
inside a BootNotification.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass, field
from urllib.parse import quote

from app.sim.ev import Supply

SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

# Field length limits of BootNotification (1.6 CiStringN; 2.0.1 ChargingStationType), per version.
_BOOT_LIMITS = {
    "1.6": {"vendor": 20, "model": 20, "serial_number": 25, "firmware_version": 50},
    "2.0.1": {"vendor": 50, "model": 20, "serial_number": 25, "firmware_version": 50},
}
MAX_TIME_SCALE = 10_000.0  # a "3-hour" session in ~1 s; beyond, meter cadence is clamped anyway
_MAX_IDENTITY = 48  # OCPP 2.0.1 part 4 §3.1.1 (identifierString); we apply it to 1.6 as well
_RESERVED_HEADERS = {"authorization", "sec-websocket-protocol", "sec-websocket-key", "host", "upgrade", "connection"}


@dataclass(frozen=True)
class SimEvse:
    """One OCPI EVSE of the charger; its connectors share its electrical envelope (the OCPI connector
    fields `power_type`, `max_voltage` (line-to-neutral on AC), `max_amperage`, `max_electric_power`)."""

    evse_id: int  # OCPP 2.0.1 evseId (1..)
    connectors: int  # connectors on it (2.0.1 connectorId 1..n within the EVSE)
    power_type: str = "AC_3_PHASE"
    max_voltage: int = 230
    max_amperage: int = 32
    max_electric_power: int = 22_080

    @property
    def supply(self) -> Supply:
        return Supply(self.power_type, self.max_voltage, self.max_amperage, self.max_electric_power)


@dataclass(frozen=True)
class ChargerConfig:
    identity: str
    password: str = field(repr=False)  # Basic auth (security profile 1); never logged
    ocpp_version: str  # "1.6" | "2.0.1"
    vendor: str
    model: str
    serial_number: str  # "" = not reported
    firmware_version: str  # "" = not reported
    evses: tuple[SimEvse, ...]
    csms_url: str  # e.g. "ws://127.0.0.1:8000/ocpp/12"; the charger appends "/{identity}" (percent-encoded)
    headers: tuple[tuple[str, str], ...] = ()  # extra upgrade headers
    # Simulated seconds per real second (set per CPO): the charger's clock, its timestamps and its physics
    # run this much faster than the wall clock (see app/sim/clock.py).
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.ocpp_version not in SUBPROTOCOLS:
            raise ValueError(f"ocpp_version must be one of {sorted(SUBPROTOCOLS)}, not {self.ocpp_version!r}")
        if not 0 < len(self.identity) <= _MAX_IDENTITY or ":" in self.identity or not self.identity.isprintable():
            raise ValueError(f"identity must be 1-{_MAX_IDENTITY} printable characters without ':'")
        if not self.password or not self.password.isprintable():
            raise ValueError(f"charger {self.identity}: password must be non-empty printable text")
        for name, limit in _BOOT_LIMITS[self.ocpp_version].items():
            if len(getattr(self, name)) > limit:
                raise ValueError(f"charger {self.identity}: {name} longer than {limit} characters (OCPP limit)")
        if not self.vendor or not self.model:
            raise ValueError(f"charger {self.identity}: vendor and model are required")
        if not self.evses:
            raise ValueError(f"charger {self.identity}: at least one EVSE")
        ids = [e.evse_id for e in self.evses]
        if len(set(ids)) != len(ids) or min(ids) < 1 or any(e.connectors < 1 for e in self.evses):
            raise ValueError(f"charger {self.identity}: EVSE ids must be unique and ≥ 1, each with ≥ 1 connector")
        if not self.csms_url.startswith(("ws://", "wss://")):
            raise ValueError(f"charger {self.identity}: csms_url must be a ws:// or wss:// URL")
        if not 0 < self.time_scale <= MAX_TIME_SCALE:
            raise ValueError(f"charger {self.identity}: time_scale must be in (0, {MAX_TIME_SCALE}]")
        for evse in self.evses:
            evse.supply  # noqa: B018  # validates the electrical envelope up front
        for name, value in self.headers:
            if name.lower() in _RESERVED_HEADERS or not name.isascii() or any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"charger {self.identity}: header {name!r} is not allowed")

    @property
    def url(self) -> str:
        return f"{self.csms_url.rstrip('/')}/{quote(self.identity, safe='')}"

    @property
    def subprotocol(self) -> str:
        return SUBPROTOCOLS[self.ocpp_version]

    def upgrade_headers(self, password: str) -> list[tuple[str, str]]:
        """Basic auth (username = identity) plus the extra headers; built per connection so the
        credential lives in memory only while it is sent."""
        token = base64.b64encode(f"{self.identity}:{password}".encode()).decode()
        return [("Authorization", f"Basic {token}"), *self.headers]


@dataclass(frozen=True)
class ConnectorRef:
    evse_id: int  # 2.0.1 evseId
    connector_id: int  # 2.0.1 connectorId within the EVSE
    flat_id: int  # 1.6 connectorId: 1..n across the charger, EVSE by EVSE in evse_id order


@functools.lru_cache(maxsize=1024)
def connector_layout(evses: tuple[SimEvse, ...]) -> tuple[ConnectorRef, ...]:
    """The charger's connectors in 1.6 order (app/network/topology.py's rule). Cached: chargers of the
    same shape share one tuple, which matters at 10,000 chargers per process."""
    out: list[ConnectorRef] = []
    for evse in sorted(evses, key=lambda e: e.evse_id):
        for n in range(1, evse.connectors + 1):
            out.append(ConnectorRef(evse.evse_id, n, len(out) + 1))
    return tuple(out)


@dataclass(frozen=True)
class Tunables:
    """Timing and limits of a pod. Defaults suit production; tests shrink the waits."""

    open_timeout: float = 10.0  # WebSocket opening handshake
    response_timeout: float = 30.0  # a CALL without answer: the link is considered dead
    close_timeout: float = 5.0  # closing handshake on cancel / reboot
    # Our own WebSocket pings: off, because they cost as much CPU as the Heartbeats of an idle pod and add
    # little: a dead CSMS process resets the TCP connection, a silent one fails the next Heartbeat
    # (response_timeout), and the CSMS pings us anyway (we answer with pongs).
    ping_interval: float | None = None
    ping_timeout: float | None = 30.0
    max_size: int = 64 * 1024  # largest frame accepted from the CSMS
    # Reconnect (OCPP 2.0.1 part 4 §5.3): wait backoff_min · 2^min(n, backoff_doublings) + U(0, backoff_range).
    backoff_min: float = 1.0
    backoff_range: float = 5.0
    backoff_doublings: int = 6
    # The CSMS refused the upgrade (HTTP 401/403/404/409/410, or no OCPP subprotocol): retry, no sooner.
    refused_wait: float = 60.0
    fallback_interval: int = 60  # when BootNotification answers interval ≤ 0
    reboot_delay: float = 1.0  # between the Reset answer and the reconnect that boots again
    connect_concurrency: int = 100  # opening handshakes in flight per pod (no thundering herd)
