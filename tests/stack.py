"""A real cpolab stack as plain processes on loopback: Temporal dev server, worker(s), API.

Used by the test suite and the benchmarks; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.tools.devstack import temporal_command, wait_for_temporal, ws_flags
from app.web.auth import ALL_SCOPES, mint_token
from tests.databases import AppDatabase, migrate

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789abcdef0123456789"
RPC_TIMEOUT = "6"  # CPOLAB_TEMPORAL_RPC_TIMEOUT of every test stack


# Keeps the test logs to what matters: warnings and errors, no access lines.
QUIET = ("--log-level", "warning", "--no-access-log")


def api_command(port: int) -> list[str]:
    """An API process on loopback, as the tests start it."""
    return [sys.executable, "-m", "uvicorn", "api:app", "--host", "127.0.0.1", "--port", str(port), *ws_flags()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(
        self,
        workdir: Path,
        *,
        temporal_db: bool = False,
        database: AppDatabase | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`database`: an already migrated app database; default a SQLite file in `workdir`, migrated by
        start() (benchmarks). `env`: extra settings for every process of the stack."""
        self.workdir = workdir
        self.extra_env = env or {}
        workdir.mkdir(parents=True, exist_ok=True)
        self.database = database or AppDatabase(
            f"sqlite+aiosqlite:///{workdir / 'cpolab.db'}", f"sqlite:///{workdir / 'cpolab.db'}"
        )
        self._migrated = database is not None
        self.temporal_port = free_port()
        self.api_port = free_port()
        self.temporal_address = f"127.0.0.1:{self.temporal_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.temporal_db = workdir / "temporal.db" if temporal_db else None
        self.temporal: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.sim_workers: list[subprocess.Popen[bytes]] = []

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CPOLAB_DATABASE_URL": self.database.url,
            "CPOLAB_TEMPORAL_ADDRESS": self.temporal_address,
            "CPOLAB_JWT_SECRET": SECRET,
            # eMSP peers of the tests listen on loopback.
            "CPOLAB_EGRESS_ALLOW_LOOPBACK": "1",
            "CPOLAB_CSMS_URL": f"ws://127.0.0.1:{self.api_port}/ocpp",
            # A loaded CI box can take longer than the 2.5 s default to run an update's workflow task;
            # the tests of the bound itself read this value.
            "CPOLAB_TEMPORAL_RPC_TIMEOUT": RPC_TIMEOUT,
            "PYTHONPATH": str(ROOT),
            **self.extra_env,
        }

    def recent_problems(self, per_log: int = 40) -> str:
        """The last warnings, errors and tracebacks each process of the stack logged."""
        marks = ("WARNING", "ERROR", "CRITICAL", "Traceback", "Error", "Exception", "level=WARN", "level=ERROR")
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 256 * 1024))
                lines = f.read().decode(errors="replace").splitlines()
            hits = [line for line in lines if any(m in line for m in marks)][-per_log:]
            if hits:
                parts.append(f"--- {path.name}\n" + "\n".join(hits))
        if self.database.dialect == "postgresql":  # a hang on Postgres is most often a lock wait
            busy = self.query(
                "SELECT pid, pg_blocking_pids(pid), state, wait_event_type, wait_event,"
                " now() - xact_start, left(query, 160) FROM pg_stat_activity"
                " WHERE state <> 'idle' AND pid <> pg_backend_pid() AND datname = current_database()"
            )
            parts.append("--- pg_stat_activity (not idle)\n" + "\n".join(map(str, busy)))
        return "\n".join(parts) or "(none)"

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 — lives as long as the process
        return subprocess.Popen(
            cmd, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    async def start_temporal(self) -> None:
        # The dev server picks free ports for its internal services too, racing every other server
        # starting on the box (parallel test files). A clash either makes it exit at once or, worse,
        # leaves its frontend answering while an internal service failed to bind, and it stops serving
        # moments later (a whole test file then saw "connection refused"). Either way: fresh ports.
        log = self.workdir / "temporal.log"
        for attempt in range(5):
            extra = ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
            offset = log.stat().st_size if log.exists() else 0
            self.temporal = self._spawn(
                "temporal", temporal_command(self.temporal_port, None, self.temporal_db, extra=extra)
            )
            try:
                await wait_for_temporal(self.temporal_address, timeout=30, alive=self.temporal)
                await asyncio.sleep(0.3)  # a failed internal listener is logged within ~0.1 s of start
                with open(log, "rb") as fh:
                    fh.seek(offset)
                    clash = b"address already in use" in fh.read()
                if not clash and self.temporal.poll() is None:
                    return
                self.temporal.kill()
                self.temporal.wait()
                if attempt == 4:
                    raise RuntimeError(f"Temporal dev server lost a port race 5 times; see {log}")
            except Exception:
                if self.temporal.poll() is None or attempt == 4:
                    raise
            self.temporal_port = free_port()
            self.temporal_address = f"127.0.0.1:{self.temporal_port}"

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn(f"worker-{len(self.workers)}", [sys.executable, "worker.py", "--log-level", "WARNING"])
        self.workers.append(proc)
        return proc

    def start_sim_worker(self) -> subprocess.Popen[bytes]:
        name = f"sim-worker-{len(self.sim_workers)}"
        # Its own metrics port, if any: a stack that sets one for its workers would clash with them.
        env = {**self.env, "CPOLAB_WORKER_METRICS_PORT": "0"}
        proc = self._spawn(name, [sys.executable, "worker.py", "--role", "sim", "--log-level", "WARNING"], env)
        self.sim_workers.append(proc)
        return proc

    def kill_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    async def start_api(self, env: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        self.api = self._spawn("api", [*api_command(self.api_port), *QUIET], env=env)
        await wait_http(f"{self.api_url}/healthz", timeout, self.api)

    async def _start_first_api(self) -> None:
        """The API before the workers (their settings carry its port), on a fresh port while it exits
        at once: free_port() only finds a port that was free a moment ago, and the stacks of parallel
        test files, their Temporal servers and their sockets race for the same range."""
        for attempt in range(5):
            try:
                await self.start_api()
                return
            except ProcessExited:
                if attempt == 4:
                    raise
                self.api_port = free_port()
                self.api_url = f"http://127.0.0.1:{self.api_port}"

    @property
    def database_url(self) -> str:
        return self.database.url

    async def start(self) -> Stack:
        if not self._migrated:
            migrate(self.database.url)
            self._migrated = True
        await self.start_temporal()
        await self._start_first_api()
        self.start_worker()
        self.start_sim_worker()
        return self

    def stop(self) -> None:
        # Temporal last, as `docker compose stop` orders it: a sim worker whose server is gone spends
        # ~15 s retrying its pods' cancellation reports before it exits (2 s with the server up), so
        # with the server already dead (a test killed it) there is nothing to stop gracefully.
        server_gone = self.temporal is None or self.temporal.poll() is not None
        for group in ([*self.sim_workers, self.api, *self.workers], [self.temporal]):
            for proc in group:
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL if server_gone else signal.SIGTERM)
            for proc in group:
                if proc is not None:
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        self.database.dispose()

    def token(self, org: str = "acme", scopes: tuple[str, ...] = ALL_SCOPES, ttl: int = 3600) -> str:
        return mint_token(SECRET, org=org, sub="tester", scopes=scopes, ttl_seconds=ttl)

    def headers(self, org: str = "acme") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(org)}"}

    def client(self, org: str = "acme", **kw: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, headers=self.headers(org), timeout=30, **kw)  # type: ignore[arg-type]

    def count(self, table: str, cpo_id: int) -> int:
        return int(self.database.query(f"SELECT count(*) FROM {table} WHERE cpo_id = ?", cpo_id)[0][0])

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        return self.database.query(sql, *args)


class ProcessExited(RuntimeError):
    """The server exited before it answered (it could not bind its port, say)."""


async def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until `url` answers 200; raises ProcessExited as soon as `proc` (the server) has exited."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if proc is not None and proc.poll() is not None:
                raise ProcessExited(f"{url}: the server exited with {proc.returncode} before answering")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up")
            await asyncio.sleep(0.1)


async def wait_status(
    client: httpx.AsyncClient,
    cpo_id: str,
    wanted: set[str],
    timeout: float = 60.0,
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    body: dict[str, object] = {}
    while True:
        try:
            body = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
        except httpx.TransportError:  # a kept-alive connection the server closed under load: ask again
            body = {}
        if body.get("status") in wanted:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"CPO {cpo_id} stuck at {body}")
        await asyncio.sleep(0.1)
