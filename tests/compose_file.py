"""docker-compose.yml as the tests read it: services, `${VAR…}` interpolation, and the services' commands
turned into local argv (the same programs and arguments, run by this checkout's interpreter)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def project_services() -> list[str]:
    """Services built from ./Dockerfile (the app's own image), in file order."""
    return [name for name, spec in SERVICES.items() if spec.get("build")]


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: use the mapping form of environment"
    return {k: str(v) for k, v in env.items()}


def depends(service: str) -> dict[str, dict[str, Any]]:
    deps = SERVICES[service].get("depends_on", {})
    assert isinstance(deps, dict), f"{service}: depends_on must be a mapping with conditions, got {deps!r}"
    return deps


class MissingVariable(Exception):
    pass


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's substitution: `:-` / `:?` treat an empty value as unset, `-` / `?` only an unset one."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = variables.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if not unset:
            return value or ""
        if op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        return arg if op.endswith("-") else ""

    return INTERPOLATION.sub(one, value)


def interpolated_environment(service: str, variables: dict[str, str]) -> dict[str, str]:
    return {k: interpolate(v, variables) for k, v in environment(service).items()}


def defaults(value: str) -> dict[str, str]:
    """{variable: its `:-`/`-` default} of every interpolation in `value`."""
    return {m.group(1): m.group(3) or "" for m in INTERPOLATION.finditer(value) if (m.group(2) or "").endswith("-")}


def healthcheck_argv(service: str) -> list[str]:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[0] == "CMD", f"{service}: use the exec form (CMD) so the check needs no shell"
    return list(test[1:])


def local_argv(command: list[str]) -> list[str]:
    """The container's command with this interpreter: `python …` and `uvicorn …` (a console script of
    the same venv) both run under sys.executable."""
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    if command[0] == "uvicorn":
        return [sys.executable, "-m", "uvicorn", *command[1:]]
    raise AssertionError(f"unexpected program {command[0]!r} in {command}")


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def with_option(command: list[str], flag: str, value: str) -> list[str]:
    out = list(command)
    out[out.index(flag) + 1] = value
    return out


def duration_s(spec: str) -> float:
    """Compose durations: `30s`, `1m30s`, `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", spec)
    assert parts and "".join(n + u for n, u in parts) == spec, f"unreadable duration {spec!r}"
    return sum(float(n) * units[u] for n, u in parts)
