"""A charging session end to end on the whole stack: a fresh CPO's simulated chargers (pods on the sim
worker), a real eMSP registered through the credentials handshake, its token pushed, a car plugged in
through the control plane, START_SESSION → CommandResult ACCEPTED → the Session ACTIVE at the eMSP →
STOP_SESSION → COMPLETED → a CDR POSTed whose cost follows the tariff the eMSP can read. Also the
control-plane actions' errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.charging_support import LiveCpo, live_cpo, set_tariff
from tests.emsp_peer import EmspPeer, ok
from tests.stack import Stack

# The connector's tariff, as the test sets it: a start fee, energy and charging time, VAT 19 %.
TARIFF = [
    {
        "price_components": [
            {"type": "FLAT", "price": 0.35, "step_size": 1, "vat": 19.0},
            {"type": "ENERGY", "price": 0.49, "step_size": 1, "vat": 19.0},
            {"type": "TIME", "price": 1.2, "step_size": 1, "vat": 19.0},
        ]
    }
]
UID = "E2E0000000000000000000000000000001"  # 34 characters: a 1.6 charger sees a 20-character idTag


@pytest.fixture(scope="module")
async def cpo(stack: Stack, peer: EmspPeer) -> AsyncIterator[LiveCpo]:
    async with live_cpo(stack, peer, party_id="E2E", seed=9) as cpo:
        yield cpo


async def first_charger(stack: Stack, cpo: LiveCpo) -> dict[str, Any]:
    async with stack.client() as control:
        listed = (await control.get(f"/ocpi/cpos/{cpo.id}/chargers")).json()["data"]
    return next(c for c in listed if c["ocpp_version"] == "1.6")


def from_us(r: Any, what: str) -> bool:
    return r.headers.get("ocpi-from-party-id") == "E2E" and what in r.path


async def test_plug_start_stop_bill(stack: Stack, cpo: LiveCpo, peer: EmspPeer) -> None:
    token = await cpo.push_token(UID, whitelist="ALLOWED", contract_id="NL-EMS-C00000001-X")
    charger = await first_charger(stack, cpo)
    identity, evse_uid = charger["identity"], charger["evse_uids"][0]
    for (connector_id,) in stack.query("SELECT id FROM connector WHERE cpo_id = ? AND evse_uid = ?", cpo.id, evse_uid):
        set_tariff(stack.database, cpo.id, evse_uid, str(connector_id), TARIFF)
    async with stack.client() as control:
        plugged = await control.post(f"/ocpi/cpos/{cpo.id}/chargers/{identity}/actions/plug", json={})
        assert plugged.status_code == 202, plugged.text
        assert plugged.json()["status"] == "ACCEPTED" and plugged.json()["evse_uid"] == evse_uid
        again = await control.post(f"/ocpi/cpos/{cpo.id}/chargers/{identity}/actions/plug", json={})
        assert again.status_code == 409, again.text  # a cable is in already: the charger says so

    url = peer.response_url()
    start = {
        "response_url": url,
        "token": token,
        "location_id": charger["location_id"],
        "evse_uid": evse_uid,
        "authorization_reference": "AUTHREF-E2E-1",
    }
    assert ok(await cpo.ocpi.request("POST", f"{cpo.base}/commands/START_SESSION", json=start))["result"] == "ACCEPTED"
    result = await peer.wait_for(lambda r: r.path == url.split(str(peer.port))[1], 30)
    assert result.body["result"] == "ACCEPTED", result.body

    put = await peer.wait_for(lambda r: from_us(r, "/sessions/") and r.method == "PUT", 30)
    session = put.body
    assert session["status"] == "ACTIVE" and session["cdr_token"]["uid"] == UID
    assert session["auth_method"] == "COMMAND" and session["authorization_reference"] == "AUTHREF-E2E-1"
    assert (session["location_id"], session["evse_uid"]) == (charger["location_id"], evse_uid)

    await asyncio.sleep(5)  # the simulated car charges (at wall-clock speed: some Wh)
    url = peer.response_url()
    stop = {"response_url": url, "session_id": session["id"]}
    assert ok(await cpo.ocpi.request("POST", f"{cpo.base}/commands/STOP_SESSION", json=stop))["result"] == "ACCEPTED"
    result = await peer.wait_for(lambda r: r.path == url.split(str(peer.port))[1], 30)
    assert result.body["result"] == "ACCEPTED", result.body
    await peer.wait_for(
        lambda r: from_us(r, f"/sessions/DE/E2E/{session['id']}") and (r.body or {}).get("status") == "COMPLETED", 30
    )
    cdr = (await peer.wait_for(lambda r: from_us(r, "/cdrs") and r.method == "POST", 30)).body
    assert cdr["session_id"] == session["id"] and cdr["cdr_token"]["uid"] == UID
    assert cdr["authorization_reference"] == "AUTHREF-E2E-1"
    assert cdr["total_energy"] > 0  # the simulated car drew power between start and stop

    # The cost, from the tariff the eMSP reads (GET /tariffs) and the CDR's volumes: each period's
    # volumes at the prices of its tariff element (first element whose dimension applies).
    tariffs = {t["id"]: t for t in ok(await cpo.ocpi.request("GET", f"{cpo.base}/tariffs"))}
    tariff = tariffs[cdr["tariffs"][0]["id"]]
    assert cdr["tariffs"][0]["elements"] == tariff["elements"]
    # The CDR reports volumes to OCPI's 4 decimals while the pricer prices the exact ones: the cost
    # recomputed from the reported volumes may differ in the last place.
    assert abs(Decimal(str(cdr["total_cost"]["excl_vat"])) - independent_cost(tariff, cdr)) <= Decimal("0.0002")
    vat = Decimal(str(cdr["total_cost"]["incl_vat"])) - Decimal(str(cdr["total_cost"]["excl_vat"]))
    assert abs(vat - Decimal(str(cdr["total_cost"]["excl_vat"])) * Decimal("0.19")) <= Decimal("0.0002")
    listed = ok(await cpo.ocpi.request("GET", f"{cpo.base}/cdrs"))
    assert [c["id"] for c in listed] == [cdr["id"]]


def independent_cost(tariff: dict[str, Any], cdr: dict[str, Any]) -> Decimal:
    """Excl. VAT of a tariff without restrictions and with step sizes of 1 (tests/test_pricing*.py cover
    the rest): FLAT once + Σ volume × price per dimension."""
    prices: dict[str, Decimal] = {}
    for element in tariff["elements"]:
        assert not element.get("restrictions")
        for pc in element["price_components"]:
            assert pc["step_size"] == 1
            prices.setdefault(pc["type"], Decimal(str(pc["price"])))
    total = prices.get("FLAT", Decimal(0))
    for period in cdr["charging_periods"]:
        for d in period["dimensions"]:
            if d["type"] in ("ENERGY", "TIME", "PARKING_TIME"):
                total += Decimal(str(d["volume"])) * prices.get(d["type"], Decimal(0))
    return total.quantize(Decimal("0.0001"))


async def test_action_errors(stack: Stack, cpo: LiveCpo) -> None:
    charger = await first_charger(stack, cpo)
    base = f"/ocpi/cpos/{cpo.id}/chargers/{charger['identity']}/actions"
    async with stack.client() as control:
        for path, body, code in (
            (f"{base}/dance", {}, 422),
            (f"{base}/start", {}, 422),  # no token_uid
            (f"{base}/plug", {"colour": "red"}, 422),  # no such field
            (f"{base}/fault", {"error_code": "Meltdown"}, 422),
            (f"{base}/plug", [], 422),
            (f"{base}/plug", {"evse_uid": "NOPE"}, 404),
            (f"/ocpi/cpos/{cpo.id}/chargers/nobody/actions/plug", {}, 404),
            (f"/ocpi/cpos/{cpo.id}/locations/NOPE/actions/plug", {}, 404),
            (f"/ocpi/cpos/999999/chargers/{charger['identity']}/actions/plug", {}, 404),
        ):
            resp = await control.post(path, json=body)
            assert resp.status_code == code, (path, body, resp.text)
        resp = await control.post(f"{base}/plug", content=b"{not json")
        assert resp.status_code == 422
    read_only = {"Authorization": f"Bearer {stack.token(scopes=('cpos:read',))}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=read_only, timeout=30) as reader:
        assert (await reader.post(f"{base}/plug", json={})).status_code == 403


async def test_a_location_fans_out(stack: Stack, cpo: LiveCpo) -> None:
    charger = await first_charger(stack, cpo)
    async with stack.client() as control:
        resp = await control.post(f"/ocpi/cpos/{cpo.id}/locations/{charger['location_id']}/actions/fault", json={})
        assert resp.status_code == 202, resp.text
        results = resp.json()["data"]
        assert results and all(r["status"] == "ACCEPTED" for r in results), results
        resp = await control.post(f"/ocpi/cpos/{cpo.id}/locations/{charger['location_id']}/actions/clear-fault")
        assert resp.status_code == 202 and all(r["status"] == "ACCEPTED" for r in resp.json()["data"])
