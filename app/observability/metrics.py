"""Prometheus metrics recorded below the web layer (the OCPI outbound client and outbox).

Labels are closed sets: `module` is one of OCPI_MODULES (else "other"), `outcome` one of OUTCOMES,
so a peer can never grow the number of series.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OCPI_MODULES = frozenset(
    {"versions", "version_details", "credentials", "locations", "sessions", "cdrs", "tariffs", "tokens", "commands"}
)
OUTCOMES = ("ok", "refused", "timeout", "http_error", "ocpi_error", "invalid_response", "network_error")

OCPI_OUTBOUND_CALLS = Counter(
    "cpolab_ocpi_outbound_calls",
    "OCPI calls from a CPO to an eMSP peer, by OCPI module and outcome (anything but ok is a failure).",
    ["module", "outcome"],
)
OCPI_OUTBOX_PUSHES = Counter(
    "cpolab_ocpi_outbox_pushes",
    "Outbox deliveries by how they ended: delivered, retried (backoff), dropped (permanent failure, "
    "peer or CPO gone), expired (still failing after outbox_max_age).",
    ["outcome"],
)
OCPI_OUTBOX_ROWS = Gauge(
    "cpolab_ocpi_outbox_rows",
    "Pushes waiting in the outbox, all CPOs (counted in the database by each API process; use max).",
)
OCPI_OUTBOUND_FAILURES = Counter(
    "cpolab_ocpi_outbound_failures",
    "OCPI calls to a peer that did not end with a 2xx HTTP status and an OCPI 1xxx status_code.",
    ["module"],
)

# Prefixes of app.ocpi.client's error strings, in the order they are tested.
_ERROR_OUTCOMES = (
    ("URL refused", "refused"),
    ("refused by the egress policy", "refused"),
    ("timeout", "timeout"),
    ("HTTP ", "http_error"),
    ("OCPI status", "ocpi_error"),
    ("response is not an OCPI envelope", "invalid_response"),
    ("response too large", "invalid_response"),
    ("unsupported Content-Encoding", "invalid_response"),
    ("the response body", "invalid_response"),
)


def outcome_of(error: str | None) -> str:
    if error is None:
        return "ok"
    for prefix, outcome in _ERROR_OUTCOMES:
        if error.startswith(prefix):
            return outcome
    return "network_error"


def count_ocpi_call(module: str, error: str | None) -> None:
    module = module if module in OCPI_MODULES else "other"
    outcome = outcome_of(error)
    OCPI_OUTBOUND_CALLS.labels(module, outcome).inc()
    if outcome != "ok":
        OCPI_OUTBOUND_FAILURES.labels(module).inc()
