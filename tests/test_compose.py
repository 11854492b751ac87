"""docker-compose.yml, Dockerfile and deploy/ checked structurally (no Docker engine here, so no
`docker compose config`): services, start order, ports, healthchecks, env names against
app/settings.py, search attributes against app.lifecycle.models, and the image's entry points."""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.lifecycle.models import SEARCH_ATTRIBUTES
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _depends(service: str) -> dict[str, dict[str, Any]]:
    deps = SERVICES[service].get("depends_on", {})
    assert isinstance(deps, dict), f"{service}: depends_on must be a mapping with conditions, got {deps!r}"
    return deps


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: use the mapping form of environment"
    return {k: str(v) for k, v in env.items()}


def _container_ports(service: str) -> set[int]:
    out = set()
    for spec in SERVICES[service].get("ports", []):
        plain = _INTERPOLATION.sub("HOST", str(spec))  # "${BIND:-127.0.0.1}:7233:7233" → "HOST:7233:7233"
        out.add(int(plain.split(":")[-1].split("/")[0]))
    return out


def _settings_env_names() -> set[str]:
    """Every CPOLAB_* variable the settings model reads."""
    return {f"CPOLAB_{name.upper()}" for name in Settings.model_fields}


def _bind_mounts(service: str) -> list[tuple[Path, str]]:
    mounts = []
    for vol in SERVICES[service].get("volumes", []):
        source, target = str(vol).split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((ROOT / source, target))
    return mounts


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instr, _, args = line.strip().partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


def _exec_form(args: str) -> list[str]:
    return yaml.safe_load(args) if args.startswith("[") else shlex.split(args)


# ---- services and start order -------------------------------------------------------------------


def test_expected_services_exist() -> None:
    assert {"postgresql", "temporal", "temporal-namespace", "temporal-ui", "api", "worker"} <= set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_an_image_or_a_build(service: str) -> None:
    spec = SERVICES[service]
    assert spec.get("image") or spec.get("build"), f"{service} has neither image nor build"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_depends_on_targets_exist_with_meaningful_conditions(service: str) -> None:
    for target, dep in _depends(service).items():
        assert target in SERVICES, f"{service} depends on unknown service {target}"
        assert dep.get("condition") in CONDITIONS, f"{service} → {target}: condition {dep.get('condition')!r}"
        if dep["condition"] == "service_healthy":
            assert "healthcheck" in SERVICES[target], f"{service} waits for {target} to be healthy: no healthcheck"
        if dep["condition"] == "service_completed_successfully":
            assert SERVICES[target].get("restart", "no") == "no", f"{target} is a one-shot job: restart must be 'no'"


def test_start_order_has_no_cycle() -> None:
    done: set[str] = set()
    pending = set(SERVICES)
    while pending:
        ready = {s for s in pending if set(_depends(s)) <= done}
        assert ready, f"dependency cycle among {sorted(pending)}"
        done |= ready
        pending -= ready


def test_start_order_matches_the_design() -> None:
    assert _depends("temporal")["postgresql"]["condition"] == "service_healthy"
    schema_jobs = [s for s, d in _depends("temporal").items() if d["condition"] == "service_completed_successfully"]
    assert schema_jobs, "temporal must wait for a schema job (temporalio/server does not set up its database)"
    assert all("admin-tools" in SERVICES[j]["image"] for j in schema_jobs)
    assert _depends("temporal-namespace")["temporal"]["condition"] == "service_healthy"
    assert _depends("temporal-ui")["temporal"]["condition"] == "service_healthy"
    for app in ("api", "worker"):
        deps = _depends(app)
        assert deps["temporal"]["condition"] == "service_healthy"
        assert deps["temporal-namespace"]["condition"] == "service_completed_successfully"
        assert deps["postgresql"]["condition"] == "service_healthy"


# ---- images, ports, healthchecks --------------------------------------------------------------


def test_temporal_runs_on_postgres() -> None:
    temporal = SERVICES["temporal"]
    assert temporal["image"].startswith(("temporalio/server:", "temporalio/auto-setup:"))
    env = _env("temporal")
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["BIND_ON_IP"] == "0.0.0.0"
    assert SERVICES["postgresql"]["image"].startswith("postgres:")
    assert "16" in SERVICES["postgresql"]["image"]


def test_ports() -> None:
    assert 7233 in _container_ports("temporal")
    assert 8080 in _container_ports("temporal-ui")
    assert 8000 in _container_ports("api")
    assert not SERVICES["worker"].get("ports"), "replicated workers cannot publish host ports"


def test_healthchecks_on_postgres_temporal_and_api() -> None:
    for service in ("postgresql", "temporal", "api"):
        check = SERVICES[service].get("healthcheck")
        assert check and check.get("test"), f"{service} needs a healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in " ".join(SERVICES["postgresql"]["healthcheck"]["test"])
    assert "7233" in " ".join(SERVICES["temporal"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(SERVICES["api"]["healthcheck"]["test"])


def test_postgres_data_lives_in_a_named_volume() -> None:
    volumes = [str(v) for v in SERVICES["postgresql"]["volumes"]]
    named = [v.split(":")[0] for v in volumes if v.endswith(":/var/lib/postgresql/data")]
    assert named and named[0] in (COMPOSE.get("volumes") or {})


def test_ui_points_at_temporal() -> None:
    assert _env("temporal-ui")["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_api_and_worker_share_the_project_image() -> None:
    api, worker = SERVICES["api"], SERVICES["worker"]
    assert api["build"]["context"] == "." and api["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    assert api["image"] == worker["image"]
    assert api["command"][:6] == ["uvicorn", "api:app", "--host", "0.0.0.0", "--port", "8000"]
    assert worker["command"] == ["python", "worker.py"]
    assert worker["deploy"]["replicas"] == 2
    assert "container_name" not in worker


# ---- app configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["api", "worker"])
def test_app_env_names_are_the_ones_settings_reads(service: str) -> None:
    known = _settings_env_names()
    assert {"CPOLAB_DATABASE_URL", "CPOLAB_TEMPORAL_ADDRESS", "CPOLAB_JWT_SECRET"} <= known
    env = _env(service)
    unknown = {k for k in env if k.startswith("CPOLAB_")} - known
    assert not unknown, f"{service} sets variables app/settings.py never reads: {sorted(unknown)}"
    assert env["CPOLAB_TEMPORAL_ADDRESS"] == "temporal:7233"
    url = env["CPOLAB_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://"), url
    assert re.search(r"@postgresql:5432/cpolab$", url), url


@pytest.mark.parametrize("service", ["api", "worker"])
def test_jwt_secret_is_required_not_defaulted(service: str) -> None:
    # Both refuse to start without it (the worker derives charger passwords from it).
    value = _env(service)["CPOLAB_JWT_SECRET"]
    match = _INTERPOLATION.fullmatch(value)
    assert match and match.group(1) == "CPOLAB_JWT_SECRET" and match.group(2) == ":?", value
    assert Settings.model_fields["jwt_secret"].default == ""


def _uvicorn_limits(command: list[str]) -> dict[str, str]:
    flags = (
        "--http",
        "--h11-max-incomplete-event-size",
        "--limit-concurrency",
        "--timeout-keep-alive",
        "--timeout-graceful-shutdown",
    )
    return {flag: command[command.index(flag) + 1] for flag in flags if flag in command}


def test_uvicorn_limits_are_the_same_in_the_image_compose_and_make_run() -> None:
    from app.tools import devstack

    wanted = {
        "--http": "h11",  # the header-size limit is h11's; httptools has none
        "--h11-max-incomplete-event-size": str(devstack.MAX_HEADER_BYTES),
        "--limit-concurrency": str(devstack.MAX_CONNECTIONS),
        "--timeout-keep-alive": str(devstack.KEEP_ALIVE_S),
        "--timeout-graceful-shutdown": str(devstack.GRACEFUL_SHUTDOWN_S),
    }
    cmd = [_exec_form(args) for instr, args in _dockerfile() if instr == "CMD"][-1]
    assert _uvicorn_limits(cmd) == wanted
    assert _uvicorn_limits(SERVICES["api"]["command"]) == wanted
    assert _uvicorn_limits(devstack.uvicorn_command(8000)) == wanted


def test_no_secret_has_a_default() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name, op, _ in _INTERPOLATION.findall(text):
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", name):
            assert op == ":?", f"${{{name}}} must be required (:?), not defaulted"


def test_app_database_is_created_by_the_postgres_init_script() -> None:
    mounts = dict((target, source) for source, target in _bind_mounts("postgresql"))
    initdb = mounts["/docker-entrypoint-initdb.d"]
    scripts = sorted(initdb.glob("*.sh")) + sorted(initdb.glob("*.sql"))
    assert scripts, "no init script for the cpolab database"
    text = "\n".join(s.read_text() for s in scripts)
    assert "CREATE DATABASE" in text and "cpolab" in text
    assert "CPOLAB_DB_PASSWORD" in _env("postgresql")


# ---- Temporal namespace and search attributes ------------------------------------------------


def _script_in(service: str) -> Path:
    """The host file behind the job's entrypoint script (resolved through its bind mounts)."""
    entry = SERVICES[service]["entrypoint"]
    script = next(a for a in entry if a.endswith(".sh"))
    for source, target in _bind_mounts(service):
        if script.startswith(target.rstrip("/") + "/"):
            return source / script[len(target.rstrip("/")) + 1 :]
    raise AssertionError(f"{service}: {script} is not inside a bind mount")


def test_namespace_job_registers_exactly_the_apps_search_attributes() -> None:
    job = SERVICES["temporal-namespace"]
    assert "temporalio/admin-tools" in job["image"]
    assert _env("temporal-namespace")["NAMESPACE"] == "default"
    script = _script_in("temporal-namespace").read_text()
    assert "operator namespace create" in script and "operator search-attribute create" in script
    declared = re.search(r'^SEARCH_ATTRIBUTES="([^"]*)"', script, re.M)
    assert declared, "setup-namespace.sh must declare SEARCH_ATTRIBUTES"
    registered = dict(pair.split("=") for pair in declared.group(1).split())
    types = {"KEYWORD": "Keyword", "INT": "Int", "TEXT": "Text", "BOOL": "Bool", "DOUBLE": "Double"}
    wanted = {key.name: types[key.indexed_value_type.name] for key in SEARCH_ATTRIBUTES}
    assert registered == wanted
    assert registered == {"CpoOrg": "Keyword", "CpoTemplate": "Keyword", "CpoState": "Keyword", "CpoId": "Int"}


def test_schema_job_migrates_both_temporal_databases() -> None:
    script = _script_in("temporal-schema").read_text()
    assert "temporal-sql-tool" in script and "update-schema" in script
    assert "postgresql/v12" in script and "visibility" in script


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_bind_mount_sources_exist(service: str) -> None:
    for source, _ in _bind_mounts(service):
        assert source.exists(), f"{service} mounts missing {source.relative_to(ROOT)}"


def test_temporal_dynamic_config_is_mounted() -> None:
    path = _env("temporal")["DYNAMIC_CONFIG_FILE_PATH"]
    for source, target in _bind_mounts("temporal"):
        if path.startswith(target.rstrip("/") + "/"):
            config = source / path[len(target.rstrip("/")) + 1 :]
            assert config.is_file()
            assert isinstance(yaml.safe_load(config.read_text()), dict)
            return
    raise AssertionError(f"{path} is not inside a bind mount")


@pytest.mark.parametrize("script", sorted((ROOT / "deploy").rglob("*.sh")), ids=lambda p: p.name)
def test_deploy_scripts_are_valid_posix_sh(script: Path) -> None:
    assert script.read_text().startswith("#!/bin/sh")
    subprocess.run(["sh", "-n", str(script)], check=True)


# ---- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_base_user_and_install() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [args for instr, args in steps if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    installs = [i for i, (instr, args) in enumerate(steps) if instr == "RUN" and "pip install" in args]
    assert installs, "the project is not pip-installed"
    assert all("[dev]" not in steps[i][1] and "-e " not in steps[i][1] for i in installs)
    # Compose points the app at postgresql+asyncpg://, so the image must carry the driver.
    assert any(".[postgres]" in steps[i][1] for i in installs)
    # ARG values are expanded by /bin/sh in RUN: a `<` or `>` there would become a redirection.
    assert not [args for instr, args in steps if instr == "ARG" and re.search(r"[<>|;&]", args)]
    assert max(installs) < max(i for i, (instr, _) in enumerate(steps) if instr == "USER")


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel.split("/")[0], p) for p in patterns)


def test_dockerfile_copies_what_the_project_needs_and_nothing_ignored() -> None:
    ignore = [
        ln.strip().removeprefix("**/")
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    copied: set[str] = set()
    for instr, args in _dockerfile():
        if instr == "COPY":
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such file"
                assert not _dockerignored(src, ignore), f"COPY {src} is excluded by .dockerignore"
                copied.add(src)
    # pyproject's readme and every package setuptools is told to include must be in the image.
    assert {"pyproject.toml", "README.md", "api.py", "worker.py", "app", "workflows", "activities"} <= copied


def test_dockerfile_cmd_and_compose_commands_run_things_that_exist() -> None:
    cmds = [_exec_form(args) for instr, args in _dockerfile() if instr == "CMD"]
    assert cmds and cmds[-1][:2] == ["uvicorn", "api:app"]
    for command in (cmds[-1], SERVICES["api"]["command"], SERVICES["worker"]["command"]):
        if command[0] == "uvicorn":
            module, attr = command[1].split(":")
            tree = ast.parse((ROOT / f"{module}.py").read_text())
            names = {
                t.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            }
            assert attr in names, f"{module}.py defines no {attr}"
        else:
            assert command[0] == "python" and (ROOT / command[1]).is_file()
            assert 'if __name__ == "__main__"' in (ROOT / command[1]).read_text()


# ---- shutdown ---------------------------------------------------------------------------------


def _duration_s(spec: str) -> float:
    """Compose durations: `30s`, `1m30s`, `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", spec)
    assert parts and "".join(n + u for n, u in parts) == spec, f"unreadable duration {spec!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_worker_stop_grace_outlasts_its_shutdown_grace() -> None:
    # SIGTERM → the worker drains for worker_shutdown_grace, then cancels and exits; compose must not
    # SIGKILL it before (compose's own default is 10 s).
    stop_grace = _duration_s(str(SERVICES["worker"].get("stop_grace_period", "10s")))
    default = Settings.model_fields["worker_shutdown_grace"].default
    drain = float(_env("worker").get("CPOLAB_WORKER_SHUTDOWN_GRACE", default))
    assert stop_grace >= drain + 5, f"stop_grace_period {stop_grace} s leaves no margin over the {drain} s drain"
