"""Log setup for the API and the workers: plain text (default) or one JSON object per line.

`CPOLAB_LOG_FORMAT=json` turns on JSON lines with `time`, `level`, `logger`, `message` and, when
known, `cpo_id`, `workflow_id` and `correlation_id` (the OCPI `X-Correlation-ID`). Those come from
a per-request / per-activity context: `log_scope()` opens one (the API's request middleware, the
worker's activity interceptor), `bind()` adds to it from anywhere inside. The context is a mutable
dict shared by the whole request, so a value bound deep in a route is seen by the access log line
written after it.

Secrets: nothing here logs headers, but as a last line of defence every message has
`Bearer …` / `Token …` credentials masked before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("cpo_id", "workflow_id", "correlation_id")
_context: ContextVar[dict[str, Any] | None] = ContextVar("cpolab_log_context", default=None)
_CREDENTIAL = re.compile(r"\b(Bearer|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_WORKFLOW_ID = re.compile(r"^cpo-(\d+)(?:-|$)")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# uvicorn configures these itself before the app is imported; in JSON mode they go through ours.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_HANDLER_NAME = "cpolab"
# httpx logs every request URL at INFO: an eMSP's URL may carry user:password@ (the OCPI traffic
# log masks it; these lines would not).
QUIET_LOGGERS = ("httpx", "httpcore")


@contextmanager
def log_scope(**values: Any) -> Iterator[dict[str, Any]]:
    """A fresh context for one request or activity (values None are left out)."""
    scope = {k: v for k, v in values.items() if v is not None}
    token = _context.set(scope)
    try:
        yield scope
    finally:
        _context.reset(token)


def bind(**values: Any) -> None:
    """Add what just became known (a CPO id, a correlation id) to the current scope, if any."""
    scope = _context.get()
    if scope is not None:
        scope.update({k: v for k, v in values.items() if v is not None})


def cpo_of_workflow(workflow_id: str) -> int | None:
    """`cpo-12`, `cpo-12-teardown` → 12; other workflows (the reconciler) have no CPO."""
    match = _WORKFLOW_ID.match(workflow_id)
    return int(match.group(1)) if match else None


def mask_credentials(text: str) -> str:
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)} [redacted]", text)


class ContextFilter(logging.Filter):
    """Copies the current scope (and Temporal's own workflow/activity info) onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = _context.get() or {}
        for name in CONTEXT_FIELDS:
            if name in scope and not hasattr(record, name):
                setattr(record, name, scope[name])
        # temporalio's workflow.logger / activity.logger attach their info as these extras.
        info = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
        if isinstance(info, dict) and info.get("workflow_id") and not hasattr(record, "workflow_id"):
            record.workflow_id = info["workflow_id"]
            cpo_id = cpo_of_workflow(info["workflow_id"])
            if cpo_id is not None and not hasattr(record, "cpo_id"):
                record.cpo_id = cpo_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": mask_credentials(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = mask_credentials(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_credentials(super().format(record))


def configure_logging(log_format: str, level: str | int = "INFO") -> None:
    """One handler of ours on the root logger (stderr) with the chosen format and the context filter.
    Idempotent; handlers someone else installed (pytest's capture) stay."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if log_format == "json":
        for name in UVICORN_LOGGERS:  # keep uvicorn's levels, drop its text handlers
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
