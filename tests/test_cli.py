"""The real `cpolab` executable against a running stack: token → create --wait → status → list → report → delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from tests.stack import ROOT, SECRET, Stack, free_port

CPOLAB = Path(sys.executable).with_name("cpolab")


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CPOLAB), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def env(stack: Stack) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CPOLAB_")}
    # PYTHONPATH: the executable of the shared venv must import this checkout's code, not the editable install's.
    return {**base, "CPOLAB_API_URL": stack.api_url, "CPOLAB_JWT_SECRET": SECRET, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def token(env: dict[str, str]) -> str:
    out = run("token", "--org", "cli-org", env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_token_is_signed_with_the_configured_secret(env: dict[str, str]) -> None:
    out = run("token", "--org", "cli-tok", "--scope", "cpos:read", "--ttl", "120", env=env)
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["org"] == "cli-tok" and claims["scope"] == "cpos:read"
    assert 0 < claims["exp"] - claims["iat"] <= 120


def test_lifecycle(env: dict[str, str], token: str) -> None:
    env = {**env, "CPOLAB_TOKEN": token}
    created = run(
        "create", "small-urban-ac", "--country", "fr", "--party", "cli", "--name-prefix", "clitest",
        "--seed", "11", "--wait", env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    cpo_id = body["cpo_id"]
    assert body["status"] == "READY" and body["token_a"] and body["party"]["party_id"] == "CLI"
    assert body["progress"]["chargers_done"] == 6
    # The progress bar went to stderr: a bar, then steps, locations and chargers counts.
    assert "[" + "#" * 24 + "]" in created.stderr
    assert "steps 5/5" in created.stderr and "locations 2/2" in created.stderr and "chargers 6/6" in created.stderr
    assert "Traceback" not in created.stderr

    status = run("status", cpo_id, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "READY"

    listed = run("list", "--page", "1", "--limit", "5", env=env)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert page["limit"] == 5 and cpo_id in [c["cpo_id"] for c in page["data"]]

    report = run("report", cpo_id, env=env)
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith(f"# CPO {cpo_id}") and "FR*CLI" in report.stdout
    assert body["token_a"] not in report.stdout

    extended = run("extend", cpo_id, "--no-ttl", env=env)
    assert extended.returncode == 0, extended.stderr
    assert json.loads(extended.stdout)["expires_at"] is None
    too_short = run("extend", cpo_id, "--ttl", "5", env=env)
    assert too_short.returncode == 1 and "ttl_seconds" in too_short.stderr

    deleted = run("delete", cpo_id, env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["status"] in {"DESTROYING", "DESTROYED"}
    again = run("delete", cpo_id, env=env)
    assert again.returncode == 0, again.stderr


def test_create_options_reach_the_api(env: dict[str, str], token: str) -> None:
    out = run(
        "--token", token, "create", "small-urban-ac", "--country", "DE", "--party", "CL2", "--name-prefix", "opts",
        "--no-ttl", "--overrides", "locations=1", "chargers_per_location=1", "--role", "emsp",
        "--ocpi-version", "2.1.1", "--time-scale", "30", "--background-activity", env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["expires_at"] is None and body["status"] == "PENDING" and body["party"]["role"] == "EMSP"
    detail = run("get", body["cpo_id"], "--token", token, env=env)
    assert json.loads(detail.stdout)["overrides"] == {"locations": 1, "chargers_per_location": 1}
    assert json.loads(detail.stdout)["simulation"] == {"time_scale": 30.0, "background_activity": True}
    assert run("delete", body["cpo_id"], "--token", token, env=env).returncode == 0


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["create", "no-such-template", "--country", "FR", "--party", "ABC", "--name-prefix", "x"],
         ["HTTP 404", "unknown template 'no-such-template'"]),
        (["create", "small-urban-ac", "--country", "XX", "--party", "ABC", "--name-prefix", "x"],
         ["HTTP 422", "body.country_code", "ISO 3166-1"]),
        (["create", "small-urban-ac", "--country", "FR", "--party", "ABC", "--name-prefix", "x",
          "--overrides", "locations=100000"], ["HTTP 422", "body.overrides.locations"]),
        (["create", "small-urban-ac", "--country", "FR", "--party", "ABC", "--name-prefix", "x",
          "--time-scale", "0"], ["HTTP 422", "body.simulation.time_scale"]),
        (["status", "987654321"], ["HTTP 404", "not found"]),
        (["status", "abc"], ["HTTP 422", "path.cpo_id"]),
        (["list", "--limit", "1000"], ["HTTP 422", "query.limit"]),
    ],
)  # fmt: skip
def test_api_errors_are_one_clean_line(env: dict[str, str], token: str, args: list[str], needles: list[str]) -> None:
    out = run(*args, env={**env, "CPOLAB_TOKEN": token})
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith("cpolab: error: ") and out.stderr.count("\n") == 1, out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def test_bad_or_missing_token(env: dict[str, str]) -> None:
    out = run("list", "--token", "not-a-jwt", env=env)
    assert out.returncode == 1 and "HTTP 401" in out.stderr and "invalid token" in out.stderr
    out = run("list", env=env)
    assert out.returncode == 2 and "CPOLAB_TOKEN" in out.stderr and "Traceback" not in out.stderr


def test_unreachable_api_is_a_clear_message(env: dict[str, str], token: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = run("--api", url, "list", env={**env, "CPOLAB_TOKEN": token})
    assert out.returncode == 3
    assert out.stderr.startswith(f"cpolab: error: cannot reach the API at {url}")
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_token_ttl_above_the_maximum_is_refused(env: dict[str, str]) -> None:
    out = run("token", "--org", "x", "--ttl", str(90 * 86400 + 1), env=env)
    assert out.returncode == 2 and out.stdout == ""
    assert "--ttl must be between 1 and 7776000 s" in out.stderr and "Traceback" not in out.stderr
    out = run("token", "--org", "x", "--ttl", "120", env={**env, "CPOLAB_JWT_MAX_TTL": "60"})
    assert out.returncode == 2 and "between 1 and 60 s" in out.stderr
    assert run("token", "--org", "x", "--ttl", "0", env=env).returncode == 2


def test_token_without_a_secret_is_refused(env: dict[str, str]) -> None:
    out = run("token", "--org", "x", env={k: v for k, v in env.items() if k != "CPOLAB_JWT_SECRET"})
    assert out.returncode != 0 and "CPOLAB_JWT_SECRET is not set" in out.stderr and out.stdout == ""


def _run_snippet(snippet: str, tmp_path: Path) -> list[str]:
    """The pasted snippet with `curl` replaced by a function that prints its arguments."""
    prelude = 'curl() { for a in "$@"; do printf \'%s\\n\' "$a"; done; }\nEMSP_TOKEN_B=b EMSP_VERSIONS_URL=u\n'
    out = subprocess.run(["bash", "-c", prelude + snippet], cwd=tmp_path, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_snippet_prints_the_raw_registration_command(env: dict[str, str], token: str, tmp_path: Path) -> None:
    env = {**env, "CPOLAB_TOKEN": token}
    created = run("create", "small-urban-ac", "--country", "FR", "--party", "SNP", "--name-prefix", "snip", env=env)
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    saved = tmp_path / "cpo.json"
    saved.write_text(created.stdout)

    from_file = run("snippet", str(saved), env=env)
    assert from_file.returncode == 0, from_file.stderr
    assert from_file.stdout == body["roam_helper"]["curl_snippet"] + "\n"
    assert '\\"' not in from_file.stdout  # raw, not JSON-escaped
    from_stdin = subprocess.run(
        [str(CPOLAB), "snippet", "-"], input=created.stdout, env=env, capture_output=True, text=True, check=False
    )
    assert from_stdin.stdout == from_file.stdout
    args = _run_snippet(from_file.stdout, tmp_path)
    assert args[3] == body["ocpi_peer_url"].removesuffix("versions") + "2.2.1/credentials"
    assert '"token": "b"' in args[-1] and '"url": "u"' in args[-1]

    direct = run("create", "small-urban-ac", "--country", "FR", "--party", "SN2", "--name-prefix", "snip", "--snippet",
                 env=env)  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.startswith("curl -sS -X POST ") and direct.stdout.count("\n") == 1
    assert "accepted" in direct.stderr and "Token A" in direct.stderr
    for cpo_id in (body["cpo_id"], direct.stderr.split()[1]):
        assert run("delete", cpo_id, env=env).returncode == 0


def test_snippet_of_something_else_is_a_clean_error(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "not.json").write_text("{nope")
    (tmp_path / "other.json").write_text('{"cpo_id": "1"}')
    for args, code, needle in (
        (["snippet", str(tmp_path / "missing.json")], 2, "cannot read"),
        (["snippet", str(tmp_path / "not.json")], 2, "is not JSON"),
        (["snippet", str(tmp_path / "other.json")], 1, "no roam_helper.curl_snippet"),
    ):
        out = run(*args, env=env)
        assert out.returncode == code and needle in out.stderr and out.stdout == "", out.stderr
        assert out.stderr.startswith("cpolab: error: ") and out.stderr.count("\n") == 1
