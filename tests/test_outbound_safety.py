"""The outbound OCPI client against hostile peers: egress policy, deadline, size caps, cookies,
redirects, sanitized errors, per-CPO concurrency. Real servers on loopback, real stack where the
behaviour is the handshake's; the client itself is driven with explicit Settings where the test
needs limits other than the stack's (a strict egress policy, a 1 s deadline)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import subprocess
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.ocpi import client
from app.ocpi import log as traffic
from app.ocpi.egress import EgressPolicy, is_own_address
from app.settings import Settings
from app.store.db import Database
from app.store.ocpi_tables import OcpiLogRow
from tests.databases import DatabaseFactory
from tests.emsp_peer import EmspPeer, OcpiClient, credentials_url, err, new_cpo, ok, register
from tests.hostile_peer import HostilePeer, gzip_bomb
from tests.stack import Stack, wait_status

# Loopback allowed (the peers are on loopback), short deadline: the limits, not the policy, under test.
LOOSE = Settings(egress_allow_loopback=True, outbound_timeout=1.0, outbound_max_body=1 << 20)
STRICT = Settings(egress_allow_loopback=False, egress_allow_private=False, outbound_timeout=1.0)


@pytest.fixture(scope="module")
async def hostile() -> AsyncIterator[HostilePeer]:
    peer = await HostilePeer().start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(scope="module")
async def db(databases: DatabaseFactory) -> AsyncIterator[Database]:
    async with databases.opened("outbound") as database:
        yield database


async def get(db: Database, url: str, settings: Settings = LOOSE, cpo_id: int = 1) -> client.CallResult:
    return await client.call(
        db, cpo_id=cpo_id, method="GET", url=url, token="B-token", version="2.2.1", module="versions", settings=settings
    )


# ---- egress policy ------------------------------------------------------------------------------------


def test_egress_policy_classifies_addresses():
    strict, private_ok, loopback_ok = (
        EgressPolicy(STRICT),
        EgressPolicy(Settings(egress_allow_private=True, egress_allow_loopback=False)),
        EgressPolicy(LOOSE),
    )
    refused_always = {
        "0.0.0.0": "unspecified",
        "::": "unspecified",
        "169.254.169.254": "link-local",  # cloud metadata
        "fe80::1": "link-local",
        "224.0.0.1": "multicast",
        "ff02::1": "multicast",
        "240.0.0.1": "reserved",
        "192.0.2.10": "reserved",
        "198.18.0.1": "reserved",
    }
    for address, why in refused_always.items():
        for policy in (strict, private_ok, loopback_ok):
            assert why in (policy.refusal(address) or ""), (address, policy.refusal(address))
    for address in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd00::1", "::ffff:10.0.0.1"):
        assert "private" in (strict.refusal(address) or ""), address
        assert private_ok.refusal(address) is None, address
        assert "private" in (loopback_ok.refusal(address) or ""), address
    for address in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"):
        assert "loopback" in (strict.refusal(address) or ""), address
        assert "loopback" in (private_ok.refusal(address) or ""), address
        assert loopback_ok.refusal(address) is None, address
    for address in ("8.8.8.8", "2001:4860:4860::8888"):  # public: allowed by every policy
        assert strict.refusal(address) is None and private_ok.refusal(address) is None


def _own_non_loopback_address() -> str | None:
    """The address this machine would use to reach the internet (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def test_own_addresses_count_as_loopback():
    address = _own_non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    assert is_own_address(ipaddress.ip_address(address))
    assert not is_own_address(ipaddress.ip_address("192.0.2.77"))
    # The platform's own address is refused even where its range is allowed, unless loopback is.
    everything_but_loopback = EgressPolicy(Settings(egress_allow_private=True, egress_allow_loopback=False))
    assert "this platform" in (everything_but_loopback.refusal(address) or "")
    assert EgressPolicy(Settings(egress_allow_private=True, egress_allow_loopback=True)).refusal(address) is None


async def test_strict_policy_refuses_loopback_before_connecting(hostile: HostilePeer, db: Database):
    before = hostile.connections
    urls = [
        hostile.url("ok"),
        f"http://localhost:{hostile.port}/ok/versions",  # resolved first, then refused
        f"http://[::1]:{hostile.port}/ok/versions",
        f"http://127.1:{hostile.port}/ok/versions",
        f"http://[::ffff:127.0.0.1]:{hostile.port}/ok/versions",
    ]
    for url in urls:
        result = await get(db, url, STRICT)
        assert not result.ok and result.http_status is None
        assert result.error and result.error.startswith("refused by the egress policy"), (url, result.error)
        assert "loopback" in result.error
    assert hostile.connections == before  # nothing was even connected
    assert (await get(db, hostile.url("ok"), LOOSE)).ok  # the same peer with the allowance on


async def test_the_platforms_public_host_is_refused_by_name(hostile: HostilePeer, db: Database):
    own = Settings(egress_allow_loopback=False, egress_allow_private=True, public_base_url="http://LocalHost:8000")
    result = await get(db, f"http://localhost:{hostile.port}/ok/versions", own)
    assert result.error == "refused by the egress policy: localhost is this platform's public host", result.error


async def test_only_http_urls_without_userinfo_and_never_logged_in_clear(hostile: HostilePeer, db: Database):
    before = hostile.connections
    refused = {
        "ftp://127.0.0.1/versions": "only http and https",
        "file:///etc/passwd": "only http and https",
        f"http://user:s3cr3t@127.0.0.1:{hostile.port}/ok/versions": "must not contain credentials",
        f"http://:s3cr3t@127.0.0.1:{hostile.port}/ok/versions": "must not contain credentials",
        "http:///versions": "no host",
    }
    for url, fragment in refused.items():
        result = await get(db, url, LOOSE, cpo_id=42)
        assert result.error and result.error.startswith("URL refused") and fragment in result.error, result.error
    assert hostile.connections == before
    await traffic.flush(db)
    async with db.session() as session:
        rows = (await session.execute(select(OcpiLogRow).where(OcpiLogRow.cpo_id == 42))).scalars().all()
    assert len(rows) == len(refused)
    assert all("s3cr3t" not in row.url and "s3cr3t" not in (row.error or "") for row in rows)
    assert any(row.url == f"http://127.0.0.1:{hostile.port}/ok/versions" for row in rows)


# ---- deadline, size, decoding --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["drip-body", "drip-head"])
async def test_a_dripping_peer_fails_at_the_overall_deadline(hostile: HostilePeer, db: Database, profile: str):
    # Each byte arrives well within any per-read timeout; only an overall deadline stops this.
    started = time.monotonic()
    result = await get(db, hostile.url(profile))
    elapsed = time.monotonic() - started
    assert result.error and result.error.startswith("timeout: no complete answer within 1 s"), result.error
    assert 0.9 <= elapsed < 1.8, elapsed


async def test_gzip_bomb_stops_at_the_cap_with_bounded_memory(hostile: HostilePeer, db: Database):
    await get(db, hostile.url("ok"))  # warm the client and the bomb up so only the call is measured
    gzip_bomb()
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = await get(db, hostile.url("gzip-bomb"))
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error == "response too large: the body exceeds 1048576 bytes (after decompression)"
    assert elapsed < 2.0, elapsed
    assert peak < 16 << 20, f"peak {peak / 1e6:.1f} MB"  # 512 MiB if it had been inflated


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_compressed_answers_are_decoded(hostile: HostilePeer, db: Database, coding: str):
    result = await get(db, hostile.url(coding))
    assert result.ok and result.data == [{"version": "2.2.1", "url": hostile.url("ok", "2.2.1")}], result


@pytest.mark.parametrize(
    ("profile", "fragment"),
    [
        ("huge", "response too large: the body exceeds 1048576 bytes"),
        ("nested", "response is not an OCPI envelope (JSON nested deeper than 32 levels)"),
        ("deep", "response is not an OCPI envelope (JSON nested deeper than 32 levels)"),
        ("redirect", "HTTP 302: the peer redirected; redirects are not followed"),
        ("brotli", "unsupported Content-Encoding 'br' (gzip and deflate are accepted)"),
        ("badgzip", "the response body is not valid compressed data"),
        ("empty", "response is not an OCPI envelope (empty body)"),
        ("nostatus", "response is not an OCPI envelope (no integer status_code)"),
    ],
)
async def test_oversized_nested_and_redirecting_peers(hostile: HostilePeer, db: Database, profile: str, fragment: str):
    result = await get(db, hostile.url(profile))
    assert result.error and result.error.startswith(fragment), result.error
    assert "/redirect-target" not in hostile.paths()


async def test_errors_say_what_failed_without_echoing_the_peer(hostile: HostilePeer, db: Database):
    result = await get(db, hostile.url("internal"))
    assert result.error == "HTTP 500 (server error)"  # what answered (an HTML page) is not repeated
    result = await get(db, hostile.url("chatty"))
    # The peer's own status_message is quoted, but control characters go and it is cut short.
    assert result.error and result.error.startswith("HTTP 502 (server error): [31mboom [31mboom")
    assert len(result.error) <= 230 and result.error.isprintable() and result.error.endswith("…"), result.error
    result = await get(db, f"http://127.0.0.1:{_closed_port()}/versions")
    assert result.error and result.error.startswith("could not connect"), result.error
    result = await get(db, "http://no-such-host.invalid/versions")
    assert result.error and result.error.startswith("could not connect: cannot resolve no-such-host.invalid")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_cookies_are_never_stored_nor_sent_to_anyone(hostile: HostilePeer, db: Database):
    other = await HostilePeer().start()  # tenant B's eMSP
    try:
        for _ in range(3):  # tenant A's peer sets a session cookie and a flood of others
            result = await get(db, hostile.url("cookie"), cpo_id=1)
            assert result.ok and result.headers is not None and "tenant-a-secret" in result.headers["set-cookie"]
        assert (await get(db, other.url("ok"), cpo_id=2)).ok
        assert (await get(db, hostile.url("ok"), cpo_id=1)).ok
        sent = [s for s in hostile.seen if s.path.startswith(("/cookie", "/ok"))] + other.seen
        assert sent and all("cookie" not in s.headers for s in sent)
    finally:
        await other.stop()


async def test_per_cpo_slots_keep_other_cpos_fast(db: Database):
    slow = await HostilePeer(drip_interval=0.2).start()
    settings = Settings(egress_allow_loopback=True, outbound_timeout=1.5, outbound_per_cpo=2)
    try:
        flood = [asyncio.create_task(get(db, slow.url("drip-body"), settings, cpo_id=7)) for _ in range(8)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        assert (await get(db, slow.url("ok"), settings, cpo_id=8)).ok  # another CPO is not queued
        assert time.monotonic() - started < 0.5
        results = await asyncio.gather(*flood)
        assert slow.max_open <= 2 + 1  # CPO 7's two slots (+ CPO 8's quick call)
        errors = sorted(r.error or "" for r in results)
        assert all(e.startswith("timeout: no complete answer within 1.5 s") for e in errors), errors
        # Those that never got a slot say so (some slip into a slot freed just before their own deadline).
        assert any("free outbound slot (this CPO already has 2 calls in flight)" in e for e in errors), errors
    finally:
        await slow.stop()


async def test_https_keeps_sni_and_certificate_checks_when_pinned(db: Database, tmp_path: Path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    tls = await HostilePeer(ssl_context=server_ctx).start()
    try:
        result = await get(db, f"https://localhost:{tls.port}/ok/versions")
    finally:
        await tls.stop()
    # Connected to the vetted IP, yet the TLS handshake named the URL's host and verified the
    # certificate (self-signed here, so the verification is what fails).
    assert names == ["localhost"]
    assert result.error and "could not connect" in result.error and "CERTIFICATE_VERIFY_FAILED" in result.error


# ---- through the real stack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def stack_peer() -> AsyncIterator[HostilePeer]:
    peer = await HostilePeer(drip_interval=3.0).start()  # the reported 1 byte / 3 s
    try:
        yield peer
    finally:
        await peer.stop()


def _body(url: str) -> dict[str, object]:
    role = {"role": "EMSP", "business_details": {"name": "x"}, "party_id": "EMS", "country_code": "NL"}
    return {"token": "B-hostile", "url": url, "roles": [role]}


async def test_handshake_against_hostile_peers_is_a_clean_ocpi_error(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer, stack_peer: HostilePeer, stack: Stack
):
    cpo = await new_cpo(client, party_id="HOS")
    with_a = OcpiClient(http, cpo["token_a"])
    cases = {
        "gzip-bomb": (3001, "response too large"),
        "huge": (3001, "response too large"),
        "nested": (3001, "nested deeper than 32 levels"),
        "deep": (3001, "nested deeper than 32 levels"),
        "redirect": (3001, "redirects are not followed"),
        "internal": (3001, "HTTP 500 (server error)"),
        "userinfo": (2001, "must not contain credentials"),
        "badendpoint": (2001, "endpoint 'locations' is refused: URL must not contain credentials"),
    }
    for profile, (code, fragment) in cases.items():
        started = time.monotonic()
        resp = await with_a.request("POST", credentials_url(cpo), json=_body(stack_peer.url(profile)))
        body = err(resp, 200, code)
        assert fragment in body["status_message"], (profile, body)
        assert "Temporal" not in body["status_message"]
        assert time.monotonic() - started < 3, profile
    # userinfo in the body's own URL: refused before any call, and never stored nor logged.
    before = stack_peer.connections
    secret_url = stack_peer.url("ok").replace("://", "://user:s3cr3t@")
    body = err(await with_a.request("POST", credentials_url(cpo), json=_body(secret_url)), 200, 2001)
    assert "must not contain credentials" in body["status_message"] and "s3cr3t" not in body["status_message"]
    assert stack_peer.connections == before
    assert "/redirect-target" not in stack_peer.paths()
    # Nothing was registered; Token A still registers a well-behaved peer.
    assert stack.count("ocpi_peer", int(cpo["cpo_id"])) == 0
    ok((await register(http, cpo, peer))[0])
    log = (await client.get(f"/ocpi/cpos/{cpo['cpo_id']}/ocpi-log", params={"limit": 100})).json()["data"]
    assert log and not any("s3cr3t" in (e["url"] + (e["error"] or "")) for e in log)
    assert not any("Temporal" in (e["error"] or "") for e in log)


async def test_command_response_url_with_userinfo_is_2001(
    client: httpx.AsyncClient, http: httpx.AsyncClient, peer: EmspPeer
):
    cpo = await new_cpo(client, party_id="CMU")
    token_c = ok((await register(http, cpo, peer))[0])["token"]
    url = credentials_url(cpo).removesuffix("/credentials") + "/commands/START_SESSION"
    body = {
        "response_url": peer.response_url().replace("://", "://user:s3cr3t@"),
        "token": {"uid": "T1", "type": "RFID"},
        "location_id": "LOC1",
    }
    resp = err(await OcpiClient(http, token_c).request("POST", url, json=body), 200, 2001)
    assert "must not contain credentials" in resp["status_message"] and "s3cr3t" not in resp["status_message"]


async def test_one_tenant_with_dripping_peers_cannot_starve_another(
    stack: Stack, peer: EmspPeer, stack_peer: HostilePeer
):
    """110 registrations of tenant A whose callbacks drip (the reported pool exhaustion) while
    tenant B registers: B's handshake is fast, A's calls get slots of their own CPO only."""
    async with stack.client(org="tenant-a") as a, stack.client(org="tenant-b") as b:
        cpo_a, cpo_b = await new_cpo(a, party_id="STA"), await new_cpo(b, party_id="STB")
        # Both networks first, so their chargers' boots (status writes, Location bumps) are not part of
        # what is measured.
        await wait_status(a, cpo_a["cpo_id"], {"READY"}, timeout=120)
        await wait_status(b, cpo_b["cpo_id"], {"READY"}, timeout=120)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        with_a = OcpiClient(http, cpo_a["token_a"])
        drip = stack_peer.url("drip-body")
        before = stack_peer.connections
        flood_started = time.monotonic()
        flood = [
            asyncio.create_task(with_a.request("POST", credentials_url(cpo_a), json=_body(drip))) for _ in range(110)
        ]
        while stack_peer.open < 4 and time.monotonic() < flood_started + 4:  # noqa: ASYNC110 — another server
            await asyncio.sleep(0.05)
        resp, _ = await register(http, cpo_b, peer)
        ok(resp)
        # B never waited for A: its handshake ended before the first of A's calls could give back a
        # slot or a pooled connection (each holds one until its 5 s deadline, counted from when the API
        # began it, after `flood_started`). Alone it takes ~0.1 s; fresh-clone CI on Postgres saw 3.6 s.
        assert time.monotonic() < flood_started + 5.0
        # Until the first deadline (5 s), tenant A's 110 callbacks hold exactly its CPO's 4 slots.
        await asyncio.sleep(max(0.0, flood_started + 4.5 - time.monotonic()))
        assert stack_peer.connections - before == 4 and stack_peer.open == 4
        responses = await asyncio.gather(*flood)
        # Each ends at its own 5 s deadline; the API takes a moment to start 110 requests on a busy box.
        assert time.monotonic() - flood_started < 15
    messages = [err(r, 200, 3001)["status_message"] for r in responses]
    assert all("timeout: no complete answer within 5 s" in m for m in messages), messages[:3]
