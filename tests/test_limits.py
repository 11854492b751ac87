"""Inbound limits against a real API process on loopback: body cap (413), JSON nesting (422 / OCPI
2001), traffic log only for authenticated requests (the rest counted) with its retention.

The API runs without Temporal (it connects lazily) and its CPOs are rows written straight into its
SQLite database: none of this needs a workflow, and it keeps the module fast.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from app.ocpi import log as traffic
from app.security.tokens import hash_token, new_token
from app.store.db import Database, utcnow
from app.store.ocpi_tables import OcpiLogRow
from app.store.tables import CredentialToken
from app.web.limits import json_too_deep
from tests.databases import DatabaseFactory
from tests.emsp_peer import b64
from tests.rows import cpo_row
from tests.stack import Stack

MAX_BODY = 1024 * 1024  # the default: the API below runs with it
MAX_DEPTH = 32
MAX_ROWS = 20
MAX_AGE = 4


@dataclass
class Api:
    stack: Stack
    db: Database

    @property
    def port(self) -> int:
        return self.stack.api_port

    async def new_cpo(self, org: str = "acme") -> tuple[int, str]:
        """A READY CPO row with a live Token A; returns (cpo_id, token A)."""
        token, now = new_token(), utcnow()
        async with self.db.session() as session, session.begin():
            cpo = cpo_row(org, "LIM", "READY", name_prefix="Limits", template="city-small", chargers=6)
            session.add(cpo)
            await session.flush()
            assert cpo.id is not None
            session.add(CredentialToken(cpo_id=cpo.id, token_hash=hash_token(token), kind="A", created_at=now))
        return cpo.id, token

    def physical_rows(self, cpo_id: int) -> int:
        return self.stack.count("ocpi_log", cpo_id)


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, databases: DatabaseFactory) -> AsyncIterator[Api]:
    stack = Stack(Path(tmp_path_factory.mktemp("limits")), database=databases.new("limits"))
    env = {
        **stack.env,
        "CPOLAB_TRAFFIC_LOG_MAX_ROWS": str(MAX_ROWS),
        "CPOLAB_TRAFFIC_LOG_MAX_AGE": str(MAX_AGE),
    }
    db = None
    try:
        await stack.start_api(env=env)
        db = Database(stack.database_url)
        yield Api(stack, db)
    finally:
        if db is not None:
            await db.dispose()
        stack.stop()


async def raw_exchange(port: int, head: str, body_parts: list[bytes]) -> tuple[int, dict[str, str], bytes, float]:
    """Send a request head and some body bytes (not necessarily all the declared ones), then read the
    answer. Returns status, headers, body and the seconds from the last byte sent to the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        for part in body_parts:
            writer.write(part)
        await writer.drain()
        sent = time.perf_counter()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        elapsed = time.perf_counter() - sent
        headers = {}
        while (line := (await reader.readline()).strip()) != b"":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, body, elapsed
    finally:
        writer.close()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ---- body cap -----------------------------------------------------------------------------------------


async def test_25mb_body_is_refused_at_once_on_the_control_plane(api: Api):
    head = (
        f"POST /ocpi/cpos HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer {api.stack.token()}\n"
        f"Content-Type: application/json\nContent-Length: {25 * 1024 * 1024}\n"
    )
    status, headers, body, elapsed = await raw_exchange(api.port, head, [b"{" + b" " * 65535])
    print(f"25 MB declared body (control plane): 413 after {elapsed * 1000:.1f} ms")
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"detail": f"request body is larger than {MAX_BODY} bytes"}
    assert elapsed < 1.0  # the bound is 100 ms; this box is shared and noisy


async def test_25mb_body_is_refused_with_an_envelope_under_ocpi(api: Api):
    cpo_id, token = await api.new_cpo()
    head = (
        f"POST /ocpi/peer/{cpo_id}/2.2.1/credentials HTTP/1.1\nHost: 127.0.0.1\n"
        f"Authorization: Token {b64(token)}\nContent-Length: {25 * 1024 * 1024}\n"
    )
    status, _, body, elapsed = await raw_exchange(api.port, head, [b"{"])
    print(f"25 MB declared body (OCPI): 413 after {elapsed * 1000:.1f} ms")
    assert status == 413
    envelope = json.loads(body)
    assert envelope["status_code"] == 2000
    assert envelope["status_message"] == f"request body is larger than {MAX_BODY} bytes"
    assert elapsed < 1.0


async def test_chunked_body_is_cut_off_at_the_cap_without_waiting_for_the_rest(api: Api):
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    head = "PUT /ocpi/cpos/1 HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n"
    # 17 × 64 KiB = just over 1 MiB, and no final chunk: the server must answer on the count alone.
    status, _, body, elapsed = await raw_exchange(api.port, head, [framed] * 17)
    print(f"chunked body past the cap: 413 after {elapsed * 1000:.1f} ms")
    assert status == 413
    assert json.loads(body)["detail"] == f"request body is larger than {MAX_BODY} bytes"
    assert elapsed < 1.0


async def test_25mb_upload_from_an_ordinary_client_gets_the_413(api: Api):
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as http:
        try:
            resp = await http.post(
                f"{api.stack.api_url}/ocpi/cpos", content=b" " * (25 * 1024 * 1024), headers=api.stack.headers()
            )
        except httpx.TransportError as exc:  # the server may close before the client finished writing
            pytest.fail(f"no 413 but {exc!r}")
    print(f"25 MB upload through httpx: {resp.status_code} after {(time.perf_counter() - started) * 1000:.0f} ms")
    assert resp.status_code == 413


async def test_bodies_under_the_cap_reach_the_handler_chunked_or_not(api: Api):
    body = json.dumps({"template": "no-such-template", "country_code": "DE", "party_id": "ABC", "name_prefix": "x"})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 7):
            yield body[i : i + 7].encode()

    async with api.stack.client() as control:
        for content in (body.encode(), chunks()):
            resp = await control.post("/ocpi/cpos", content=content, headers={"Content-Type": "application/json"})
            assert resp.status_code == 404, resp.text  # parsed by the handler: unknown template
            assert resp.json()["template"] == "no-such-template"
        # Exactly at the cap is allowed (and then refused by the handler as bad JSON, not as too big).
        resp = await control.post("/ocpi/cpos", content=b" " * (MAX_BODY - 2) + b"{}")
        assert resp.status_code == 422, resp.text


# ---- JSON nesting ---------------------------------------------------------------------------------------


def test_json_depth_scan_counts_only_structure():
    assert not json_too_deep(nested(32).encode(), 32)
    assert json_too_deep(nested(33).encode(), 32)
    assert json_too_deep(b'{"a":' * 40 + b"1" + b"}" * 40, 32)
    # Brackets inside strings (escaped quotes included) are data.
    assert not json_too_deep(json.dumps({"s": "[" * 100 + '"\\' + "{" * 100}).encode(), 32)
    assert not json_too_deep(json.dumps([[1, 2]] * 10_000).encode(), 32)  # wide, not deep
    assert json_too_deep(nested(100_000).encode(), 32)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
async def test_deep_control_plane_body_is_a_422(api: Api, depth: int):
    body = '{"template":' + nested(depth - 1) + "}"
    async with api.stack.client() as control:
        for method, path in (("POST", "/ocpi/cpos"), ("PATCH", "/ocpi/cpos/1")):
            resp = await control.request(method, path, content=body, headers={"Content-Type": "application/json"})
            assert resp.status_code == 422, resp.text
            assert resp.json() == {
                "detail": [
                    {
                        "loc": ["body"],
                        "msg": f"request body nests JSON arrays/objects deeper than {MAX_DEPTH} levels",
                        "type": "json_too_deep",
                    }
                ]
            }


async def test_nesting_at_the_limit_and_brackets_in_strings_pass_the_control_plane(api: Api):
    async with api.stack.client() as control:
        resp = await control.post("/ocpi/cpos", content='{"template":' + nested(MAX_DEPTH - 1) + "}")
        assert resp.status_code == 422
        assert all(i["type"] != "json_too_deep" for i in resp.json()["detail"])
        resp = await control.post(
            "/ocpi/cpos",
            json={"template": "[" * 50, "country_code": "DE", "party_id": "ABC", "name_prefix": "{" * 50},
        )
        assert resp.status_code == 404  # unknown template: the body got through


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
async def test_deep_ocpi_body_is_an_ocpi_2001(api: Api, http: httpx.AsyncClient, depth: int):
    cpo_id, token = await api.new_cpo()
    resp = await http.post(
        f"{api.stack.api_url}/ocpi/peer/{cpo_id}/2.2.1/credentials",
        content='{"token":' + nested(depth - 1) + "}",
        headers={"Authorization": f"Token {b64(token)}", "Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["status_code"] == 2001
    assert resp.json()["status_message"] == f"request body nests JSON arrays/objects deeper than {MAX_DEPTH} levels"


# ---- traffic log -----------------------------------------------------------------------------------------


async def ocpi_log(api: Api, cpo_id: int, **params: int) -> dict:
    async with api.stack.client() as control:
        resp = await control.get(f"/ocpi/cpos/{cpo_id}/ocpi-log", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_unauthenticated_requests_are_counted_not_logged(api: Api, http: httpx.AsyncClient):
    cpo_id, token = await api.new_cpo()
    _, other_token = await api.new_cpo()  # a valid token, but of another CPO
    url = f"{api.stack.api_url}/ocpi/peer/{cpo_id}/versions"
    bad_auth = [{}, {"Authorization": "Token bm9wZQ=="}, {"Authorization": f"Token {b64(other_token)}"}]

    # A connection each (no keep-alive): a pooled one the server closes as it idles could drop a
    # request in flight, and every one of the 200 must be counted exactly once.
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as attacker:

        async def attack(i: int) -> int:
            headers = {**bad_auth[i % 3], "X-Request-ID": f"attacker-{i}", "X-Correlation-ID": "x" * 5000}
            return (await attacker.get(url, headers=headers)).status_code

        for start in range(0, 200, 50):
            assert set(await asyncio.gather(*(attack(i) for i in range(start, start + 50)))) == {401}
    page = await ocpi_log(api, cpo_id)
    assert page["total"] == 0 and page["data"] == []
    assert page["rejected_unauthenticated"] == 200
    assert page["rejected_last_at"] is not None
    assert api.physical_rows(cpo_id) == 0

    # An authenticated request is logged, its ids stored as bounded printable data.
    resp = await http.get(
        url, headers={"Authorization": f"Token {b64(token)}", "X-Request-ID": "r" * 1000, "X-Correlation-ID": "a\tb"}
    )
    assert resp.status_code == 200
    page = await ocpi_log(api, cpo_id)
    assert page["total"] == 1 and page["rejected_unauthenticated"] == 200
    entry = page["data"][0]
    assert entry["request_id"] == "r" * 255
    assert entry["correlation_id"] != "a\tb" and entry["correlation_id"].isprintable()


async def test_traffic_log_keeps_at_most_max_rows_and_max_age(api: Api, http: httpx.AsyncClient):
    cpo_id, token = await api.new_cpo()
    url = f"{api.stack.api_url}/ocpi/peer/{cpo_id}/versions"
    for i in range(50):
        resp = await http.get(url, headers={"Authorization": f"Token {b64(token)}", "X-Request-ID": f"req-{i}"})
        assert resp.status_code == 200
    page = await ocpi_log(api, cpo_id, limit=100)
    assert page["total"] == MAX_ROWS
    assert [e["request_id"] for e in page["data"]] == [f"req-{i}" for i in range(49, 49 - MAX_ROWS, -1)]
    assert (await ocpi_log(api, cpo_id, page=3, limit=10))["data"] == []
    # The flush pruned the table itself too (it may lag by at most max_rows / 10 rows).
    assert MAX_ROWS <= api.physical_rows(cpo_id) <= MAX_ROWS + MAX_ROWS // 10

    await asyncio.sleep(MAX_AGE + 0.5)
    page = await ocpi_log(api, cpo_id)
    assert page["total"] == 0 and page["data"] == []


async def test_flush_prunes_rows_past_the_age_and_the_count(databases: DatabaseFactory):
    async with databases.opened("log") as db:
        writer = traffic._Writer(db, traffic.Retention(max_rows=5, max_age_s=60))
        now = utcnow()
        for i in range(3):  # too old
            writer.add(_entry(7, now - timedelta(seconds=120 + i), f"old-{i}"))
        for i in range(8):
            writer.add(_entry(7, now - timedelta(seconds=10 - i), f"new-{i}"))
        writer.add(_entry(8, now - timedelta(seconds=120), "other-cpo-old"))
        await writer.flush()
        async with db.session() as session:
            rows = (await session.execute(OcpiLogRow.__table__.select())).all()  # type: ignore[attr-defined]
        kept = sorted(r.request_id for r in rows if r.cpo_id == 7)
        assert kept == [f"new-{i}" for i in range(3, 8)]
        assert [r.request_id for r in rows if r.cpo_id == 8] == []


def _entry(cpo_id: int, at: object, request_id: str) -> dict[str, object]:
    return {
        "cpo_id": cpo_id,
        "timestamp": at,
        "direction": "in",
        "method": "GET",
        "url": "http://x/",
        "http_status": 200,
        "ocpi_status_code": 1000,
        "duration_ms": 1.0,
        "request_id": request_id,
        "correlation_id": None,
        "error": None,
    }


async def test_one_flush_prunes_a_bounded_number_of_cpos_and_the_next_one_the_rest(databases: DatabaseFactory):
    async with databases.opened("log") as db:
        writer = traffic._Writer(db, traffic.Retention(max_rows=1, max_age_s=3600))
        cpos = range(1, traffic.MAX_PRUNES_PER_FLUSH + 6)
        now = utcnow()
        for cpo_id in cpos:
            writer.add(_entry(cpo_id, now - timedelta(seconds=2), "older"))
            writer.add(_entry(cpo_id, now - timedelta(seconds=1), "newer"))
        await writer.flush()

        async def kept() -> dict[int, int]:
            async with db.session() as session:
                rows = (await session.execute(OcpiLogRow.__table__.select())).all()  # type: ignore[attr-defined]
            return {c: sum(1 for r in rows if r.cpo_id == c) for c in cpos}

        assert sorted((await kept()).values()) == [1] * traffic.MAX_PRUNES_PER_FLUSH + [2] * 5
        writer.add(_entry(99, now, "any"))
        await writer.flush()
        assert set((await kept()).values()) == {1}
