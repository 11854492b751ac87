"""docker-compose.yml's app services run as plain processes: the same commands (read from the file),
the same environment (compose's interpolation with test values), in compose's start order, on the
test database (Postgres with `--db postgres`, a SQLite file otherwise) and a Temporal dev server.

Only what a container gives for free is changed: the interpreter is this venv's, the API listens on a
free loopback port instead of 0.0.0.0:8000, each worker's metrics port is a free one (in compose each
replica has its own network namespace), the sim worker reaches the CSMS on that loopback port instead
of the `api` service name, and the database / Temporal addresses are the test's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.compose_file import (
    ROOT,
    SERVICES,
    duration_s,
    healthcheck_argv,
    interpolated_environment,
    local_argv,
    option,
    with_option,
)
from tests.databases import AppDatabase, DatabaseFactory
from tests.stack import SECRET, Stack, free_port, wait_http, wait_status

# The required compose variables, as a platform engineer's .env would give them.
DOT_ENV = {"POSTGRES_PASSWORD": "pw", "CPOLAB_DB_PASSWORD": "pw", "CPOLAB_JWT_SECRET": SECRET}
CPO_TABLES = ("location", "evse", "charger", "charger_route", "tariff", "credential_token", "party_reservation")


class ComposeProcesses:
    def __init__(self, workdir: Path, database: AppDatabase, temporal_address: str) -> None:
        self.workdir = workdir
        self.overrides = {"CPOLAB_DATABASE_URL": database.url, "CPOLAB_TEMPORAL_ADDRESS": temporal_address}
        self.api_port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self, service: str, **extra: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CPOLAB_")}
        compose = interpolated_environment(service, DOT_ENV)
        return {**inherited, **compose, **self.overrides, **extra, "PYTHONPATH": str(ROOT)}

    def command(self, service: str) -> list[str]:
        command = SERVICES[service]["command"]
        if service == "api":
            command = with_option(with_option(command, "--host", "127.0.0.1"), "--port", str(self.api_port))
        return local_argv(command)

    def healthcheck(self, service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv = healthcheck_argv(service)
        if service == "api":
            container_port = option(SERVICES["api"]["command"], "--port")
            argv = [a.replace(f"127.0.0.1:{container_port}/", f"127.0.0.1:{self.api_port}/") for a in argv]
        return subprocess.run(local_argv(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)

    def run(self, service: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(service), cwd=ROOT, env=self.env(service), capture_output=True, text=True, timeout=120
        )

    def start(self, service: str, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 — lives as long as the process
        proc = subprocess.Popen(
            self.command(service), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def _until_healthy(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = await asyncio.to_thread(check)  # type: ignore[arg-type]
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} healthcheck never passed: {done.stderr}")
        await asyncio.sleep(0.5)


async def test_compose_services_as_processes_take_a_cpo_to_ready_and_destroyed(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    # Runs on either backend (compose's own is Postgres: `pytest --db postgres`).
    db = databases.new("compose", migrated=False)  # compose's `migrate` service migrates it
    temporal = Stack(tmp_path / "temporal", database=db)  # only its Temporal dev server is used
    compose: ComposeProcesses | None = None
    try:
        await temporal.start_temporal()
        compose = ComposeProcesses(tmp_path, db, temporal.temporal_address)
        replicas = SERVICES["worker"].get("deploy", {}).get("replicas", 1)
        worker_envs = [compose.env("worker", CPOLAB_WORKER_METRICS_PORT=str(free_port())) for _ in range(replicas)]

        # Why the workers wait for `migrate`: on an unmigrated database a worker refuses to start.
        early = compose.start("worker", worker_envs[0], "worker-early")
        assert await asyncio.to_thread(early.wait, 60) != 0
        assert "refuses to start" in (tmp_path / "worker-early.log").read_text()

        migrated = compose.run("migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert compose.run("migrate").returncode == 0  # runs on every `up`: a second run is a no-op

        api_env = compose.env("api")
        assert compose.healthcheck("api", api_env).returncode == 1  # nothing listens yet
        assert compose.healthcheck("worker", worker_envs[0]).returncode == 1
        api = compose.start("api", api_env, "api")
        workers = [compose.start("worker", env, f"worker-{i}") for i, env in enumerate(worker_envs)]
        await wait_http(f"http://127.0.0.1:{compose.api_port}/healthz")
        await _until_healthy(lambda: compose.healthcheck("api", api_env), "api")
        for i, env in enumerate(worker_envs):
            await _until_healthy(lambda env=env: compose.healthcheck("worker", env), f"worker {i}")
        assert compose.env("sim-worker")["CPOLAB_CSMS_URL"] == "ws://api:8000/ocpp"  # the api service, in compose
        sim_env = compose.env(
            "sim-worker",
            CPOLAB_WORKER_METRICS_PORT=str(free_port()),
            CPOLAB_CSMS_URL=f"ws://127.0.0.1:{compose.api_port}/ocpp",
        )
        workers.append(compose.start("sim-worker", sim_env, "sim-worker"))
        await _until_healthy(lambda: compose.healthcheck("sim-worker", sim_env), "sim worker")

        api_url = f"http://127.0.0.1:{compose.api_port}"
        async with httpx.AsyncClient(base_url=api_url, headers=temporal.headers(), timeout=30) as client:
            body = {"template": "small-urban-ac", "country_code": "DE", "party_id": "CMP", "name_prefix": "compose"}
            created = await client.post("/ocpi/cpos", json={**body, "seed": 7})
            assert created.status_code == 202, created.text
            cpo_id = created.json()["cpo_id"]
            ready = await wait_status(client, cpo_id, {"READY", "FAILED"}, timeout=90)
            assert ready["status"] == "READY", ready
            online = "SELECT count(*) FROM charger WHERE cpo_id = ? AND status = 'ONLINE'"
            assert db.query(online, int(cpo_id))[0][0] == 6  # READY: every charger booted against the CSMS
            deleted = await client.delete(f"/ocpi/cpos/{cpo_id}")
            assert deleted.status_code == 202, deleted.text
            gone = await wait_status(client, cpo_id, {"DESTROYED"}, timeout=90)
            assert gone["status"] == "DESTROYED"
        left = {t: db.query(f"SELECT count(*) FROM {t} WHERE cpo_id = ?", int(cpo_id))[0][0] for t in CPO_TABLES}
        assert not any(left.values()), left

        # `docker compose stop`: SIGTERM, then SIGKILL after stop_grace_period; both drain well within it.
        for service, procs in (("api", [api]), ("worker", workers)):
            grace = duration_s(str(SERVICES[service]["stop_grace_period"]))
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                code = await asyncio.to_thread(proc.wait, grace)
                assert code in (0, -signal.SIGTERM), f"{service} exited {code}"
        assert compose.healthcheck("worker", worker_envs[0]).returncode == 1
    finally:
        if compose is not None:
            compose.kill_all()
        temporal.stop()
