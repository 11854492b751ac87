"""A CPO's chargers on the control plane (CONTRACT §3) against the real stack: list, detail with the
CSMS connection, OCPP log, live counts in status and report, the CLI.

The CPO comes up with live chargers (READY means online); the module then stops its pods, so the
chargers disconnect, and plays the CSMS by writing the charger states and OCPP log rows it would
write. Its own stack's CSMS never sweeps those hand-written states (CPOLAB_CSMS_STALE_AFTER).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from temporalio.client import Client

from activities.charger_pods import stop_pods
from app.control.charger_counts import COUNTS_TTL_S, CountCache
from app.control.openapi import openapi_document
from app.control.schemas import ChargerCounts
from app.security.passwords import charger_password, password_hash
from app.settings import Settings
from app.web.auth import READ, WRITE, mint_token
from tests.databases import DatabaseFactory
from tests.stack import ROOT, SECRET, Stack, api_command, free_port, wait_http, wait_status
from tests.test_cli import run
from tests.test_openapi import Conformance

ORG = "chargers-api"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
PUBLIC_BASE = "https://cpolab.example/base"
ODD_IDENTITY = "odd cp+ä#?%"  # not one we generate: the URL must percent-encode it
# The states the `cpo` fixture gives its chargers, in identity order.
STATES = ("ONLINE", "BOOTING", "DETACHED", "OFFLINE", "ONLINE", "OFFLINE")


@dataclass
class Cpo:
    cpo_id: str
    identities: list[str]  # sorted, as the list answers them


def zulu(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def headers(*scopes: str, org: str = ORG) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, org=org, scopes=scopes)}"}


def set_state(stack: Stack, cpo_id: str, identity: str, state: str, seen: datetime | None = None) -> None:
    """What the CSMS writes when a charger connects, boots, goes silent."""
    stack.query(
        "UPDATE charger SET status = ?, last_boot_at = ?, last_seen_at = ?, api_instance = ?, connection_id = ? "
        "WHERE cpo_id = ? AND identity = ?",
        state,
        T0 if state == "ONLINE" else None,
        seen,
        "api-1" if state in ("ONLINE", "BOOTING") else None,
        "conn-1" if state in ("ONLINE", "BOOTING") else None,
        int(cpo_id),
        identity,
    )


def add_frame(stack: Stack, cpo_id: str, identity: str, at: datetime, direction: str, mtype: int, **kw: Any) -> None:
    stack.query(
        "INSERT INTO ocpp_log (cpo_id, identity, timestamp, direction, message_type, message_id, action, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        int(cpo_id),
        identity,
        at,
        direction,
        mtype,
        kw.get("message_id"),
        kw.get("action"),
        kw["payload"],
    )


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, databases: DatabaseFactory) -> AsyncIterator[Stack]:
    never_sweep = {"CPOLAB_CSMS_STALE_AFTER": str(10**9)}
    s = Stack(Path(tmp_path_factory.mktemp("chargers-stack")), database=databases.new("chargers_api"), env=never_sweep)
    try:
        await s.start()
        yield s
    finally:
        s.stop()


async def stop_live_chargers(stack: Stack, cpo_id: str) -> None:
    """Cancel the CPO's pods (as teardown does) and wait until the CSMS saw every charger go."""
    temporal = await Client.connect(stack.temporal_address)
    await stop_pods(temporal, int(cpo_id))
    deadline = time.monotonic() + 30
    while stack.query("SELECT count(*) FROM charger WHERE cpo_id = ? AND status != 'OFFLINE'", int(cpo_id)) != [(0,)]:
        assert time.monotonic() < deadline, "chargers still connected after their pods stopped"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # the CSMS's last buffered log frames (flushed every 0.1 s)
    stack.query("DELETE FROM ocpp_log WHERE cpo_id = ?", int(cpo_id))


@pytest.fixture(scope="module")
async def cpo(stack: Stack) -> Cpo:
    """A READY mixed-depot CPO (4 × OCPP 1.6 dual-outlet AC, 2 × OCPP 2.0.1 DC); states: 2 ONLINE,
    1 BOOTING, 1 DETACHED, 2 OFFLINE (never connected)."""
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers(READ, WRITE), timeout=30) as c:
        body = {"template": "mixed-depot", "country_code": "NL", "party_id": "CHG", "name_prefix": "chg", "seed": 5}
        created = await c.post("/ocpi/cpos", json=body)
        assert created.status_code == 202, created.text
        cpo_id = created.json()["cpo_id"]
        assert (await wait_status(c, cpo_id, {"READY", "FAILED"}))["status"] == "READY"
    identities = sorted(r[0] for r in stack.query("SELECT identity FROM charger WHERE cpo_id = ?", int(cpo_id)))
    assert len(identities) == 6
    await stop_live_chargers(stack, cpo_id)
    for identity, state in zip(identities, STATES, strict=True):
        set_state(stack, cpo_id, identity, state, seen=T0 if state != "OFFLINE" else None)
    return Cpo(cpo_id, identities)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers(READ, WRITE), timeout=30) as c:
        yield c


def db_chargers(stack: Stack, cpo_id: str) -> dict[str, dict[str, Any]]:
    rows = stack.query(
        "SELECT identity, location_id, vendor, model, ocpp_version, password_hash FROM charger WHERE cpo_id = ?",
        int(cpo_id),
    )
    out = {
        r[0]: dict(zip(("identity", "location_id", "vendor", "model", "ocpp_version", "hash"), r, strict=True))
        for r in rows
    }
    for identity, evse_uid in stack.query(
        "SELECT identity, evse_uid FROM charger_route WHERE cpo_id = ? ORDER BY identity, ocpp_evse_id", int(cpo_id)
    ):
        out[identity].setdefault("evse_uids", []).append(evse_uid)
    return out


# ---- list -------------------------------------------------------------------------------------------


async def test_list_shows_every_charger_as_stored(stack: Stack, cpo: Cpo, client: httpx.AsyncClient) -> None:
    resp = await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers")
    assert resp.status_code == 200, resp.text
    page = Conformance(openapi_document()).check("GET", "/ocpi/cpos/{cpo_id}/chargers", resp)
    assert (page["total"], page["page"], page["limit"]) == (6, 1, 50)
    assert [c["identity"] for c in page["data"]] == cpo.identities
    stored = db_chargers(stack, cpo.cpo_id)
    states = dict(zip(cpo.identities, STATES, strict=True))
    for charger in page["data"]:
        row = stored[charger["identity"]]
        assert set(charger) == {
            "identity", "location_id", "evse_uids", "vendor", "model", "ocpp_version", "state", "last_boot_at",
            "last_seen_at",
        }  # fmt: skip
        assert charger["location_id"] == row["location_id"] and charger["evse_uids"] == row["evse_uids"]
        assert (charger["vendor"], charger["model"], charger["ocpp_version"]) == (
            row["vendor"],
            row["model"],
            row["ocpp_version"],
        )
        assert charger["state"] == states[charger["identity"]]
        seen = states[charger["identity"]] != "OFFLINE"
        assert charger["last_seen_at"] == (zulu(T0) if seen else None)
        assert charger["last_boot_at"] == (zulu(T0) if charger["state"] == "ONLINE" else None)
    assert {c["ocpp_version"] for c in page["data"]} == {"1.6", "2.0.1"}
    # The dual-outlet AC model is two EVSEs, listed in OCPP EVSE order.
    assert max(len(c["evse_uids"]) for c in page["data"]) >= 2


async def test_pages_cover_the_list_once(cpo: Cpo, client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    for number in (1, 2, 3):
        page = (await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers", params={"page": number, "limit": 2})).json()
        assert (page["total"], page["page"], page["limit"]) == (6, number, 2)
        seen += [c["identity"] for c in page["data"]]
    assert seen == cpo.identities
    beyond = (await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers", params={"page": 4, "limit": 2})).json()
    assert beyond["data"] == [] and beyond["total"] == 6


@pytest.mark.parametrize(
    ("state", "expected"), [("ONLINE", [0, 4]), ("BOOTING", [1]), ("DETACHED", [2]), ("OFFLINE", [3, 5])]
)
async def test_state_filter(cpo: Cpo, client: httpx.AsyncClient, state: str, expected: list[int]) -> None:
    page = (await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers", params={"state": state, "limit": 1})).json()
    assert page["total"] == len(expected)
    assert [c["identity"] for c in page["data"]] == [cpo.identities[expected[0]]]
    assert page["data"][0]["state"] == state


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"state": "online"}, ["query", "state"]),
        ({"state": "UNKNOWN"}, ["query", "state"]),
        ({"page": "0"}, ["query", "page"]),
        ({"limit": "101"}, ["query", "limit"]),
        ({"limit": "x"}, ["query", "limit"]),
    ],
)
async def test_bad_list_parameters_are_422(
    cpo: Cpo, client: httpx.AsyncClient, params: dict[str, str], loc: list[str]
) -> None:
    resp = await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers", params=params)
    assert resp.status_code == 422
    (problem,) = resp.json()["detail"]
    assert problem["loc"] == loc and problem["msg"]


# ---- errors shared by the three routes --------------------------------------------------------------


def charger_paths(cpo_id: str, identity: str) -> list[str]:
    base = f"/ocpi/cpos/{cpo_id}/chargers"
    return [base, f"{base}/{quote(identity, safe='')}", f"{base}/{quote(identity, safe='')}/ocpp-log"]


async def test_auth_org_and_ids(stack: Stack, cpo: Cpo) -> None:
    identity = cpo.identities[0]
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as c:
        for path in charger_paths(cpo.cpo_id, identity):
            assert (await c.get(path)).status_code == 401
            assert (await c.get(path, headers=headers(WRITE))).status_code == 403  # no cpos:read
            other_org = await c.get(path, headers=headers(READ, WRITE, org="someone-else"))
            assert other_org.status_code == 404 and "not found" in other_org.json()["detail"]
            assert (await c.get(path, headers=headers(READ))).status_code == 200
        for path in charger_paths("987654321", identity):
            assert (await c.get(path, headers=headers(READ))).status_code == 404
        for path in charger_paths("12ab", identity):
            resp = await c.get(path, headers=headers(READ))
            assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["path", "cpo_id"]


@pytest.mark.parametrize("identity", ["nobody", "CHG-0001-01", "x" * 300, "nul\x00byte", "tab\there", "é" * 100])
async def test_unknown_or_impossible_identity_is_404(cpo: Cpo, client: httpx.AsyncClient, identity: str) -> None:
    for path in charger_paths(cpo.cpo_id, identity)[1:]:
        resp = await client.get(path)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["detail"]


async def test_an_identity_of_another_cpo_is_404(stack: Stack, cpo: Cpo, client: httpx.AsyncClient) -> None:
    other = await client.post(
        "/ocpi/cpos", json={"template": "small-urban-ac", "country_code": "NL", "party_id": "CHO", "name_prefix": "o"}
    )
    other_id = other.json()["cpo_id"]
    await wait_status(client, other_id, {"READY"})
    for path in charger_paths(other_id, cpo.identities[0])[1:]:
        assert (await client.get(path)).status_code == 404
    assert (await client.delete(f"/ocpi/cpos/{other_id}")).status_code == 202


# ---- detail and the CSMS connection ------------------------------------------------------------------


async def test_detail_carries_the_connection_and_the_password_only_with_write_scope(
    stack: Stack, cpo: Cpo, client: httpx.AsyncClient
) -> None:
    stored = db_chargers(stack, cpo.cpo_id)
    conformance = Conformance(openapi_document())
    listed = {c["identity"]: c for c in (await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers")).json()["data"]}
    key = Settings(jwt_secret=SECRET, charger_secret="").charger_key()
    for identity in cpo.identities:
        resp = await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers/{identity}")
        detail = conformance.check("GET", "/ocpi/cpos/{cpo_id}/chargers/{identity}", resp)
        connection = detail.pop("connection")
        assert detail == listed[identity]
        assert connection["url"] == f"ws://127.0.0.1:{stack.api_port}/ocpp/{cpo.cpo_id}/{identity}"
        assert connection["subprotocol"] == {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}[detail["ocpp_version"]]
        assert connection["username"] == identity
        # The password the CSMS will check: its hash is what provisioning stored.
        assert connection["password"] == charger_password(key, int(cpo.cpo_id), identity)
        assert password_hash(connection["password"]) == stored[identity]["hash"]

        read_only = await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers/{identity}", headers=headers(READ))
        assert read_only.status_code == 200
        assert "password" not in read_only.json()["connection"]
        assert connection["password"] not in read_only.text
        assert read_only.json()["connection"] == {k: v for k, v in connection.items() if k != "password"}


async def test_connection_url_follows_the_request_host(stack: Stack, cpo: Cpo, client: httpx.AsyncClient) -> None:
    identity = cpo.identities[0]
    trusted = await client.get(
        f"/ocpi/cpos/{cpo.cpo_id}/chargers/{identity}", headers={"Host": f"localhost:{stack.api_port}"}
    )
    assert trusted.json()["connection"]["url"] == f"ws://localhost:{stack.api_port}/ocpp/{cpo.cpo_id}/{identity}"
    untrusted = await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers/{identity}", headers={"Host": "evil.example"})
    assert untrusted.json()["connection"]["url"].startswith(f"ws://127.0.0.1:{stack.api_port}/ocpp/")


@dataclass
class LoggedApi:
    url: str
    log: Path


@pytest.fixture(scope="module")
async def public_api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LoggedApi]:
    """A second API process on the same database, behind an https public base URL, logging everything
    it logs (DEBUG, access lines)."""
    port = free_port()
    log = tmp_path_factory.mktemp("public-api") / "api.log"
    env = {**stack.env, "CPOLAB_PUBLIC_BASE_URL": PUBLIC_BASE, "CPOLAB_LOG_LEVEL": "DEBUG"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*api_command(port), "--log-level", "debug"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        yield LoggedApi(f"http://127.0.0.1:{port}", log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def odd_charger(stack: Stack, cpo: Cpo) -> Iterator[str]:
    """A charger whose identity needs percent-encoding (inserted as the CSMS would see any OCPP client)."""
    stack.query(
        "INSERT INTO charger (cpo_id, identity, location_id, model_id, vendor, model, ocpp_version, serial_number, "
        "password_hash, status) VALUES (?, ?, 'LOC', 'm', 'V', 'M', '2.0.1', 'S', 'h', 'OFFLINE')",
        int(cpo.cpo_id),
        ODD_IDENTITY,
    )
    try:
        yield ODD_IDENTITY
    finally:
        stack.query("DELETE FROM charger WHERE cpo_id = ? AND identity = ?", int(cpo.cpo_id), ODD_IDENTITY)


async def test_public_https_base_gives_wss_and_the_identity_is_percent_encoded(
    public_api: LoggedApi, cpo: Cpo, odd_charger: str
) -> None:
    async with httpx.AsyncClient(base_url=public_api.url, headers=headers(READ), timeout=30) as c:
        resp = await c.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers/{quote(odd_charger, safe='')}")
    assert resp.status_code == 200, resp.text
    encoded = "odd%20cp%2B%C3%A4%23%3F%25"
    assert resp.json()["connection"]["url"] == f"wss://cpolab.example/base/ocpp/{cpo.cpo_id}/{encoded}"
    assert resp.json()["connection"]["username"] == odd_charger and resp.json()["evse_uids"] == []


async def test_the_password_never_reaches_the_api_log(public_api: LoggedApi, cpo: Cpo) -> None:
    identity = cpo.identities[-1]
    async with httpx.AsyncClient(base_url=public_api.url, headers=headers(READ, WRITE), timeout=30) as c:
        resp = await c.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers/{identity}")
        assert resp.status_code == 200
        password = resp.json()["connection"]["password"]
        await c.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers")
    log = public_api.log.read_text()
    assert f"/ocpi/cpos/{cpo.cpo_id}/chargers/{identity}" in log  # the request was logged (access line)
    assert password not in log


# ---- OCPP log ---------------------------------------------------------------------------------------


async def test_ocpp_log_newest_first_with_parsed_payloads(stack: Stack, cpo: Cpo, client: httpx.AsyncClient) -> None:
    identity, neighbour = cpo.identities[1], cpo.identities[2]
    boot = [2, "m-1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]
    accepted = [3, "m-1", {"status": "Accepted", "currentTime": "2026-01-02T03:04:05Z", "interval": 300}]
    deep = "[" * 40 + "]" * 40
    cut = '[2, "m-2", "StatusNotification", {"connectorId": 1, "errorCo'
    # Inserted out of time order: the answer is ordered by time, not by insertion.
    add_frame(stack, cpo.cpo_id, identity, T0 + timedelta(seconds=1), "out", 3, message_id="m-1",
              action="BootNotification", payload=json.dumps(accepted))  # fmt: skip
    add_frame(stack, cpo.cpo_id, identity, T0, "in", 2, message_id="m-1", action="BootNotification",
              payload=json.dumps(boot))  # fmt: skip
    add_frame(stack, cpo.cpo_id, identity, T0 + timedelta(seconds=3), "in", 0, payload="not json {")
    add_frame(stack, cpo.cpo_id, identity, T0 + timedelta(seconds=2), "in", 2, message_id="m-2",
              action="StatusNotification", payload=cut)  # fmt: skip
    add_frame(stack, cpo.cpo_id, identity, T0 + timedelta(seconds=4), "in", 0, payload=deep)
    add_frame(
        stack,
        cpo.cpo_id,
        neighbour,
        T0,
        "in",
        2,
        message_id="n-1",
        action="Heartbeat",
        payload='[2,"n-1","Heartbeat",{}]',
    )
    add_frame(stack, "987654", identity, T0, "in", 2, message_id="x-1", action="Heartbeat", payload="[]")

    path = f"/ocpi/cpos/{cpo.cpo_id}/chargers/{identity}/ocpp-log"
    resp = await client.get(path)
    page = Conformance(openapi_document()).check("GET", "/ocpi/cpos/{cpo_id}/chargers/{identity}/ocpp-log", resp)
    assert (page["total"], page["page"], page["limit"]) == (5, 1, 50)
    entries = page["data"]
    assert [e["timestamp"] for e in entries] == [zulu(T0 + timedelta(seconds=s)) for s in (4, 3, 2, 1, 0)]
    assert [e["payload"] for e in entries] == [deep, "not json {", cut, accepted, boot]
    assert [e["direction"] for e in entries] == ["in", "in", "in", "out", "in"]
    assert [e["message_type"] for e in entries] == [0, 0, 2, 3, 2]
    assert [e["message_id"] for e in entries] == [None, None, "m-2", "m-1", "m-1"]
    assert [e["action"] for e in entries] == [None, None, "StatusNotification", "BootNotification", "BootNotification"]
    assert set(entries[0]) == {"id", "timestamp", "direction", "message_type", "message_id", "action", "payload"}

    second = (await client.get(path, params={"page": 2, "limit": 2})).json()
    assert [e["payload"] for e in second["data"]] == [cut, accepted] and second["total"] == 5
    for params in ({"limit": "0"}, {"page": "-1"}):
        assert (await client.get(path, params=params)).status_code == 422
    empty = (await client.get(f"/ocpi/cpos/{cpo.cpo_id}/chargers/{cpo.identities[3]}/ocpp-log")).json()
    assert empty == {"data": [], "total": 0, "page": 1, "limit": 50}


# ---- counts in status and report --------------------------------------------------------------------


async def test_ready_status_and_report_count_live_states(stack: Stack, cpo: Cpo, client: httpx.AsyncClient) -> None:
    counts = {"online": 2, "offline": 2, "booting": 1, "detached": 1}
    resp = await client.get(f"/ocpi/cpos/{cpo.cpo_id}/status")
    status = Conformance(openapi_document()).check("GET", "/ocpi/cpos/{cpo_id}/status", resp)
    assert status["status"] == "READY"
    assert status["chargers"] == counts and status["progress"]["chargers_online"] == 2
    assert status["progress"]["chargers_total"] == 6

    report = (await client.get(f"/ocpi/cpos/{cpo.cpo_id}/report")).json()
    assert report["chargers"] == counts
    markdown = report["markdown"]
    assert "## Chargers" in markdown
    assert "| online | booting | offline | detached |\n|---:|---:|---:|---:|\n| 2 | 1 | 2 | 1 |" in markdown
    assert f"`ws://127.0.0.1:{stack.api_port}/ocpp/{cpo.cpo_id}/{{identity}}`" in markdown
    assert f"GET /ocpi/cpos/{cpo.cpo_id}/chargers" in markdown

    # A charger going offline shows within the counts' reuse time (1 s): they are live, not the workflow's.
    set_state(stack, cpo.cpo_id, cpo.identities[0], "OFFLINE")
    try:
        changed = time.monotonic()
        while (after := (await client.get(f"/ocpi/cpos/{cpo.cpo_id}/status")).json())["chargers"] == counts:
            assert time.monotonic() - changed < COUNTS_TTL_S + 2, after
            await asyncio.sleep(0.05)
        assert after["chargers"] == {**counts, "online": 1, "offline": 3}
        assert after["progress"]["chargers_online"] == 1
    finally:
        set_state(stack, cpo.cpo_id, cpo.identities[0], "ONLINE", seen=T0)


async def test_ended_cpo_has_no_counts(client: httpx.AsyncClient) -> None:
    body = {"template": "small-urban-ac", "country_code": "NL", "party_id": "CHE", "name_prefix": "ended"}
    cpo_id = (await client.post("/ocpi/cpos", json=body)).json()["cpo_id"]
    await wait_status(client, cpo_id, {"READY"})
    ready = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
    assert ready["chargers"] == {"online": 6, "offline": 0, "booting": 0, "detached": 0}  # READY = all online
    assert ready["progress"]["chargers_online"] == 6
    assert (await client.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 202
    gone = await wait_status(client, cpo_id, {"DESTROYED"})
    assert gone["chargers"] is None
    report = (await client.get(f"/ocpi/cpos/{cpo_id}/report")).json()
    assert report["chargers"] is None and "## Chargers" not in report["markdown"]
    listed = (await client.get(f"/ocpi/cpos/{cpo_id}/chargers")).json()
    assert listed == {"data": [], "total": 0, "page": 1, "limit": 50}


# ---- CLI --------------------------------------------------------------------------------------------


def cli_env(stack: Stack, *scopes: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CPOLAB_")}
    token = mint_token(SECRET, org=ORG, scopes=scopes)
    # PYTHONPATH: the venv's executable must import this checkout's code (as in tests/test_cli.py).
    return {**base, "CPOLAB_API_URL": stack.api_url, "CPOLAB_TOKEN": token, "PYTHONPATH": str(ROOT)}


def test_cli_lists_chargers_as_a_table(stack: Stack, cpo: Cpo) -> None:
    env = cli_env(stack, READ)
    out = run("chargers", cpo.cpo_id, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == [
        "IDENTITY",
        "STATE",
        "OCPP",
        "VENDOR",
        "/",
        "MODEL",
        "LOCATION",
        "EVSES",
        "LAST",
        "SEEN",
    ]
    assert [line.split()[0] for line in lines[1:]] == cpo.identities
    first = lines[1].split()
    assert first[1] == "ONLINE" and first[-1] == zulu(T0)
    assert lines[4].split()[1] == "OFFLINE" and lines[4].split()[-1] == "never"
    assert "page 1/1: 6 of 6 chargers" in out.stderr

    online = run("chargers", cpo.cpo_id, "--state", "ONLINE", "--limit", "1", env=env)
    assert online.returncode == 0, online.stderr
    assert [line.split()[0] for line in online.stdout.splitlines()[1:]] == [cpo.identities[0]]
    assert "page 1/2: 1 of 2 chargers" in online.stderr

    as_json = json.loads(run("chargers", cpo.cpo_id, "--json", env=env).stdout)
    assert as_json["total"] == 6 and as_json["data"][0]["identity"] == cpo.identities[0]


def test_cli_shows_one_charger_and_its_log(stack: Stack, cpo: Cpo) -> None:
    identity = cpo.identities[0]
    full = run("charger", cpo.cpo_id, identity, env=cli_env(stack, READ, WRITE))
    assert full.returncode == 0, full.stderr
    connection = json.loads(full.stdout)["connection"]
    assert connection["username"] == identity and len(connection["password"]) == 32
    read_only = json.loads(run("charger", cpo.cpo_id, identity, env=cli_env(stack, READ)).stdout)
    assert "password" not in read_only["connection"]
    log = run("ocpp-log", cpo.cpo_id, identity, "--limit", "5", env=cli_env(stack, READ))
    assert log.returncode == 0 and json.loads(log.stdout)["limit"] == 5


def test_cli_errors_are_one_line(stack: Stack, cpo: Cpo) -> None:
    env = cli_env(stack, READ)
    missing = run("chargers", "987654321", env=env)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "HTTP 404" in missing.stderr
    unknown = run("charger", cpo.cpo_id, "nobody", env=env)
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr and "nobody" in unknown.stderr
    bad_state = run("chargers", cpo.cpo_id, "--state", "online", env=env)
    assert bad_state.returncode == 2 and "invalid choice" in bad_state.stderr
    bad_limit = run("chargers", cpo.cpo_id, "--limit", "500", env=env)
    assert bad_limit.returncode == 1 and "limit" in bad_limit.stderr and "Traceback" not in bad_limit.stderr


# ---- the status endpoint's count cache --------------------------------------------------------------


async def test_count_cache_shares_one_count_and_never_keeps_a_failure(databases: DatabaseFactory) -> None:
    async with databases.opened("counts") as db:
        async with db.session() as session:
            await session.execute(
                text(
                    "INSERT INTO charger (cpo_id, identity, location_id, model_id, vendor, model, ocpp_version, "
                    "serial_number, password_hash, status) VALUES (7, :i, 'L', 'm', 'v', 'm', '1.6', 's', 'h', :s)"
                ),
                [{"i": f"cp-{n}", "s": ("ONLINE", "OFFLINE", "DETACHED")[n % 3]} for n in range(30)],
            )
            await session.commit()
        counts: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "GROUP BY" in statement:
                counts.append(statement)

        event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
        cache = CountCache(db)
        answers = await asyncio.gather(*(cache.get(7) for _ in range(50)))
        assert {a.model_dump_json() for a in answers} == {
            ChargerCounts(online=10, offline=10, booting=0, detached=10).model_dump_json()
        }
        assert len(counts) == 1  # fifty polls, one count
        await cache.get(7)
        assert len(counts) == 1
        await asyncio.sleep(COUNTS_TTL_S + 0.1)
        await cache.get(7)
        assert len(counts) == 2  # counted again once the answer is too old

        async with db.session() as session:
            await session.execute(text("ALTER TABLE charger RENAME TO charger_away"))
            await session.commit()
        with pytest.raises(DBAPIError):
            await cache.get(8)
        async with db.session() as session:
            await session.execute(text("ALTER TABLE charger_away RENAME TO charger"))
            await session.commit()
        assert (await cache.get(8)).offline == 0  # the failure was not remembered: counted at once
