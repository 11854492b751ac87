"""Tokens and commands receivers, sessions/cdrs senders, pushes and roam_helper, against a real stack
and a real eMSP peer on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.ocpi import push
from app.store.db import Database
from tests.emsp_peer import ROUTING, EmspPeer, OcpiClient, b64, credentials_url, err, new_cpo, ok, register
from tests.stack import Stack, wait_status


class Registered:
    """A READY CPO with the eMSP peer registered on it."""

    def __init__(self, cpo: dict[str, Any], token_b: str, token_c: str, http: httpx.AsyncClient) -> None:
        self.cpo, self.token_b, self.token_c = cpo, token_b, token_c
        self.id = int(cpo["cpo_id"])
        self.base = cpo["ocpi_peer_url"].removesuffix("/versions") + "/2.2.1"
        self.ocpi = OcpiClient(http, token_c)


@pytest.fixture(scope="module")
async def reg(stack: Stack, peer: EmspPeer) -> AsyncIterator[Registered]:
    async with stack.client() as control, httpx.AsyncClient(timeout=30) as http:
        cpo = await new_cpo(control, party_id="MOD", seed=5)
        status = await wait_status(control, cpo["cpo_id"], {"READY", "FAILED"}, timeout=120)
        assert status["status"] == "READY", status
        resp, token_b = await register(http, cpo, peer)
        token_c = ok(resp)["token"]
    async with httpx.AsyncClient(timeout=30) as http:
        yield Registered(cpo, token_b, token_c, http)


def token_body(uid: str = "0123ABCD", **changes: Any) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "EMS",
        "uid": uid,
        "type": "RFID",
        "contract_id": "NL-EMS-C12345678-X",
        "issuer": "Test eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2024-05-01T10:00:00Z",
        **changes,
    }


# ---- tokens -------------------------------------------------------------------------------------------


async def test_tokens_put_patch_get_round_trip(reg: Registered):
    url = f"{reg.base}/tokens/NL/EMS/0123ABCD"
    resp = await reg.ocpi.request("PUT", url, json=token_body())
    ok(resp, 201)
    assert {h: resp.headers[h] for h in ROUTING} == {
        "ocpi-from-country-code": "DE",
        "ocpi-from-party-id": "MOD",
        "ocpi-to-country-code": "NL",
        "ocpi-to-party-id": "EMS",
    }
    assert ok(await reg.ocpi.request("GET", url)) == token_body()
    ok(await reg.ocpi.request("PUT", url + "?type=RFID", json=token_body(whitelist="NEVER")), 200)
    patch = {"valid": False, "last_updated": "2024-05-02T10:00:00.123Z"}
    ok(await reg.ocpi.request("PATCH", url, json=patch))
    got = ok(await reg.ocpi.request("GET", url.replace("/NL/EMS/", "/nl/ems/").replace("ABCD", "abcd")))
    assert got == token_body(whitelist="NEVER", valid=False, last_updated="2024-05-02T10:00:00Z")
    # Same uid, other type: a different token.
    err(await reg.ocpi.request("GET", url + "?type=APP_USER"), 404, 2004)
    ok(await reg.ocpi.request("PUT", url + "?type=APP_USER", json=token_body(type="APP_USER")), 201)


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("0123ABCD", token_body(uid="OTHER"), "uid"),
        ("0123ABCD", token_body(party_id="XXX"), "country_code/party_id"),
        ("0123ABCD", token_body(whitelist="SOMETIMES"), "whitelist"),
        ("0123ABCD", token_body(valid="yes"), "valid"),
        ("0123ABCD", token_body(last_updated="2024-05-01 10:00:00+00:00"), "last_updated"),
        ("0123ABCD", {k: v for k, v in token_body().items() if k != "contract_id"}, "contract_id"),
        ("0123ABCD?type=AD_HOC_USER", token_body(), "type"),
        ("0123ABCD?type=CARD", token_body(), "type"),
        ("0123ABCD", ["not", "an", "object"], "Token"),
    ],
)
async def test_tokens_invalid_bodies_are_2001(reg: Registered, path: str, body: Any, fragment: str):
    resp = await reg.ocpi.request("PUT", f"{reg.base}/tokens/NL/EMS/{path}", json=body)
    assert fragment in err(resp, 200, 2001)["status_message"]


async def test_tokens_transport_errors(reg: Registered, http: httpx.AsyncClient):
    url = f"{reg.base}/tokens/NL/EMS/TOK2"
    err(await reg.ocpi.request("PUT", url.replace("/NL/EMS/", "/FR/ABC/"), json=token_body("TOK2")), 404, 2001)
    err(await reg.ocpi.request("GET", url), 404, 2004)
    resp = await reg.ocpi.request("PUT", url, content=b"{", headers={"Content-Type": "application/json"})
    err(resp, 400, 2001)
    err(await reg.ocpi.request("PATCH", url, json={"valid": False}), 200, 2001)  # no last_updated
    err(await reg.ocpi.request("PATCH", url, json={"valid": False, "last_updated": "2024-01-01T00:00:00Z"}), 404, 2004)
    err(await reg.ocpi.request("DELETE", url), 405)
    err(await reg.ocpi.request("POST", url, json={}), 405)
    err(await OcpiClient(http, reg.cpo["token_a"]).request("GET", url), 401)


# ---- commands -----------------------------------------------------------------------------------------


def network(stack: Stack, cpo_id: int) -> tuple[str, str, str]:
    """(location_id, evse_uid, connector_id) of the CPO's first connector."""
    row = stack.query(
        "SELECT c.location_id, c.evse_uid, c.id FROM connector c WHERE c.cpo_id = ? ORDER BY 1, 2, 3 LIMIT 1", cpo_id
    )
    return row[0]  # type: ignore[return-value]


# What a CommandResult can say once the command reached the charge point (or found it offline); the
# simulated chargers' answers are theirs to choose (tests/test_ocpi_commands.py pins each mapping).
CHARGER_RESULTS = {"ACCEPTED", "REJECTED", "NOT_SUPPORTED", "EVSE_OCCUPIED", "EVSE_INOPERATIVE", "FAILED", "TIMEOUT"}


async def test_start_session_answers_then_posts_the_chargers_result(reg: Registered, stack: Stack, peer: EmspPeer):
    location_id, evse_uid, connector_id = network(stack, reg.id)
    response_url = peer.response_url()
    body = {
        "response_url": response_url,
        "token": token_body(),
        "location_id": location_id,
        "evse_uid": evse_uid,
        "connector_id": connector_id,
    }
    resp = await reg.ocpi.request("POST", f"{reg.base}/commands/START_SESSION", json=body)
    assert ok(resp) == {"result": "ACCEPTED", "timeout": 30}
    assert resp.headers["ocpi-to-party-id"] == "EMS"
    result = await peer.wait_for(lambda r: r.path == response_url.split(str(peer.port))[1], 35)
    assert result.method == "POST" and result.token == reg.token_b
    assert result.body["result"] in CHARGER_RESULTS
    assert "charge point" in result.body["message"][0]["text"]
    assert result.headers["ocpi-from-party-id"] == "MOD" and result.headers["ocpi-to-party-id"] == "EMS"
    assert result.headers["x-correlation-id"] == resp.headers["x-correlation-id"]
    await asyncio.sleep(0.3)  # exactly once
    assert sum(r.path == result.path for r in peer.received) == 1


async def test_other_commands(reg: Registered, stack: Stack, peer: EmspPeer):
    location_id, evse_uid, connector_id = network(stack, reg.id)
    cmd = f"{reg.base}/commands"

    async def result_of(url: str) -> dict[str, Any]:
        return (await peer.wait_for(lambda r: r.path == url.split(str(peer.port))[1], 35)).body

    url = peer.response_url()
    reserve = {
        "response_url": url,
        "token": token_body(),
        "expiry_date": "2030-01-01T00:00:00Z",
        "reservation_id": "R1",
        "location_id": location_id,
    }
    assert ok(await reg.ocpi.request("POST", f"{cmd}/RESERVE_NOW", json=reserve))["result"] == "ACCEPTED"
    reserved = (await result_of(url))["result"]
    assert reserved in CHARGER_RESULTS

    url = peer.response_url()
    resp = await reg.ocpi.request(
        "POST", f"{cmd}/CANCEL_RESERVATION", json={"response_url": url, "reservation_id": "R1"}
    )
    assert ok(resp)["result"] == "ACCEPTED"
    assert (await result_of(url))["result"] == ("ACCEPTED" if reserved == "ACCEPTED" else "UNKNOWN_RESERVATION")

    url = peer.response_url()
    unlock = {"response_url": url, "location_id": location_id, "evse_uid": evse_uid, "connector_id": connector_id}
    assert ok(await reg.ocpi.request("POST", f"{cmd}/UNLOCK_CONNECTOR", json=unlock))["result"] == "ACCEPTED"
    unlocked = await result_of(url)
    assert unlocked["result"] in CHARGER_RESULTS and "charge point" in unlocked["message"][0]["text"]

    stop = {"response_url": peer.response_url(), "session_id": "no-such-session"}
    assert ok(await reg.ocpi.request("POST", f"{cmd}/STOP_SESSION", json=stop))["result"] == "UNKNOWN_SESSION"


async def test_command_validation(reg: Registered, stack: Stack, peer: EmspPeer):
    location_id, evse_uid, _ = network(stack, reg.id)
    cmd = f"{reg.base}/commands"
    start = {"response_url": peer.response_url(), "token": token_body(), "location_id": location_id}
    for body, fragment in [
        ({**start, "location_id": None}, "location_id"),
        ({k: v for k, v in start.items() if k != "response_url"}, "response_url"),
        ({**start, "response_url": "not a url"}, "response_url"),
        ({**start, "connector_id": "1"}, "evse_uid is required"),
        ({**start, "token": "abc"}, "token"),
    ]:
        resp = await reg.ocpi.request("POST", f"{cmd}/START_SESSION", json=body)
        assert fragment in err(resp, 200, 2001)["status_message"], body
    bad_expiry = {**start, "reservation_id": "R", "expiry_date": "tomorrow"}
    err(await reg.ocpi.request("POST", f"{cmd}/RESERVE_NOW", json=bad_expiry), 200, 2001)
    for body in ({**start, "location_id": "NOPE"}, {**start, "evse_uid": "NOPE"}):
        resp = await reg.ocpi.request("POST", f"{cmd}/START_SESSION", json=body)
        assert resp.status_code == 200 and resp.json()["status_code"] == 2003
        assert resp.json()["data"]["result"] == "REJECTED"
    unlock = {"response_url": peer.response_url(), "location_id": location_id, "evse_uid": evse_uid}
    err(await reg.ocpi.request("POST", f"{cmd}/UNLOCK_CONNECTOR", json=unlock), 200, 2001)
    err(await reg.ocpi.request("POST", f"{cmd}/SELF_DESTRUCT", json=start), 404)
    err(await reg.ocpi.request("GET", f"{cmd}/START_SESSION"), 405)
    resp = await reg.ocpi.request("POST", f"{cmd}/START_SESSION", content=b"[", headers={"Content-Type": "x"})
    err(resp, 400, 2001)


# ---- sessions and cdrs senders --------------------------------------------------------------------------


async def test_sessions_and_cdrs_lists(reg: Registered, stack: Stack):
    for module in ("sessions", "cdrs"):
        resp = await reg.ocpi.request("GET", f"{reg.base}/{module}")
        assert ok(resp) == []
        assert (resp.headers["x-total-count"], resp.headers["x-limit"]) == ("0", "100")
        assert "link" not in resp.headers and resp.headers["ocpi-from-party-id"] == "MOD"
        err(await reg.ocpi.request("GET", f"{reg.base}/{module}", params={"date_from": "yesterday"}), 200, 2001)
    # Nothing produces sessions yet: seed three rows to check the paging contract on this module.
    for i in range(3):
        data = json.dumps({"id": f"S{i}", "country_code": "DE", "party_id": "MOD", "status": "COMPLETED"})
        stack.query(
            "INSERT INTO ocpi_session (cpo_id, id, status, data, created_at, last_updated) VALUES (?,?,?,?,?,?)",
            reg.id,
            f"S{i}",
            "COMPLETED",
            data,
            datetime(2024, 1, i + 1, tzinfo=UTC),
            datetime(2024, 2, i + 1, tzinfo=UTC),
        )
    resp = await reg.ocpi.request(
        "GET", f"{reg.base}/sessions", params={"limit": 2, "date_from": "2024-02-01T00:00:00Z"}
    )
    page = ok(resp)
    assert [s["id"] for s in page] == ["S0", "S1"] and page[0]["last_updated"] == "2024-02-01T00:00:00Z"
    assert resp.headers["x-total-count"] == "3"
    next_url = resp.headers["link"].split(">")[0].lstrip("<")
    assert "date_from=" in next_url and "offset=2" in next_url
    assert [s["id"] for s in ok(await reg.ocpi.request("GET", next_url))] == ["S2"]
    resp = await reg.ocpi.request("GET", f"{reg.base}/sessions", params={"date_to": "2024-02-02T00:00:00Z"})
    assert [s["id"] for s in ok(resp)] == ["S0"]


# ---- pushes -------------------------------------------------------------------------------------------


async def test_the_api_delivers_pushes_from_the_outbox(
    reg: Registered, stack: Stack, peer: EmspPeer, client: httpx.AsyncClient, http: httpx.AsyncClient
):
    """Recorded by this process, delivered by the API process's dispatcher (started by its lifespan)
    to the eMSP registered through the real handshake; tests/test_outbox.py covers the dispatcher."""
    db = Database(stack.database_url)
    try:
        location_id, evse_uid, _ = network(stack, reg.id)
        async with db.session() as session:
            # A status the CPO's live charger never reports on its own (its sessions report CHARGING).
            await push.evse_status(session, reg.id, location_id, evse_uid, "OUTOFORDER", "2024-06-01T12:00:00Z")
            await session.commit()
        # Other CPOs' live chargers push their own EVSEs (same ids, other parties) to this shared peer.
        path = f"locations/DE/MOD/{location_id}/{evse_uid}"
        got = await peer.wait_for(
            lambda r: (
                r.method == "PATCH"
                and r.path.endswith(f"/2.2.1/{path}")
                and isinstance(r.body, dict)
                and r.body.get("status") == "OUTOFORDER"
            ),
            timeout=5,
        )
        assert got.body == {"status": "OUTOFORDER", "last_updated": "2024-06-01T12:00:00Z"}
        assert got.token == reg.token_b and got.headers["authorization"] == f"Token {b64(reg.token_b)}"
        assert got.headers["ocpi-from-party-id"] == "MOD" and got.headers["ocpi-to-party-id"] == "EMS"

        # A CPO whose eMSP is down: the push is retried, every attempt logged, until the eMSP unregisters.
        async with stack.client() as control:
            down_cpo = await new_cpo(control, party_id="DWN")
        token_c = ok((await register(http, down_cpo, peer, profile="down"))[0])["token"]
        down_id = int(down_cpo["cpo_id"])
        async with db.session() as session:
            await push.session_put(session, down_id, {"id": "S1", "status": "ACTIVE"})
            await session.commit()
        deadline = time.monotonic() + 10
        while len([r for r in peer.received if r.path.startswith("/down/2.2.1/sessions/")]) < 2:
            assert time.monotonic() < deadline, "no retry after the first failure"  # backoff: 0.5–1 s
            await asyncio.sleep(0.05)
        entries = (await client.get(f"/ocpi/cpos/{down_id}/ocpi-log")).json()["data"]
        failed = [e for e in entries if e["direction"] == "out" and e["method"] == "PUT"]
        assert failed and failed[-1]["http_status"] == 503 and "503" in failed[-1]["error"]
        # Still waiting for its next attempt (beside the live chargers' EVSE pushes to the same eMSP).
        sessions_queued = "SELECT count(*) FROM ocpi_outbox WHERE cpo_id = ? AND module = 'sessions'"
        assert stack.query(sessions_queued, down_id) == [(1,)]
        # After DELETE the row is dropped at its next attempt and nothing new is recorded.
        ok(await OcpiClient(http, token_c).request("DELETE", credentials_url(down_cpo)))
        deadline = time.monotonic() + 10
        while stack.count("ocpi_outbox", down_id):
            assert time.monotonic() < deadline, "the unregistered peer's row was not dropped"
            await asyncio.sleep(0.1)
        async with db.session() as session:
            assert await push.session_put(session, down_id, {"id": "S2", "status": "ACTIVE"}) == 0
            await session.commit()
    finally:
        await db.dispose()


# ---- roam_helper ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.2.1", "2.1.1"])
async def test_roam_helper_curl_snippet_performs_the_handshake(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer, version: str
):
    cpo = await new_cpo(client, party_id="CRL", ocpi_version=version)
    token_b = peer.new_token()
    env = {**os.environ, "EMSP_TOKEN_B": token_b, "EMSP_VERSIONS_URL": peer.versions_url()}
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        cpo["roam_helper"]["curl_snippet"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, errout = await proc.communicate()
    assert proc.returncode == 0, errout
    body = json.loads(out)
    assert body["status_code"] == 1000, body
    token_c = body["data"]["token"]
    assert token_c and token_c != cpo["token_a"]
    assert any(r.token == token_b for r in peer.received)
    raw = version == "2.1.1"
    err(await OcpiClient(http, cpo["token_a"], raw=raw).request("GET", cpo["ocpi_peer_url"]), 401)
    ok(await OcpiClient(http, token_c, raw=raw).request("GET", cpo["ocpi_peer_url"]))
    assert (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}")).json()["registered_peers"] == 1
