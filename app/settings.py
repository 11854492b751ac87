"""Process configuration: every `CPOLAB_*` variable in one typed place (pydantic-settings).

The variable of a field is `CPOLAB_` + its name upper-cased (`jwt_secret` → `CPOLAB_JWT_SECRET`);
README's configuration table lists them all, and tests/test_compose.py checks compose uses exactly
these names.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_LENGTH = 32


class ConfigurationError(RuntimeError):
    """The process must not start with this configuration (the message says what to set)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CPOLAB_", frozen=True, extra="ignore")

    # ---- storage and Temporal ----
    database_url: str = "sqlite+aiosqlite:///./var/cpolab.db"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "provisioning"
    # Seconds before the status endpoint falls back to the DB row, and before any other Temporal
    # call (start, signal, update) gives up with a 503: a bound on the whole call, SDK retries included.
    status_query_timeout: float = Field(0.5, gt=0, le=30)
    temporal_rpc_timeout: float = Field(2.5, gt=0, le=60)
    # A TLS-secured cluster / Temporal Cloud (app/lifecycle/temporal_client.py). TLS is on when
    # temporal_tls is set or any of the settings below is. Certificates and keys: a path to a PEM
    # file, or the PEM text itself; a missing or unreadable file stops the process at start.
    temporal_tls: bool = False
    temporal_tls_client_cert: str = ""  # mTLS client certificate (needs the key too)
    temporal_tls_client_key: str = ""
    temporal_tls_server_ca: str = ""  # empty: the system's root CAs
    temporal_tls_server_name: str = ""  # name to verify on the server's certificate, if not the host's
    temporal_api_key: str = ""  # Temporal Cloud API key (sent as a bearer token over TLS)

    # ---- secrets ----
    # HS256 key of control-plane tokens. No default: outside dev mode the API and workers refuse to
    # start without one of at least MIN_SECRET_LENGTH characters (`make run` generates one in var/).
    jwt_secret: str = ""
    # Key of the per-charger OCPP passwords (HMAC(key, cpo_id, identity)); empty = derived from
    # jwt_secret, so one secret is enough to run.
    charger_secret: str = ""
    jwt_max_ttl: int = Field(90 * 86400, gt=0)  # seconds; tokens asking for a longer life are refused
    dev_mode: bool = False

    # ---- URLs ----
    # Base of absolute URLs (ocpi_peer_url …). Empty: taken from the request's Host header, but only
    # when that host is in trusted_hosts (comma-separated; `*` trusts any, for local use only).
    public_base_url: str = ""
    trusted_hosts: str = "127.0.0.1,localhost,[::1]"

    # ---- outbound OCPI (calls to eMSP peers) ----
    # Loopback / private (RFC 1918, ULA) destinations are refused unless allowed (tests and
    # `make run` allow loopback, for eMSPs on the same machine).
    egress_allow_loopback: bool = False
    egress_allow_private: bool = False
    outbound_timeout: float = Field(5.0, gt=0, le=60)  # whole call, connect to last byte
    outbound_max_body: int = Field(1024 * 1024, gt=0)  # bytes of a response, after decompression
    outbound_per_cpo: int = Field(4, gt=0)  # concurrent calls one CPO may have in flight
    # The OCPI outbox (app/ocpi/outbox.py): every API process delivers due pushes, polling at this
    # interval (a push enqueued in the process itself goes at once), at most `outbox_concurrency` at
    # a time; a push still failing after `outbox_max_age` seconds is dropped (eMSPs catch up by pulling).
    outbox_poll_interval: float = Field(0.5, gt=0, le=10)
    outbox_concurrency: int = Field(32, gt=0)
    outbox_max_age: int = Field(86400, gt=0)
    # Deliver the outbox from this API process. Off: it only records pushes, and other replicas
    # (or a dedicated one) deliver them.
    outbox_dispatch: bool = True
    # Charging sessions: a charger's Authorize / StartTransaction waits at most this long for the
    # eMSP's real-time authorization (then the whitelist fallback applies); a running session's
    # PATCH to the eMSP goes at most once per `session_push_interval` seconds.
    authorize_timeout: float = Field(5.0, gt=0, le=30)
    session_push_interval: float = Field(15.0, ge=0, le=3600)
    # CDRs of completed sessions are built by every API process (app.ocpi.cdr_builder): at once after
    # the commit that completes a session in this process, else at this polling interval.
    cdr_poll_interval: float = Field(2.0, gt=0, le=60)

    # ---- inbound limits ----
    max_body: int = Field(1024 * 1024, gt=0)  # bytes of a request body (413 above)
    max_json_depth: int = Field(32, gt=0)  # nesting of a JSON body (400 / OCPI 2001 above)
    traffic_log_max_rows: int = Field(5000, gt=0)  # per CPO, oldest dropped first
    traffic_log_max_age: int = Field(7 * 86400, gt=0)  # seconds

    # ---- CSMS: the OCPP endpoint /ocpp/{cpo_id}/{identity} (app/csms) ----
    csms_heartbeat_interval: int = Field(300, gt=0, le=86400)  # the BootNotification `interval`, seconds
    # Characters of one OCPP frame; a longer one is answered with a CALLERROR, unparsed. uvicorn's
    # --ws-max-size (1 MiB) is the hard cap: above it the socket closes (1009).
    csms_max_frame: int = Field(65536, ge=1024, le=1048576)
    # Frames per second one charger may send (bursts of twice that); beyond it its frames are read
    # later, so one charger cannot starve the others.
    csms_rate: float = Field(50.0, gt=0)
    # Every API process marks the chargers it holds as seen this often, and sweeps: a charger not
    # seen for csms_stale_after seconds (its API process died) goes OFFLINE, its EVSEs UNKNOWN.
    csms_touch_interval: float = Field(30.0, gt=0, le=3600)
    csms_stale_after: float = Field(90.0, gt=0)
    # OCPI commands (app/ocpi/commands.py → workflows/ocpi_command.py): the CommandResponse `timeout`
    # the eMSP is told (the CommandResult is POSTed within it), and how long a charger gets to answer
    # the OCPP call (no answer → TIMEOUT); the rest of the first is for the POST and its retries.
    command_timeout: int = Field(30, ge=5, le=600)
    command_charger_timeout: float = Field(15.0, gt=0, le=300)
    ocpp_log_max_rows: int = Field(1000, gt=0)  # per charger, oldest dropped first
    ocpp_log_max_age: int = Field(7 * 86400, gt=0)  # seconds

    # ---- per-org quotas ----
    quota_live_cpos: int = Field(50, gt=0)
    quota_live_chargers: int = Field(20_000, gt=0)

    # ---- lifecycle reconciler ----
    reconcile_interval: int = Field(60, gt=0)  # seconds between runs of the reconciler schedule
    reconcile_grace: int = Field(60, gt=0)  # a row this old with no workflow is an orphan

    # ---- operations (README "Operations") ----
    # `json`: one JSON object per log line with cpo_id / workflow_id / correlation_id when known.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # the worker's --log-level wins
    # Prometheus /metrics on the API (unauthenticated, like /healthz: keep it off the public path).
    metrics_enabled: bool = True
    readiness_timeout: float = Field(2.0, gt=0, le=30)  # seconds each /readyz check may take
    # The Temporal SDK's Prometheus endpoint of each worker (http://host:port/metrics); 0 = off.
    worker_metrics_port: int = Field(0, ge=0, le=65535)
    worker_metrics_host: str = "0.0.0.0"
    # SIGTERM: the worker stops polling, then gives running activities this long to finish before
    # cancelling them (Temporal retries them elsewhere). Keep it below the orchestrator's kill grace.
    worker_shutdown_grace: float = Field(10.0, gt=0, le=300)
    # Slots per worker process: activities (DB batches) and workflow tasks run at once.
    worker_max_concurrent_activities: int = Field(20, gt=0)
    worker_max_concurrent_workflow_tasks: int = Field(100, gt=0)

    # ---- charger simulators (sim workers: `worker.py --role sim`) ----
    # Where the pods' chargers connect: the CSMS WebSocket base of the API (or its load balancer),
    # `ws(s)://host:port/ocpp`. Empty: ws://127.0.0.1:{api_port}/ocpp (one machine, `make run`).
    csms_url: str = ""
    # Pods one sim worker hosts at once. A pod holds its activity slot for its CPO's whole life, and a
    # tiny CPO's pod holds one charger: size by chargers (one process holds ~10,000 idle ones), not pods.
    sim_max_pods: int = Field(500, gt=0)

    # ---- `make run` only ----
    api_port: int = 8000
    ui_port: int = 8233
    var_dir: str = "var"
    workers: int = Field(2, gt=0)

    @model_validator(mode="after")
    def _stale_after_outlasts_touches(self) -> Settings:
        # A live connection is touched every csms_touch_interval: a shorter bound would sweep it.
        if self.csms_stale_after < 2 * self.csms_touch_interval:
            raise ValueError("csms_stale_after must be at least twice csms_touch_interval")
        # The result must still be POSTable after the charger's answer (or silence) is known.
        if self.command_charger_timeout > self.command_timeout - 3:
            raise ValueError("command_charger_timeout must be at least 3 s shorter than command_timeout")
        return self

    def require_secrets(self) -> None:
        """Refuse to run with a missing, empty or weak JWT secret (it signs every tenant's tokens)."""
        if not self.jwt_secret:
            raise ConfigurationError(
                "CPOLAB_JWT_SECRET is not set: set it to a random string of at least "
                f"{MIN_SECRET_LENGTH} characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if len(self.jwt_secret) < MIN_SECRET_LENGTH and not self.dev_mode:
            raise ConfigurationError(f"CPOLAB_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters long")

    def csms_base_url(self) -> str:
        return self.csms_url or f"ws://127.0.0.1:{self.api_port}/ocpp"

    def charger_key(self) -> bytes:
        """Key of the charger passwords: its own setting, else a subkey of the JWT secret."""
        self.require_secrets()
        if self.charger_secret:
            return self.charger_secret.encode()
        return hmac.new(self.jwt_secret.encode(), b"cpolab charger passwords", hashlib.sha256).digest()

    def trusted_host_set(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.trusted_hosts.split(",") if h.strip())


@lru_cache
def get_settings() -> Settings:
    return Settings()
