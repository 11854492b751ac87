"""Ops surface against a real stack: /readyz, /metrics, the worker's Temporal SDK metrics, JSON logs,
and graceful shutdown of the API and of a worker (SIGTERM to real processes).

One stack for the module (JSON logs on, worker metrics on); tests run in file order and the last
one SIGKILLs the Temporal server.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from app.control.temporal_gateway import TemporalGateway
from app.settings import Settings
from app.store.db import Database
from app.web import health
from app.web.metrics import CPO_COUNT_TTL_S
from tests.databases import AppDatabase, DatabaseFactory, migrate
from tests.emsp_peer import EmspPeer, OcpiClient, credentials_url, ok
from tests.hostile_peer import HostilePeer
from tests.stack import SECRET, Stack, api_command, free_port, wait_http, wait_status

CPO = {"template": "small-urban-ac", "country_code": "FR", "party_id": "OPS", "name_prefix": "ops", "seed": 7}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")  # label values may hold braces


class OpsStack(Stack):
    """The test stack with JSON logs and the worker's SDK metrics endpoint on."""

    def __init__(self, workdir: Path, database: AppDatabase) -> None:
        super().__init__(workdir, database=database)
        self.worker_metrics_port = free_port()

    @property
    def env(self) -> dict[str, str]:
        return {
            **super().env,
            "CPOLAB_LOG_FORMAT": "json",
            "CPOLAB_WORKER_METRICS_PORT": str(self.worker_metrics_port),
            "CPOLAB_WORKER_METRICS_HOST": "127.0.0.1",
            "CPOLAB_WORKER_SHUTDOWN_GRACE": "5",
        }

    def start_worker(self) -> subprocess.Popen[bytes]:  # INFO, so the status transitions are logged
        proc = self._spawn(f"worker-{len(self.workers)}", [sys.executable, "worker.py"])
        self.workers.append(proc)
        return proc


@pytest.fixture(scope="module")
async def ops(tmp_path_factory: pytest.TempPathFactory, databases: DatabaseFactory) -> AsyncIterator[OpsStack]:
    s = OpsStack(Path(tmp_path_factory.mktemp("ops")), databases.new("ops"))
    try:
        await s.start()
        yield s
    finally:
        s.stop()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text format → {(name, labels): value}."""
    out = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
            out[(match.group(1), labels)] = float(match.group(3))
    return out


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return samples(resp.text)


def json_lines(path: Path) -> list[dict[str, object]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    parsed = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert all(isinstance(p, dict) and {"time", "level", "logger", "message"} <= p.keys() for p in parsed)
    return parsed


# ---- readiness ------------------------------------------------------------------------------------


async def test_readyz_is_200_with_every_check_named_when_database_and_temporal_answer(ops: OpsStack) -> None:
    async with httpx.AsyncClient(base_url=ops.api_url) as http:
        resp = await http.get("/readyz")
        assert resp.status_code == 200, resp.text
        assert resp.json() == {
            "status": "ready",
            "checks": {"database": {"ok": True}, "temporal": {"ok": True}, "migrations": {"ok": True}},
        }
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        spec = (await http.get("/openapi.json")).json()
    assert not {"/healthz", "/readyz", "/metrics"} & set(spec["paths"])  # ops endpoints, not the API


async def test_database_check_fails_fast_on_a_refused_port_and_within_the_bound_on_a_silent_one(
    ops: OpsStack,
) -> None:
    """The checks themselves, on real sockets: a closed Postgres port and one that accepts but never
    answers (the readiness bound must hold whatever the database does)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    settings = Settings(jwt_secret=SECRET, temporal_address=ops.temporal_address, readiness_timeout=1.0)
    for port, wanted in ((free_port(), "ConnectionRefusedError"), (silent.getsockname()[1], "no answer within 1 s")):
        db = Database(f"postgresql+asyncpg://cpolab:pw@127.0.0.1:{port}/cpolab")
        state = SimpleNamespace(settings=settings, db=db, temporal=TemporalGateway(settings))
        started = time.monotonic()
        checks = await health.run_checks(state, health.readiness_checks, settings.readiness_timeout)
        elapsed = time.monotonic() - started
        await db.dispose()
        assert checks["temporal"] == {"ok": True}
        assert not checks["database"]["ok"] and not checks["migrations"]["ok"]
        assert checks["database"]["error"] == wanted, checks
        assert elapsed < settings.readiness_timeout + 0.5, elapsed
    silent.close()


async def test_readyz_is_503_naming_migrations_until_the_database_is_migrated(
    ops: OpsStack, databases: DatabaseFactory
) -> None:
    """An API process on a database nobody migrated starts (it never migrates itself) but is not ready."""
    target = databases.new("unmigrated", migrated=False)
    port = free_port()
    api = ops._spawn(
        "api-unmigrated",
        api_command(port),
        env={**ops.env, "CPOLAB_DATABASE_URL": target.url},
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            resp = await http.get("/readyz")
            assert resp.status_code == 503, resp.text
            checks = resp.json()["checks"]
            assert checks["migrations"] == {"ok": False, "error": "SchemaNotAtHead"}
            assert checks["database"] == {"ok": True} and checks["temporal"] == {"ok": True}
            migrate(target.url)
            assert (await http.get("/readyz")).status_code == 200
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)


# ---- metrics --------------------------------------------------------------------------------------


async def test_metrics_count_requests_by_route_template_and_cpos_by_state(ops: OpsStack) -> None:
    before = await scrape(f"{ops.api_url}/metrics")
    async with ops.client(org="metrics-org") as c:
        created = (await c.post("/ocpi/cpos", json=CPO)).json()
        cpo_id = created["cpo_id"]
        await wait_status(c, cpo_id, {"READY"})
        for _ in range(3):
            assert (await c.get(f"/ocpi/cpos/{cpo_id}")).status_code == 200
        randoms = [f"/no-such-{uuid.uuid4().hex}" for _ in range(25)]
        for path in randoms:
            assert (await c.get(path)).status_code == 404
        assert (await c.get("/ocpi/cpos/not-a-number")).status_code == 422
    resp = httpx.get(f"{ops.api_url}/metrics")
    assert not any(path in resp.text for path in randoms), "raw paths must never become labels"
    assert f"/ocpi/cpos/{cpo_id}" not in resp.text
    after = samples(resp.text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "cpolab_http_requests_total"
    assert delta(requests, method="POST", route="/ocpi/cpos", status="202") == 1
    assert delta(requests, method="GET", route="/ocpi/cpos/{cpo_id}", status="200") == 3
    assert delta(requests, method="GET", route="/ocpi/cpos/{cpo_id}", status="422") == 1
    assert delta(requests, method="GET", route="<unrouted>", status="404") == 25
    assert delta("cpolab_http_request_duration_seconds_count", method="GET", route="/ocpi/cpos/{cpo_id}") == 4
    assert delta(requests, method="GET", route="/ocpi/cpos/{cpo_id}/status", status="200") >= 1
    # Bounded: one series per (method, route, status), whatever paths clients invent.
    routes = {dict(labels)["route"] for name, labels in after if name == requests}
    assert len(routes) < 15 and "<unrouted>" in routes
    # The count is cached for CPO_COUNT_TTL_S: the first scrape above may predate READY.
    deadline = time.monotonic() + CPO_COUNT_TTL_S + 5
    while value(after, "cpolab_cpos", state="READY") != 1:
        assert time.monotonic() < deadline, "cpolab_cpos{state=READY} never reached 1"
        await asyncio.sleep(0.5)
        after = await scrape(f"{ops.api_url}/metrics")
    assert value(after, "cpolab_cpos", state="FAILED") == 0  # every state is exported, zeros included
    assert value(after, "cpolab_cpos_counted_at_seconds") > time.time() - 60


async def test_ocpi_outbound_calls_are_counted_by_module_and_outcome(ops: OpsStack, peer: EmspPeer) -> None:
    before = await scrape(f"{ops.api_url}/metrics")
    async with ops.client(org="outbound-org") as c, httpx.AsyncClient(timeout=30) as http:
        good = (await c.post("/ocpi/cpos", json={**CPO, "party_id": "OUT"})).json()
        correlation = f"corr-{uuid.uuid4().hex}"
        emsp = OcpiClient(http, good["token_a"])
        token_b = peer.new_token()
        resp = await emsp.request(
            "POST", credentials_url(good), json=peer.credentials(token_b), headers={"X-Correlation-ID": correlation}
        )
        ok(resp)
        bad = (await c.post("/ocpi/cpos", json={**CPO, "party_id": "BAD"})).json()
        refused_url = f"http://127.0.0.1:{free_port()}/versions"  # nothing listens there
        resp = await OcpiClient(http, bad["token_a"]).request(
            "POST", credentials_url(bad), json={**peer.credentials(peer.new_token()), "url": refused_url}
        )
        assert resp.json()["status_code"] == 3001
    after = await scrape(f"{ops.api_url}/metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "cpolab_ocpi_outbound_calls_total"
    assert delta(calls, module="versions", outcome="ok") == 1
    assert delta(calls, module="version_details", outcome="ok") == 1
    assert delta(calls, module="versions", outcome="network_error") == 1
    assert delta("cpolab_ocpi_outbound_failures_total", module="versions") == 1
    assert delta("cpolab_ocpi_outbound_failures_total", module="version_details") == 0
    ops.correlation = correlation  # type: ignore[attr-defined]  # for the log test below
    ops.outbound_cpo = int(good["cpo_id"])  # type: ignore[attr-defined]
    ops.secrets = [good["token_a"], bad["token_a"], token_b]  # type: ignore[attr-defined]


async def test_worker_serves_temporal_sdk_metrics(ops: OpsStack) -> None:
    scraped = await scrape(f"http://127.0.0.1:{ops.worker_metrics_port}/metrics")
    names = {name for name, _ in scraped}
    # The CPOs of the tests above ran workflow tasks and activities on this worker.
    assert any(n.startswith("temporal_workflow_task_execution_latency") for n in names), sorted(names)[:40]
    assert any(n.startswith("temporal_activity_execution_latency") for n in names), sorted(names)[:40]
    completed = [v for (n, labels), v in scraped.items() if n == "temporal_activity_execution_latency_count"]
    assert sum(completed) > 0


async def test_metrics_can_be_turned_off(ops: OpsStack) -> None:
    port = free_port()
    env = {**ops.env, "CPOLAB_METRICS_ENABLED": "0"}
    proc = ops._spawn("api-nometrics", [sys.executable, "-m", "uvicorn", "api:app", "--port", str(port)], env=env)
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 404
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == -signal.SIGTERM  # uvicorn re-raises the signal after a clean stop


# ---- JSON logs ----------------------------------------------------------------------------------


async def test_json_logs_carry_cpo_workflow_and_correlation_ids_and_no_secrets(ops: OpsStack) -> None:
    api = json_lines(ops.workdir / "api.log")
    worker = json_lines(ops.workdir / "worker-0.log")
    cpo_id = ops.outbound_cpo  # type: ignore[attr-defined]
    registered = [
        line
        for line in api
        if line.get("correlation_id") == ops.correlation  # type: ignore[attr-defined]
        and line.get("cpo_id") == cpo_id
        and line.get("workflow_id") == f"cpo-{cpo_id}"
    ]
    assert registered and "registered" in str(registered[0]["message"]), api[-5:]
    assert any(line.get("cpo_id") == cpo_id and "created" in str(line["message"]) for line in api)
    ready = [line for line in worker if line.get("cpo_id") == cpo_id and line["message"] == f"CPO {cpo_id} is READY"]
    assert ready and ready[0]["workflow_id"] == f"cpo-{cpo_id}" and ready[0]["logger"] == "cpolab.provisioning"
    text = (ops.workdir / "api.log").read_text() + (ops.workdir / "worker-0.log").read_text()
    for secret in [*ops.secrets, SECRET, ops.token(org="outbound-org")]:  # type: ignore[attr-defined]
        assert secret not in text


# ---- graceful shutdown --------------------------------------------------------------------------


async def test_sigterm_to_the_api_finishes_the_request_in_flight_then_exits(ops: OpsStack, peer: EmspPeer) -> None:
    """A handshake whose callback to a slow peer takes 1.5 s is in flight when SIGTERM arrives: it still
    answers 200, new connections are refused, and the process exits soon after (with SIGTERM's status:
    uvicorn shuts down cleanly, then re-raises the signal it caught, so a supervisor sees 143)."""
    from app.tools.devstack import uvicorn_command

    port = free_port()
    proc = ops._spawn("api-drain", uvicorn_command(port), env=ops.env)
    slow = await HostilePeer(drip_interval=1.5).start()
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/healthz")
        async with httpx.AsyncClient(base_url=base, headers=ops.headers("drain-org"), timeout=30) as c:
            cpo = (await c.post("/ocpi/cpos", json={**CPO, "party_id": "DRN"})).json()
            body = {**peer.credentials(peer.new_token()), "url": slow.url("slow")}
            in_flight = asyncio.create_task(
                OcpiClient(c, cpo["token_a"]).request("POST", credentials_url(cpo), json=body)
            )
            deadline = time.monotonic() + 10
            while not any(s.path == "/slow/versions" for s in slow.seen):  # the callback is under way
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            resp = await in_flight
            assert resp.status_code == 200 and resp.json()["status_code"] == 1000, resp.text
            assert time.monotonic() - sent > 1.0  # it really was waiting on the peer
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/healthz", timeout=2)
        assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGTERM
        assert time.monotonic() - sent < 5
    finally:
        await slow.stop()
        if proc.poll() is None:
            proc.kill()


async def test_sigterm_to_a_worker_mid_provisioning_exits_within_the_grace_and_another_finishes(
    ops: OpsStack,
) -> None:
    async with ops.client(org="sigterm-org") as c:
        body = {**CPO, "party_id": "TRM", "overrides": {"locations": 100, "chargers_per_location": 30}}
        cpo_id = int((await c.post("/ocpi/cpos", json=body)).json()["cpo_id"])
        deadline = time.monotonic() + 60
        while not 0 < ops.count("charger", cpo_id) < 3000:  # some, not all, chargers written
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        worker = ops.workers[0]
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 5 + 5) == 0  # grace 5 s (+ process exit)
        assert time.monotonic() - sent < 5 + 3
        log = json_lines(ops.workdir / "worker-0.log")
        assert any(line["message"] == "worker stopped" for line in log)
        ops.start_worker()
        # 3,000 live chargers must boot too: minutes on a loaded CI box (the bound is the workflow's own).
        final = await wait_status(c, str(cpo_id), {"READY", "FAILED"}, timeout=300)
        assert final["status"] == "READY", final
        assert ops.count("charger", cpo_id) == 3000 and ops.count("location", cpo_id) == 100


# ---- last: Temporal goes away -------------------------------------------------------------------


async def test_readyz_is_503_naming_temporal_within_the_bound_when_temporal_is_killed(ops: OpsStack) -> None:
    assert ops.temporal is not None
    ops.temporal.send_signal(signal.SIGKILL)
    ops.temporal.wait()
    async with httpx.AsyncClient(base_url=ops.api_url, timeout=10) as http:
        started = time.monotonic()
        resp = await http.get("/readyz")
        elapsed = time.monotonic() - started
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == {"ok": True}
        assert body["checks"]["temporal"]["ok"] is False and body["checks"]["temporal"]["error"]
        assert elapsed < Settings().readiness_timeout + 1.0, elapsed
        assert (await http.get("/healthz")).status_code == 200  # alive, just not ready
        assert (await http.get("/metrics")).status_code == 200  # metrics need no Temporal
