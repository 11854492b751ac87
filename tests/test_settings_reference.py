"""Every name a user can set agrees with app/settings.py: README's configuration table (names and
defaults), the app services' environment in docker-compose.yml (names, and that each default is a value
the model accepts), and deploy/env.example."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from app.settings import Settings
from tests.compose_file import (
    INTERPOLATION,
    ROOT,
    environment,
    interpolated_environment,
    project_services,
)

PREFIX = "CPOLAB_"
SETTINGS_VARIABLES = {f"{PREFIX}{name.upper()}": name for name in Settings.model_fields}
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
ENV_EXAMPLE = (ROOT / "deploy" / "env.example").read_text()


def _readme_configuration_rows() -> dict[str, str]:
    """{variable: default cell} of README's "## Configuration" table."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
            assert len(names) == 1, f"one variable per row: {line}"
            assert names[0] not in rows, f"{names[0]} listed twice"
            rows[names[0]] = cells[1]
    return rows


def _documented_default(cell: str) -> str:
    """`x` (first code span) is the value; "empty" / "none: required" mean the empty string."""
    code = re.search(r"`([^`]*)`", cell)
    if code:
        return code.group(1)
    assert cell.startswith(("empty", "none")), f"unreadable default {cell!r}"
    return ""


def _parsed(name: str, raw: str) -> Any:
    return TypeAdapter(Settings.model_fields[name].annotation).validate_python(raw)


def test_readme_lists_every_setting_once_and_nothing_else() -> None:
    rows = _readme_configuration_rows()
    assert set(rows) == set(SETTINGS_VARIABLES), (
        f"missing from README: {sorted(set(SETTINGS_VARIABLES) - set(rows))}, "
        f"not settings: {sorted(set(rows) - set(SETTINGS_VARIABLES))}"
    )


@pytest.mark.parametrize("variable", sorted(SETTINGS_VARIABLES))
def test_readme_default_is_the_models(variable: str) -> None:
    name = SETTINGS_VARIABLES[variable]
    documented = _documented_default(_readme_configuration_rows()[variable])
    assert _parsed(name, documented) == Settings.model_fields[name].default, f"README says {documented!r}"


def test_readme_default_check_can_fail() -> None:
    # A wrong default must not parse to the model's: the comparison above is real.
    assert _parsed("quota_live_cpos", _documented_default("`51`")) != Settings.model_fields["quota_live_cpos"].default
    assert _parsed("dev_mode", _documented_default("`1`")) != Settings.model_fields["dev_mode"].default


# ---- docker-compose.yml -----------------------------------------------------------------------


@pytest.mark.parametrize("service", project_services())
def test_compose_app_environment_uses_only_settings_names(service: str) -> None:
    unknown = set(environment(service)) - set(SETTINGS_VARIABLES)
    assert not unknown, f"{service} sets variables app/settings.py never reads: {sorted(unknown)}"
    url = environment(service)["CPOLAB_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://") and re.search(r"@postgresql:5432/cpolab$", url), url


@pytest.mark.parametrize("service", ["api", "worker"])
def test_compose_defaults_are_values_the_settings_accept(service: str) -> None:
    # Only the required secrets set: everything else as compose fills it in from its defaults.
    required = {"CPOLAB_JWT_SECRET": "s" * 40, "CPOLAB_DB_PASSWORD": "pw", "POSTGRES_PASSWORD": "pw"}
    env = interpolated_environment(service, required)
    settings = Settings(**{SETTINGS_VARIABLES[k]: v for k, v in env.items()})
    assert settings.temporal_address == "temporal:7233"
    assert settings.jwt_secret == "s" * 40
    for variable in env:
        # Passing through the same-named variable keeps the user's choice: `X: ${X:-default}`.
        match = INTERPOLATION.fullmatch(environment(service)[variable])
        if match and (match.group(2) or "").endswith("-"):
            assert match.group(1) == variable, f"{variable} is fed from ${{{match.group(1)}}}"


def test_a_bad_compose_default_would_be_caught() -> None:
    with pytest.raises(ValidationError):
        Settings(**{SETTINGS_VARIABLES["CPOLAB_LOG_FORMAT"]: "yaml"})


@pytest.mark.parametrize("service", ["api", "worker"])
def test_jwt_secret_is_required_not_defaulted(service: str) -> None:
    # Both refuse to start without it (the worker derives charger passwords from it).
    match = INTERPOLATION.fullmatch(environment(service)["CPOLAB_JWT_SECRET"])
    assert match and match.group(1) == "CPOLAB_JWT_SECRET" and match.group(2) == ":?"
    assert Settings.model_fields["jwt_secret"].default == ""


def test_compose_only_variables_never_reach_the_app_under_a_settings_name() -> None:
    # CPOLAB_DB_PASSWORD, CPOLAB_VERSION, CPOLAB_API_BIND… configure compose itself (URL, image, ports):
    # none may shadow a real setting, and none is passed to the app as if it were one.
    used = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    compose_only = {v for v in used if v.startswith(PREFIX)} - set(SETTINGS_VARIABLES)
    for service in project_services():
        assert not compose_only & set(environment(service))


# ---- deploy/env.example -------------------------------------------------------------------------


def _example_names() -> list[str]:
    return re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE, re.M)


def test_env_example_names_are_compose_variables() -> None:
    used = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    names = _example_names()
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert not set(names) - used, f"env.example names compose never reads: {sorted(set(names) - used)}"


def test_env_example_lists_every_variable_compose_reads() -> None:
    used = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    assert not used - set(_example_names()), f"missing from env.example: {sorted(used - set(_example_names()))}"


def test_env_example_values_are_valid_settings() -> None:
    # The commented examples, taken as given, must be values the model accepts.
    for name, value in re.findall(r"^#?\s*(CPOLAB_[A-Z0-9_]*)=(.*)$", ENV_EXAMPLE, re.M):
        if name in SETTINGS_VARIABLES and value:
            Settings(**{SETTINGS_VARIABLES[name]: value})
