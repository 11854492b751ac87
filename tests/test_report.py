"""What a new user hits (issue 6 §7) on the API: `GET /` leads to the docs, the report reflects the CPO's
state and speaks Markdown when asked, templates show chargers_per_location, a party collision is said."""

from __future__ import annotations

import httpx

from tests.emsp_peer import EmspPeer, new_cpo, register
from tests.stack import Stack, wait_status

MARKDOWN = {"Accept": "text/markdown"}


async def test_root_redirects_to_the_docs(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        resp = await c.get("/")
        assert resp.status_code == 307 and resp.headers["location"] == "/docs"
        assert (await c.get("/", follow_redirects=True)).headers["content-type"].startswith("text/html")


async def test_report_follows_the_cpo_through_handshake_and_teardown(
    stack: Stack, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    async with stack.client(org="report-state") as c:
        cpo = await new_cpo(c, party_id="RPT", name_prefix="report")
        cpo_id = cpo["cpo_id"]
        await wait_status(c, cpo_id, {"READY"})

        fresh = await c.get(f"/ocpi/cpos/{cpo_id}/report", headers=MARKDOWN)
        assert fresh.status_code == 200 and fresh.headers["content-type"] == "text/markdown; charset=utf-8"
        assert fresh.text.startswith(f"# CPO {cpo_id} — report")
        assert "## How to handshake" in fresh.text and "- **Expires**: 20" in fresh.text
        assert cpo["token_a"] not in fresh.text

        resp, _ = await register(http, cpo, peer)
        assert resp.status_code == 200, resp.text
        registered = (await c.get(f"/ocpi/cpos/{cpo_id}/report", headers=MARKDOWN)).text
        assert "How to handshake" not in registered and "Token A" in registered
        assert "**Registered eMSP peers**: 1" in registered

        assert (await c.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 202
        await wait_status(c, cpo_id, {"DESTROYED"})
        gone = (await c.get(f"/ocpi/cpos/{cpo_id}/report", headers=MARKDOWN)).text
        assert "**Expires**" not in gone and "- **Ended**: DESTROYED since " in gone
        assert "no longer accepts registrations" in gone and "Registered eMSP peers" not in gone


async def test_report_is_json_unless_markdown_is_preferred(stack: Stack) -> None:
    async with stack.client(org="report-accept") as c:
        cpo_id = (await new_cpo(c, party_id="ACC", name_prefix="accept"))["cpo_id"]
        for accept in (None, "application/json", "*/*", "text/markdown;q=0.5, application/json", "text/html,*/*;q=0.8"):
            resp = await c.get(f"/ocpi/cpos/{cpo_id}/report", headers={"Accept": accept} if accept else {})
            assert resp.headers["content-type"] == "application/json", accept
            assert resp.json()["markdown"].startswith(f"# CPO {cpo_id}")
        for accept in ("text/markdown", "text/markdown, */*;q=0.1", "application/json;q=0.2, text/markdown;q=0.9"):
            resp = await c.get(f"/ocpi/cpos/{cpo_id}/report", headers={"Accept": accept})
            assert resp.headers["content-type"].startswith("text/markdown"), accept
            assert resp.text.startswith(f"# CPO {cpo_id}")
        missing = await c.get("/ocpi/cpos/987654321/report", headers=MARKDOWN)
        assert missing.status_code == 404 and missing.json()["detail"]
        await c.delete(f"/ocpi/cpos/{cpo_id}")


async def test_templates_show_chargers_per_location_and_caps(stack: Stack) -> None:
    async with stack.client(org="report-templates") as c:
        data = (await c.get("/ocpi/cpos/templates")).json()["data"]
    by_slug = {t["slug"]: t for t in data}
    assert by_slug["small-urban-ac"]["chargers_per_location"] == 3
    assert by_slug["stress-10k"]["chargers_per_location"] == 50
    assert by_slug["city-mixed-large"]["caps"]["locations"] == {"min": 1, "max": 1000}
    for t in data:
        assert t["chargers"] == t["locations"] * t["chargers_per_location"], t
