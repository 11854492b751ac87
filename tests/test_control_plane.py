"""Control plane end to end against a real stack (Temporal dev server, worker, API, SQLite)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from app.web.auth import READ, WRITE, mint_token
from tests.stack import SECRET, Stack, wait_status

BODY = {"template": "small-urban-ac", "country_code": "FR", "party_id": "ABC", "name_prefix": "alice"}


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_create_returns_202_then_ready_with_planned_rows(client: httpx.AsyncClient, stack: Stack) -> None:
    started = time.monotonic()
    resp = await client.post("/ocpi/cpos", json={**BODY, "seed": 42, "party_id": "RDY"})
    assert resp.status_code == 202, resp.text
    assert time.monotonic() - started < 1.0
    body = resp.json()
    cpo_id = body["cpo_id"]
    assert cpo_id.isdigit()
    assert resp.headers["location"] == body["status_url"] == f"/ocpi/cpos/{cpo_id}/status"
    assert body["destroy_url"] == f"/ocpi/cpos/{cpo_id}"
    assert body["party"] == {"country_code": "FR", "party_id": "RDY", "role": "CPO"}
    assert body["status"] == "PENDING" and body["template"] == "small-urban-ac"
    assert isinstance(body["template_version"], int)
    assert len(body["token_a"]) >= 32 and body["workflow_run_id"]
    assert body["ocpi_peer_url"] == f"{stack.api_url}/ocpi/peer/{cpo_id}/versions"
    expires = parse_ts(body["expires_at"])
    assert abs((expires - datetime.now(UTC)).total_seconds() - 3600) < 30
    creds = body["roam_helper"]["credentials_payload"]
    assert creds["token"] == body["token_a"] and creds["url"] == body["ocpi_peer_url"]
    assert creds["roles"][0] == {
        "role": "CPO",
        "country_code": "FR",
        "party_id": "RDY",
        "business_details": {"name": "alice"},
    }
    assert "$EMSP_TOKEN_B" in body["roam_helper"]["curl_snippet"]

    status = await wait_status(client, cpo_id, {"READY", "FAILED"})
    assert status["status"] == "READY", status
    assert status["error"] is None and status["provisioned_at"]
    progress = status["progress"]
    assert progress["steps_done"] == progress["steps_total"]
    assert progress["locations_done"] == progress["locations_total"] == 2
    assert progress["chargers_done"] == progress["chargers_total"] == 6

    detail = (await client.get(f"/ocpi/cpos/{cpo_id}")).json()
    assert "token_a" not in detail and body["token_a"] not in str(detail)
    assert detail["seed"] == 42 and detail["status"] == "READY"
    topo = detail["topology"]
    assert (topo["locations"], topo["chargers"]) == (2, 6)
    assert stack.count("location", int(cpo_id)) == 2
    assert stack.count("charger", int(cpo_id)) == 6
    assert stack.count("evse", int(cpo_id)) == topo["evses"]
    assert stack.count("connector", int(cpo_id)) == topo["connectors"]
    assert stack.count("charger_route", int(cpo_id)) == topo["evses"]
    assert detail["registered_peers"] == 0
    assert detail["simulation"] == {"time_scale": 1.0, "background_activity": False}


async def test_null_seed_is_chosen_and_shown(client: httpx.AsyncClient) -> None:
    resp = await client.post("/ocpi/cpos", json={**BODY, "party_id": "SD1", "seed": None, "ttl_seconds": None})
    assert resp.status_code == 202
    assert resp.json()["expires_at"] is None
    detail = (await client.get(f"/ocpi/cpos/{resp.json()['cpo_id']}")).json()
    assert isinstance(detail["seed"], int)
    assert detail["expires_at"] is None


@pytest.mark.parametrize("path", ["/ocpi/cpos/templates", "/ocpi/templates/cpos"])
async def test_templates_gallery(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200
    body = resp.json()
    slugs = [t["slug"] for t in body["data"]]
    assert body["total"] == len(slugs) >= 5
    assert {"small-urban-ac", "highway-dc", "mixed-depot"} <= set(slugs)
    small = next(t for t in body["data"] if t["slug"] == "small-urban-ac")
    assert (small["locations"], small["chargers"]) == (2, 6)
    assert small["ocpp_versions"] == ["1.6"]
    assert set(small["caps"]) == {"locations", "chargers_per_location"}
    assert any(
        t["caps"]["locations"]["max"] >= 200 and t["caps"]["chargers_per_location"]["max"] >= 50 for t in body["data"]
    )


async def test_list_is_paginated_and_org_scoped(stack: Stack) -> None:
    async with stack.client(org="lister") as c:
        ids = []
        for party in ("LA1", "LA2", "LA3"):
            resp = await c.post("/ocpi/cpos", json={**BODY, "party_id": party})
            ids.append(resp.json()["cpo_id"])
        page1 = (await c.get("/ocpi/cpos", params={"page": 1, "limit": 2})).json()
        page2 = (await c.get("/ocpi/cpos", params={"page": 2, "limit": 2})).json()
        assert page1["total"] == page2["total"] == 3
        assert (page1["page"], page1["limit"], page2["page"]) == (1, 2, 2)
        assert [x["cpo_id"] for x in page1["data"] + page2["data"]] == list(reversed(ids))
        assert all("token_a" not in x for x in page1["data"])
        for bad in ({"limit": 0}, {"limit": 101}, {"page": 0}, {"page": "x"}, {"status": "NOPE"}):
            resp = await c.get("/ocpi/cpos", params=bad)
            assert resp.status_code == 422, bad
            assert resp.json()["detail"][0]["loc"][0] == "query"
    async with stack.client(org="other-org") as other:
        assert (await other.get("/ocpi/cpos")).json()["total"] == 0
        assert (await other.get(f"/ocpi/cpos/{ids[0]}")).status_code == 404
        assert (await other.get(f"/ocpi/cpos/{ids[0]}/status")).status_code == 404
        assert (await other.get(f"/ocpi/cpos/{ids[0]}/report")).status_code == 404
        # DELETE of a foreign CPO is an idempotent no-op that reveals nothing and destroys nothing.
        assert (await other.delete(f"/ocpi/cpos/{ids[0]}")).status_code == 200
    assert stack.query("SELECT status FROM cpo WHERE id = ?", int(ids[0]))[0][0] != "DESTROYING"


async def test_report_is_markdown_without_token(client: httpx.AsyncClient) -> None:
    created = (await client.post("/ocpi/cpos", json={**BODY, "party_id": "REP", "seed": 7})).json()
    await wait_status(client, created["cpo_id"], {"READY"})
    resp = await client.get(f"/ocpi/cpos/{created['cpo_id']}/report")
    assert resp.status_code == 200
    md = resp.json()["markdown"]
    assert resp.json()["cpo_id"] == created["cpo_id"]
    assert created["token_a"] not in md
    assert "FR*REP" in md and created["ocpi_peer_url"] in md and "credentials" in md
    detail_locations = md.split("## Locations", 1)[1]
    assert detail_locations.count("| `LOC") == 2 and "| 3 |" in detail_locations


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"template": 5}, "template"),
        ({"country_code": "XX"}, "country_code"),
        ({"country_code": "FRA"}, "country_code"),
        ({"country_code": None}, "country_code"),
        ({"party_id": "AB"}, "party_id"),
        ({"party_id": "AB-"}, "party_id"),
        ({"party_id": "ABCD"}, "party_id"),
        ({"name_prefix": ""}, "name_prefix"),
        ({"name_prefix": "x" * 65}, "name_prefix"),
        ({"name_prefix": "bad\nname"}, "name_prefix"),
        ({"role": "hub"}, "role"),
        ({"ocpi_version": "2.3"}, "ocpi_version"),
        ({"seed": "42"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"ttl_seconds": 59}, "ttl_seconds"),
        ({"ttl_seconds": 604801}, "ttl_seconds"),
        ({"ttl_seconds": "60"}, "ttl_seconds"),
        ({"overrides": []}, "overrides"),
        ({"overrides": {"locations": 0}}, "locations"),
        ({"overrides": {"chargers_per_location": 10_000}}, "chargers_per_location"),
        ({"overrides": {"evses": 2}}, "evses"),
        ({"overrides": {"locations": "2"}}, "locations"),
        ({"overrides": {"locations": True}}, "locations"),
        ({"unexpected": 1}, "unexpected"),
        ({"simulation": None}, "simulation"),
        ({"simulation": []}, "simulation"),
        ({"simulation": {"time_scale": 0}}, "time_scale"),
        ({"simulation": {"time_scale": -1}}, "time_scale"),
        ({"simulation": {"time_scale": 10_000.5}}, "time_scale"),
        ({"simulation": {"time_scale": "60"}}, "time_scale"),
        ({"simulation": {"background_activity": 1}}, "background_activity"),
        ({"simulation": {"speed": 2}}, "speed"),
    ],
)
async def test_invalid_body_field_is_422_naming_it(
    client: httpx.AsyncClient, stack: Stack, patch: dict, field: str
) -> None:
    before = stack.query("SELECT count(*) FROM cpo")[0][0]
    resp = await client.post("/ocpi/cpos", json={**BODY, **patch})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert any(field in [str(x) for x in d["loc"]] for d in detail), detail
    assert all(set(d) == {"loc", "msg", "type"} for d in detail)
    assert stack.query("SELECT count(*) FROM cpo")[0][0] == before


async def test_override_error_names_the_cap(client: httpx.AsyncClient) -> None:
    resp = await client.post("/ocpi/cpos", json={**BODY, "overrides": {"locations": 100000}})
    assert resp.status_code == 422
    msg = resp.json()["detail"][0]["msg"]
    assert "locations" in msg and any(ch.isdigit() for ch in msg)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", b'"x"'])
async def test_malformed_body_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    resp = await client.post("/ocpi/cpos", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert isinstance(resp.json()["detail"], list)


async def test_missing_required_fields_are_named(client: httpx.AsyncClient) -> None:
    resp = await client.post("/ocpi/cpos", json={})
    assert resp.status_code == 422
    named = {d["loc"][-1] for d in resp.json()["detail"]}
    assert {"template", "country_code", "party_id", "name_prefix"} <= named


async def test_lower_case_codes_are_normalised(client: httpx.AsyncClient) -> None:
    resp = await client.post("/ocpi/cpos", json={**BODY, "country_code": "de", "party_id": "lc1", "role": "emsp"})
    assert resp.status_code == 202
    assert resp.json()["party"] == {"country_code": "DE", "party_id": "LC1", "role": "EMSP"}


async def test_unknown_template_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.post("/ocpi/cpos", json={**BODY, "template": "no-such-template"})
    assert resp.status_code == 404
    assert resp.json()["template"] == "no-such-template" and resp.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/ocpi/cpos/abc",
        "/ocpi/cpos/-1",
        "/ocpi/cpos/0",
        "/ocpi/cpos/1.5",
        "/ocpi/cpos/abc/status",
        "/ocpi/cpos/abc/report",
        "/ocpi/cpos/99999999999999999999999",
        "/ocpi/cpos/2147483648",  # one past the 32-bit ids the database holds (a 500 on Postgres once)
        "/ocpi/cpos/393190133379232/report",
    ],
)
async def test_non_numeric_id_is_422(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["path", "cpo_id"]
    assert (await client.delete(path.removesuffix("/status").removesuffix("/report"))).status_code == 422


async def test_missing_cpo_is_404(client: httpx.AsyncClient) -> None:
    for path in ("/ocpi/cpos/987654", "/ocpi/cpos/987654/status", "/ocpi/cpos/987654/report"):
        resp = await client.get(path)
        assert resp.status_code == 404 and resp.json()["detail"]


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Bearer",
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        f"Bearer {mint_token('wrong-secret-wrong-secret-wrong-secret', org='acme')}",
        f"Bearer {mint_token(SECRET, org='acme', ttl_seconds=-10)}",
    ],
)
async def test_bad_token_is_401(stack: Stack, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as c:
        for method, path in (
            ("GET", "/ocpi/cpos"),
            ("POST", "/ocpi/cpos"),
            ("GET", "/ocpi/cpos/templates"),
            ("GET", "/ocpi/cpos/1"),
            ("DELETE", "/ocpi/cpos/1"),
            ("GET", "/ocpi/cpos/1/status"),
        ):
            resp = await c.request(method, path, json=BODY if method == "POST" else None)
            assert resp.status_code == 401, (method, path, resp.text)
            assert isinstance(resp.json()["detail"], str)


async def test_scope_and_org_are_enforced_with_403(stack: Stack) -> None:
    import jwt

    no_org = jwt.encode(
        {"sub": "x", "scope": f"{READ} {WRITE}", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    read_only = mint_token(SECRET, org="acme", scopes=(READ,))
    write_only = mint_token(SECRET, org="acme", scopes=(WRITE,))
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        h = {"Authorization": f"Bearer {no_org}"}
        assert (await c.get("/ocpi/cpos", headers=h)).status_code == 403
        h = {"Authorization": f"Bearer {read_only}"}
        assert (await c.post("/ocpi/cpos", json=BODY, headers=h)).status_code == 403
        assert (await c.delete("/ocpi/cpos/1", headers=h)).status_code == 403
        assert (await c.get("/ocpi/cpos", headers=h)).status_code == 200
        h = {"Authorization": f"Bearer {write_only}"}
        assert (await c.get("/ocpi/cpos", headers=h)).status_code == 403
        assert (await c.get("/ocpi/cpos/templates", headers=h)).status_code == 403


async def test_wrong_method_is_405_json(client: httpx.AsyncClient) -> None:
    resp = await client.put("/ocpi/cpos")
    assert resp.status_code == 405 and resp.json()["detail"]
    assert {m.strip() for m in resp.headers["allow"].split(",")} >= {"GET", "POST"}
    resp = await client.put("/ocpi/cpos/1")
    assert resp.status_code == 405
    assert {m.strip() for m in resp.headers["allow"].split(",")} >= {"GET", "PATCH", "DELETE"}


async def test_patch_moves_the_ttl_on_the_workflow_timer(client: httpx.AsyncClient, stack: Stack) -> None:
    created = (await client.post("/ocpi/cpos", json={**BODY, "party_id": "TTX"})).json()
    cpo_id = created["cpo_id"]
    await wait_status(client, cpo_id, {"READY"})
    resp = await client.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 7200})
    assert resp.status_code == 200, resp.text
    expires = parse_ts(resp.json()["expires_at"])
    assert abs((expires - datetime.now(UTC)).total_seconds() - 7200) < 30
    status = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
    assert parse_ts(status["expires_at"]) == expires and status["status"] == "READY"

    resp = await client.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": None})
    assert resp.status_code == 200 and resp.json()["expires_at"] is None

    for bad in ({}, {"ttl_seconds": 59}, {"ttl_seconds": 604801}, {"ttl_seconds": "60"}, {"ttl_seconds": 60, "x": 1}):
        bad_resp = await client.patch(f"/ocpi/cpos/{cpo_id}", json=bad)
        assert bad_resp.status_code == 422, bad
        assert bad_resp.json()["detail"][0]["loc"][0] == "body"
    read_only = {"Authorization": f"Bearer {mint_token(SECRET, org='acme', scopes=(READ,))}"}
    assert (await client.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 60}, headers=read_only)).status_code == 403
    async with stack.client(org="someone-else") as other:
        assert (await other.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 60})).status_code == 404

    assert (await client.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 202
    await wait_status(client, cpo_id, {"DESTROYED"})
    gone = await client.patch(f"/ocpi/cpos/{cpo_id}", json={"ttl_seconds": 3600})
    assert gone.status_code == 409 and "DESTROYED" in gone.json()["detail"]
