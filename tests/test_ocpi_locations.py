"""OCPI Locations and Tariffs sender modules over real HTTP against a running stack.

Pagination on a 1,000+ location CPO (walked through `Link`), date windows with real timestamps,
every object checked against independent schemas (tests/ocpi_schemas.py), single-object GETs,
errors, the 2.1.1 rendering, and the parent `last_updated` bump of `set_evse_status`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.ocpi.locations import bump_location, set_evse_status
from app.store.db import Database
from tests import ocpi_schemas
from tests.emsp_peer import EmspPeer
from tests.ocpi_locations_support import create_big_cpo, create_cpo, handshake, next_link, token_header, walk
from tests.stack import Stack

ORG = "loc-tests"
MAX_LIMIT = 100
BIG = 1_000
DATETIME_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class Peer:
    """What an eMSP holds after registering with one CPO: its OCPI version URL and Token C."""

    def __init__(self, created: dict[str, Any], base: str, headers: dict[str, str]) -> None:
        self.cpo_id = int(created["cpo_id"])
        self.created = created
        self.base = base
        self.headers = headers


@pytest.fixture(scope="module")
async def emsp() -> AsyncIterator[EmspPeer]:
    peer = await EmspPeer(party_id="LOC").start()
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture(scope="module")
async def cp(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client(org=ORG) as c:
        yield c


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
async def register(stack: Stack, http: httpx.AsyncClient, emsp: EmspPeer) -> Callable[..., Awaitable[Peer]]:
    async def _register(created: dict[str, Any], version: str = "2.2.1") -> Peer:
        return Peer(created, *await handshake(stack, http, created, emsp, version))

    return _register


@pytest.fixture(scope="module")
async def big(stack: Stack, cp: httpx.AsyncClient, register: Callable[..., Awaitable[Peer]]) -> AsyncIterator[Peer]:
    # 2,000 live chargers (more EVSEs than locations); deleted after the module so that the shared
    # stack's later tests do not run beside them.
    created = await create_big_cpo(cp, locations=BIG, party_id="BIG", chargers_per_location=2)
    yield await register(created)
    await cp.delete(f"/ocpi/cpos/{created['cpo_id']}")


@pytest.fixture(scope="module")
async def win(cp: httpx.AsyncClient, register: Callable[..., Awaitable[Peer]]) -> Peer:
    body = {
        "template": "city-mixed-large",
        "country_code": "DE",
        "party_id": "WIN",
        "name_prefix": "Window",
        "seed": 4,
        "overrides": {"locations": 4, "chargers_per_location": 1},
    }
    return await register(await create_cpo(cp, body))


@pytest.fixture(scope="module")
async def small(cp: httpx.AsyncClient, register: Callable[..., Awaitable[Peer]]) -> Peer:
    body = {
        "template": "city-mixed-large",
        "country_code": "DE",
        "party_id": "SML",
        "name_prefix": "Small",
        "seed": 3,
        "overrides": {"locations": 4, "chargers_per_location": 6},
    }
    return await register(await create_cpo(cp, body))


def _ids(resp: httpx.Response) -> list[str]:
    return [loc["id"] for loc in resp.json()["data"]]


def _query(link_url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(link_url).query)


def _check_envelope(resp: httpx.Response, status_code: int = 1000) -> dict[str, Any]:
    body = resp.json()
    assert not ocpi_schemas.errors("any", "envelope", body), body
    assert body["status_code"] == status_code, body
    return body


# ---- pagination -----------------------------------------------------------------------------------


async def test_walk_all_pages_via_link(big: Peer, http: httpx.AsyncClient, stack: Stack) -> None:
    pages = await walk(http, f"{big.base}/locations?limit=37", big.headers)
    assert len(pages) == -(-BIG // 37)
    seen: list[str] = []
    for i, page in enumerate(pages):
        _check_envelope(page)
        assert page.headers["x-total-count"] == str(BIG)
        assert page.headers["x-limit"] == str(MAX_LIMIT)  # the server max, even on the short last page
        assert len(page.json()["data"]) == (37 if i < len(pages) - 1 else BIG - 37 * (len(pages) - 1))
        link = page.headers.get("link")
        if i < len(pages) - 1:
            target = link[1 : link.index(">")]
            assert target.startswith(f"{big.base}/locations?")
            assert _query(target) == {"offset": [str(37 * (i + 1))], "limit": ["37"]}
        else:
            assert link is None
        seen += _ids(page)
    # No duplicates, no gaps, generation order.
    assert seen == [f"LOC{i:05d}" for i in range(1, BIG + 1)]
    assert stack.count("location", big.cpo_id) == BIG


async def test_every_object_matches_the_spec_schema(big: Peer, small: Peer, http: httpx.AsyncClient) -> None:
    tariffs = (await http.get(f"{big.base}/tariffs", headers=big.headers)).json()["data"]
    tariff_ids = {t["id"] for t in tariffs}
    assert tariff_ids
    counts = {"evses": 0, "connectors": 0}
    uids: set[str] = set()
    standards, power_types = set(), set()
    for page in await walk(http, f"{big.base}/locations", big.headers):
        for loc in page.json()["data"]:
            ocpi_schemas.assert_valid("2.2.1", "location", loc)
            assert loc["country_code"] == "NL" and loc["party_id"] == "BIG" and loc["country"] == "NLD"
            assert loc["evses"], loc["id"]
            for evse in loc["evses"]:
                counts["evses"] += 1
                uids.add(evse["uid"])
                assert evse["evse_id"].startswith("NL*BIG*E")
                assert evse["last_updated"] <= loc["last_updated"]
                for conn in evse["connectors"]:
                    counts["connectors"] += 1
                    standards.add(conn["standard"])
                    power_types.add(conn["power_type"])
                    assert conn["tariff_ids"] and set(conn["tariff_ids"]) <= tariff_ids
    assert len(uids) == counts["evses"] > BIG and counts["connectors"] >= counts["evses"]
    # The big network's two chargers per location are AC; the small one's six include DC.
    for page in await walk(http, f"{small.base}/locations", small.headers):
        for loc in page.json()["data"]:
            ocpi_schemas.assert_valid("2.2.1", "location", loc)
            connectors = [conn for evse in loc["evses"] for conn in evse["connectors"]]
            standards |= {conn["standard"] for conn in connectors}
            power_types |= {conn["power_type"] for conn in connectors}
    assert {"IEC_62196_T2", "IEC_62196_T2_COMBO"} <= standards and "DC" in power_types


async def test_limit_above_max_is_capped(big: Peer, http: httpx.AsyncClient) -> None:
    resp = await http.get(f"{big.base}/locations?limit=5000&offset=950", headers=big.headers)
    _check_envelope(resp)
    assert len(resp.json()["data"]) == 50 and resp.headers["x-limit"] == "100"
    assert "link" not in resp.headers
    resp = await http.get(f"{big.base}/locations?limit=5000", headers=big.headers)
    assert len(resp.json()["data"]) == MAX_LIMIT
    assert _query(next_link(resp)) == {"offset": ["100"], "limit": ["100"]}
    # No limit at all = the max; an offset past the end (however far) is an empty last page.
    for offset in (BIG, 10**30):
        resp = await http.get(f"{big.base}/locations?offset={offset}&limit={10**40}", headers=big.headers)
        _check_envelope(resp)
        assert resp.json()["data"] == [] and resp.headers["x-total-count"] == str(BIG)
        assert "link" not in resp.headers and resp.headers["x-limit"] == "100"


async def test_ready_pages_by_index_range_equal_the_counted_pages(big: Peer, http: httpx.AsyncClient) -> None:
    """A READY network's unfiltered page is an index range with the CPO row's size as total; a
    `date_from` before every Location takes the counting path. Both must answer the same pages."""
    counted = "&date_from=2000-01-01T00:00:00Z"
    for offset, limit in [(0, 1), (0, 100), (1, 99), (37, 37), (899, 100), (950, 100), (999, 5), (1000, 1)]:
        query = f"{big.base}/locations?offset={offset}&limit={limit}"
        by_range, by_count = [await http.get(query + extra, headers=big.headers) for extra in ("", counted)]
        assert (
            _ids(by_range) == _ids(by_count) == [f"LOC{i:05d}" for i in range(offset + 1, min(offset + limit, BIG) + 1)]
        )
        assert by_range.headers["x-total-count"] == by_count.headers["x-total-count"] == str(BIG)
        assert ("link" in by_range.headers) == ("link" in by_count.headers) == (offset + limit < BIG)


@pytest.mark.parametrize(
    "query",
    [
        "offset=-1",
        "offset=abc",
        "offset=1.5",
        "limit=0",
        "limit=-5",
        "limit=ten",
        "date_from=yesterday",
        "date_from=2024-01-01T00:00:00%2B01:00",
        "date_to=2024-13-01T00:00:00Z",
        "date_from=0000-01-01T00:00:00Z",
    ],
)
async def test_bad_paging_parameters_are_2001_envelopes(small: Peer, http: httpx.AsyncClient, query: str) -> None:
    for module in ("locations", "tariffs"):
        resp = await http.get(f"{small.base}/{module}?{query}", headers=small.headers)
        # Reached the OCPI layer (valid route, authenticated): HTTP 200, OCPI 2001 (documented choice).
        assert resp.status_code == 200, resp.text
        body = _check_envelope(resp, 2001)
        assert "data" not in body or body["data"] is None
        assert body["status_message"]


async def test_empty_parameters_count_as_absent(small: Peer, http: httpx.AsyncClient) -> None:
    # The spec's own URL template: `?date_from=&date_to=&offset=&limit=`.
    resp = await http.get(f"{small.base}/locations?date_from=&date_to=&offset=&limit=", headers=small.headers)
    _check_envelope(resp)
    assert len(resp.json()["data"]) == 4


async def test_date_window_is_inclusive_from_exclusive_to(win: Peer, stack: Stack, http: httpx.AsyncClient) -> None:
    """Real timestamps: move two locations to known instants through set_evse_status (which is what a
    status change does), then check both window edges and that Link repeats every filter."""
    t1 = datetime(2031, 1, 1, 12, 0, 0, tzinfo=UTC)
    t2 = t1 + timedelta(seconds=10)
    db = Database(stack.database_url)
    try:
        async with db.session() as session, session.begin():
            assert await set_evse_status(session, win.cpo_id, "LOC00002-C01-1", "INOPERATIVE", t1)
            assert await set_evse_status(session, win.cpo_id, "LOC00003-C01-1", "CHARGING", t2)
    finally:
        await db.dispose()

    async def window(query: str) -> list[str]:
        resp = await http.get(f"{win.base}/locations?{query}", headers=win.headers)
        _check_envelope(resp)
        assert resp.headers["x-total-count"] == str(len(resp.json()["data"]))
        return _ids(resp)

    assert await window("date_from=2031-01-01T12:00:00Z") == ["LOC00002", "LOC00003"]  # inclusive
    assert await window("date_from=2031-01-01T12:00:00.001Z") == ["LOC00003"]
    assert await window("date_from=2031-01-01T12:00:00") == ["LOC00002", "LOC00003"]  # no designator = UTC
    assert await window("date_to=2031-01-01T12:00:10Z") == ["LOC00001", "LOC00002", "LOC00004"]  # exclusive
    assert await window("date_from=2031-01-01T12:00:00Z&date_to=2031-01-01T12:00:10Z") == ["LOC00002"]
    assert await window("date_from=2031-01-01T12:00:10Z&date_to=2031-01-01T12:00:10Z") == []
    assert await window("date_from=2031-01-01T12:00:11Z") == []

    # Consecutive windows chain without overlap or gap.
    before = await window("date_to=2031-01-01T12:00:05Z")
    after = await window("date_from=2031-01-01T12:00:05Z")
    assert sorted(before + after) == ["LOC00001", "LOC00002", "LOC00003", "LOC00004"]

    # Link keeps both filters (and any other parameter) while paging the filtered list.
    query = "date_from=2031-01-01T12:00:00Z&date_to=2031-01-01T13:00:00Z&limit=1"
    pages = await walk(http, f"{win.base}/locations?{query}", win.headers)
    assert [_ids(p) for p in pages] == [["LOC00002"], ["LOC00003"]]
    link_query = _query(next_link(pages[0]))
    assert link_query == {
        "date_from": ["2031-01-01T12:00:00Z"],
        "date_to": ["2031-01-01T13:00:00Z"],
        "offset": ["1"],
        "limit": ["1"],
    }
    assert all(p.headers["x-total-count"] == "2" for p in pages)

    # The changed EVSE shows its status and both levels carry the new timestamp.
    loc = (await http.get(f"{win.base}/locations/LOC00003", headers=win.headers)).json()["data"]
    assert loc["last_updated"] == "2031-01-01T12:00:10Z"
    evse = next(e for e in loc["evses"] if e["uid"] == "LOC00003-C01-1")
    assert evse["status"] == "CHARGING" and evse["last_updated"] == "2031-01-01T12:00:10Z"
    assert all(e["status"] == "AVAILABLE" for e in loc["evses"] if e is not evse)  # live, idle chargers


# ---- single objects, errors, auth ----------------------------------------------------------------


async def test_single_location_evse_connector(big: Peer, http: httpx.AsyncClient) -> None:
    page = (await http.get(f"{big.base}/locations?offset=500&limit=1", headers=big.headers)).json()["data"]
    listed = page[0]
    resp = await http.get(f"{big.base}/locations/{listed['id']}", headers=big.headers)
    _check_envelope(resp)
    assert resp.json()["data"] == listed
    assert resp.headers["ocpi-from-country-code"] == "NL" and resp.headers["ocpi-from-party-id"] == "BIG"

    evse = listed["evses"][-1]
    resp = await http.get(f"{big.base}/locations/{listed['id']}/{evse['uid']}", headers=big.headers)
    _check_envelope(resp)
    assert resp.json()["data"] == evse
    ocpi_schemas.assert_valid("2.2.1", "evse", resp.json()["data"])

    conn = evse["connectors"][-1]
    resp = await http.get(f"{big.base}/locations/{listed['id']}/{evse['uid']}/{conn['id']}", headers=big.headers)
    _check_envelope(resp)
    assert resp.json()["data"] == conn
    ocpi_schemas.assert_valid("2.2.1", "connector", resp.json()["data"])

    # CiString ids compare case-insensitively; the object keeps its own spelling. Trailing slash ok.
    resp = await http.get(f"{big.base}/locations/{listed['id'].lower()}/", headers=big.headers)
    assert resp.status_code == 200 and resp.json()["data"]["id"] == listed["id"]


UNKNOWN_LOCATION_OBJECTS = (
    "locations/NOPE",
    "locations/LOC99999",
    "locations/LOC00001/NOPE",
    "locations/LOC00002/LOC00001-C01-1",  # an EVSE of another location
    "locations/LOC00001/LOC00001-C01-1/9",
    "locations/NOPE/LOC00001-C01-1/1",
)


def _assert_unknown_location(resp: httpx.Response) -> None:
    """Spec: an unknown location, EVSE or connector is HTTP 404 with 2003 (unknown location)."""
    assert resp.status_code == 404, resp.text
    body = resp.json()
    assert body["status_code"] == 2003 and "data" not in body, body
    assert DATETIME_Z.match(body["timestamp"])


@pytest.mark.parametrize("path", UNKNOWN_LOCATION_OBJECTS)
async def test_unknown_objects_are_404_envelopes(small: Peer, http: httpx.AsyncClient, path: str) -> None:
    _assert_unknown_location(await http.get(f"{small.base}/{path}", headers=small.headers))


async def test_token_a_of_an_unregistered_cpo_opens_no_functional_module(
    stack: Stack, cp: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    body = {"template": "small-urban-ac", "country_code": "FR", "party_id": "TKA", "name_prefix": "A only"}
    created = await create_cpo(cp, body)
    base = f"{stack.api_url}/ocpi/peer/{created['cpo_id']}/2.2.1"
    headers = token_header(created["token_a"])
    assert (await http.get(created["ocpi_peer_url"], headers=headers)).status_code == 200  # the token is live
    for path in ("locations", "locations/LOC00001", "locations/LOC00001/LOC00001-C01-1", "tariffs"):
        resp = await http.get(f"{base}/{path}", headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.json()["status_code"] >= 2000 and "data" not in resp.json()


async def test_spent_token_a_and_foreign_tokens_are_401(small: Peer, big: Peer, http: httpx.AsyncClient) -> None:
    token_a = small.created["token_a"]
    for path in ("locations", "locations/LOC00001", "tariffs"):
        for headers in (token_header(token_a), {"Authorization": f"Token {token_a}"}, {}, big.headers):
            resp = await http.get(f"{small.base}/{path}", headers=headers)
            assert resp.status_code == 401, (path, headers, resp.text)
            assert resp.json()["status_code"] >= 2000


async def test_locations_appear_while_provisioning(
    cp: httpx.AsyncClient, http: httpx.AsyncClient, register: Callable[..., Awaitable[Peer]]
) -> None:
    # 10 chargers per location → batches of 25 locations, committed one after another.
    body = {
        "template": "city-mixed-large",
        "country_code": "BE",
        "party_id": "PRV",
        "name_prefix": "Early",
        "seed": 5,
        "overrides": {"locations": 120, "chargers_per_location": 10},
    }
    created = await create_cpo(cp, body, ready=False)
    peer = await register(created)  # Token A works from the 202 on, so does the handshake
    totals = []
    while True:
        status = (await cp.get(f"/ocpi/cpos/{peer.cpo_id}/status")).json()["status"]
        page = await http.get(f"{peer.base}/locations?limit=10", headers=peer.headers)
        _check_envelope(page)
        totals.append(int(page.headers["x-total-count"]))
        assert len(_ids(page)) == min(10, totals[-1])
        if status == "READY":
            break
        assert status in ("PENDING", "PROVISIONING"), status
    # Rows only ever get added; a peer crawling mid-provisioning sees a partial network, not an error.
    assert totals == sorted(totals) and totals[-1] == 120
    assert any(0 < t < 120 for t in totals), totals
    # Parallel batches commit out of idx order, so a crawl *during* provisioning may see an item shift
    # across a page boundary; once READY the order is final.
    ids = [i for p in await walk(http, f"{peer.base}/locations?limit=50", peer.headers) for i in _ids(p)]
    assert ids == [f"LOC{i:05d}" for i in range(1, 121)]


# ---- tariffs --------------------------------------------------------------------------------------


async def test_tariffs_list(small: Peer, http: httpx.AsyncClient) -> None:
    resp = await http.get(f"{small.base}/tariffs", headers=small.headers)
    _check_envelope(resp)
    tariffs = resp.json()["data"]
    assert resp.headers["x-total-count"] == str(len(tariffs)) and resp.headers["x-limit"] == "100"
    # AC and DC, each REGULAR and AD_HOC_PAYMENT (some EVSEs take payment cards); all referenced below.
    assert sorted((t["id"], t["type"]) for t in tariffs) == [
        ("AC-STD", "REGULAR"),
        ("AC-STD-ADHOC", "AD_HOC_PAYMENT"),
        ("DC-FAST", "REGULAR"),
        ("DC-FAST-ADHOC", "AD_HOC_PAYMENT"),
    ]
    for tariff in tariffs:
        ocpi_schemas.assert_valid("2.2.1", "tariff", tariff)
        assert tariff["currency"] == "EUR" and (tariff["country_code"], tariff["party_id"]) == ("DE", "SML")
    referenced = set()
    for loc in (await http.get(f"{small.base}/locations", headers=small.headers)).json()["data"]:
        referenced |= {t for e in loc["evses"] for c in e["connectors"] for t in c["tariff_ids"]}
    assert referenced == {t["id"] for t in tariffs}

    page = await http.get(f"{small.base}/tariffs?limit=1", headers=small.headers)
    assert len(page.json()["data"]) == 1 and _query(next_link(page)) == {
        "offset": ["1"],
        "limit": ["1"],
    }
    future = await http.get(f"{small.base}/tariffs?date_from=2099-01-01T00:00:00Z", headers=small.headers)
    assert future.json()["data"] == [] and future.headers["x-total-count"] == "0"


# ---- OCPI 2.1.1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("country", ["GB", "AE"])  # AE: no postal codes, yet 2.1.1 requires the field
async def test_211_cpo_renders_211_shapes(
    stack: Stack, cp: httpx.AsyncClient, http: httpx.AsyncClient, register: Callable[..., Awaitable[Peer]], country: str
) -> None:
    body = {
        "template": "city-mixed-large",
        "country_code": country,
        "party_id": "OLD",
        "name_prefix": "Legacy",
        "seed": 11,
        "ocpi_version": "2.1.1",
        "overrides": {"locations": 5, "chargers_per_location": 6},
    }
    peer = await register(await create_cpo(cp, body), version="2.1.1")
    tariffs = (await http.get(f"{peer.base}/tariffs", headers=peer.headers)).json()["data"]
    for tariff in tariffs:
        ocpi_schemas.assert_valid("2.1.1", "tariff", tariff)
    pages = await walk(http, f"{peer.base}/locations?limit=2", peer.headers)
    locations = [loc for p in pages for loc in p.json()["data"]]
    assert len(locations) == 5
    for loc in locations:
        ocpi_schemas.assert_valid("2.1.1", "location", loc)
        assert loc["type"] in ("ON_STREET", "PARKING_GARAGE", "UNDERGROUND_GARAGE", "PARKING_LOT", "OTHER")
        for evse in loc["evses"]:
            for conn in evse["connectors"]:
                assert conn["tariff_id"] in {t["id"] for t in tariffs}
    loc = locations[0]
    evse = loc["evses"][0]
    one = (await http.get(f"{peer.base}/locations/{loc['id']}/{evse['uid']}", headers=peer.headers)).json()["data"]
    ocpi_schemas.assert_valid("2.1.1", "evse", one)
    conn = (
        await http.get(
            f"{peer.base}/locations/{loc['id']}/{evse['uid']}/{evse['connectors'][0]['id']}", headers=peer.headers
        )
    ).json()["data"]
    ocpi_schemas.assert_valid("2.1.1", "connector", conn)
    for path in UNKNOWN_LOCATION_OBJECTS:
        _assert_unknown_location(await http.get(f"{peer.base}/{path}", headers=peer.headers))
    # The same CPO's URLs under 2.2.1 are not served.
    wrong = await http.get(f"{stack.api_url}/ocpi/peer/{peer.cpo_id}/2.2.1/locations", headers=peer.headers)
    assert wrong.status_code == 404


# ---- set_evse_status -------------------------------------------------------------------------------


async def test_set_evse_status_bumps_the_parent(small: Peer, stack: Stack, http: httpx.AsyncClient) -> None:
    db = Database(stack.database_url)
    uid = "LOC00004-C02-1"
    try:
        async with db.session() as session, session.begin():
            assert await set_evse_status(session, small.cpo_id, "NOPE", "AVAILABLE", datetime.now(UTC)) is None
            with pytest.raises(ValueError):
                await set_evse_status(session, small.cpo_id, uid, "BROKEN", datetime.now(UTC))
        now = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3650 * 2)
        async with db.session() as session, session.begin():
            first = await set_evse_status(session, small.cpo_id, uid, "OUTOFORDER", now)
        assert first is not None and first.changed and first.location_id == "LOC00004"
        assert first.last_updated == now
        # The same `now` again still moves the parent strictly forward; a repeated status writes nothing.
        async with db.session() as session, session.begin():
            second = await set_evse_status(session, small.cpo_id, uid, "AVAILABLE", now)
            third = await set_evse_status(session, small.cpo_id, uid, "AVAILABLE", now + timedelta(hours=1))
        assert second is not None and second.last_updated > first.last_updated
        assert third is not None and not third.changed and third.last_updated == second.last_updated
    finally:
        await db.dispose()
    rows = stack.query(
        "SELECT e.status, e.last_updated, l.last_updated FROM evse e JOIN location l "
        "ON l.cpo_id = e.cpo_id AND l.id = e.location_id WHERE e.cpo_id = ? AND e.uid = ?",
        small.cpo_id,
        uid,
    )
    assert rows[0][0] == "AVAILABLE" and rows[0][1] == rows[0][2]
    loc = (await http.get(f"{small.base}/locations/LOC00004", headers=small.headers)).json()["data"]
    evse = next(e for e in loc["evses"] if e["uid"] == uid)
    assert evse["status"] == "AVAILABLE" and evse["last_updated"] == loc["last_updated"]
    assert loc["last_updated"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    # A date_from pull right at the change finds the location.
    newer = await http.get(f"{small.base}/locations?date_from={loc['last_updated']}", headers=small.headers)
    assert "LOC00004" in _ids(newer)


async def test_bump_location_after_a_child_change(small: Peer, stack: Stack, http: httpx.AsyncClient) -> None:
    before = (await http.get(f"{small.base}/locations/LOC00001", headers=small.headers)).json()["data"]
    db = Database(stack.database_url)
    try:
        async with db.session() as session, session.begin():
            assert await bump_location(session, small.cpo_id, "NOPE", datetime.now(UTC)) is None
            # A caller's clock behind the stored stamp still moves it forward.
            stamp = await bump_location(session, small.cpo_id, "LOC00001", datetime(2000, 1, 1, tzinfo=UTC))
    finally:
        await db.dispose()
    after = (await http.get(f"{small.base}/locations/LOC00001", headers=small.headers)).json()["data"]
    assert stamp is not None and after["last_updated"] >= before["last_updated"]
    rows = stack.query("SELECT last_updated FROM location WHERE cpo_id = ? AND id = 'LOC00001'", small.cpo_id)
    assert str(rows[0][0]).startswith(stamp.strftime("%Y-%m-%d %H:%M:%S.%f"))


async def test_prices_keep_at_most_four_decimals(
    cp: httpx.AsyncClient, http: httpx.AsyncClient, register: Callable[..., Awaitable[Peer]]
) -> None:
    # Kuwaiti dinar: 3 minor digits, the most a generated tariff has; every price is a JSON number.
    body = {"template": "mixed-depot", "country_code": "KW", "party_id": "KWD", "name_prefix": "Dinar"}
    peer = await register(await create_cpo(cp, body))
    resp = await http.get(f"{peer.base}/tariffs", headers=peer.headers)
    tariffs = resp.json()["data"]
    assert {t["currency"] for t in tariffs} == {"KWD"} and len(tariffs) == 2
    for tariff in tariffs:
        ocpi_schemas.assert_valid("2.2.1", "tariff", tariff)
        for element in tariff["elements"]:
            for component in element["price_components"]:
                assert isinstance(component["price"], float)
    assert not re.search(r'"price":-?\d+\.\d{5,}', resp.text)


async def test_head_answers_headers_only(small: Peer, http: httpx.AsyncClient) -> None:
    resp = await http.head(f"{small.base}/locations?limit=1", headers=small.headers)
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["x-total-count"] == "4" and "link" in resp.headers


def test_schemas_reject_what_the_spec_forbids() -> None:
    """The independent schemas are not vacuous: typical violations fail them."""
    connector = {
        "id": "1",
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 32,
        "tariff_ids": ["AC"],
        "last_updated": "2024-01-01T00:00:00Z",
    }
    evse = {
        "uid": "E1",
        "evse_id": "NL*ABC*E1*1",
        "status": "AVAILABLE",
        "connectors": [connector],
        "last_updated": "2024-01-01T00:00:00Z",
    }
    location = {
        "country_code": "NL",
        "party_id": "ABC",
        "id": "L1",
        "publish": True,
        "address": "Main 1",
        "city": "Gent",
        "country": "NLD",
        "coordinates": {"latitude": "51.047599", "longitude": "3.729944"},
        "time_zone": "Europe/Amsterdam",
        "evses": [evse],
        "last_updated": "2024-01-01T00:00:00Z",
    }
    assert not ocpi_schemas.errors("2.2.1", "location", location)
    bad = [
        {**location, "coordinates": {"latitude": 51.047599, "longitude": 3.729944}},  # numbers, not strings
        {**location, "coordinates": {"latitude": "51.04", "longitude": "3.729944"}},  # 2 decimals
        {**location, "country": "NL"},  # alpha-2 where alpha-3 is required
        {**location, "last_updated": "2024-01-01T00:00:00+00:00"},  # offset, not Z
        {k: v for k, v in location.items() if k != "time_zone"},
        {**location, "parking_type": "PARKING"},
        {**location, "evses": [{**evse, "status": "FREE"}]},
        {**location, "evses": [{**evse, "connectors": []}]},
        {**location, "evses": [{**evse, "connectors": [{**connector, "standard": "CCS2"}]}]},
        {**location, "evses": [{**evse, "connectors": [{**connector, "voltage": 230}]}]},  # a 2.1.1 field
    ]
    for instance in bad:
        assert ocpi_schemas.errors("2.2.1", "location", instance), instance
    location_211 = {k: v for k, v in location.items() if k not in ("country_code", "party_id", "publish")}
    assert ocpi_schemas.errors("2.1.1", "location", location_211)  # no `type`, no `postal_code`
    assert ocpi_schemas.errors("2.1.1", "location", {**location, "type": "OTHER", "postal_code": "9000"})
