"""`make run`'s stack (app.tools.devstack): comes up, stops cleanly on Ctrl-C, and a restart resumes the
same CPOs and running workflows from ./var (here a temp var dir on free ports), with the JWT secret it
generated the first time; a crashed worker is restarted; busy ports stop it before anything starts."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.stack import ROOT, free_port, wait_status


async def start_devstack(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.tools.devstack"], cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while "cpolab is up" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.2)
    return proc


def interrupt(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=40) == 0


def worker_pids(proc: subprocess.Popen[bytes], *, sim: bool = False) -> list[int]:
    """The provisioning workers (or, with `sim`, the sim workers) `make run` supervises."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    cmdlines = {int(pid): Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in children}
    return [pid for pid, argv in cmdlines.items() if b"worker.py" in argv[1] and (b"sim" in argv) == sim]


async def wait_log(log: Path, needle: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_text():
        assert time.monotonic() < deadline, f"{needle!r} not in:\n{log.read_text()}"
        await asyncio.sleep(0.2)


def devstack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPOLAB_")}  # no secret: make run makes one
    return {
        **env,
        "CPOLAB_VAR_DIR": str(tmp_path / "var"),
        "CPOLAB_API_PORT": str(free_port()),
        "CPOLAB_UI_PORT": str(free_port()),
        "CPOLAB_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }


@pytest.mark.timeout(240)
async def test_devstack_restart_resumes_cpos_and_workflows(tmp_path: Path) -> None:
    env = devstack_env(tmp_path)
    log = tmp_path / "devstack.log"
    proc = await start_devstack(env, log)
    secret_file = tmp_path / "var" / "jwt-secret"
    secret = secret_file.read_text()
    assert len(secret.strip()) >= 32 and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert str(secret_file) in log.read_text()
    token = log.read_text().split("export CPOLAB_TOKEN=", 1)[1].split()[0]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{env['CPOLAB_API_PORT']}"
    try:
        # A crashed worker is restarted; the stack keeps running.
        pids = worker_pids(proc)
        assert len(pids) == 2 and len(worker_pids(proc, sim=True)) == 1
        os.kill(pids[0], signal.SIGKILL)
        await wait_log(log, "restarting it in 1 s")
        await wait_log(log, "worker 1 restarted")
        assert proc.poll() is None and len(worker_pids(proc)) == 2 and pids[0] not in worker_pids(proc)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
            created = (
                await c.post(
                    "/ocpi/cpos",
                    json={
                        "template": "small-urban-ac",
                        "country_code": "FR",
                        "party_id": "RUN",
                        "name_prefix": "devstack",
                    },
                )
            ).json()
            ready = await wait_status(c, created["cpo_id"], {"READY"})
            await wait_log(log, f"CPO {created['cpo_id']} READY in ")
            assert f"CPO {created['cpo_id']} created: small-urban-ac FR*RUN (org dev)" in log.read_text()
    finally:
        interrupt(proc)
    # The dev server logs `time=… level=…` lines (the SDK core in a worker may warn about a slow task).
    assert "level=" not in log.read_text(), "Temporal's output belongs in var/temporal.log"
    assert "Fatal Python error" not in log.read_text()
    assert (tmp_path / "var" / "temporal.db").exists() and (tmp_path / "var" / "cpolab.db").exists()
    with pytest.raises(httpx.TransportError):  # everything stopped, the API port included
        httpx.get(f"{base}/healthz", timeout=2)

    log = tmp_path / "devstack-2.log"
    proc = await start_devstack(env, log)
    assert secret_file.read_text() == secret  # the same secret: the first run's token still works
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
            again = (await c.get(f"/ocpi/cpos/{created['cpo_id']}/status")).json()
            assert again["status"] == "READY" and again["workflow_run_id"] == ready["workflow_run_id"]
            assert again["expires_at"] == ready["expires_at"]
            # Its pod was lost with the old sim worker: Temporal retries it on the new one (heartbeat
            # timeout) and the chargers boot again.
            deadline = time.monotonic() + 90
            online = f"/ocpi/cpos/{created['cpo_id']}/chargers?state=ONLINE"
            while (await c.get(online)).json()["total"] != 6:
                assert time.monotonic() < deadline, (await c.get(f"/ocpi/cpos/{created['cpo_id']}/chargers")).text
                await asyncio.sleep(0.5)
            # The same workflow run (and its TTL timer) is alive: it answers the destroy signal.
            assert (await c.delete(f"/ocpi/cpos/{created['cpo_id']}")).status_code == 202
            await wait_status(c, created["cpo_id"], {"DESTROYED"})
            await wait_log(log, f"CPO {created['cpo_id']} destroyed")
            assert "created" not in log.read_text()  # what existed before the restart is not news
    finally:
        interrupt(proc)


@pytest.mark.parametrize("busy", ["CPOLAB_API_PORT", "CPOLAB_UI_PORT", "CPOLAB_TEMPORAL_ADDRESS"])
def test_busy_port_fails_before_anything_starts(tmp_path: Path, busy: str) -> None:
    env = devstack_env(tmp_path)
    port = int(env[busy].rsplit(":", 1)[-1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "app.tools.devstack"], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
    assert out.returncode != 0 and time.monotonic() - started < 10
    assert f"port {port} already in use" in out.stderr and "another `make run`" in out.stderr, out.stderr
    assert "cpolab is up" not in out.stdout
    assert not (tmp_path / "var" / "temporal.db").exists()  # nothing was started


def test_a_broken_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    env = devstack_env(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "jwt-secret").write_text("\n")
    out = subprocess.run(
        [sys.executable, "-m", "app.tools.devstack"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "holds no usable secret: delete it" in out.stderr, out.stderr
