"""docker-compose.yml, Dockerfile and deploy/ checked structurally (no Docker engine here, so no
`docker compose config`): services, start order, ports, healthchecks, env names against
app/settings.py, search attributes against app.lifecycle.models, and the image's entry points."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from app.lifecycle.models import SEARCH_ATTRIBUTES
from app.settings import Settings
from tests.compose_file import (
    COMPOSE,
    ROOT,
    SERVICES,
    depends,
    duration_s,
    environment,
    healthcheck_argv,
    local_argv,
    option,
    project_services,
)
from tests.compose_file import INTERPOLATION as _INTERPOLATION

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def _container_ports(service: str) -> set[int]:
    out = set()
    for spec in SERVICES[service].get("ports", []):
        plain = _INTERPOLATION.sub("HOST", str(spec))  # "${BIND:-127.0.0.1}:7233:7233" → "HOST:7233:7233"
        out.add(int(plain.split(":")[-1].split("/")[0]))
    return out


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
    temporal = {"temporal-schema", "temporal", "temporal-namespace", "temporal-ui"}
    assert {"postgresql", *temporal, "migrate", "api", "worker", "sim-worker"} <= set(SERVICES)
    assert set(project_services()) == {"migrate", "api", "worker", "sim-worker"}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_an_image_or_a_build(service: str) -> None:
    spec = SERVICES[service]
    assert spec.get("image") or spec.get("build"), f"{service} has neither image nor build"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_depends_on_targets_exist_with_meaningful_conditions(service: str) -> None:
    for target, dep in depends(service).items():
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
        ready = {s for s in pending if set(depends(s)) <= done}
        assert ready, f"dependency cycle among {sorted(pending)}"
        done |= ready
        pending -= ready


def test_start_order_matches_the_design() -> None:
    assert depends("temporal")["postgresql"]["condition"] == "service_healthy"
    schema_jobs = [s for s, d in depends("temporal").items() if d["condition"] == "service_completed_successfully"]
    assert schema_jobs, "temporal must wait for a schema job (temporalio/server does not set up its database)"
    assert all("admin-tools" in SERVICES[j]["image"] for j in schema_jobs)
    assert depends("temporal-namespace")["temporal"]["condition"] == "service_healthy"
    assert depends("temporal-ui")["temporal"]["condition"] == "service_healthy"
    # The app's schema job: after Postgres accepts connections, and only that.
    assert depends("migrate") == {"postgresql": {"condition": "service_healthy"}}
    for app in ("api", "worker"):
        deps = depends(app)
        assert deps["postgresql"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["temporal"]["condition"] == "service_healthy"
        assert deps["temporal-namespace"]["condition"] == "service_completed_successfully"


def test_one_shot_jobs_never_restart_and_long_running_services_always_come_back() -> None:
    done = "service_completed_successfully"
    one_shots = {target for s in SERVICES for target, dep in depends(s).items() if dep["condition"] == done}
    assert one_shots == {"temporal-schema", "temporal-namespace", "migrate"}
    for name, spec in SERVICES.items():
        wanted = {"no"} if name in one_shots else {"unless-stopped", "always"}
        assert spec.get("restart") in wanted, f"{name}: restart {spec.get('restart')!r}"


# ---- images, ports, healthchecks --------------------------------------------------------------


def test_temporal_runs_on_postgres() -> None:
    temporal = SERVICES["temporal"]
    assert temporal["image"].startswith(("temporalio/server:", "temporalio/auto-setup:"))
    env = environment("temporal")
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["BIND_ON_IP"] == "0.0.0.0"
    assert SERVICES["postgresql"]["image"].startswith("postgres:")
    assert "16" in SERVICES["postgresql"]["image"]


def test_ports() -> None:
    assert 7233 in _container_ports("temporal")
    assert 8080 in _container_ports("temporal-ui")
    assert _container_ports("api") == {int(option(SERVICES["api"]["command"], "--port"))}
    assert not SERVICES["worker"].get("ports"), "replicated workers cannot publish host ports"
    assert not SERVICES["migrate"].get("ports")


def test_api_can_scale_on_one_host() -> None:
    # A fixed host port would let only one replica start: publish a range (one port per replica).
    for spec in SERVICES["api"]["ports"]:
        plain = _INTERPOLATION.sub(lambda m: m.group(3) or "", str(spec))  # defaults filled in
        host = plain.split(":")[-2]
        low, _, high = host.partition("-")
        assert high and int(high) > int(low), f"api publishes the single host port {host!r}: --scale api=2 would fail"
    for name in ("api", "worker"):
        assert "container_name" not in SERVICES[name], f"{name}: a container_name forbids --scale"
    assert SERVICES["worker"]["deploy"]["replicas"] == 2


def test_healthchecks() -> None:
    for service in ("postgresql", "temporal", "api", "worker"):
        check = SERVICES[service].get("healthcheck")
        assert check and check.get("test"), f"{service} needs a healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in " ".join(SERVICES["postgresql"]["healthcheck"]["test"])
    assert "7233" in " ".join(SERVICES["temporal"]["healthcheck"]["test"])
    # The API's check asks /readyz on the port its command listens on; the worker's reads the SDK
    # metrics endpoint the worker is told to serve (unpublished).
    api_check = healthcheck_argv("api")
    assert api_check[-1] == f"http://127.0.0.1:{option(SERVICES['api']['command'], '--port')}/readyz"
    assert int(environment("worker")["CPOLAB_WORKER_METRICS_PORT"]) > 0
    assert "9000" not in " ".join(str(p) for p in SERVICES["worker"].get("ports", []))


def test_postgres_data_lives_in_a_named_volume() -> None:
    volumes = [str(v) for v in SERVICES["postgresql"]["volumes"]]
    named = [v.split(":")[0] for v in volumes if v.endswith(":/var/lib/postgresql/data")]
    assert named and named[0] in (COMPOSE.get("volumes") or {})


def test_ui_points_at_temporal() -> None:
    assert environment("temporal-ui")["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_app_services_share_one_image_built_here() -> None:
    images = {SERVICES[s]["image"] for s in project_services()}
    assert len(images) == 1
    for name in project_services():
        build = SERVICES[name]["build"]
        assert build["context"] == "." and build.get("dockerfile", "Dockerfile") == "Dockerfile"


def _uvicorn_limits(command: list[str]) -> dict[str, str]:
    flags = (
        "--http",
        "--h11-max-incomplete-event-size",
        "--limit-concurrency",
        "--timeout-keep-alive",
        "--timeout-graceful-shutdown",
        "--ws-max-size",
        "--ws-ping-interval",
        "--ws-ping-timeout",
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
        "--ws-max-size": str(devstack.WS_MAX_BYTES),
        "--ws-ping-interval": str(devstack.WS_PING_S),
        "--ws-ping-timeout": str(devstack.WS_PING_S),
    }
    cmd = [_exec_form(args) for instr, args in _dockerfile() if instr == "CMD"][-1]
    assert _uvicorn_limits(cmd) == wanted
    assert _uvicorn_limits(SERVICES["api"]["command"]) == wanted
    assert _uvicorn_limits(devstack.uvicorn_command(8000)) == wanted


def test_no_secret_has_a_default() -> None:
    # Required secrets fail the `up` when unset (:?); optional ones (charger secret, Temporal API key)
    # may default to empty, never to a value.
    text = (ROOT / "docker-compose.yml").read_text()
    for name, op, arg in _INTERPOLATION.findall(text):
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", name):
            assert op == ":?" or (op == ":-" and arg == ""), f"${{{name}}} must be required (:?) or empty"
    assert environment("api")["CPOLAB_JWT_SECRET"].startswith("${CPOLAB_JWT_SECRET:?")


def test_app_database_is_created_by_the_postgres_init_script() -> None:
    mounts = dict((target, source) for source, target in _bind_mounts("postgresql"))
    initdb = mounts["/docker-entrypoint-initdb.d"]
    scripts = sorted(initdb.glob("*.sh")) + sorted(initdb.glob("*.sql"))
    assert scripts, "no init script for the cpolab database"
    text = "\n".join(s.read_text() for s in scripts)
    assert "CREATE DATABASE" in text and "cpolab" in text
    assert "CPOLAB_DB_PASSWORD" in environment("postgresql")


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
    assert environment("temporal-namespace")["NAMESPACE"] == "default"
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
    path = environment("temporal")["DYNAMIC_CONFIG_FILE_PATH"]
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


def _commands_of_the_image() -> list[tuple[str, list[str]]]:
    """(what, argv) of every command the image runs: its CMD, each app service's command and healthcheck."""
    cmd = [_exec_form(args) for instr, args in _dockerfile() if instr == "CMD"][-1]
    out = [("Dockerfile CMD", cmd)]
    for name in project_services():
        out.append((f"{name} command", SERVICES[name]["command"]))
        if "healthcheck" in SERVICES[name]:
            out.append((f"{name} healthcheck", healthcheck_argv(name)))
    return out


def _program_source(command: list[str]) -> str:
    """The top-level path in the build context that holds what `command` runs."""
    if command[0] == "uvicorn":
        return command[command.index("uvicorn") + 1].split(":")[0].split(".")[0] + ".py"
    if command[1] == "-m":
        return command[2].split(".")[0]
    return command[1]


@pytest.mark.parametrize("what,command", _commands_of_the_image(), ids=lambda v: v if isinstance(v, str) else "")
def test_image_commands_run_entry_points_that_exist_and_accept_their_arguments(what: str, command: list[str]) -> None:
    # Shipped in the image …
    copied = {shlex.split(args)[0].rstrip("/") for instr, args in _dockerfile() if instr == "COPY"}
    copied |= {src for instr, args in _dockerfile() if instr == "COPY" for src in shlex.split(args)[:-1]}
    assert _program_source(command) in copied, f"{what}: {_program_source(command)} is not COPYed into the image"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CPOLAB_JWT_SECRET": "x" * 40}
    # … the target exists (uvicorn's own importer resolves `module:attribute`) …
    if command[0] == "uvicorn":
        target = command[1]
        probe = f"from uvicorn.importer import import_from_string; import_from_string({target!r})"
        subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    elif command[1] == "-m":
        probe = f"import importlib; m = importlib.import_module({command[2]!r}); assert callable(m.main)"
        subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
    else:
        assert 'if __name__ == "__main__"' in (ROOT / command[1]).read_text()
    # … and its argument parser accepts every argument.
    done = _parse_only(command, env)
    assert done.returncode == 0, f"{what}: {done.stderr[-2000:]}"


# Runs a Python entry point up to its argparse parse_args() and stops there with 0: a wrong subcommand,
# choice or option exits 2 exactly as it would in the container.
_PARSE_ONLY = """
import argparse, runpy, sys
parse = argparse.ArgumentParser.parse_args
def parse_then_stop(self, args=None, namespace=None):
    parse(self, args, namespace)
    raise SystemExit(0)
argparse.ArgumentParser.parse_args = parse_then_stop
args = sys.argv[1:]
if args[0] == "-m":
    sys.argv = args[1:]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
"""


def _parse_only(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = local_argv(command)
    # click (uvicorn) checks option names before it acts on --help.
    argv = [*argv, "--help"] if command[0] == "uvicorn" else [sys.executable, "-c", _PARSE_ONLY, *argv[1:]]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "bad",
    [
        ["python", "-m", "app.store.migrate", "upgrad"],
        ["python", "worker.py", "--log-levle", "INFO"],
        ["python", "-m", "app.observability.healthcheck", "wroker"],
        ["uvicorn", "api:app", "--timeout-gracefull-shutdown", "15"],
    ],
    ids=lambda argv: argv[-2],
)
def test_the_argument_check_catches_a_wrong_argument(bad: list[str]) -> None:
    done = _parse_only(bad, {**os.environ, "PYTHONPATH": str(ROOT), "CPOLAB_JWT_SECRET": "x" * 40})
    assert done.returncode == 2, done.stderr


def test_image_installs_every_package_the_project_declares() -> None:
    # pip install "." packs what packages.find includes: each of those packages must be in the context.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = {src.rstrip("/") for instr, args in _dockerfile() if instr == "COPY" for src in shlex.split(args)[:-1]}
    for pattern in project["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert package in copied, f"package {package} is not COPYed into the image"
    assert {f"{module}.py" for module in project["py-modules"]} <= copied
    assert "alembic.ini" in copied


# ---- shutdown ---------------------------------------------------------------------------------


def test_api_stop_grace_outlasts_uvicorns_drain() -> None:
    drain = float(option(SERVICES["api"]["command"], "--timeout-graceful-shutdown"))
    assert duration_s(str(SERVICES["api"].get("stop_grace_period", "10s"))) >= drain + 5


def test_worker_stop_grace_outlasts_its_shutdown_grace() -> None:
    # SIGTERM → the worker drains for worker_shutdown_grace, then cancels and exits; compose must not
    # SIGKILL it before (compose's own default is 10 s).
    stop_grace = duration_s(str(SERVICES["worker"].get("stop_grace_period", "10s")))
    value = environment("worker").get("CPOLAB_WORKER_SHUTDOWN_GRACE", "")
    match = _INTERPOLATION.fullmatch(value)
    drain = float(match.group(3) if match else value or Settings.model_fields["worker_shutdown_grace"].default)
    assert stop_grace >= drain + 5, f"stop_grace_period {stop_grace} s leaves no margin over the {drain} s drain"
