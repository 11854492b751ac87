"""Lifecycle and faults: party mangling, delete, backend outage, worker crash, replay."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import httpx

from app.network.party import ALPHABET
from tests.stack import QUIET, ROOT, Stack, api_command, free_port, wait_http, wait_status

TINY = {
    "template": "small-urban-ac",
    "country_code": "NL",
    "name_prefix": "tiny",
    "overrides": {"locations": 1, "chargers_per_location": 1},
}


def rows_for(stack: Stack, cpo_id: int) -> dict[str, int]:
    return {
        t: stack.count(t, cpo_id)
        for t in (
            "location",
            "evse",
            "connector",
            "charger",
            "charger_route",
            "tariff",
            "credential_token",
            "party_reservation",
        )
    }


async def test_party_collision_mangles_then_exhausts(stack: Stack) -> None:
    async with stack.client(org="party-org") as c:
        first = (await c.post("/ocpi/cpos", json={**TINY, "party_id": "PQR"})).json()
        assert first["party"]["party_id"] == "PQR" and first["party_id_requested"] is None
        second = (await c.post("/ocpi/cpos", json={**TINY, "party_id": "PQR"})).json()
        # Deterministic: keep "PQ", walk the last character over A–Z0–9 (skipping the taken original);
        # the 202 says the party changed.
        assert second["party"]["party_id"] == "PQA" and second["party_id_requested"] == "PQR"
        created = [first, second]
        created += await asyncio.gather(*[_post_json(c, {**TINY, "party_id": "PQR"}) for _ in range(len(ALPHABET) - 2)])
        parties = sorted(x["party"]["party_id"] for x in created)
        assert parties == sorted("PQ" + ch for ch in ALPHABET)

        before = stack.query("SELECT count(*) FROM cpo")[0][0]
        tokens_before = stack.query("SELECT count(*) FROM credential_token")[0][0]
        resp = await c.post("/ocpi/cpos", json={**TINY, "party_id": "PQR"})
        assert resp.status_code == 503
        assert resp.json()["code"] == "party_namespace_exhausted" and resp.json()["detail"]
        assert stack.query("SELECT count(*) FROM cpo")[0][0] == before
        assert stack.query("SELECT count(*) FROM credential_token")[0][0] == tokens_before
        assert stack.query("SELECT count(*) FROM party_reservation WHERE org='party-org'")[0][0] == 36

        # Another org, or another country, is a separate namespace.
        async with stack.client(org="party-org-2") as other:
            assert (await other.post("/ocpi/cpos", json={**TINY, "party_id": "PQR"})).json()["party"][
                "party_id"
            ] == "PQR"
        assert (await c.post("/ocpi/cpos", json={**TINY, "country_code": "BE", "party_id": "PQR"})).json()["party"][
            "party_id"
        ] == "PQR"

        # Destroying one frees its party id for the next create.
        victim = next(x for x in created if x["party"]["party_id"] == "PQ7")
        await wait_status(c, victim["cpo_id"], {"READY"})
        assert (await c.delete(f"/ocpi/cpos/{victim['cpo_id']}")).status_code == 202
        await wait_status(c, victim["cpo_id"], {"DESTROYED"})
        again = await c.post("/ocpi/cpos", json={**TINY, "party_id": "PQR"})
        assert again.status_code == 202 and again.json()["party"]["party_id"] == "PQ7"


async def _post_json(c: httpx.AsyncClient, body: dict) -> dict:
    # A 503 workflow_backend_unavailable created nothing (its party is free again), so a client retries
    # it: a burst of 34 creates on a loaded box once outran the Temporal dev server's store.
    for _ in range(3):
        resp = await c.post("/ocpi/cpos", json=body)
        if resp.status_code != 503 or resp.json().get("code") != "workflow_backend_unavailable":
            break
    assert resp.status_code == 202, resp.text
    return resp.json()


async def test_delete_is_idempotent_and_removes_everything(client: httpx.AsyncClient, stack: Stack) -> None:
    created = (await client.post("/ocpi/cpos", json={**TINY, "party_id": "DEL"})).json()
    cpo_id = created["cpo_id"]
    await wait_status(client, cpo_id, {"READY"})
    assert rows_for(stack, int(cpo_id))["charger"] == 1
    first = await client.delete(f"/ocpi/cpos/{cpo_id}")
    assert first.status_code == 202 and first.json()["status"] == "DESTROYING"
    status = await wait_status(client, cpo_id, {"DESTROYED"})
    assert status["status"] == "DESTROYED"
    assert set(rows_for(stack, int(cpo_id)).values()) == {0}
    second = await client.delete(f"/ocpi/cpos/{cpo_id}")
    assert second.status_code == 200 and second.json()["status"] == "DESTROYED"
    assert (await client.delete(f"/ocpi/cpos/{cpo_id}")).status_code == 200
    # The row stays, as history, readable on GET.
    assert (await client.get(f"/ocpi/cpos/{cpo_id}")).json()["status"] == "DESTROYED"


async def test_delete_during_provisioning_stops_and_tears_down(client: httpx.AsyncClient, stack: Stack) -> None:
    created = (
        await client.post(
            "/ocpi/cpos",
            json={"template": "stress-10k", "country_code": "DE", "party_id": "BIG", "name_prefix": "stop-me"},
        )
    ).json()
    cpo_id = created["cpo_id"]
    await wait_status(client, cpo_id, {"PROVISIONING"})
    resp = await client.delete(f"/ocpi/cpos/{cpo_id}")
    assert resp.status_code == 202
    final = await wait_status(client, cpo_id, {"DESTROYED", "FAILED", "READY"}, timeout=120)
    assert final["status"] == "DESTROYED"
    # Provisioning stopped early: it never reached the last steps.
    assert final["progress"]["chargers_done"] < final["progress"]["chargers_total"]
    assert set(rows_for(stack, int(cpo_id)).values()) == {0}


async def test_temporal_unreachable_gives_503_and_leaves_nothing(stack: Stack) -> None:
    dead = {**stack.env, "CPOLAB_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "CPOLAB_TEMPORAL_RPC_TIMEOUT": "2"}
    port = free_port()
    proc = subprocess.Popen(
        [*api_command(port), *QUIET],
        cwd=ROOT,
        env=dead,
        start_new_session=True,
    )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        tables = ("cpo", "credential_token", "party_reservation")
        before = {t: stack.query(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=stack.headers("dead-org"), timeout=30
        ) as c:
            started = time.monotonic()
            resp = await c.post("/ocpi/cpos", json={**TINY, "party_id": "OUT"})
            assert resp.status_code == 503, resp.text
            assert resp.json()["code"] == "workflow_backend_unavailable"
            assert time.monotonic() - started < 10
        assert {t: stack.query(f"SELECT count(*) FROM {t}")[0][0] for t in tables} == before
        assert stack.query("SELECT count(*) FROM party_reservation WHERE org = 'dead-org'")[0][0] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


async def test_worker_sigkill_mid_provisioning_reaches_ready_without_duplicates(stack: Stack) -> None:
    """Kill -9 the only worker while a 1,500-charger CPO is being written; a new worker finishes it."""
    async with stack.client(org="crash-org") as c:
        created = (
            await c.post(
                "/ocpi/cpos",
                json={
                    "template": "small-urban-ac",
                    "country_code": "FR",
                    "party_id": "CRS",
                    "name_prefix": "crash",
                    "seed": 99,
                    "overrides": {"locations": 60, "chargers_per_location": 25},
                },
            )
        ).json()
        cpo_id = created["cpo_id"]
        deadline = time.monotonic() + 60
        while True:  # wait until some, not all, chargers are written
            status = (await c.get(f"/ocpi/cpos/{cpo_id}/status")).json()
            progress = status.get("progress") or {}
            if 0 < stack.count("charger", int(cpo_id)) < progress.get("chargers_total", 0):
                break
            assert status["status"] != "READY", "provisioning finished before the crash could be injected"
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        stack.kill_workers()
        assert stack.count("charger", int(cpo_id)) < 1500
        # No worker can answer the query now: status still answers promptly, from the DB row.
        started = time.monotonic()
        resp = await c.get(f"/ocpi/cpos/{cpo_id}/status")
        assert resp.status_code == 200 and resp.json()["status"] == "PROVISIONING"
        assert time.monotonic() - started < 3
        stack.start_worker()
        final = await wait_status(c, cpo_id, {"READY", "FAILED"}, timeout=120)
        assert final["status"] == "READY", final
        detail = (await c.get(f"/ocpi/cpos/{cpo_id}")).json()
        topo = detail["topology"]
        assert topo["chargers"] == 1500 and topo["locations"] == 60
        rows = rows_for(stack, int(cpo_id))
        assert rows["location"] == 60 and rows["charger"] == 1500
        assert rows["evse"] == topo["evses"] and rows["connector"] == topo["connectors"]
        assert rows["charger_route"] == topo["evses"]
        dupes = stack.query(
            "SELECT identity, count(*) FROM charger WHERE cpo_id = ? GROUP BY identity HAVING count(*) > 1", int(cpo_id)
        )
        assert dupes == []
