"""The OCPP charge-point simulators (`app.sim`) against a real CSMS peer over loopback WebSockets."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers

from app.network.topology import ocpp_connectors
from app.sim.backoff import reconnect_wait, retry_after, unit_jitter
from app.sim.config import ChargerConfig, SimEvse, Tunables, connector_layout
from app.sim.pod import Pod
from tests.ocpp_csms_peer import CsmsPeer

FAST = Tunables(
    open_timeout=2,
    response_timeout=2,
    close_timeout=1,
    backoff_min=0.05,
    backoff_range=0.05,
    backoff_doublings=3,
    refused_wait=0.3,
    reboot_delay=0,
)
EVSES = (SimEvse(1, 2), SimEvse(2, 1))  # 3 connectors: 1.6 ids 1..3; 2.0.1 (1,1) (1,2) (2,1)


def password(identity: str) -> str:
    return f"pw-{identity}-0123456789abcdef"


def charger(name: str, version: str, url: str, **kw: object) -> ChargerConfig:
    """A valid config of charger `name`; `kw` overrides any field."""
    fields: dict[str, object] = {
        "identity": name,
        "password": password(name),
        "ocpp_version": version,
        "vendor": "SimVendor",
        "model": "SimModel",
        "serial_number": f"SN-{name}",
        "firmware_version": "1.2.3",
        "evses": EVSES,
        "csms_url": url,
    }
    fields.update(kw)
    return ChargerConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def peer() -> AsyncIterator[CsmsPeer]:
    csms = CsmsPeer({i: password(i) for i in ("A16", "B201", "C16")})
    await csms.start()
    yield csms
    await csms.stop()


@asynccontextmanager
async def running(pod: Pod) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(pod.run())
    try:
        yield task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def online(peer: CsmsPeer, pod: Pod, n: int, timeout: float = 5.0) -> None:
    await peer.wait_until(lambda: pod.online() == n, timeout, f"{n} chargers online")


def statuses16(peer: CsmsPeer, identity: str) -> list[tuple[int, str]]:
    return [(s["connector_id"], s["status"]) for s in peer.rec(identity).statuses]


def statuses201(peer: CsmsPeer, identity: str) -> list[tuple[int, int, str]]:
    return [(s["evse_id"], s["connector_id"], s["connector_status"]) for s in peer.rec(identity).statuses]


def assert_no_secret(text: str, identity: str, *passwords: str) -> None:
    assert text  # something was logged (DEBUG), just never a password, in clear or as Basic auth
    for secret in passwords:
        assert secret not in text
        assert base64.b64encode(f"{identity}:{secret}".encode()).decode() not in text


def gaps(times: Iterable[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ocpp_version": "2.1"}, "ocpp_version"),
        ({"identity": "a:b"}, "identity"),
        ({"identity": "x" * 49}, "identity"),
        ({"password": ""}, "password"),
        ({"vendor": "v" * 21}, "vendor"),
        ({"model": ""}, "vendor and model"),
        ({"evses": ()}, "EVSE"),
        ({"evses": (SimEvse(1, 1), SimEvse(1, 2))}, "unique"),
        ({"evses": (SimEvse(0, 1),)}, "unique"),
        ({"evses": (SimEvse(1, 0),)}, "connector"),
        ({"csms_url": "http://x/ocpp/1"}, "ws://"),
        ({"headers": (("Authorization", "x"),)}, "header"),
        ({"headers": (("X-A", "1\r\nX-B: 2"),)}, "header"),
    ],
)
def test_bad_config_is_refused_up_front(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        charger("A16", "1.6", "ws://127.0.0.1:1/ocpp/1", **change)


def test_config_hides_the_password_and_builds_the_url() -> None:
    cfg = charger("CP 01/é", "1.6", "ws://h:1/ocpp/12/")
    assert password("CP 01/é") not in repr(cfg)
    assert cfg.url == "ws://h:1/ocpp/12/CP%2001%2F%C3%A9"
    # 2.0.1 allows a 50-character vendor, 1.6 only 20
    charger("B201", "2.0.1", "ws://h:1/ocpp/12", vendor="v" * 50)


def test_duplicate_identities_in_a_pod_are_refused() -> None:
    cfg = charger("A16", "1.6", "ws://127.0.0.1:1/ocpp/1")
    with pytest.raises(ValueError, match="unique"):
        Pod([cfg, cfg])


def test_connector_layout_follows_the_topology_rule() -> None:
    layout = connector_layout((SimEvse(2, 1), SimEvse(1, 2)))  # given out of order
    assert [(c.evse_id, c.connector_id, c.flat_id) for c in layout] == [(1, 1, 1), (1, 2, 2), (2, 1, 3)]


@pytest.mark.parametrize("shape", [(1,), (2, 1), (1, 3, 2), (4, 4)])
def test_connector_layout_matches_the_platforms_rule(shape: tuple[int, ...]) -> None:
    """The simulator cannot import app.network, so its copy of the numbering rule is checked here."""
    evses = tuple(SimEvse(i + 1, n) for i, n in enumerate(shape))
    platform = [(e.evse_id, f"EVSE-{e.evse_id}", [str(c) for c in range(1, e.connectors + 1)]) for e in evses]
    layout = connector_layout(evses)
    v16 = ocpp_connectors("1.6", platform)
    assert [c.flat_id for c in layout] == [c.ocpp_connector_id for c in v16]
    assert [c.evse_id for c in layout] == [c.ocpp_evse_id for c in v16]
    v201 = ocpp_connectors("2.0.1", platform)
    assert [(c.evse_id, c.connector_id) for c in layout] == [(c.ocpp_evse_id, c.ocpp_connector_id) for c in v201]


def test_jitter_is_deterministic_and_backoff_doubles_up_to_a_cap() -> None:
    assert unit_jitter(7, "A", 3) == unit_jitter(7, "A", 3)
    assert len({unit_jitter(7, "A", 3), unit_jitter(7, "B", 3), unit_jitter(8, "A", 3), unit_jitter(7, "A", 4)}) == 4
    assert all(0 <= unit_jitter(1, "A", n) < 1 for n in range(100))
    t = Tunables(backoff_min=1, backoff_range=2, backoff_doublings=3, refused_wait=60)
    assert [reconnect_wait(t, n, 0.5, refused=False) for n in range(6)] == [2, 3, 5, 9, 9, 9]
    assert reconnect_wait(t, 0, 0.5, refused=True) == 61


def test_a_refusal_with_retry_after_is_retried_then_within_the_refused_bound() -> None:
    t = Tunables(backoff_min=1, backoff_range=2, backoff_doublings=3, refused_wait=60)
    # However many failures: Retry-After plus jitter, at least backoff_min, at most refused_wait.
    assert [reconnect_wait(t, n, 0.5, refused=True, retry_after=5) for n in (0, 9)] == [6, 6]
    assert reconnect_wait(t, 0, 0.5, refused=True, retry_after=0) == 2
    assert reconnect_wait(t, 0, 0.5, refused=True, retry_after=3600) == 61
    assert reconnect_wait(t, 0, 0.5, refused=False, retry_after=5) == 2  # only a refusal reads it
    assert retry_after(Headers({"Retry-After": " 5 "})) == 5
    for bad in ("soon", "-1", "1.5", "Wed, 21 Oct 2026 07:28:00 GMT", "9999999"):
        assert retry_after(Headers({"Retry-After": bad})) is None, bad
    assert retry_after(Headers()) is None


# --- boot and registration ------------------------------------------------------------------------


async def test_both_versions_boot_and_report_every_connector(peer: CsmsPeer) -> None:
    headers = (("X-Cpolab-Pod-Generation", "7"),)
    pod = Pod(
        [charger("A16", "1.6", peer.url(), headers=headers), charger("B201", "2.0.1", peer.url(), headers=headers)],
        tunables=FAST,
    )
    async with running(pod):
        await online(peer, pod, 2)
        assert pod.stats() == {
            "chargers": 2,
            "connected": 2,
            "online": 2,
            "booting": 0,
            "connecting": 0,
            "reconnects": 0,
            "failed_connects": 0,
            "transactions": 0,
            "queued": 0,
            "sent": 0,
        }
    a, b = peer.rec("A16"), peer.rec("B201")
    assert a.subprotocols == ["ocpp1.6"] and b.subprotocols == ["ocpp2.0.1"]
    assert a.boots == [
        {
            "charge_point_vendor": "SimVendor",
            "charge_point_model": "SimModel",
            "charge_point_serial_number": "SN-A16",
            "firmware_version": "1.2.3",
        }
    ]
    assert b.boots == [
        {
            "charging_station": {
                "vendor_name": "SimVendor",
                "model": "SimModel",
                "serial_number": "SN-B201",
                "firmware_version": "1.2.3",
            },
            "reason": "PowerUp",
        }
    ]
    assert statuses16(peer, "A16") == [(1, "Available"), (2, "Available"), (3, "Available")]
    assert {s["error_code"] for s in a.statuses} == {"NoError"}
    assert statuses201(peer, "B201") == [(1, 1, "Available"), (1, 2, "Available"), (2, 1, "Available")]
    assert all(s["timestamp"].endswith("Z") for s in a.statuses + b.statuses)
    for identity, record in (("A16", a), ("B201", b)):
        sent = record.headers[0]
        assert sent["x-cpolab-pod-generation"] == "7"
        assert sent["sec-websocket-protocol"] in ("ocpp1.6", "ocpp2.0.1")
        assert "permessage-deflate" not in sent.get("sec-websocket-extensions", "")
        assert base64.b64decode(sent["authorization"].removeprefix("Basic ")).decode() == (
            f"{identity}:{password(identity)}"
        )
    # cancelled: both sockets closed by the charger
    await peer.wait_until(lambda: a.disconnects == 1 and b.disconnects == 1, what="disconnects")


async def test_optional_boot_fields_are_left_out(peer: CsmsPeer) -> None:
    pod = Pod([charger("C16", "1.6", peer.url(), serial_number="", firmware_version="")], tunables=FAST)
    async with running(pod):
        await online(peer, pod, 1)
    assert peer.rec("C16").boots == [{"charge_point_vendor": "SimVendor", "charge_point_model": "SimModel"}]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_pending_then_accepted(peer: CsmsPeer, version: str) -> None:
    identity = "A16" if version == "1.6" else "B201"
    peer.boot_plans[identity] = [("Pending", 1)]
    pod = Pod([charger(identity, version, peer.url())], tunables=FAST)
    rec = peer.rec(identity)
    loop = asyncio.get_running_loop()
    async with running(pod):
        await peer.wait_until(lambda: len(rec.boots) == 1, what="first boot")
        pending_at = loop.time()
        assert pod.stats()["booting"] == 1 and pod.online() == 0
        # While Pending the charger answers the CSMS (here: configures it) but sends nothing itself.
        if version == "1.6":
            answer = await peer.call(identity, call16.GetConfiguration(key=["HeartbeatInterval"]))
            assert answer.configuration_key[0]["key"] == "HeartbeatInterval"
        else:
            answer = await peer.call(
                identity, call201.SetVariables(set_variable_data=[_var("OCPPCommCtrlr", "HeartbeatInterval", "5")])
            )
            assert answer.set_variable_result[0]["attribute_status"] == "Accepted"
        assert rec.statuses == [] and rec.heartbeats == []
        await online(peer, pod, 1)
        assert loop.time() - pending_at > 0.8  # the boot was retried after `interval`
    assert len(rec.boots) == 2 and len(rec.statuses) == 3
    assert rec.connects == 1  # retried on the same connection


async def test_pending_201_boots_at_once_when_triggered(peer: CsmsPeer) -> None:
    peer.boot_plans["B201"] = [("Pending", 30)]
    pod = Pod([charger("B201", "2.0.1", peer.url())], tunables=FAST)
    rec = peer.rec("B201")
    async with running(pod):
        await peer.wait_until(lambda: len(rec.boots) == 1, what="first boot")
        answer = await peer.call("B201", call201.TriggerMessage(requested_message="BootNotification"))
        assert answer.status == "Accepted"
        await online(peer, pod, 1, timeout=2)
        assert [b["reason"] for b in rec.boots] == ["PowerUp", "Triggered"]
        # once Accepted, a triggered boot is refused (OCPP 2.0.1 F06.FR.17)
        answer = await peer.call("B201", call201.TriggerMessage(requested_message="BootNotification"))
        assert answer.status == "Rejected"


async def test_rejected_charger_stays_silent_for_the_interval(peer: CsmsPeer) -> None:
    peer.boot_plans["A16"] = [("Rejected", 2)]
    pod = Pod([charger("A16", "1.6", peer.url())], tunables=FAST)
    rec = peer.rec("A16")
    loop = asyncio.get_running_loop()
    async with running(pod):
        await peer.wait_until(lambda: len(rec.boots) == 1, what="first boot")
        first = loop.time()
        await asyncio.sleep(1.5)
        assert len(rec.boots) == 1 and rec.statuses == [] and rec.heartbeats == []
        await online(peer, pod, 1, timeout=2)
        assert loop.time() - first >= 1.9
    assert len(rec.boots) == 2 and rec.connects == 1


async def test_boot_answered_with_callerror_is_retried_later(peer: CsmsPeer) -> None:
    """A CSMS that cannot process the boot (CALLERROR) is treated like Rejected: retry after a while."""
    pod = Pod([charger("A16", "1.6", peer.url())], tunables=dataclasses.replace(FAST, fallback_interval=1))
    peer.boot_plans["A16"] = [("NotAStatus", 1)]  # our own answer fails the library's schema check
    rec = peer.rec("A16")
    async with running(pod):
        await online(peer, pod, 1, timeout=4)
    assert len(rec.boots) == 2 and rec.connects == 1


async def test_heartbeats_at_the_interval(peer: CsmsPeer) -> None:
    peer.interval = 1
    pod = Pod([charger("B201", "2.0.1", peer.url())], tunables=FAST)
    rec = peer.rec("B201")
    async with running(pod):
        await peer.wait_until(lambda: len(rec.heartbeats) >= 3, timeout=4.5, what="3 heartbeats")
    assert all(0.9 < g < 1.6 for g in gaps(rec.heartbeats)), gaps(rec.heartbeats)


# --- CSMS-initiated calls, 1.6 ----------------------------------------------------------------------


async def test_16_reset_reboots_and_availability_persists(peer: CsmsPeer) -> None:
    pod = Pod([charger("A16", "1.6", peer.url())], tunables=FAST)
    rec = peer.rec("A16")
    async with running(pod):
        await online(peer, pod, 1)
        assert (await peer.call("A16", call16.ChangeAvailability(connector_id=2, type="Inoperative"))).status == (
            "Accepted"
        )
        await peer.wait_until(lambda: len(rec.statuses) == 4, what="StatusNotification after ChangeAvailability")
        assert statuses16(peer, "A16")[3] == (2, "Unavailable")
        # already Inoperative: accepted, nothing changes, so no StatusNotification
        await peer.call("A16", call16.ChangeAvailability(connector_id=2, type="Inoperative"))
        assert (await peer.call("A16", call16.ChangeAvailability(connector_id=4, type="Operative"))).status == (
            "Rejected"
        )
        assert (await peer.call("A16", call16.Reset(type="Hard"))).status == "Accepted"
        await peer.wait_until(lambda: len(rec.boots) == 2 and pod.online() == 1, what="boot after reset")
        assert rec.connects == 2 and rec.disconnects == 1
        # the reboot reports the availability it kept
        assert statuses16(peer, "A16")[-3:] == [(1, "Available"), (2, "Unavailable"), (3, "Available")]
        # connector 0 = the whole charger: each connector whose status changes is reported
        await peer.call("A16", call16.ChangeAvailability(connector_id=0, type="Inoperative"))
        await peer.wait_until(lambda: len(rec.statuses) == 9, what="statuses after connector 0")
        assert statuses16(peer, "A16")[-2:] == [(1, "Unavailable"), (3, "Unavailable")]
        assert (await peer.call("A16", call16.Reset(type="Soft"))).status == "Accepted"
        await peer.wait_until(lambda: len(rec.boots) == 3 and pod.online() == 1, what="boot after soft reset")
    assert pod.stats()["reconnects"] == 2


async def test_16_configuration(peer: CsmsPeer) -> None:
    pod = Pod([charger("A16", "1.6", peer.url())], tunables=FAST)
    async with running(pod):
        await online(peer, pod, 1)
        everything = await peer.call("A16", call16.GetConfiguration())
        keys = {k["key"]: k for k in everything.configuration_key}
        assert set(keys) == {
            "HeartbeatInterval",
            "MeterValueSampleInterval",
            "NumberOfConnectors",
            "AuthorizeRemoteTxRequests",
            "ConnectionTimeOut",
            "TransactionMessageAttempts",
            "TransactionMessageRetryInterval",
        }
        assert keys["HeartbeatInterval"] == {"key": "HeartbeatInterval", "readonly": False, "value": "60"}
        assert keys["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True, "value": "3"}
        assert everything.unknown_key is None
        some = await peer.call("A16", call16.GetConfiguration(key=["NumberOfConnectors", "Nope", "AuthorizationKey"]))
        assert [k["key"] for k in some.configuration_key] == ["NumberOfConnectors"]
        assert some.unknown_key == ["Nope"]  # AuthorizationKey is known but write-only: never returned

        async def change(key: str, value: str) -> str:
            return (await peer.call("A16", call16.ChangeConfiguration(key=key, value=value))).status

        assert await change("Nope", "1") == "NotSupported"
        assert await change("NumberOfConnectors", "4") == "Rejected"
        assert await change("HeartbeatInterval", "soon") == "Rejected"
        assert await change("HeartbeatInterval", "0") == "Rejected"
        assert await change("MeterValueSampleInterval", "15") == "Accepted"
        assert await change("AuthorizationKey", "short") == "Rejected"
        rec = peer.rec("A16")
        assert rec.heartbeats == []
        assert await change("HeartbeatInterval", "1") == "Accepted"  # applies at once
        await peer.wait_until(lambda: len(rec.heartbeats) >= 2, timeout=3, what="heartbeats at the new interval")
        values = await peer.call("A16", call16.GetConfiguration(key=["HeartbeatInterval", "MeterValueSampleInterval"]))
        assert [k["value"] for k in values.configuration_key] == ["1", "15"]


async def test_16_authorization_key_rotation_reconnects_with_the_new_password(
    peer: CsmsPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    new = "rotated-0123456789abcdefXYZ"
    pod = Pod([charger("A16", "1.6", peer.url())], tunables=FAST)
    rec = peer.rec("A16")
    async with running(pod):
        await online(peer, pod, 1)
        assert peer.passwords is not None
        peer.passwords["A16"] = new
        answer = await peer.call("A16", call16.ChangeConfiguration(key="AuthorizationKey", value=new))
        assert answer.status == "Accepted"
        await peer.wait_until(lambda: rec.connects == 2 and pod.online() == 1, what="reconnect with the new key")
        # A malformed frame carrying the key: the library logs the error, our filter cuts the frame out.
        bad = json.dumps([2, "x1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": new, "extra": 1}])
        await peer.connections["A16"][0].send(bad)
        await peer.wait_until(lambda: "Error while handling request" in caplog.text, what="the library's error")
        assert (await peer.call("A16", call16.UnlockConnector(connector_id=1))).status == "Unlocked"
    assert rec.refusals == [] and len(rec.boots) == 1  # a reconnect, not a reboot
    auth = base64.b64decode(rec.headers[-1]["authorization"].removeprefix("Basic ")).decode()
    assert auth == f"A16:{new}"
    assert_no_secret(caplog.text, "A16", password("A16"), new)


async def test_16_trigger_and_unlock(peer: CsmsPeer) -> None:
    pod = Pod([charger("A16", "1.6", peer.url())], tunables=FAST)
    rec = peer.rec("A16")
    async with running(pod):
        await online(peer, pod, 1)

        async def trigger(message: str, connector_id: int | None = None) -> str:
            payload = call16.TriggerMessage(requested_message=message, connector_id=connector_id)
            return (await peer.call("A16", payload)).status

        assert await trigger("Heartbeat") == "Accepted"
        await peer.wait_until(lambda: len(rec.heartbeats) == 1, what="triggered heartbeat")
        assert await trigger("StatusNotification", 2) == "Accepted"
        await peer.wait_until(lambda: len(rec.statuses) == 4, what="triggered status")
        assert statuses16(peer, "A16")[3] == (2, "Available")
        assert await trigger("StatusNotification") == "Accepted"
        await peer.wait_until(lambda: len(rec.statuses) == 7, what="all statuses")
        assert await trigger("StatusNotification", 0) == "Rejected"  # connector 0 is not reported
        assert await trigger("StatusNotification", 9) == "Rejected"
        assert await trigger("MeterValues") == "NotImplemented"
        assert await trigger("DiagnosticsStatusNotification") == "NotImplemented"
        assert await trigger("BootNotification") == "Accepted"
        await peer.wait_until(lambda: len(rec.boots) == 2 and len(rec.statuses) == 10, what="triggered boot")
        assert rec.connects == 1  # the same connection
        assert (await peer.call("A16", call16.UnlockConnector(connector_id=3))).status == "Unlocked"
        assert (await peer.call("A16", call16.UnlockConnector(connector_id=4))).status == "NotSupported"
        # an action the simulator does not implement: the library's CALLERROR, and the charger stays up
        with pytest.raises(OcppNotImplemented):
            await peer.call("A16", call16.ClearCache())
        assert pod.online() == 1


# --- CSMS-initiated calls, 2.0.1 --------------------------------------------------------------------


def _var(component: str, variable: str, value: str | None = None, **kw: object) -> dict[str, object]:
    item: dict[str, object] = {"component": {"name": component, **kw}, "variable": {"name": variable}}
    if value is not None:
        item["attribute_value"] = value
    return item


async def test_201_reset_availability_unlock(peer: CsmsPeer) -> None:
    pod = Pod([charger("B201", "2.0.1", peer.url())], tunables=FAST)
    rec = peer.rec("B201")
    async with running(pod):
        await online(peer, pod, 1)
        evse2 = {"id": 2}
        answer = await peer.call("B201", call201.ChangeAvailability(operational_status="Inoperative", evse=evse2))
        assert answer.status == "Accepted"
        await peer.wait_until(lambda: len(rec.statuses) == 4, what="status after ChangeAvailability")
        assert statuses201(peer, "B201")[3] == (2, 1, "Unavailable")
        bad = {"id": 1, "connector_id": 3}
        answer = await peer.call("B201", call201.ChangeAvailability(operational_status="Inoperative", evse=bad))
        assert answer.status == "Rejected"
        answer = await peer.call("B201", call201.ChangeAvailability(operational_status="Inoperative"))
        await peer.wait_until(lambda: len(rec.statuses) == 6, what="station-wide change")
        assert statuses201(peer, "B201")[4:] == [(1, 1, "Unavailable"), (1, 2, "Unavailable")]
        await peer.call("B201", call201.ChangeAvailability(operational_status="Operative", evse={"id": 1}))
        await peer.wait_until(lambda: len(rec.statuses) == 8, what="EVSE 1 back")

        assert (await peer.call("B201", call201.Reset(type="OnIdle", evse_id=1))).status == "Rejected"
        assert (await peer.call("B201", call201.Reset(type="Immediate"))).status == "Accepted"
        await peer.wait_until(lambda: len(rec.boots) == 2 and pod.online() == 1, what="boot after reset")
        assert [b["reason"] for b in rec.boots] == ["PowerUp", "RemoteReset"]
        assert statuses201(peer, "B201")[-3:] == [(1, 1, "Available"), (1, 2, "Available"), (2, 1, "Unavailable")]

        async def unlock(evse_id: int, connector_id: int) -> str:
            return (await peer.call("B201", call201.UnlockConnector(evse_id=evse_id, connector_id=connector_id))).status

        assert await unlock(1, 2) == "Unlocked"
        assert await unlock(2, 2) == "UnknownConnector"
        assert await unlock(3, 1) == "UnknownConnector"


async def test_201_variables(peer: CsmsPeer) -> None:
    pod = Pod([charger("B201", "2.0.1", peer.url())], tunables=FAST)
    rec = peer.rec("B201")
    async with running(pod):
        await online(peer, pod, 1)
        wanted = [
            _var("OCPPCommCtrlr", "HeartbeatInterval"),
            _var("SampledDataCtrlr", "TxUpdatedInterval"),
            _var("SecurityCtrlr", "Identity"),
            _var("SecurityCtrlr", "BasicAuthPassword"),
            _var("Nope", "HeartbeatInterval"),
            _var("OCPPCommCtrlr", "Nope"),
            {**_var("OCPPCommCtrlr", "HeartbeatInterval"), "attribute_type": "Target"},
            _var("OCPPCommCtrlr", "HeartbeatInterval", evse={"id": 1}),
        ]
        got = (await peer.call("B201", call201.GetVariables(get_variable_data=wanted))).get_variable_result
        assert [(r["attribute_status"], r.get("attribute_value")) for r in got] == [
            ("Accepted", "60"),
            ("Accepted", "60"),
            ("Accepted", "B201"),
            ("Rejected", None),  # write-only
            ("UnknownComponent", None),
            ("UnknownVariable", None),
            ("NotSupportedAttributeType", None),
            ("UnknownComponent", None),
        ]
        assert got[0]["component"] == {"name": "OCPPCommCtrlr"} and got[0]["variable"] == {"name": "HeartbeatInterval"}
        assert got[6]["attribute_type"] == "Target"

        changes = [
            _var("OCPPCommCtrlr", "HeartbeatInterval", "1"),
            _var("SampledDataCtrlr", "TxUpdatedInterval", "x"),
            _var("SecurityCtrlr", "Identity", "other"),
            _var("SecurityCtrlr", "BasicAuthPassword", "short"),
            _var("Nope", "X", "1"),
            _var("OCPPCommCtrlr", "Nope", "1"),
        ]
        got = (await peer.call("B201", call201.SetVariables(set_variable_data=changes))).set_variable_result
        assert [r["attribute_status"] for r in got] == [
            "Accepted",
            "Rejected",
            "Rejected",
            "Rejected",
            "UnknownComponent",
            "UnknownVariable",
        ]
        await peer.wait_until(lambda: len(rec.heartbeats) >= 2, timeout=3, what="heartbeats at the new interval")


async def test_201_trigger(peer: CsmsPeer) -> None:
    pod = Pod([charger("B201", "2.0.1", peer.url())], tunables=FAST)
    rec = peer.rec("B201")
    async with running(pod):
        await online(peer, pod, 1)

        async def trigger(message: str, evse: dict[str, int] | None = None) -> str:
            return (await peer.call("B201", call201.TriggerMessage(requested_message=message, evse=evse))).status

        assert await trigger("Heartbeat") == "Accepted"
        await peer.wait_until(lambda: len(rec.heartbeats) == 1, what="triggered heartbeat")
        assert await trigger("StatusNotification", {"id": 1, "connector_id": 2}) == "Accepted"
        await peer.wait_until(lambda: len(rec.statuses) == 4, what="triggered status")
        assert statuses201(peer, "B201")[3] == (1, 2, "Available")
        assert await trigger("StatusNotification", {"id": 1}) == "Accepted"
        await peer.wait_until(lambda: len(rec.statuses) == 6, what="EVSE statuses")
        assert await trigger("StatusNotification", {"id": 5}) == "Rejected"
        assert await trigger("MeterValues") == "NotImplemented"
        assert await trigger("LogStatusNotification") == "NotImplemented"


# --- connections ------------------------------------------------------------------------------------


@pytest.mark.parametrize("clean", [True, False])
async def test_reconnect_after_a_drop_without_a_new_boot(peer: CsmsPeer, clean: bool) -> None:
    pod = Pod([charger("A16", "1.6", peer.url()), charger("B201", "2.0.1", peer.url())], tunables=FAST)
    async with running(pod):
        await online(peer, pod, 2)
        for identity in ("A16", "B201"):
            await peer.drop(identity, clean=clean)
        await peer.wait_until(
            lambda: all(peer.rec(i).connects == 2 for i in ("A16", "B201")) and pod.online() == 2,
            what="reconnected",
        )
        assert pod.stats()["reconnects"] == 2
    for identity in ("A16", "B201"):
        rec = peer.rec(identity)
        assert len(rec.boots) == 1
        assert len(rec.statuses) == 6  # every connector reported again on the new connection
    assert [b["reason"] for b in peer.rec("B201").boots] == ["PowerUp"]


async def test_reconnect_after_the_csms_restarts_on_the_same_port(peer: CsmsPeer) -> None:
    pod = Pod([charger("A16", "1.6", peer.url()), charger("B201", "2.0.1", peer.url())], tunables=FAST)
    async with running(pod):
        await online(peer, pod, 2)
        await peer.stop()
        await asyncio.sleep(0.3)  # a few refused connections meanwhile
        assert pod.online() == 0
        await peer.start(peer.port)
        await online(peer, pod, 2)
    assert all(len(peer.rec(i).boots) == 1 and peer.rec(i).connects == 2 for i in ("A16", "B201"))


async def test_unanswered_call_drops_the_link(peer: CsmsPeer) -> None:
    peer.interval = 1
    peer.heartbeat_delay = 3  # longer than response_timeout
    tunables = dataclasses.replace(FAST, response_timeout=0.5)
    pod = Pod([charger("A16", "1.6", peer.url())], tunables=tunables)
    rec = peer.rec("A16")
    async with running(pod):
        await peer.wait_until(lambda: rec.connects == 2, timeout=4, what="reconnect after a silent CSMS")
        peer.heartbeat_delay = 0
        await online(peer, pod, 1)
    assert len(rec.boots) == 1


async def test_oversized_frame_closes_the_link_and_the_charger_reconnects(peer: CsmsPeer) -> None:
    pod = Pod([charger("B201", "2.0.1", peer.url())], tunables=dataclasses.replace(FAST, max_size=4096))
    rec = peer.rec("B201")
    async with running(pod):
        await online(peer, pod, 1)
        await peer.connections["B201"][0].send('[2,"1","DataTransfer",{"vendorId":"' + "x" * 5000 + '"}]')
        await peer.wait_until(lambda: rec.connects == 2 and pod.online() == 1, what="reconnect")
        # garbage within the limit is dropped by the library; the charger stays connected
        await peer.connections["B201"][0].send("not json")
        await peer.connections["B201"][0].send('[2,"2","Nope",{}]')
        assert (await peer.call("B201", call201.UnlockConnector(evse_id=1, connector_id=1))).status == "Unlocked"
    assert len(rec.boots) == 1 and rec.connects == 2


@pytest.mark.parametrize(("identity", "status"), [("A16", 401), ("nobody", 404)])
async def test_refused_upgrade_is_retried_slowly_and_logged_once(
    peer: CsmsPeer, caplog: pytest.LogCaptureFixture, identity: str, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = charger(identity, "1.6", peer.url(), password="wrong-password-0123456789")
    pod = Pod([cfg], tunables=FAST)
    rec = peer.rec(identity)
    async with running(pod):
        await asyncio.sleep(1.2)
        assert pod.online() == 0 and pod.stats()["connected"] == 0
    assert set(rec.refusals) == {status} and rec.connects == 0
    assert 2 <= len(rec.attempts) <= 5, rec.attempts  # every ≥ 0.3 s (refused_wait), not a tight loop
    assert all(g >= 0.3 for g in gaps(rec.attempts))
    refusals = [r for r in caplog.records if f"HTTP {status}" in r.getMessage()]
    assert len(refusals) == 1
    assert_no_secret(caplog.text, identity, "wrong-password-0123456789")


async def test_unavailable_csms_backoff_doubles_up_to_the_cap(peer: CsmsPeer) -> None:
    peer.unavailable.add("A16")
    pod = Pod([charger("A16", "1.6", peer.url())], seed=3, tunables=FAST)
    rec = peer.rec("A16")
    async with running(pod):
        await peer.wait_until(lambda: len(rec.attempts) >= 9, timeout=8, what="9 attempts")
        peer.unavailable.clear()
        await online(peer, pod, 1)
    expected = [reconnect_wait(FAST, n, unit_jitter(3, "A16", n), refused=False) for n in range(8)]
    late = [got - want for got, want in zip(gaps(rec.attempts[:9]), expected, strict=True)]
    assert all(d >= 0 for d in late), (gaps(rec.attempts), expected)  # never sooner than the backoff
    # Each wait is the computed one; a loaded box may delay one attempt by a scheduling hiccup, but a
    # backoff that kept doubling past the cap would make every later wait ≥ 2 × the cap.
    assert sum(d >= 0.5 for d in late) <= 1, (gaps(rec.attempts), expected)
    capped = sorted(late[4:])
    assert capped[len(capped) // 2] < 0.2, (gaps(rec.attempts), expected)


async def test_no_subprotocol_agreed_is_retried_slowly() -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(ws: ServerConnection) -> None:
        attempts.append(loop.time())
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0, select_subprotocol=lambda conn, offered: None)
    port = server.sockets[0].getsockname()[1]
    pod = Pod([charger("A16", "1.6", f"ws://127.0.0.1:{port}/ocpp/1")], tunables=FAST)
    try:
        async with running(pod):
            await asyncio.sleep(1.0)
            assert pod.online() == 0
    finally:
        server.close()
        await server.wait_closed()
    assert 2 <= len(attempts) <= 4 and all(g >= 0.3 for g in gaps(attempts))


async def test_unreachable_csms_is_retried_and_cancel_is_prompt() -> None:
    pod = Pod([charger("A16", "1.6", "ws://127.0.0.1:9/ocpp/1")], tunables=FAST)
    async with running(pod):
        await asyncio.sleep(0.3)
        assert pod.stats()["connected"] == 0


# --- the pod ----------------------------------------------------------------------------------------


async def test_online_counts_only_registered_and_reported_chargers(peer: CsmsPeer) -> None:
    peer.boot_plans["B201"] = [("Pending", 30)]
    pod = Pod(
        [
            charger("A16", "1.6", peer.url()),
            charger("B201", "2.0.1", peer.url()),
            charger("C16", "1.6", peer.url(), password="wrong-password-0123456789"),
        ],
        tunables=FAST,
    )
    assert pod.online() == 0
    async with running(pod):
        await online(peer, pod, 1)
        await peer.wait_until(lambda: pod.stats()["booting"] == 1, what="B201 pending")
        stats = pod.stats()
        assert stats["connected"] == 2 and stats["online"] == 1 and stats["chargers"] == 3
    assert pod.online() == 0 and pod.stats()["connected"] == 0


async def test_cancel_closes_every_socket_and_leaves_no_task(peer: CsmsPeer) -> None:
    ids = [f"P{n:02d}" for n in range(20)]
    peer.passwords = None  # accept anyone
    before = asyncio.all_tasks()  # this test's own task and the peer's server
    pod = Pod([charger(i, "1.6" if n % 2 else "2.0.1", peer.url()) for n, i in enumerate(ids)], tunables=FAST)
    async with running(pod):
        await online(peer, pod, 20)
    await peer.wait_until(lambda: all(peer.rec(i).disconnects == 1 for i in ids), what="every socket closed")
    # the simulator's tasks are gone at once; the server's connection handlers end right after
    assert not [t for t in asyncio.all_tasks() - before if t.get_name().startswith("sim:")]
    await peer.wait_until(lambda: not asyncio.all_tasks() - before, what="no task left")


async def test_an_empty_pod_runs_until_cancelled() -> None:
    pod = Pod([])
    async with running(pod) as task:
        await asyncio.sleep(0.05)
        assert not task.done() and pod.online() == 0 and pod.stats()["chargers"] == 0
