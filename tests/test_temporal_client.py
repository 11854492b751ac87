"""app.lifecycle.temporal_client: the one Temporal connection of the API and the workers. Plain gRPC
against a real dev server; TLS settings turn into the SDK's TLSConfig (no TLS server here: a TLS
client against the plain dev server must fail, which shows the setting reaches the connection); a
missing or half-set certificate stops both processes at start with a message naming the variable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.service import RetryConfig, TLSConfig

from app.lifecycle import temporal_client
from app.settings import ConfigurationError, Settings
from tests.stack import ROOT, SECRET, Stack, api_command, free_port

CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEfake\n-----END PRIVATE KEY-----\n"
API_KEY = "test-api-key-never-logged-0123456789"


@pytest.fixture(scope="module")
async def dev_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    stack = Stack(Path(tmp_path_factory.mktemp("temporal-client")))
    try:
        await stack.start_temporal()
        yield stack.temporal_address
    finally:
        stack.stop()


async def test_plain_connect_reaches_the_namespace(dev_server: str) -> None:
    settings = Settings(temporal_address=dev_server, temporal_namespace="default")
    assert temporal_client.tls_config(settings) is None
    client = await temporal_client.connect(settings)
    assert client.namespace == "default"
    assert await client.count_workflows() is not None


async def test_lazy_connect_does_not_touch_the_server() -> None:
    # The API starts while Temporal is down: a lazy client to a closed port is created at once.
    settings = Settings(temporal_address=f"127.0.0.1:{free_port()}")
    client = await asyncio.wait_for(temporal_client.connect(settings, lazy=True), 5)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(client.count_workflows(), 10)


@pytest.mark.parametrize(
    "tls_settings", [{"temporal_tls": True}, {"temporal_api_key": API_KEY}], ids=["tls", "api_key"]
)
async def test_tls_is_really_used_a_plain_server_refuses_the_handshake(dev_server: str, tls_settings: dict) -> None:
    settings = Settings(temporal_address=dev_server, **tls_settings)
    with pytest.raises(RuntimeError) as failed:
        await asyncio.wait_for(temporal_client.connect(settings, retry_config=RetryConfig(max_retries=0)), 20)
    assert API_KEY not in str(failed.value)


def test_tls_settings_become_a_tls_config_from_files_or_pem_text(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text(CERT)
    (tmp_path / "client.key").write_text(KEY)
    ca = CERT.replace("MIIBfake", "MIIBca")
    settings = Settings(
        temporal_tls_client_cert=str(tmp_path / "client.pem"),
        temporal_tls_client_key=str(tmp_path / "client.key"),
        temporal_tls_server_ca=ca,  # the PEM text itself, as a secret store may hand it over
        temporal_tls_server_name="frontend.internal",
    )
    tls = temporal_client.tls_config(settings)
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == CERT.encode() and tls.client_private_key == KEY.encode()
    assert tls.server_root_ca_cert == ca.encode() and tls.domain == "frontend.internal"


@pytest.mark.parametrize("field", ["temporal_tls", "temporal_api_key", "temporal_tls_server_name"])
def test_any_tls_setting_turns_tls_on_with_the_system_roots(field: str) -> None:
    tls = temporal_client.tls_config(Settings(**{field: API_KEY if field != "temporal_tls" else True}))
    assert isinstance(tls, TLSConfig) and tls.server_root_ca_cert is None and tls.client_cert is None


def test_bad_tls_settings_are_configuration_errors(tmp_path: Path) -> None:
    (tmp_path / "not.pem").write_text("hello")
    (tmp_path / "client.key").write_text(KEY)
    cases = {
        "CPOLAB_TEMPORAL_TLS_CLIENT_CERT: cannot read": {
            "temporal_tls_client_cert": str(tmp_path / "missing.pem"),
            "temporal_tls_client_key": str(tmp_path / "client.key"),
        },
        "CPOLAB_TEMPORAL_TLS_SERVER_CA": {"temporal_tls_server_ca": str(tmp_path / "not.pem")},
        "must be set together": {"temporal_tls_client_key": str(tmp_path / "client.key")},
    }
    for message, fields in cases.items():
        with pytest.raises(ConfigurationError, match=message):
            temporal_client.tls_config(Settings(**fields))


@pytest.mark.parametrize("process", ["api", "worker"])
def test_a_missing_certificate_stops_the_process_at_start(process: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "client.pem"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CPOLAB_")},
        "PYTHONPATH": str(ROOT),
        "CPOLAB_JWT_SECRET": SECRET,
        "CPOLAB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}",
        "CPOLAB_TEMPORAL_TLS_CLIENT_CERT": str(missing),
        "CPOLAB_TEMPORAL_TLS_CLIENT_KEY": str(missing),
        "CPOLAB_TEMPORAL_API_KEY": API_KEY,
    }
    argv = {
        "api": api_command(free_port()),
        "worker": [sys.executable, "worker.py"],
    }[process]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"refuses to start: CPOLAB_TEMPORAL_TLS_CLIENT_CERT: cannot read '{missing}'" in done.stderr
    assert API_KEY not in done.stdout + done.stderr
    assert not (tmp_path / "never-opened.db").exists()  # it stopped before touching anything
