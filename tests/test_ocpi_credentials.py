"""OCPI transport, versions and the credentials handshake against a real stack and a real eMSP peer."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from tests.emsp_peer import ROUTING, EmspPeer, OcpiClient, b64, credentials_url, err, new_cpo, ok, register
from tests.hostile_peer import HostilePeer
from tests.stack import Stack, wait_status


def details_url(cpo: dict[str, Any], version: str = "2.2.1") -> str:
    return cpo["ocpi_peer_url"].removesuffix("/versions") + f"/{version}"


async def test_versions_and_details_with_token_a_right_after_202(client: httpx.AsyncClient, http: httpx.AsyncClient):
    cpo = await new_cpo(client)
    emsp = OcpiClient(http, cpo["token_a"])
    resp = await emsp.request("GET", cpo["ocpi_peer_url"])
    assert ok(resp) == [{"version": "2.2.1", "url": details_url(cpo)}]
    assert not any(h in resp.headers for h in ROUTING)  # configuration module: no routing headers
    resp = await emsp.request("GET", details_url(cpo) + "/")  # trailing slash answers directly
    details = ok(resp)
    assert details["version"] == "2.2.1"
    roles = {e["identifier"]: e["role"] for e in details["endpoints"]}
    assert roles == {
        "credentials": "SENDER",
        "locations": "SENDER",
        "tariffs": "SENDER",
        "sessions": "SENDER",
        "cdrs": "SENDER",
        "tokens": "RECEIVER",
        "commands": "RECEIVER",
    }
    assert all(e["url"] == f"{details_url(cpo)}/{e['identifier']}" for e in details["endpoints"])
    # The other version and unknown paths are envelope 404s; Token A does not open functional modules.
    err(await emsp.request("GET", details_url(cpo, "2.1.1")), 404, 3002)
    err(await emsp.request("GET", details_url(cpo) + "/nope"), 404)
    err(await emsp.request("GET", details_url(cpo) + "/sessions"), 401)


async def test_full_handshake_a_b_c(client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer):
    cpo = await new_cpo(client, party_id="HSK")
    resp, token_b = await register(http, cpo, peer)
    creds = ok(resp)
    token_c = creds["token"]
    assert token_c not in (cpo["token_a"], token_b) and len(token_c) <= 64
    assert creds["url"] == cpo["ocpi_peer_url"]
    assert creds["roles"] == [
        {"role": "CPO", "business_details": {"name": "ocpi-test"}, "party_id": "HSK", "country_code": "DE"}
    ]
    assert not any(h in resp.headers for h in ROUTING)
    # Both callbacks reached the eMSP with Token B (base64 on the wire, as 2.2.1 requires).
    calls = [r for r in peer.received if r.token == token_b]
    assert [r.path for r in calls] == ["/ok/versions", "/ok/2.2.1"]
    assert calls[0].headers["authorization"] == f"Token {b64(token_b)}"
    assert calls[0].headers["x-correlation-id"] == resp.headers["x-correlation-id"]

    # Token A is dead everywhere; Token C works; a second POST is 405.
    with_a, with_c = OcpiClient(http, cpo["token_a"]), OcpiClient(http, token_c)
    err(await with_a.request("GET", cpo["ocpi_peer_url"]), 401)
    err(await with_a.request("POST", credentials_url(cpo), json=peer.credentials(peer.new_token())), 401)
    ok(await with_c.request("GET", cpo["ocpi_peer_url"]))
    assert ok(await with_c.request("GET", credentials_url(cpo))) == creds
    err(await with_c.request("POST", credentials_url(cpo), json=peer.credentials(peer.new_token())), 405)
    detail = (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}")).json()
    assert detail["registered_peers"] == 1


async def test_put_rotates_token_c(client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer):
    cpo = await new_cpo(client, party_id="ROT")
    token_c = ok((await register(http, cpo, peer))[0])["token"]
    new_b = peer.new_token()
    resp = await OcpiClient(http, token_c).request("PUT", credentials_url(cpo), json=peer.credentials(new_b))
    token_c2 = ok(resp)["token"]
    assert token_c2 != token_c
    # Endpoints were re-fetched with the new token B′.
    assert [r.path for r in peer.received if r.token == new_b] == ["/ok/versions", "/ok/2.2.1"]
    err(await OcpiClient(http, token_c).request("GET", credentials_url(cpo)), 401)
    assert ok(await OcpiClient(http, token_c2).request("GET", credentials_url(cpo)))["token"] == token_c2
    detail = (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}")).json()
    assert detail["registered_peers"] == 1


async def test_delete_unregisters_and_every_token_stops(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer
):
    cpo = await new_cpo(client, party_id="DEL")
    token_c = ok((await register(http, cpo, peer))[0])["token"]
    with_c = OcpiClient(http, token_c)
    resp = await with_c.request("DELETE", credentials_url(cpo))
    assert ok(resp) is None
    for token in (token_c, cpo["token_a"]):
        c = OcpiClient(http, token)
        err(await c.request("GET", cpo["ocpi_peer_url"]), 401)
        err(await c.request("GET", credentials_url(cpo)), 401)
        # Re-registration needs a Token A; the consumed one stays dead (a new CPO hands out a new one).
        err(await c.request("POST", credentials_url(cpo), json=peer.credentials(peer.new_token())), 401)
    assert (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}")).json()["registered_peers"] == 0


async def test_put_and_delete_before_registration_are_405(client: httpx.AsyncClient, http: httpx.AsyncClient, peer):
    cpo = await new_cpo(client, party_id="UNR")
    with_a = OcpiClient(http, cpo["token_a"])
    err(await with_a.request("PUT", credentials_url(cpo), json=peer.credentials(peer.new_token())), 405)
    err(await with_a.request("DELETE", credentials_url(cpo)), 405)
    # GET with Token A is allowed and shows the token the caller must use right now (Token A).
    assert ok(await with_a.request("GET", credentials_url(cpo)))["token"] == cpo["token_a"]


async def test_authorization_header_forms_and_failures(client: httpx.AsyncClient, http: httpx.AsyncClient):
    cpo, other = await new_cpo(client, party_id="AUT"), await new_cpo(client, party_id="AU2")
    url = cpo["ocpi_peer_url"]
    token = cpo["token_a"]
    good = {
        "base64": f"Token {b64(token)}",
        "raw": f"Token {token}",
        "base64 + newline (spec example style)": f"Token {base64.b64encode((token + chr(10)).encode()).decode()}",
        "lower-case scheme": f"token {b64(token)}",
    }
    for name, value in good.items():
        assert (await http.get(url, headers={"Authorization": value})).status_code == 200, name
    bad = {
        "missing": None,
        "no token": "Token",
        "unknown": f"Token {b64('no-such-token')}",
        "bad base64": "Token %%%not-base64%%%",
        "other CPO's token": f"Token {b64(other['token_a'])}",
        "bearer": f"Bearer {token}",
    }
    for name, value in bad.items():
        headers = {"Authorization": value} if value is not None else {}
        resp = await http.get(url, headers=headers)
        assert resp.status_code == 401, name
        err(resp, 401)
    err(await http.get(f"{url.split('/ocpi/peer/')[0]}/ocpi/peer/999999999/versions"), 404)
    err(await http.get(f"{url.split('/ocpi/peer/')[0]}/ocpi/peer/abc/versions"), 404)


async def test_wrong_method_and_malformed_json(client: httpx.AsyncClient, http: httpx.AsyncClient):
    cpo = await new_cpo(client, party_id="MTH")
    with_a = OcpiClient(http, cpo["token_a"])
    resp = await with_a.request("POST", cpo["ocpi_peer_url"], json={})
    err(resp, 405)
    assert "GET" in resp.headers["allow"]
    err(await with_a.request("PATCH", credentials_url(cpo), json={}), 405)
    resp = await with_a.request(
        "POST", credentials_url(cpo), content=b"{not json", headers={"Content-Type": "application/json"}
    )
    err(resp, 400, 2001)
    err(await with_a.request("POST", credentials_url(cpo)), 400, 2001)  # empty body
    # Valid JSON, not a Credentials object: reached the OCPI layer → HTTP 200 with 2001.
    for body in ({"token": "x"}, [], {"token": "has space", "url": "http://x/versions", "roles": []}):
        err(await with_a.request("POST", credentials_url(cpo), json=body), 200, 2001)
    # Token A survives all of these.
    ok(await with_a.request("GET", cpo["ocpi_peer_url"]))


@pytest.mark.parametrize(
    ("profile", "status_code"),
    [("fail401", 3001), ("fail500", 3001), ("badjson", 3001), ("baddetails", 3001), ("nocommon", 3002)],
)
async def test_callback_failures(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer, profile: str, status_code: int
):
    cpo = await new_cpo(client, party_id="CBF")
    resp, _ = await register(http, cpo, peer, profile)
    body = err(resp, 200, status_code)
    assert body["status_message"]
    # Nothing was registered: Token A still works and the real registration then succeeds.
    ok((await register(http, cpo, peer))[0])


async def test_callback_to_unreachable_peer_is_3001(client: httpx.AsyncClient, http: httpx.AsyncClient):
    cpo = await new_cpo(client, party_id="UNR")
    body = {
        "token": "B-unreachable",
        "url": "http://127.0.0.1:9/versions",
        "roles": [{"role": "EMSP", "business_details": {"name": "x"}, "party_id": "EMS", "country_code": "NL"}],
    }
    err(await OcpiClient(http, cpo["token_a"]).request("POST", credentials_url(cpo), json=body), 200, 3001)


async def test_message_ids_echoed_or_generated(client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer):
    cpo = await new_cpo(client, party_id="MID")
    with_a = OcpiClient(http, cpo["token_a"])
    resp = await with_a.request("GET", cpo["ocpi_peer_url"], headers={"X-Request-ID": "r-1", "X-Correlation-ID": "c-1"})
    assert (resp.headers["x-request-id"], resp.headers["x-correlation-id"]) == ("r-1", "c-1")
    resp = await with_a.request("GET", cpo["ocpi_peer_url"])
    assert len(resp.headers["x-request-id"]) == 36 and len(resp.headers["x-correlation-id"]) == 36
    err_resp = await http.get(cpo["ocpi_peer_url"], headers={"X-Request-ID": "r-2"})  # echoed on errors too
    assert err_resp.status_code == 401 and err_resp.headers["x-request-id"] == "r-2"

    token_c = ok((await register(http, cpo, peer))[0])["token"]
    resp = await OcpiClient(http, token_c).request("GET", details_url(cpo) + "/sessions")
    assert ok(resp) == []
    routing = {h: resp.headers.get(h) for h in ROUTING}
    assert routing == {
        "ocpi-from-country-code": "DE",
        "ocpi-from-party-id": "MID",
        "ocpi-to-country-code": "NL",
        "ocpi-to-party-id": "EMS",
    }


async def test_ocpi_2_1_1_handshake(client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer):
    cpo = await new_cpo(client, party_id="OLD", ocpi_version="2.1.1")
    flat = {"token", "url", "business_details", "country_code", "party_id"}
    assert set(cpo["roam_helper"]["credentials_payload"]) == flat
    raw_a = OcpiClient(http, cpo["token_a"], raw=True)
    assert ok(await raw_a.request("GET", cpo["ocpi_peer_url"])) == [
        {"version": "2.1.1", "url": details_url(cpo, "2.1.1")}
    ]
    details = ok(await raw_a.request("GET", details_url(cpo, "2.1.1")))
    assert all(set(e) == {"identifier", "url"} for e in details["endpoints"])
    err(await raw_a.request("GET", details_url(cpo, "2.2.1")), 404, 3002)
    resp, token_b = await register(http, cpo, peer, version="2.1.1")
    creds = ok(resp)
    assert set(creds) == flat
    assert (creds["party_id"], creds["country_code"]) == ("OLD", "DE")
    details_call = next(r for r in peer.received if r.token == token_b and r.path == "/ok/2.1.1")
    assert details_call.headers["authorization"] == f"Token {token_b}"  # 2.1.1: raw token on the wire
    resp = await OcpiClient(http, creds["token"], raw=True).request("GET", details_url(cpo, "2.1.1") + "/cdrs")
    assert ok(resp) == [] and "ocpi-from-party-id" not in resp.headers  # no routing headers before 2.2


async def test_ocpi_log_lists_traffic_and_is_org_scoped(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer, stack: Stack
):
    cpo = await new_cpo(client, party_id="LOG")
    # Booted first: a charger's boot after the registration is an EVSE push, a fourth log entry.
    await wait_status(client, cpo["cpo_id"], {"READY"}, timeout=120)
    resp, _ = await register(http, cpo, peer)
    correlation = resp.headers["x-correlation-id"]
    await OcpiClient(http, cpo["token_a"]).request("GET", cpo["ocpi_peer_url"], headers={"X-Request-ID": "req-x"})
    page = (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}/ocpi-log", params={"limit": 10})).json()
    # The replay of the spent Token A is not a valid token any more: counted, not logged.
    assert page["total"] == 3 and (page["page"], page["limit"]) == (1, 10)
    assert page["rejected_unauthenticated"] == 1 and page["rejected_last_at"].endswith("Z")
    entries = page["data"]  # newest first, by start time: the POST started before its callbacks
    expected = [("out", "GET"), ("out", "GET"), ("in", "POST")]
    assert [(e["direction"], e["method"]) for e in entries] == expected
    assert "req-x" not in {e["request_id"] for e in entries}
    details, versions, post = entries
    assert post["http_status"] == 200 and post["ocpi_status_code"] == 1000 and post["url"] == credentials_url(cpo)
    assert versions["url"] == peer.versions_url() and details["url"].endswith("/ok/2.2.1")
    assert {post["correlation_id"], details["correlation_id"], versions["correlation_id"]} == {correlation}
    assert all(e["timestamp"].endswith("Z") and e["duration_ms"] >= 0 for e in entries)
    assert post["duration_ms"] >= details["duration_ms"] + versions["duration_ms"]
    page2 = (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}/ocpi-log", params={"page": 2, "limit": 2})).json()
    assert [e["id"] for e in page2["data"]] == [post["id"]]
    async with stack.client(org="someone-else") as other:
        assert (await other.get(f"/ocpi/cpos/{cpo['cpo_id']}/ocpi-log")).status_code == 404
    assert (await client.get("/ocpi/cpos/abc/ocpi-log")).status_code == 422
    assert (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}/ocpi-log", params={"limit": 0})).status_code == 422
    assert (await http.get(f"{stack.api_url}/ocpi/cpos/{cpo['cpo_id']}/ocpi-log")).status_code == 401


async def test_concurrent_posts_with_one_token_a_register_once(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer
):
    cpo, other = await new_cpo(client, party_id="RAC"), await new_cpo(client, party_id="RA2")
    results = await asyncio.gather(*(register(http, cpo, peer) for _ in range(4)))
    statuses = sorted((r.status_code, r.json()["status_code"]) for r, _ in results)
    assert statuses == [(200, 1000), (401, 2000), (401, 2000), (401, 2000)], statuses
    token_c = next(r.json()["data"]["token"] for r, _ in results if r.status_code == 200)
    assert (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}")).json()["registered_peers"] == 1
    # A token of one CPO never opens another.
    err(await OcpiClient(http, token_c).request("GET", other["ocpi_peer_url"]), 401)
    err(await OcpiClient(http, token_c).request("GET", credentials_url(other)), 401)


async def test_destroyed_cpo_has_no_platform_and_leaves_no_rows(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer, stack: Stack
):
    cpo = await new_cpo(client, party_id="GON")
    token_c = ok((await register(http, cpo, peer))[0])["token"]
    cpo_id = int(cpo["cpo_id"])
    assert stack.count("ocpi_peer", cpo_id) == 1
    assert (await client.delete(f"/ocpi/cpos/{cpo_id}")).status_code in (200, 202)
    await wait_status(client, cpo["cpo_id"], {"DESTROYED"}, timeout=60)
    err(await OcpiClient(http, token_c).request("GET", cpo["ocpi_peer_url"]), 404)
    await client.get(f"/ocpi/cpos/{cpo_id}/ocpi-log")  # flushes the API's buffered log entries
    for table in ("ocpi_peer", "credential_token", "ocpi_log", "ocpi_token"):
        assert stack.count(table, cpo_id) == 0, table


async def test_concurrent_puts_with_one_token_rotate_once(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer, stack: Stack
):
    cpo = await new_cpo(client, party_id="PRC")
    token_c = ok((await register(http, cpo, peer))[0])["token"]
    with_c = OcpiClient(http, token_c)
    # The new versions URL answers slowly, so all six PUTs are past authentication before any commits.
    slow = await HostilePeer(drip_interval=0.5).start()
    try:
        new_bs = [peer.new_token() for _ in range(6)]
        bodies = [{**peer.credentials(b), "url": slow.url("slow")} for b in new_bs]
        results = await asyncio.gather(*(with_c.request("PUT", credentials_url(cpo), json=body) for body in bodies))
    finally:
        await slow.stop()
    assert len([s for s in slow.seen if s.path == "/slow/versions"]) == 6
    winners = [(r, b) for r, b in zip(results, new_bs, strict=True) if r.status_code == 200]
    assert len(winners) == 1, [(r.status_code, r.text) for r in results]
    for resp in results:
        if resp.status_code != 200:  # the losers are told why (raced in flight, or came after); no token
            message = err(resp, 401, 2000)["status_message"]
            assert "concurrent credentials PUT or DELETE" in message
    winner, winner_b = winners[0]
    token_c2 = ok(winner)["token"]
    # The winner's Token C works; the old one and every other is dead; the peer holds the winner's B.
    assert ok(await OcpiClient(http, token_c2).request("GET", credentials_url(cpo)))["token"] == token_c2
    err(await with_c.request("GET", credentials_url(cpo)), 401)
    cpo_id = int(cpo["cpo_id"])
    assert stack.query("SELECT token_b FROM ocpi_peer WHERE cpo_id = ?", cpo_id) == [(winner_b,)]
    live = stack.query("SELECT count(*) FROM credential_token WHERE cpo_id = ? AND revoked_at IS NULL", cpo_id)
    assert live == [(1,)]
    # A DELETE racing a PUT with the same token: exactly one of them succeeds.
    with_c2 = OcpiClient(http, token_c2)
    put, delete = await asyncio.gather(
        with_c2.request("PUT", credentials_url(cpo), json=peer.credentials(peer.new_token())),
        with_c2.request("DELETE", credentials_url(cpo)),
    )
    assert sorted([put.status_code, delete.status_code]) == [200, 401], (put.text, delete.text)
    if put.status_code == 200:  # the PUT committed first: the DELETE was refused, its token works
        ok(await OcpiClient(http, ok(put)["token"]).request("GET", credentials_url(cpo)))
