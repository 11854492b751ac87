"""Helpers for the locations/tariffs tests and bench: big CPOs, the handshake, page walking."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx

from tests.emsp_peer import EmspPeer, ok
from tests.emsp_peer import register as emsp_register
from tests.stack import Stack, wait_status


def token_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {base64.b64encode(token.encode()).decode()}"}


async def create_cpo(client: httpx.AsyncClient, body: dict[str, Any], *, ready: bool = True) -> dict[str, Any]:
    resp = await client.post("/ocpi/cpos", json=body)
    assert resp.status_code == 202, resp.text
    created = resp.json()
    if ready:
        status = await wait_status(client, created["cpo_id"], {"READY", "FAILED"}, timeout=180)
        assert status["status"] == "READY", status
    return created


def _template_max(templates: list[dict[str, Any]], slug: str) -> int:
    return next(t for t in templates if t["slug"] == slug)["caps"]["locations"]["max"]


async def create_big_cpo(
    client: httpx.AsyncClient,
    *,
    locations: int,
    party_id: str,
    chargers_per_location: int,
    template: str = "city-mixed-large",
    ocpi_version: str = "2.2.1",
    seed: int = 7,
) -> dict[str, Any]:
    """A READY CPO with exactly `locations` locations, provisioned through the API and the workflow."""
    body = {
        "template": template,
        "country_code": "NL",
        "party_id": party_id,
        "name_prefix": f"Big {party_id}",
        "seed": seed,
        "ocpi_version": ocpi_version,
        "overrides": {"locations": locations, "chargers_per_location": chargers_per_location},
    }
    return await create_cpo(client, body)


async def walk(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[httpx.Response]:
    """Every page of a list by following `Link: <…>; rel="next"` until it is absent."""
    pages = []
    next_url: str | None = url
    while next_url is not None:
        resp = await http.get(next_url, headers={**headers, "X-Request-ID": str(uuid.uuid4())})
        assert resp.status_code == 200, resp.text
        pages.append(resp)
        assert len(pages) < 10_000, "Link never ends"
        next_url = next_link(resp)
    return pages


def next_link(resp: httpx.Response) -> str | None:
    link = resp.headers.get("link")
    if link is None:
        return None
    target, _, rel = link.partition(";")
    assert rel.strip() == 'rel="next"', link
    assert target.startswith("<") and target.endswith(">"), link
    return target[1:-1]


async def handshake(
    stack: Stack, http: httpx.AsyncClient, created: dict[str, Any], peer: EmspPeer, version: str = "2.2.1"
) -> tuple[str, dict[str, str]]:
    """The eMSP's real registration (Token A → B → C) with the independent test peer; returns the
    CPO's version base URL and the headers carrying Token C (base64 form, as 2.2.1 wants)."""
    resp, _ = await emsp_register(http, created, peer, version=version)
    token_c = ok(resp)["token"]
    return f"{stack.api_url}/ocpi/peer/{created['cpo_id']}/{version}", token_header(token_c)
