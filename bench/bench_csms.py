"""CSMS throughput: OCPP messages one API process handles, N raw OCPP-J clients on loopback.

    .venv/bin/python bench/bench_csms.py [--clients 100] [--duration 15] [--rate MSG_PER_S]
                                         [--status-share 0.5] [--database sqlite|postgres]

One uvicorn API process (no Temporal, no worker) on a database seeded with a city-mixed-large network
(1.6 and 2.0.1 chargers) and one registered eMSP peer, so EVSE changes also write outbox rows. Each
client is a charger written directly on `websockets` (not app/sim): it connects (50 at a time), boots,
reports its connectors Available, then sends Heartbeat and StatusNotification in turn
(`--status-share`), back to back (closed loop: capacity) or paced (`--rate`: latency at a given load,
counted from each message's due time, so queueing is not hidden). Every status differs from the
connector's previous one, cycling Available → Preparing → Charging → SuspendedEV → Finishing (1.6) or
Available → Occupied (2.0.1), so each is a DB write, and some change the EVSE's OCPI status (+ Location
bump + outbox row): a worst case, real chargers repeat statuses far less often. Prints the connect
rate, messages/s, latency p50/p99/max per message type, and CPU per message of the API process and
of the clients (one process).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, `tests` (the stack it drives) must be importable

from websockets.asyncio.client import ClientConnection  # noqa: E402

from bench.app_database import add_database_arg, bench_databases, tree_cpu_seconds  # noqa: E402
from bench.bench_create import pct, run_main  # noqa: E402
from tests.csms_support import CsmsApi, open_charger  # noqa: E402
from tests.databases import DatabaseFactory  # noqa: E402
from tests.network_rows import SeededCharger, register_peer, seed_cpo  # noqa: E402

# The connection table's default cycle (tests/csms_support.py speeds it up for the tests).
PRODUCTION_TABLE = {"CPOLAB_CSMS_TOUCH_INTERVAL": "30", "CPOLAB_CSMS_STALE_AFTER": "90", "CPOLAB_LOG_LEVEL": "WARNING"}
CYCLES = {"1.6": ("Available", "Preparing", "Charging", "SuspendedEV", "Finishing"), "2.0.1": ("Available", "Occupied")}


class Client:
    def __init__(self, ws: ClientConnection, charger: SeededCharger) -> None:
        self.ws = ws
        self.charger = charger
        self.ids = itertools.count()
        if charger.ocpp_version == "1.6":  # one connectorId space across the charger
            count = sum(len(connectors) for _, _, connectors in charger.evses)
            self.connectors = [(0, n) for n in range(1, count + 1)]
        else:  # (evseId, connectorId within the EVSE)
            self.connectors = [(evse_id, n) for evse_id, _, cs in charger.evses for n in range(1, len(cs) + 1)]
        self.step = {c: 0 for c in self.connectors}

    async def call(self, action: str, payload: dict[str, object]) -> float:
        message_id = str(next(self.ids))
        started = time.perf_counter()
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        answer = json.loads(await self.ws.recv())
        if answer[0] != 3 or answer[1] != message_id:
            raise RuntimeError(f"{self.charger.identity}: {answer}")
        return time.perf_counter() - started

    async def status(self, connector: tuple[int, int]) -> float:
        cycle = CYCLES[self.charger.ocpp_version]
        status = cycle[self.step[connector] % len(cycle)]
        self.step[connector] += 1
        evse_id, connector_id = connector
        if self.charger.ocpp_version == "1.6":
            payload: dict[str, object] = {"connectorId": connector_id, "errorCode": "NoError", "status": status}
        else:
            payload = {
                "timestamp": "2026-01-01T00:00:00Z",
                "connectorStatus": status,
                "evseId": evse_id,
                "connectorId": connector_id,
            }
        return await self.call("StatusNotification", payload)

    async def boot(self) -> None:
        if self.charger.ocpp_version == "1.6":
            await self.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Raw"})
        else:
            payload = {"chargingStation": {"vendorName": "Bench", "model": "Raw"}, "reason": "PowerUp"}
            await self.call("BootNotification", payload)
        for connector in self.connectors:
            await self.status(connector)


async def run_client(
    client: Client,
    window: tuple[float, float],
    status_share: float,
    pace: tuple[float, float] | None,
    out: dict[str, list[float]],
) -> None:
    """Closed loop (`pace` None: the next message as soon as the last is answered) or open loop (`pace` =
    (interval, offset): message k is due at start + offset + k × interval, and its latency counts from
    then, so a late answer also delays what follows without hiding it)."""
    warm_until, until = window
    turn = 0.0
    connectors = itertools.cycle(client.connectors)
    started = time.monotonic()
    for k in itertools.count():
        due = started + pace[1] + k * pace[0] if pace else time.monotonic()
        if due >= until:
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        turn += status_share
        if turn >= 1:
            turn -= 1
            kind = "StatusNotification"
            await client.status(next(connectors))
        else:
            kind = "Heartbeat"
            await client.call("Heartbeat", {})
        if due >= warm_until:
            out[kind].append(time.monotonic() - due)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-csms-") as tmp, bench_databases(args.database) as dbs:
        database = dbs.new("csms") or DatabaseFactory("sqlite", Path(tmp), None).new("csms")
        per_location = 6
        locations = -(-args.clients // per_location)
        cpo = seed_cpo(database, party_id="BCH", locations=locations, chargers_per_location=per_location)
        register_peer(database, cpo.cpo_id)
        api = CsmsApi(Path(tmp) / "api", database, env=PRODUCTION_TABLE)
        clients: list[Client] = []
        try:
            await api.start()
            assert api.stack.api is not None
            chargers = list(cpo.chargers.values())[: args.clients]
            spy = _py_spy(api.stack.api.pid, args.py_spy) if args.py_spy else None
            connect_cpu = tree_cpu_seconds(api.stack.api.pid)
            connect_started = time.monotonic()
            sockets = []
            for wave in range(0, len(chargers), 50):  # a pod's worth at a time
                batch = chargers[wave : wave + 50]
                sockets += await asyncio.gather(*(open_charger(api.ws_url, cpo.cpo_id, c) for c in batch))
            connect_s = time.monotonic() - connect_started
            clients = [Client(ws, c) for ws, c in zip(sockets, chargers, strict=True)]
            await asyncio.gather(*(c.boot() for c in clients))
            online_s = time.monotonic() - connect_started
            connect_cpu = tree_cpu_seconds(api.stack.api.pid) - connect_cpu
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait(timeout=60)
            latencies: dict[str, list[float]] = {"Heartbeat": [], "StatusNotification": []}
            start = time.monotonic()
            warm_until = start + args.warmup
            until = warm_until + args.duration
            api_cpu = client_cpu = 0.0

            async def mark_cpu() -> None:
                nonlocal api_cpu, client_cpu
                await asyncio.sleep(max(0.0, warm_until - time.monotonic()))
                api_cpu, client_cpu = -tree_cpu_seconds(api.stack.api.pid), -_own_cpu()  # type: ignore[union-attr]

            window = (warm_until, until)
            interval = len(clients) / args.rate if args.rate else None

            def pace(i: int) -> tuple[float, float] | None:
                return (interval, i * interval / len(clients)) if interval else None

            await asyncio.gather(
                mark_cpu(),
                *(run_client(c, window, args.status_share, pace(i), latencies) for i, c in enumerate(clients)),
            )
            api_cpu += tree_cpu_seconds(api.stack.api.pid)
            client_cpu += _own_cpu()
            elapsed = time.monotonic() - warm_until
            outbox = database.query("SELECT count(*) FROM ocpi_outbox")[0][0]
        finally:
            for client in clients:
                await client.ws.close()
            api.stop()
    n = sum(len(v) for v in latencies.values())
    ms = [x * 1000 for v in latencies.values() for x in v]
    kinds = {"1.6": 0, "2.0.1": 0}
    for c in clients:
        kinds[c.charger.ocpp_version] += 1
    print(
        f"CSMS, one API process, {args.database}: {len(clients)} clients ({kinds['1.6']} × 1.6, "
        f"{kinds['2.0.1']} × 2.0.1), {f'paced {args.rate:,.0f} msg/s' if args.rate else 'closed loop'}, "
        f"{args.status_share:.0%} StatusNotification / rest Heartbeat, "
        f"{elapsed:.1f} s timed after {args.warmup:.0f} s warm-up"
    )
    print(f"connect (upgrade + claim + topology, 50 at a time): {len(clients) / connect_s:,.0f} chargers/s")
    print(
        f"online (connect, then every charger boots and reports its connectors): {online_s:.2f} s = "
        f"{len(clients) / online_s:,.0f} chargers/s; API CPU {connect_cpu / len(clients) * 1000:.2f} ms per charger"
    )
    print(f"messages: {n}  →  {n / elapsed:,.0f} msg/s   (target ≥ 2,000)")
    print(f"latency: p50 {pct(ms, 50):.1f} ms  p99 {pct(ms, 99):.1f} ms  max {max(ms):.1f} ms   (target p99 ≤ 100 ms)")
    for kind, values in latencies.items():
        kms = [x * 1000 for x in values]
        if kms:
            print(f"  {kind}: {len(kms)} msgs, p50 {pct(kms, 50):.1f} ms  p99 {pct(kms, 99):.1f} ms")
    print(
        f"CPU: API {api_cpu:.1f} s = {api_cpu / elapsed:.0%} of a core, {api_cpu / n * 1e6:.0f} µs/msg; "
        f"clients {client_cpu:.1f} s = {client_cpu / elapsed:.0%} of a core, {client_cpu / n * 1e6:.0f} µs/msg"
    )
    print(f"outbox rows left (one peer, coalesced per EVSE): {outbox}")


def _py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    """py-spy recording the API process (connect and boot phase) into `out` (collapsed stacks)."""
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--gil", "--output", out]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the first connection
    return proc


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, choices=range(1, 10_001), metavar="N", help="chargers")
    parser.add_argument("--duration", type=float, default=15.0, help="timed seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds first")
    parser.add_argument("--status-share", type=float, default=0.5, help="share of StatusNotification (0-1)")
    parser.add_argument(
        "--rate", type=float, default=0, help="open loop: messages/s in total, spread evenly (default: closed loop)"
    )
    parser.add_argument("--py-spy", metavar="OUT", help="record the API with py-spy while chargers come online")
    add_database_arg(parser)
    run_main(main(parser.parse_args()))
