"""A token revoked through one API process is refused by every other API process at once: the OCPI
transport reads the token from the database on every request (no per-process cache of tokens)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.emsp_peer import EmspPeer, OcpiClient, credentials_url, err, new_cpo, ok, register
from tests.stack import Stack, api_command, free_port, wait_http, wait_status


@pytest.fixture
async def second_api(stack: Stack) -> AsyncIterator[str]:
    """Another API process on the same database; yields its base URL."""
    port = free_port()
    cmd = api_command(port)
    proc = stack._spawn("api-second", [*cmd, "--log-level", "warning"], env=stack.env)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/healthz")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def on(base: str, url: str) -> str:
    """The same OCPI URL on another API process."""
    return base + "/" + url.split("/", 3)[3]


async def test_revoked_token_is_refused_by_the_other_api_process_at_once(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer, stack: Stack, second_api: str
):
    cpo = await new_cpo(client, party_id="RVK")
    token_c = ok((await register(http, cpo, peer))[0])["token"]
    locations = cpo["ocpi_peer_url"].removesuffix("/versions") + "/2.2.1/locations"
    with_c = OcpiClient(http, token_c)
    # Both processes serve the token (and have the page cached) before it is revoked.
    for url in (locations, on(second_api, locations)):
        assert (await with_c.request("GET", url)).status_code == 200
        assert (await with_c.request("GET", url)).status_code == 200

    # Rotated through the stack's API: the second process refuses the old token on the next request.
    resp = await with_c.request("PUT", credentials_url(cpo), json=peer.credentials(peer.new_token()))
    token_c2 = ok(resp)["token"]
    err(await with_c.request("GET", on(second_api, locations)), 401)
    err(await with_c.request("GET", on(second_api, credentials_url(cpo))), 401)
    with_c2 = OcpiClient(http, token_c2)
    assert (await with_c2.request("GET", on(second_api, locations))).status_code == 200

    # Unregistered through the second process: the stack's API refuses it on the next request.
    assert ok(await with_c2.request("DELETE", on(second_api, credentials_url(cpo)))) is None
    err(await with_c2.request("GET", locations), 401)
    err(await with_c2.request("GET", credentials_url(cpo)), 401)

    # Torn down (tokens revoked with the rest): no platform on either process.
    cpo2 = await new_cpo(client, party_id="RVT")
    token = ok((await register(http, cpo2, peer))[0])["token"]
    locations2 = cpo2["ocpi_peer_url"].removesuffix("/versions") + "/2.2.1/locations"
    assert (await OcpiClient(http, token).request("GET", on(second_api, locations2))).status_code == 200
    assert (await client.delete(f"/ocpi/cpos/{cpo2['cpo_id']}")).status_code in (200, 202)
    await wait_status(client, cpo2["cpo_id"], {"DESTROYED"}, timeout=60)
    for url in (locations2, on(second_api, locations2)):
        err(await OcpiClient(http, token).request("GET", url), 404)
