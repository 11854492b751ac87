"""Secrets (issue 6 §4): no public default JWT secret, numeric `exp`, a maximum token lifetime,
absolute URLs never taken from an untrusted Host, and shell-quoted snippets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from app.control.report import Registration, render_report
from app.ocpi.roam import curl_snippet
from app.settings import Settings
from app.store.tables import Cpo
from app.web.urls import base_url
from tests.stack import ROOT, SECRET, Stack, api_command, free_port, wait_http

HOSTILE_URL = "http://x.example/'$(touch pwned)'`id`;rm -rf ~ \"q\"/ocpi/peer/1/2.2.1/credentials"
JWT_MAX_TTL = Settings.model_fields["jwt_max_ttl"].default


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CPOLAB_")}
    return {**base, "CPOLAB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cpolab.db'}", **extra}


def _api(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    cmd = api_command(port)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---- refusing to start ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "CPOLAB_JWT_SECRET is not set"),
        ("", "CPOLAB_JWT_SECRET is not set"),
        ("short-secret", "at least 32 characters"),
    ],
    ids=["unset", "empty", "weak"],
)
def test_api_refuses_to_start_without_a_strong_secret(tmp_path: Path, secret: str | None, message: str) -> None:
    env = _env(tmp_path) if secret is None else _env(tmp_path, CPOLAB_JWT_SECRET=secret)
    proc = _api(env, free_port())
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "cpolab API refuses to start" in err and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("secret", [None, ""], ids=["unset", "empty"])
def test_worker_refuses_to_start_without_a_secret(tmp_path: Path, secret: str | None) -> None:
    env = _env(tmp_path) if secret is None else _env(tmp_path, CPOLAB_JWT_SECRET=secret)
    out = subprocess.run(
        [sys.executable, "worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode != 0
    assert "cpolab worker refuses to start" in out.stderr and "CPOLAB_JWT_SECRET" in out.stderr
    assert "Traceback" not in out.stderr


async def test_dev_mode_accepts_a_short_secret(tmp_path: Path) -> None:
    port = free_port()
    proc = _api(_env(tmp_path, CPOLAB_JWT_SECRET="dev", CPOLAB_DEV_MODE="1"), port)
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


# ---- token claims -----------------------------------------------------------------------------------


def _bearer(claims: dict[str, object]) -> dict[str, str]:
    base = {"sub": "t", "org": "secrets-org", "scope": "cpos:read cpos:write"}
    return {"Authorization": f"Bearer {jwt.encode({**base, **claims}, SECRET, algorithm='HS256')}"}


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"exp": "9999999999"}, "must be numeric"),
        ({"exp": str(int(time.time()) + 86400), "iat": int(time.time())}, "must be numeric"),
        ({"exp": int(time.time()) + 86400, "iat": str(int(time.time()))}, "must be numeric"),
        ({"exp": int(time.time()) + JWT_MAX_TTL + 3600}, "lifetime exceeds the maximum"),
        ({"iat": int(time.time()), "exp": int(time.time()) + JWT_MAX_TTL + 1}, "lifetime exceeds the maximum"),
        ({"iat": int(time.time()) - 10, "exp": int(time.time()) + 10**9}, "lifetime exceeds the maximum"),
        ({}, "exp"),
    ],
    ids=["exp-string", "exp-string-with-iat", "iat-string", "too-long-no-iat", "too-long", "years", "no-exp"],
)
async def test_bad_token_claims_are_401(stack: Stack, claims: dict[str, object], detail: str) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        resp = await c.get("/ocpi/cpos", headers=_bearer(claims))
    assert resp.status_code == 401, resp.text
    assert detail in resp.json()["detail"]
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_token_at_the_maximum_lifetime_works(stack: Stack) -> None:
    now = int(time.time())
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        resp = await c.get("/ocpi/cpos", headers=_bearer({"iat": now, "exp": now + JWT_MAX_TTL}))
        assert resp.status_code == 200, resp.text
        resp = await c.get("/ocpi/cpos", headers=_bearer({"exp": now + 3600.5}))  # numeric, not integer: fine
        assert resp.status_code == 200, resp.text


# ---- absolute URLs ------------------------------------------------------------------------------------


def _request(host: str, **settings: str) -> Request:
    """The request a uvicorn listening on port 8123 would hand the app, with this Host header."""
    app = Starlette()
    app.state.settings = Settings(jwt_secret=SECRET, **settings)  # type: ignore[arg-type]
    scope = {
        "type": "http", "method": "GET", "scheme": "http", "path": "/", "query_string": b"", "app": app,
        "server": ("127.0.0.1", 8123), "headers": [(b"host", host.encode())],
    }  # fmt: skip
    return Request(scope)


@pytest.mark.parametrize(
    ("settings", "host", "expected"),
    [
        ({}, "127.0.0.1:8000", "http://127.0.0.1:8000"),
        ({}, "LOCALHOST:9", "http://LOCALHOST:9"),
        ({}, "[::1]:8000", "http://[::1]:8000"),
        ({}, "evil.example", "http://127.0.0.1:8123"),
        ({}, "evil.example:8000", "http://127.0.0.1:8123"),
        ({"trusted_hosts": "cpolab.example"}, "cpolab.example:8443", "http://cpolab.example:8443"),
        ({"trusted_hosts": "cpolab.example:8443"}, "cpolab.example:8443", "http://cpolab.example:8443"),
        ({"trusted_hosts": "cpolab.example:8443"}, "cpolab.example:9", "http://127.0.0.1:8123"),
        ({"trusted_hosts": "*"}, "anything.example", "http://anything.example"),
        # Even a trust-all list never reflects a host that is not a host: quotes, $(…), paths, userinfo.
        ({"trusted_hosts": "*"}, "x'$(id)'", "http://127.0.0.1:8123"),
        ({"trusted_hosts": "*"}, "a.example/evil?", "http://127.0.0.1:8123"),
        ({"trusted_hosts": "*"}, "user@a.example", "http://127.0.0.1:8123"),
        ({"public_base_url": "https://cpolab.example/"}, "evil.example", "https://cpolab.example"),
    ],
)
def test_base_url(settings: dict[str, str], host: str, expected: str) -> None:
    assert base_url(_request(host, **settings)) == expected


async def test_an_untrusted_host_never_reaches_the_create_response(stack: Stack) -> None:
    hostile = "evil.example$(id)"
    async with stack.client(org="secrets-host") as c:
        resp = await c.post(
            "/ocpi/cpos",
            headers={"Host": hostile},
            json={"template": "small-urban-ac", "country_code": "FR", "party_id": "HST", "name_prefix": "host"},
        )
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert "evil" not in resp.text
        assert body["ocpi_peer_url"] == f"{stack.api_url}/ocpi/peer/{body['cpo_id']}/versions"
        assert body["roam_helper"]["credentials_payload"]["url"] == body["ocpi_peer_url"]
        report = await c.get(f"/ocpi/cpos/{body['cpo_id']}/report", headers={"Host": hostile})
        assert report.status_code == 200 and "evil" not in report.text
        trusted = await c.get(f"/ocpi/cpos/{body['cpo_id']}", headers={"Host": f"localhost:{stack.api_port}"})
        assert trusted.json()["ocpi_peer_url"].startswith(f"http://localhost:{stack.api_port}/")
        await c.delete(f"/ocpi/cpos/{body['cpo_id']}")


# ---- shell quoting ------------------------------------------------------------------------------------


def _curl_args(script: str, tmp_path: Path) -> list[str]:
    """Run `script` in bash with `curl` replaced by a function printing its arguments, one per line."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TOKEN_A": "tok", "EMSP_TOKEN_B": "b",
           "EMSP_VERSIONS_URL": "http://emsp.example/versions"}  # fmt: skip
    prelude = 'curl() { for a in "$@"; do printf \'%s\\n\' "$a"; done; }\n'
    out = subprocess.run(
        ["bash", "-c", prelude + script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=10, check=True
    )
    assert not list(tmp_path.glob("pwned")), "the snippet ran an embedded command"
    return out.stdout.splitlines()


@pytest.mark.parametrize("version", ["2.2.1", "2.1.1"])
def test_roam_helper_curl_snippet_keeps_a_hostile_url_one_word(tmp_path: Path, version: str) -> None:
    args = _curl_args(curl_snippet("tokA", HOSTILE_URL, version), tmp_path)
    assert args[:5] == ["-sS", "-X", "POST", HOSTILE_URL, "-H"]
    assert '"token": "b"' in args[-1] and '"url": "http://emsp.example/versions"' in args[-1]


def test_report_curl_line_keeps_a_hostile_url_one_word(tmp_path: Path) -> None:
    cpo = Cpo(
        id=7, org="o", country_code="FR", party_id="ABC", requested_party_id="ABC", role="CPO", name_prefix="n",
        template="small-urban-ac", template_version=1, seed=1, status="READY", ocpi_version="2.2.1",
        locations=0, chargers=0, evses=0, connectors=0,
    )  # fmt: skip
    markdown = render_report(cpo, [], {}, "http://v", HOSTILE_URL, Registration(token_a_live=True, registered_peers=0))
    script = markdown.split("```sh\n", 1)[1].split("```", 1)[0].replace("export TOKEN_A=…  EMSP_TOKEN_B=…  ", "# ")
    args = _curl_args(script, tmp_path)
    assert args[:4] == ["-sS", "-X", "POST", HOSTILE_URL]
    assert "Authorization: Token dG9r" in args  # base64("tok")
