"""Liveness and readiness of the API process.

`/healthz`: the process answers (no dependency is touched). `/readyz`: every check in
`readiness_checks` passes, each within `readiness_timeout`, run concurrently, so the answer comes
within that bound whatever hangs. 200 `{"status": "ready", "checks": {...}}` or 503
`{"status": "unavailable", "checks": {...}}` naming each check's result; never a 500. The body
gives only the kind of failure (it is unauthenticated); the full error goes to the log.

A check is a named coroutine taking the app state (`request.app.state`: settings, db, temporal);
it returns on success and raises on failure. Add one by appending to `readiness_checks`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from app.store.migrate import require_at_head

log = logging.getLogger("cpolab.health")


@dataclass(frozen=True)
class ReadinessCheck:
    name: str
    run: Callable[[Any], Awaitable[None]]


async def database_answers(state: Any) -> None:
    async with state.db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def temporal_answers(state: Any) -> None:
    """The frontend answers for our namespace (a missing namespace is not ready either)."""
    client = await state.temporal.client()
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=state.settings.temporal_namespace),
        retry=False,
        timeout=timedelta(seconds=state.settings.readiness_timeout),
    )


async def schema_at_head(state: Any) -> None:
    """The database was migrated to the revision this code needs (a rolling upgrade that migrated
    ahead of this process, or a forgotten `migrate`, takes it out of rotation)."""
    await require_at_head(state.db)


readiness_checks: list[ReadinessCheck] = [
    ReadinessCheck("database", database_answers),
    ReadinessCheck("temporal", temporal_answers),
    ReadinessCheck("migrations", schema_at_head),
]


async def _run(check: ReadinessCheck, state: Any, timeout: float) -> dict[str, Any]:
    try:
        async with asyncio.timeout(timeout):
            await check.run(state)
    except TimeoutError:
        log.warning("readiness check %s: no answer within %g s", check.name, timeout)
        return {"ok": False, "error": f"no answer within {timeout:g} s"}
    except Exception as exc:
        log.warning("readiness check %s failed: %s: %s", check.name, type(exc).__name__, exc)
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


async def run_checks(state: Any, checks: list[ReadinessCheck], timeout: float) -> dict[str, dict[str, Any]]:
    results = await asyncio.gather(*(_run(c, state, timeout) for c in checks))
    return {c.name: r for c, r in zip(checks, results, strict=True)}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = request.app.state
    checks = await run_checks(state, readiness_checks, state.settings.readiness_timeout)
    ready = all(r["ok"] for r in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})
