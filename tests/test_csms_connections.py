"""The CSMS's connection table: the newest connection wins (in one process and across processes),
pod generation fencing, OFFLINE on a clean disconnect and after a crashed API process, teardown while
connected, DETACHED kept, and `last_updated` that never moves backwards under concurrent writers.

Real API processes (uvicorn, no Temporal) with a fast table cycle (touch every 0.5 s, stale after
3 s: tests/csms_support.FAST_TABLE) on one seeded database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from app.csms import detach
from app.network import evse_state
from app.store.db import Database
from tests.csms_support import FAST_TABLE, CsmsApi, OcppClient, eventually, open_charger, upgrade_refused
from tests.databases import DatabaseFactory
from tests.network_rows import SeededCharger, SeededCpo, register_peer, seed_cpo
from tests.stack import Stack

_parties = itertools.count()


def _party() -> str:
    n = next(_parties)
    return "R" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n // 26 % 26] + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[n % 26]


@pytest.fixture(scope="module")
async def api(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CsmsApi]:
    csms = CsmsApi(Path(tmp_path_factory.mktemp("csms-connections")), databases.new("csms_connections"))
    try:
        await csms.start()
        await csms.second()
        yield csms
    finally:
        csms.stop()


def stamp(value: object) -> datetime:
    """A timestamp column as SQLite (naive text) or Postgres (aware datetime) hands it back."""
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(parsed, datetime), value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def ws_url(stack: Stack) -> str:
    return stack.api_url.replace("http://", "ws://")


def new_cpo(api: CsmsApi, **kw: object) -> SeededCpo:
    return seed_cpo(api.database, party_id=_party(), **kw)  # type: ignore[arg-type]


def row(api: CsmsApi, cpo: SeededCpo, charger: SeededCharger) -> tuple[object, ...]:
    return api.database.query(
        "SELECT status, api_instance, connection_id, pod_generation, last_seen_at FROM charger"
        " WHERE cpo_id = ? AND identity = ?",
        cpo.cpo_id,
        charger.identity,
    )[0]


def evses(api: CsmsApi, cpo: SeededCpo, charger: SeededCharger) -> set[str]:
    rows = api.database.query(
        "SELECT status FROM evse WHERE cpo_id = ? AND charger_identity = ?", cpo.cpo_id, charger.identity
    )
    return {r[0] for r in rows}  # type: ignore[misc]


async def online(url: str, cpo: SeededCpo, charger: SeededCharger, **kw: object) -> OcppClient:
    """Connected, booted, every connector Available."""
    client = OcppClient(await open_charger(url, cpo.cpo_id, charger, **kw))  # type: ignore[arg-type]
    await client.boot(charger.ocpp_version)
    if charger.ocpp_version == "1.6":
        numbers = [(0, n) for n in range(1, len(charger.evses) + 1)]
    else:
        numbers = [(evse_id, 1) for evse_id, _, _ in charger.evses]
    for evse_id, connector_id in numbers:
        answer = await client.status(charger.ocpp_version, evse_id, connector_id, "Available")
        assert answer[0] == 3, answer
    return client


async def closed_with(client: OcppClient, timeout: float = 10.0) -> int:
    """The close code the server sent (waits for the close)."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(timeout):
            while True:
                await client.ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


# ---- newest connection wins -------------------------------------------------------------------


async def test_a_new_connection_replaces_the_old_one_in_the_same_process(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = cpo.of_version("1.6")[0]
    old = await online(api.ws_url, cpo, charger)
    first_connection = row(api, cpo, charger)[2]
    new = OcppClient(await open_charger(api.ws_url, cpo.cpo_id, charger))
    try:
        assert await closed_with(old) == 4000  # replaced
        status, _, connection_id, _, _ = row(api, cpo, charger)
        # Booted before: ONLINE from the claim on; the old socket's cleanup did not mark it OFFLINE.
        assert status == "ONLINE" and connection_id != first_connection
        assert (await new.heartbeat())[0] == 3
        assert (await new.status("1.6", 0, 1, "Faulted"))[0] == 3
        assert "OUTOFORDER" in evses(api, cpo, charger)
        await asyncio.sleep(1.2)  # two touches later: still the new connection's
        assert row(api, cpo, charger)[:3] == ("ONLINE", row(api, cpo, charger)[1], connection_id)
    finally:
        await new.ws.close()


async def test_a_connection_to_another_process_takes_the_charger(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = cpo.of_version("2.0.1")[0]
    old = await online(api.ws_url, cpo, charger)
    first_instance = row(api, cpo, charger)[1]
    new = OcppClient(await open_charger(ws_url(api.extra[0]), cpo.cpo_id, charger))
    try:
        assert row(api, cpo, charger)[1] != first_instance
        # The old process learns it at its next write (a CALLERROR, then the close) or its next touch.
        answer = None
        with contextlib.suppress(ConnectionClosed):
            answer = await old.status("2.0.1", charger.evses[0][0], 1, "Occupied")
        if answer is not None:
            assert answer[:3] == [4, "m" + str(len(charger.evses) + 2), "GenericError"], answer
        assert await closed_with(old) == 4001
        assert evses(api, cpo, charger) == {"AVAILABLE"}  # the old socket's write did not land
        assert (await new.status("2.0.1", charger.evses[0][0], 1, "Occupied"))[0] == 3
        assert "CHARGING" in evses(api, cpo, charger)
        assert row(api, cpo, charger)[0] == "ONLINE"
    finally:
        await new.ws.close()


async def test_an_older_pod_generation_is_refused_and_a_newer_takes_over(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = cpo.of_version("1.6")[0]
    pod5 = await online(api.ws_url, cpo, charger, generation=5)
    assert row(api, cpo, charger)[3] == 5
    status, _, body = await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger, generation=4))
    assert status == 409 and b"generation" in body
    # ... also on another process, and the holder is untouched.
    assert (await upgrade_refused(open_charger(ws_url(api.extra[0]), cpo.cpo_id, charger, generation=4)))[0] == 409
    assert (await pod5.heartbeat())[0] == 3
    assert row(api, cpo, charger)[3] == 5
    pod7 = OcppClient(await open_charger(ws_url(api.extra[0]), cpo.cpo_id, charger, generation=7))
    try:
        assert await closed_with(pod5) == 4001  # the other process took it
        assert row(api, cpo, charger)[3] == 7
        assert (await pod7.heartbeat())[0] == 3
        # A zombie of generation 5 can never come back.
        assert (await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger, generation=5)))[0] == 409
    finally:
        await pod7.ws.close()
    # Clients without the header are not fenced, and leave the generation alone.
    plain = OcppClient(await open_charger(api.ws_url, cpo.cpo_id, charger))
    try:
        assert (await plain.heartbeat())[0] == 3
        assert row(api, cpo, charger)[3] == 7
    finally:
        await plain.ws.close()
    assert (await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger, generation=6)))[0] == 409


async def test_a_wave_of_upgrades_gets_each_charger_its_own_answer(api: CsmsApi) -> None:
    """Upgrades that arrive together share the lookup query and the claim transaction: each still gets
    its own answer (two CPOs, unknown identities, wrong passwords, a stale generation among new ones)."""
    first, second = new_cpo(api, locations=2), new_cpo(api, locations=2)
    held = first.of_version("1.6")[0]
    holder = await online(api.ws_url, first, held, generation=9)
    chargers = [(cpo, c) for cpo in (first, second) for c in cpo.chargers.values() if c is not held]
    good = [open_charger(api.ws_url, cpo.cpo_id, c, generation=10) for cpo, c in chargers]
    bad = [
        upgrade_refused(open_charger(api.ws_url, second.cpo_id, held)),  # an identity of another CPO
        upgrade_refused(open_charger(api.ws_url, first.cpo_id, chargers[0][1], password="wrong")),
        upgrade_refused(open_charger(api.ws_url, first.cpo_id, held, generation=8)),  # older than the holder's
    ]
    results = await asyncio.gather(*good, *bad)
    sockets, refusals = results[: len(good)], results[len(good) :]
    try:
        assert [status for status, _, _ in refusals] == [404, 401, 409]
        clients = [OcppClient(ws) for ws in sockets]
        for client, (cpo, charger) in zip(clients, chargers, strict=True):
            assert (await client.boot(charger.ocpp_version))[0] == 3
            state, _, connection_id, generation, _ = row(api, cpo, charger)
            assert (state, generation) == ("BOOTING", 10) and connection_id
        assert (await holder.heartbeat())[0] == 3  # the stale claim took nothing from the holder
        assert row(api, first, held)[3] == 9
    finally:
        for ws in [*sockets, holder.ws]:
            await ws.close()


# ---- going offline ------------------------------------------------------------------------------


async def test_a_clean_disconnect_marks_the_charger_offline_at_once(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    register_peer(api.database, cpo.cpo_id)
    charger = cpo.of_version("1.6")[0]
    client = await online(api.ws_url, cpo, charger)
    assert row(api, cpo, charger)[0] == "ONLINE" and evses(api, cpo, charger) == {"AVAILABLE"}
    await client.ws.close()
    await eventually(lambda: row(api, cpo, charger)[:3] == ("OFFLINE", None, None), timeout=2)
    assert evses(api, cpo, charger) == {"UNKNOWN"}
    # The connectors keep the last status they reported; the eMSP gets the UNKNOWN pushed.
    connectors = api.database.query(
        "SELECT DISTINCT ocpp_status FROM connector WHERE cpo_id = ? AND evse_uid IN ({})".format(
            ",".join("?" * len(charger.evses))
        ),
        cpo.cpo_id,
        *[uid for _, uid, _ in charger.evses],
    )
    assert connectors == [("Available",)]
    bodies = api.database.query("SELECT body FROM ocpi_outbox WHERE cpo_id = ?", cpo.cpo_id)
    assert {str(b[0]).count("UNKNOWN") for b in bodies} == {1}


async def test_a_detached_charger_stays_detached(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = cpo.of_version("1.6")[0]
    client = await online(api.ws_url, cpo, charger)
    # Simulation control took it off the network (the control plane's job): the CSMS keeps that state.
    api.database.query(
        "UPDATE charger SET status = 'DETACHED' WHERE cpo_id = ? AND identity = ?", cpo.cpo_id, charger.identity
    )
    assert (await client.status("1.6", 0, 1, "Charging"))[0] == 3
    assert row(api, cpo, charger)[0] == "DETACHED"
    await client.ws.close()
    await eventually(lambda: row(api, cpo, charger)[1:3] == (None, None), timeout=2)
    assert row(api, cpo, charger)[0] == "DETACHED" and evses(api, cpo, charger) == {"UNKNOWN"}


async def test_detach_and_attach_move_the_row_and_refuse_pods_meanwhile(api: CsmsApi) -> None:
    """app.csms.detach on its own (the control plane also closes the old socket at once, through
    Temporal; here the holder notices the lost row at its next touch)."""
    cpo = new_cpo(api)
    charger = cpo.of_version("1.6")[0]
    db = Database(api.database.url)
    try:
        pod = await online(api.ws_url, cpo, charger, generation=7)
        held_by = row(api, cpo, charger)[2]
        holder = await detach.set_detached(db, (cpo.cpo_id, charger.identity), True)
        assert holder is not None and holder.connection_id == held_by
        assert row(api, cpo, charger)[:3] == ("DETACHED", None, None) and evses(api, cpo, charger) == {"UNKNOWN"}
        assert await closed_with(pod, timeout=5) == 4001  # its row went: closed at the next touch
        with pytest.raises(detach.WrongState):
            await detach.set_detached(db, (cpo.cpo_id, charger.identity), True)
        with pytest.raises(detach.NotFound):
            await detach.set_detached(db, (cpo.cpo_id, "nobody"), True)
        # A pod (any generation) is refused with a short Retry-After; another client is served and
        # the charger stays DETACHED while it reports.
        code, headers, _ = await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger, generation=2**40))
        assert (code, headers["retry-after"]) == (409, "5")
        user = await online(api.ws_url, cpo, charger)
        status, _, connection_id, generation, _ = row(api, cpo, charger)
        assert (status, generation) == ("DETACHED", 7) and connection_id is not None
        assert evses(api, cpo, charger) == {"AVAILABLE"}
        holder = await detach.set_detached(db, (cpo.cpo_id, charger.identity), False)
        assert holder is not None and holder.connection_id == connection_id
        assert row(api, cpo, charger)[:3] == ("OFFLINE", None, None) and evses(api, cpo, charger) == {"UNKNOWN"}
        assert await closed_with(user, timeout=5) == 4001
        with pytest.raises(detach.WrongState):
            await detach.set_detached(db, (cpo.cpo_id, charger.identity), False)
        # Attached: our pod's generation is admitted again.
        pod = await online(api.ws_url, cpo, charger, generation=8)
        assert row(api, cpo, charger)[0] == "ONLINE"
        await pod.ws.close()
    finally:
        await db.dispose()


async def test_a_detached_charger_held_by_a_dead_process_is_swept_and_stays_detached(api: CsmsApi) -> None:
    """The row as a killed API process leaves it (the user's client was connected there): not touched
    since long ago. A live process's sweeper takes the connection away and keeps DETACHED."""
    cpo = new_cpo(api)
    charger = cpo.of_version("2.0.1")[0]
    client = await online(api.ws_url, cpo, charger)  # its EVSEs AVAILABLE
    await client.ws.close()
    await eventually(lambda: row(api, cpo, charger)[2] is None, timeout=5)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    # The EVSEs first: a sweep landing between the two writes would otherwise set them UNKNOWN and
    # then see them put back to AVAILABLE by the test (seen once in CI).
    api.database.query(
        "UPDATE evse SET status = 'AVAILABLE' WHERE cpo_id = ? AND charger_identity = ?", cpo.cpo_id, charger.identity
    )
    api.database.query(
        "UPDATE charger SET status = 'DETACHED', api_instance = 'dead', connection_id = 'gone', last_seen_at = ?"
        " WHERE cpo_id = ? AND identity = ?",
        long_ago.replace(tzinfo=None) if api.database.url.startswith("sqlite") else long_ago,
        cpo.cpo_id,
        charger.identity,
    )
    bound = 3 * float(FAST_TABLE["CPOLAB_CSMS_TOUCH_INTERVAL"]) + 2
    await eventually(lambda: row(api, cpo, charger)[:3] == ("DETACHED", None, None), timeout=bound)
    assert evses(api, cpo, charger) == {"UNKNOWN"}


async def test_held_chargers_are_touched(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = cpo.of_version("1.6")[0]
    client = await online(api.ws_url, cpo, charger)
    try:
        seen = stamp(row(api, cpo, charger)[4])
        await eventually(lambda: stamp(row(api, cpo, charger)[4]) > seen, timeout=3)
    finally:
        await client.ws.close()


async def test_a_killed_api_process_leaves_its_chargers_offline(api: CsmsApi) -> None:
    """SIGKILL: no cleanup runs. The surviving process's sweeper turns the chargers OFFLINE and their
    EVSEs UNKNOWN within the staleness bound; restarted, the process takes chargers again."""
    cpo = new_cpo(api)
    register_peer(api.database, cpo.cpo_id)
    chargers = list(cpo.chargers.values())[:4]
    victim = Stack(api.stack.workdir / "victim", database=api.database)
    await victim.start_api({**victim.env, **FAST_TABLE})
    try:
        clients = [await online(ws_url(victim), cpo, c) for c in chargers]
        assert {row(api, cpo, c)[0] for c in chargers} == {"ONLINE"}
        assert victim.api is not None
        victim.api.send_signal(signal.SIGKILL)
        victim.api.wait()
        killed_at = asyncio.get_running_loop().time()
        assert {row(api, cpo, c)[0] for c in chargers} == {"ONLINE"}  # nobody cleaned up
        stale_after = float(FAST_TABLE["CPOLAB_CSMS_STALE_AFTER"])
        bound = stale_after + 2 * float(FAST_TABLE["CPOLAB_CSMS_TOUCH_INTERVAL"]) + 2.0
        await eventually(lambda: {row(api, cpo, c)[:3] for c in chargers} == {("OFFLINE", None, None)}, timeout=bound)
        assert asyncio.get_running_loop().time() - killed_at >= stale_after - 1.0  # not before the bound
        assert all(evses(api, cpo, c) == {"UNKNOWN"} for c in chargers)
        for client in clients:
            await client.ws.close()
        # Restarted on the same database, it serves chargers again.
        await victim.start_api({**victim.env, **FAST_TABLE})
        again = await online(ws_url(victim), cpo, chargers[0])
        try:
            assert row(api, cpo, chargers[0])[0] == "ONLINE" and evses(api, cpo, chargers[0]) == {"AVAILABLE"}
        finally:
            await again.ws.close()
    finally:
        victim.stop()


async def test_a_torn_down_cpo_closes_its_sockets(api: CsmsApi) -> None:
    cpo = new_cpo(api)
    charger = cpo.of_version("1.6")[0]
    client = await online(api.ws_url, cpo, charger)
    for table in ("charger_route", "charger", "connector", "evse", "location"):
        api.database.query(f"DELETE FROM {table} WHERE cpo_id = ?", cpo.cpo_id)
    assert await closed_with(client, timeout=5) == 4001
    assert (await upgrade_refused(open_charger(api.ws_url, cpo.cpo_id, charger)))[0] == 404


# ---- last_updated is monotonic --------------------------------------------------------------------


async def test_last_updated_never_goes_backwards_under_concurrent_writers(api: CsmsApi) -> None:
    """Two engines (as two API processes would) write EVSEs of one Location at once, with clocks up
    to 5 s apart: every transaction's stamp is newer than every stamp committed before it, so the
    Location ends at the newest one and no two transactions share a stamp."""
    cpo = new_cpo(api)
    location = next(iter(cpo.chargers.values())).location_id
    uids = [uid for c in cpo.chargers.values() for _, uid, _ in c.evses]
    engines = [Database(api.database.url), Database(api.database.url)]
    stamps: list[datetime] = []
    rng = random.Random(5)
    statuses = ["AVAILABLE", "CHARGING", "OUTOFORDER", "RESERVED"]

    async def writer(db: Database, n: int) -> None:
        for i in range(n):
            skew = timedelta(seconds=rng.uniform(-5, 0))
            wanted = {(cpo.cpo_id, location): {rng.choice(uids): statuses[i % len(statuses)]}}
            async with db.session() as session, session.begin():
                changes = await evse_state.set_statuses(session, wanted, datetime.now(UTC) + skew)
            stamps.extend(c.last_updated for c in changes)

    try:
        await asyncio.gather(*(writer(db, 25) for db in engines for _ in range(3)))
    finally:
        for db in engines:
            await db.dispose()
    assert len(stamps) == 150 and len(set(stamps)) == 150
    final = api.database.query("SELECT last_updated FROM location WHERE cpo_id = ? AND id = ?", cpo.cpo_id, location)
    assert stamp(final[0][0]) == max(stamps)
    newest_evse = api.database.query("SELECT max(last_updated) FROM evse WHERE cpo_id = ?", cpo.cpo_id)
    assert stamp(newest_evse[0][0]) == max(stamps)


async def test_live_status_storms_keep_the_location_newest(api: CsmsApi) -> None:
    """Chargers of one Location on two API processes change status at once: the Location's stamp is
    the newest of its EVSEs' and every EVSE got a stamp, whatever the interleaving."""
    cpo = new_cpo(api)
    chargers = cpo.of_version("1.6")
    urls = [api.ws_url, ws_url(api.extra[0])]
    clients = [await online(urls[i % 2], cpo, c) for i, c in enumerate(chargers)]
    try:

        async def storm(client: OcppClient) -> None:
            for i in range(15):
                await client.status("1.6", 0, 1, ["Charging", "Available", "Faulted"][i % 3])

        await asyncio.gather(*(storm(c) for c in clients))
    finally:
        for client in clients:
            await client.ws.close()
    location = chargers[0].location_id
    # One statement (one snapshot): the disconnects above still write (EVSEs UNKNOWN) meanwhile.
    (loc, newest), *_ = api.database.query(
        "SELECT l.last_updated, (SELECT max(e.last_updated) FROM evse e WHERE e.cpo_id = l.cpo_id"
        " AND e.location_id = l.id) FROM location l WHERE l.cpo_id = ? AND l.id = ?",
        cpo.cpo_id,
        location,
    )
    assert stamp(loc) >= stamp(newest)


async def test_a_reconnected_charger_reports_its_evses_back(api: CsmsApi) -> None:
    """Offline made the EVSEs UNKNOWN; the same status as before the disconnect brings them back."""
    cpo = new_cpo(api)
    charger = cpo.of_version("2.0.1")[0]
    client = await online(api.ws_url, cpo, charger)
    await client.ws.close()
    await eventually(lambda: evses(api, cpo, charger) == {"UNKNOWN"}, timeout=2)
    again = OcppClient(await open_charger(api.ws_url, cpo.cpo_id, charger))
    try:
        assert row(api, cpo, charger)[0] == "ONLINE"  # booted before: no new BootNotification needed
        for evse_id, _, _ in charger.evses:
            assert (await again.status("2.0.1", evse_id, 1, "Available"))[0] == 3
        assert evses(api, cpo, charger) == {"AVAILABLE"}
    finally:
        await again.ws.close()


async def test_a_stopped_api_process_releases_its_chargers(api: CsmsApi) -> None:
    """SIGTERM (a deploy): the process closes its sockets (1012) and marks its chargers OFFLINE itself,
    without waiting for another process's sweeper."""
    cpo = new_cpo(api)
    chargers = list(cpo.chargers.values())[:3]
    leaving = Stack(api.stack.workdir / "leaving", database=api.database)
    await leaving.start_api({**leaving.env, **FAST_TABLE, "CPOLAB_CSMS_STALE_AFTER": "600"})
    try:
        clients = [await online(ws_url(leaving), cpo, c) for c in chargers]
        assert leaving.api is not None
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        leaving.api.send_signal(signal.SIGTERM)
        assert {await closed_with(c) for c in clients} == {1012}
        await eventually(lambda: {row(api, cpo, c)[:3] for c in chargers} == {("OFFLINE", None, None)}, timeout=5)
        # Sooner than any sweeper could have (rows touched ≤ 0.5 s before, stale after 3 s).
        assert loop.time() - stopped_at < float(FAST_TABLE["CPOLAB_CSMS_STALE_AFTER"]) - 0.5
        assert all(evses(api, cpo, c) == {"UNKNOWN"} for c in chargers)
    finally:
        leaving.stop()
