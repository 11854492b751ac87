"""`make run`'s stack (app.tools.devstack): comes up, stops cleanly on Ctrl-C, and a restart resumes the
same CPOs and running workflows from ./var (here a temp var dir on free ports)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.stack import ROOT, SECRET, free_port, wait_status


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
    assert proc.wait(timeout=40) is not None


@pytest.mark.timeout(240)
async def test_devstack_restart_resumes_cpos_and_workflows(tmp_path: Path) -> None:
    api_port, temporal_port = free_port(), free_port()
    env = {
        **os.environ,
        "CPOLAB_VAR_DIR": str(tmp_path / "var"),
        "CPOLAB_API_PORT": str(api_port),
        "CPOLAB_UI_PORT": str(free_port()),
        "CPOLAB_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "CPOLAB_JWT_SECRET": SECRET,
    }
    env.pop("CPOLAB_DATABASE_URL", None)
    log = tmp_path / "devstack.log"
    proc = await start_devstack(env, log)
    token = log.read_text().split("export CPOLAB_TOKEN=", 1)[1].split()[0]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{api_port}"
    try:
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
    finally:
        interrupt(proc)
    assert (tmp_path / "var" / "temporal.db").exists() and (tmp_path / "var" / "cpolab.db").exists()
    with pytest.raises(httpx.TransportError):  # everything stopped, the API port included
        httpx.get(f"{base}/healthz", timeout=2)

    proc = await start_devstack(env, tmp_path / "devstack-2.log")
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
            again = (await c.get(f"/ocpi/cpos/{created['cpo_id']}/status")).json()
            assert again["status"] == "READY" and again["workflow_run_id"] == ready["workflow_run_id"]
            assert again["expires_at"] == ready["expires_at"]
            # The same workflow run (and its TTL timer) is alive: it answers the destroy signal.
            assert (await c.delete(f"/ocpi/cpos/{created['cpo_id']}")).status_code == 202
            await wait_status(c, created["cpo_id"], {"DESTROYED"})
    finally:
        interrupt(proc)
