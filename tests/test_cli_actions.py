"""The real `cpolab charger-action | location-action` executable against a running stack: the API's answer
on stdout, its detail and exit 1 on a 4xx, options reaching the body, the action list from the API's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.control.charger_actions import ACTIONS
from tests.emsp_peer import new_cpo
from tests.stack import Stack, wait_status
from tests.test_cli import env, run, token

__all__ = ["env", "token"]  # fixtures


@pytest.fixture(scope="module")
async def cpo(stack: Stack) -> AsyncIterator[dict[str, Any]]:
    async with stack.client(org="cli-org") as control:
        body = await new_cpo(control, party_id="CLA", seed=5)
        status = await wait_status(control, body["cpo_id"], {"READY", "FAILED"}, timeout=120)
        assert status["status"] == "READY", status
        listed = (await control.get(f"/ocpi/cpos/{body['cpo_id']}/chargers")).json()["data"]
        yield {"id": str(body["cpo_id"]), "charger": listed[0]}


def fails(out: Any, code: int, *needles: str) -> None:
    assert out.returncode == code and out.stdout == "", (out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("cpolab: error: ") and out.stderr.count("\n") == 1, out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def test_charger_actions(env: dict[str, str], token: str, cpo: dict[str, Any]) -> None:
    env = {**env, "CPOLAB_TOKEN": token}
    charger = cpo["charger"]
    identity, location = charger["identity"], charger["location_id"]

    plugged = run("charger-action", cpo["id"], identity, "plug", env=env)
    assert plugged.returncode == 0, plugged.stderr
    answer = json.loads(plugged.stdout)
    assert answer["status"] == "ACCEPTED" and answer["evse_uid"] == charger["evse_uids"][0]
    assert answer["identity"] == identity and answer["action_id"]

    fails(run("charger-action", cpo["id"], identity, "plug", env=env), 1, "HTTP 409", "already plugged")
    fails(run("charger-action", cpo["id"], identity, "suspend-ev", env=env), 1, "HTTP 409", "no charging session")
    # Each option reaches its field of the body (the API names the field it refuses).
    for args, field in (
        (["suspend-ev", "--duration", "0"], "duration_s"),
        (["start", "--token-uid", "TAG", "--soc", "150"], "soc_percent"),
        (["start", "--token-uid", "TAG", "--kwh", "5000"], "target_kwh"),
        (["start"], "token_uid"),
        (["fault", "--error-code", "Meltdown"], "error_code"),
    ):
        fails(run("charger-action", cpo["id"], identity, *args, env=env), 1, "HTTP 422", field)
    fails(run("charger-action", cpo["id"], identity, "plug", "--evse", "NOPE", env=env), 1, "HTTP 404", "NOPE")
    fails(run("charger-action", cpo["id"], identity, "plug", "--connector", "9", env=env), 1, "HTTP 404")
    fails(run("charger-action", cpo["id"], "nobody", "plug", env=env), 1, "HTTP 404")
    fails(run("charger-action", cpo["id"], identity, "dance", env=env), 1, "HTTP 422", f"one of {', '.join(ACTIONS)}")
    helped = run("charger-action", "--help", env=env)
    assert helped.returncode == 0 and " ".join(helped.stdout.split()).count(", ".join(ACTIONS)) == 1

    faulted = run("location-action", cpo["id"], location, "fault", "--error-code", "GroundFailure", env=env)
    assert faulted.returncode == 0, faulted.stderr
    results = json.loads(faulted.stdout)["data"]
    assert results and all(r["status"] == "ACCEPTED" for r in results)
    cleared = run("location-action", cpo["id"], location, "clear-fault", env=env)
    assert cleared.returncode == 0 and all(r["status"] == "ACCEPTED" for r in json.loads(cleared.stdout)["data"])
    # Only the plugged EVSE can be unplugged: the others refuse, which the exit code says.
    unplugged = run("location-action", cpo["id"], location, "unplug", env=env)
    results = json.loads(unplugged.stdout)["data"]
    refused = [r for r in results if r["status"] == "REJECTED"]
    assert [r["evse_uid"] for r in results if r["status"] == "ACCEPTED"] == [charger["evse_uids"][0]]
    assert (
        unplugged.returncode == 1 and f"{len(refused)} of {len(results)} EVSEs did not take unplug" in unplugged.stderr
    )
    assert "not plugged" in unplugged.stderr
    fails(run("location-action", cpo["id"], "NOPE", "plug", env=env), 1, "HTTP 404", "NOPE")
