"""Priced CDRs: a real OCPP 1.6 transaction on a real API process ends in a CDR POSTed to a real
eMSP, priced with the connector's tariff and equal to a computation written here from the tariff;
served by the cdrs Sender module; built exactly once when builders race; a marker left by a crash
is built by polling; a session that cannot be priced keeps its marker; the 2.1.1 CDR shape.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app.ocpi.cdr_builder import CdrBuilder, build_one
from app.settings import Settings
from app.store.db import Database
from tests.charging_support import T0, Emsp, at, meter_16, register_emsp, set_tariff
from tests.csms_support import CsmsApi, OcppClient, eventually, open_charger
from tests.databases import AppDatabase, DatabaseFactory
from tests.emsp_peer import EmspPeer, Received, ok
from tests.network_rows import SeededCharger, SeededCpo, seed_cpo

ENV = {"CPOLAB_OUTBOX_DISPATCH": "true", "CPOLAB_SESSION_PUSH_INTERVAL": "30", "CPOLAB_CDR_POLL_INTERVAL": "0.5"}
_parties = itertools.count()

# A tariff written for these tests: a start fee, energy, and VAT (21 %) on every component.
START_FEE, PER_KWH, VAT = 0.50, 0.30, 21.0


def _party() -> str:
    n = next(_parties)
    return "B" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n // 26 % 26] + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n % 26]


@pytest.fixture(scope="module")
async def api(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CsmsApi]:
    csms = CsmsApi(Path(tmp_path_factory.mktemp("cdrs")), databases.new("cdrs"), ENV)
    try:
        yield await csms.start()
    finally:
        csms.stop()


SIMPLE = [
    {
        "price_components": [
            {"type": "FLAT", "price": START_FEE, "step_size": 1, "vat": VAT},
            {"type": "ENERGY", "price": PER_KWH, "step_size": 1, "vat": VAT},
        ]
    }
]


async def charge(client: OcppClient, id_tag: str, wh: int, seconds: int) -> int:
    """A 1.6 transaction on connector 1: `wh` in `seconds`, meter values every minute."""
    start = {"connectorId": 1, "idTag": id_tag, "meterStart": 1000, "timestamp": at(0)}
    answer = await client.call("StartTransaction", start)
    tx = answer[2]["transactionId"]
    steps = seconds // 60
    for step in range(1, steps + 1):
        body = {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [meter_16(step * 60, 1000 + wh * step // steps, 7000)],
        }
        assert (await client.call("MeterValues", body))[0] == 3
    stop = {"transactionId": tx, "meterStop": 1000 + wh, "timestamp": at(seconds), "reason": "EVDisconnected"}
    assert (await client.call("StopTransaction", stop))[0] == 3
    return int(tx)


def cdr_posts(emsp: Emsp) -> list[Received]:
    """CDRs POSTed for this test's CPO (the peer is shared: its token uid names the CPO's party)."""
    tail = f"/{emsp.profile}/{emsp.version}/cdrs"
    uid = f"RFID{emsp.cpo_party}"
    return [r for r in emsp.peer.received if r.path == tail and r.method == "POST" and uid in json.dumps(r.body)]


async def started(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient, *, version: str = "2.2.1"
) -> tuple[SeededCpo, Emsp, SeededCharger, OcppClient]:
    party = _party()
    cpo = seed_cpo(api.database, party_id=party, chargers_per_location=6)
    if version == "2.1.1":
        with api.database.engine().begin() as conn:
            conn.execute(text("UPDATE cpo SET ocpi_version = '2.1.1' WHERE id = :id"), {"id": cpo.cpo_id})
    emsp = register_emsp(api.database, http, api.url, peer, cpo.cpo_id, party, version=version)
    await emsp.push_token(f"RFID{party}", whitelist="ALWAYS")
    charger = cpo.of_version("1.6")[0]
    client = OcppClient(await open_charger(api.ws_url, cpo.cpo_id, charger))
    assert (await client.boot(charger.ocpp_version))[0] == 3
    return cpo, emsp, charger, client


async def test_a_session_is_billed_with_its_tariff_and_served(
    api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    cpo, emsp, charger, client = await started(api, peer, http)
    _, evse_uid, connectors = charger.evses[0]
    tariff_id = set_tariff(api.database, cpo.cpo_id, evse_uid, connectors[0], SIMPLE)
    try:
        tx = await charge(client, f"RFID{cpo.party_id}", wh=12_345, seconds=1800)
    finally:
        await client.ws.close()
    await eventually(lambda: len(cdr_posts(emsp)) == 1, timeout=15)
    cdr = cdr_posts(emsp)[0].body
    # Computed here from the tariff: the start fee once plus 12.345 kWh, VAT on both.
    excl = START_FEE + 12.345 * PER_KWH
    assert cdr["id"] == cdr["session_id"] == str(tx)
    assert cdr["total_energy"] == 12.345 and cdr["total_time"] == 0.5
    assert cdr["total_cost"] == {"excl_vat": round(excl, 4), "incl_vat": round(excl * (1 + VAT / 100), 4)}
    assert cdr["total_fixed_cost"] == {"excl_vat": START_FEE, "incl_vat": round(START_FEE * 1.21, 4)}
    assert cdr["total_energy_cost"]["excl_vat"] == round(12.345 * PER_KWH, 4)
    assert cdr["currency"] == "EUR" and [t["id"] for t in cdr["tariffs"]] == [tariff_id]
    assert cdr["cdr_token"]["uid"] == f"RFID{cpo.party_id}" and cdr["auth_method"] == "WHITELIST"
    location = cdr["cdr_location"]
    assert (location["id"], location["evse_uid"], location["connector_id"]) == (
        charger.location_id,
        evse_uid,
        connectors[0],
    )
    assert cdr["start_date_time"] == at(0) and cdr["end_date_time"] == at(1800)
    energy = sum(d["volume"] for p in cdr["charging_periods"] for d in p["dimensions"] if d["type"] == "ENERGY")
    assert round(energy, 4) == 12.345
    assert all(p["tariff_id"] == tariff_id for p in cdr["charging_periods"])
    # Served by the Sender module, and built once: the marker is gone, nothing more is POSTed.
    listed = ok(await emsp.client.request("GET", emsp.url("cdrs")))
    assert [c["id"] for c in listed] == [str(tx)] and listed[0]["total_cost"] == cdr["total_cost"]
    assert api.database.query("SELECT count(*) FROM cdr_pending WHERE cpo_id = ?", cpo.cpo_id) == [(0,)]
    await asyncio.sleep(1.5)
    assert len(cdr_posts(emsp)) == 1


async def test_a_211_cpo_sends_211_cdrs(api: CsmsApi, peer: EmspPeer, http: httpx.AsyncClient) -> None:
    cpo, emsp, charger, client = await started(api, peer, http, version="2.1.1")
    _, evse_uid, connectors = charger.evses[0]
    set_tariff(api.database, cpo.cpo_id, evse_uid, connectors[0], SIMPLE)
    try:
        tx = await charge(client, f"RFID{cpo.party_id}", wh=2000, seconds=600)
    finally:
        await client.ws.close()
    await eventually(lambda: len(cdr_posts(emsp)) == 1, timeout=15)
    cdr = cdr_posts(emsp)[0].body
    assert cdr["id"] == str(tx) and cdr["stop_date_time"] == at(600) and "cdr_location" not in cdr
    assert cdr["total_cost"] == round(START_FEE + 2 * PER_KWH, 4)  # 2.1.1: one number, excl. VAT
    assert cdr["auth_id"] == f"NL-EMS-CRFID{cpo.party_id}" and cdr["location"]["id"] == charger.location_id
    assert [e["uid"] for e in cdr["location"]["evses"]] == [evse_uid]
    kinds = {d["type"] for p in cdr["charging_periods"] for d in p["dimensions"]}
    assert kinds <= {"ENERGY", "FLAT", "MAX_CURRENT", "MIN_CURRENT", "PARKING_TIME", "TIME"}
    assert all("tariff_id" not in p for p in cdr["charging_periods"])
    assert "vat" not in str(cdr["tariffs"])


# ---- the builder on its own (no API process: it is what every API process runs) -------------------


def completed_session(database: AppDatabase, cpo: SeededCpo, charger: SeededCharger, session_id: str) -> int:
    """A completed session (5 kWh in 20 minutes) with two samples and its cdr_pending marker, as a
    crash right after the completing commit leaves it."""
    _, evse_uid, connectors = charger.evses[0]
    end = T0 + timedelta(minutes=20)
    database.query(
        "INSERT INTO charging_session (cpo_id, session_id, identity, ocpp_version, transaction_id, location_id,"
        " evse_uid, connector_id, ocpp_evse_id, ocpp_connector_id, id_tag, token_uid, token_type,"
        " token_country_code, token_party_id, contract_id, auth_method, start_at, end_at, meter_start_wh,"
        " meter_stop_wh, kwh, status, currency, period_start_wh, period_charging, period_max_power_w,"
        " sample_count, created_at, last_updated) VALUES (?, ?, ?, '1.6', ?, ?, ?, ?, 0, 1, 'TAG1', 'TAG1',"
        " 'RFID', 'NL', 'EMS', 'NL-EMS-C1', 'WHITELIST', ?, ?, 0, 5000, 5.0, 'COMPLETED', 'EUR', 0, false, 0,"
        " 2, ?, ?)",
        *(cpo.cpo_id, session_id, charger.identity, session_id, charger.location_id, evse_uid, connectors[0]),
        *(T0, end, T0, end),
    )
    cs_id = database.query(
        "SELECT id FROM charging_session WHERE cpo_id = ? AND session_id = ?", cpo.cpo_id, session_id
    )[0][0]
    for at_, wh, w in ((T0, 0.0, 11000.0), (end, 5000.0, 0.0)):
        database.query(
            "INSERT INTO charging_meter_sample (cpo_id, charging_session_id, at, energy_wh, power_w)"
            " VALUES (?, ?, ?, ?, ?)",
            *(cpo.cpo_id, cs_id, at_, wh, w),
        )
    database.query(
        "INSERT INTO cdr_pending (cpo_id, session_id, charging_session_id, created_at) VALUES (?, ?, ?, ?)",
        *(cpo.cpo_id, session_id, cs_id, end),
    )
    return int(cs_id)


@pytest.fixture
async def builder_db(databases: DatabaseFactory) -> AsyncIterator[tuple[AppDatabase, Database]]:
    database = databases.new("cdr-builder")
    db = Database(database.url)
    try:
        yield database, db
    finally:
        await db.dispose()


async def test_racing_builders_build_one_cdr(
    builder_db: tuple[AppDatabase, Database], peer: EmspPeer, http: httpx.AsyncClient
) -> None:
    database, db = builder_db
    cpo = seed_cpo(database, party_id="RCE")
    register_emsp(database, http, "http://unused", peer, cpo.cpo_id, "RCE")  # the CDR's push has a target
    charger = cpo.of_version("1.6")[0]
    _, evse_uid, connectors = charger.evses[0]
    set_tariff(database, cpo.cpo_id, evse_uid, connectors[0], SIMPLE)
    cs_id = completed_session(database, cpo, charger, "900")
    built = await asyncio.gather(*(build_one(db, cpo.cpo_id, "900", cs_id) for _ in range(4)))
    assert sorted(built) == [False, False, False, True]
    assert database.query("SELECT id FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id) == [("900",)]
    assert database.query(
        "SELECT method, module FROM ocpi_outbox WHERE cpo_id = ? AND module = 'cdrs'", cpo.cpo_id
    ) == [("POST", "cdrs")]
    assert database.query("SELECT count(*) FROM cdr_pending WHERE cpo_id = ?", cpo.cpo_id) == [(0,)]


async def test_a_marker_left_by_a_crash_is_built_by_polling(builder_db: tuple[AppDatabase, Database]) -> None:
    database, db = builder_db
    cpo = seed_cpo(database, party_id="CRS")
    charger = cpo.of_version("1.6")[0]
    completed_session(database, cpo, charger, "901")
    builder = CdrBuilder(db, Settings(jwt_secret="x" * 32, cdr_poll_interval=0.2))
    builder.start()  # a process started after the crash: nothing wakes it, its poll finds the marker
    try:
        await eventually(lambda: database.query("SELECT count(*) FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id) == [(1,)])
    finally:
        await builder.stop()
    data = database.query("SELECT data FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id)[0][0]
    cdr = json.loads(data) if isinstance(data, str) else data
    assert cdr["id"] == "901" and cdr["total_energy"] == 5.0 and cdr["total_time"] == round(20 / 60, 4)


async def test_a_session_that_cannot_be_priced_keeps_its_marker(builder_db: tuple[AppDatabase, Database]) -> None:
    database, db = builder_db
    cpo = seed_cpo(database, party_id="BAD")
    charger = cpo.of_version("1.6")[0]
    _, evse_uid, connectors = charger.evses[0]
    set_tariff(database, cpo.cpo_id, evse_uid, connectors[0], [{"price_components": [{"type": "ENERGY"}]}])
    completed_session(database, cpo, charger, "902")
    builder = CdrBuilder(db, Settings(jwt_secret="x" * 32))
    assert await builder.build_pending() is False
    assert database.query("SELECT count(*) FROM cdr_pending WHERE cpo_id = ?", cpo.cpo_id) == [(1,)]
    assert database.query("SELECT count(*) FROM ocpi_cdr WHERE cpo_id = ?", cpo.cpo_id) == [(0,)]
