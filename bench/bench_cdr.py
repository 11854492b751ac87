"""StopTransaction → CDR POST at the eMSP: how long a completed session takes to be billed.

    .venv/bin/python bench/bench_cdr.py [--sessions 30] [--burst 20] [--database sqlite|postgres]

One uvicorn API process (no Temporal, no worker: the CDR path is the CSMS, the CdrBuilder and the
outbox, all in the API) on a database seeded with a city-mixed-large network, an eMSP test peer
(tests/emsp_peer.py) registered with it, and its token pushed through the CPO's tokens module.
Chargers are OCPP 1.6 clients written on `websockets`: each boots, reports its connector, sends
StartTransaction (the token is whitelisted: no real-time authorization), a MeterValues, then
StopTransaction. Timed from sending StopTransaction (same process, one monotonic clock) to its
answer (the session committed COMPLETED with its CDR marker), to the eMSP receiving the Session's
COMPLETED push (the baseline: the same commit and outbox, nothing to build) and to the eMSP receiving
the CDR POST. Sequential: one session at a time on one charger. Burst: `--burst` chargers stop
their sessions at the same moment. Prints p50/p90/p99/max of each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, `tests` (the stack it drives) must be importable

import httpx  # noqa: E402

from app.network.topology import ocpp_connectors  # noqa: E402
from bench.app_database import add_database_arg, bench_databases, tree_cpu_seconds  # noqa: E402
from bench.bench_create import pct, run_main  # noqa: E402
from tests.charging_support import register_emsp  # noqa: E402
from tests.csms_support import CsmsApi, OcppClient, open_charger  # noqa: E402
from tests.databases import DatabaseFactory  # noqa: E402
from tests.emsp_peer import EmspPeer  # noqa: E402
from tests.network_rows import SeededCharger, seed_cpo  # noqa: E402

# Production's connection-table cycle, the outbox delivering (tests/csms_support.py turns it off).
SETTINGS = {
    "CPOLAB_CSMS_TOUCH_INTERVAL": "30",
    "CPOLAB_CSMS_STALE_AFTER": "90",
    "CPOLAB_OUTBOX_DISPATCH": "true",
    "CPOLAB_LOG_LEVEL": "WARNING",
}
UID = "BENCHCDR0001"


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Charger:
    def __init__(self, client: OcppClient, seeded: SeededCharger) -> None:
        self.client = client
        self.connector = ocpp_connectors("1.6", seeded.evses)[0].ocpp_connector_id
        self.meter = 0

    @classmethod
    async def connect(cls, ws_url: str, cpo_id: int, seeded: SeededCharger) -> Charger:
        self = cls(OcppClient(await open_charger(ws_url, cpo_id, seeded)), seeded)
        assert (await self.client.boot("1.6"))[2]["status"] == "Accepted"
        assert (await self.client.status("1.6", 0, self.connector, "Available"))[0] == 3
        return self

    async def start(self) -> int:
        """A transaction of a simulated minute that already drew 7 kWh; returns its transactionId."""
        now = datetime.now(UTC)
        start = {"connectorId": self.connector, "idTag": UID, "meterStart": self.meter, "timestamp": stamp(now)}
        answer = await self.client.call("StartTransaction", start)
        assert answer[2]["idTagInfo"]["status"] == "Accepted", answer
        transaction_id = int(answer[2]["transactionId"])
        self.meter += 7000
        sampled = [{"value": str(self.meter), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
        meter = {"timestamp": stamp(now + timedelta(seconds=1)), "sampledValue": sampled}
        values = {"connectorId": self.connector, "transactionId": transaction_id, "meterValue": [meter]}
        assert (await self.client.call("MeterValues", values))[0] == 3
        return transaction_id

    async def stop(self, transaction_id: int) -> tuple[float, float]:
        """StopTransaction; returns (when it was sent, when it was answered), monotonic."""
        self.meter += 100
        stop = {"transactionId": transaction_id, "meterStop": self.meter, "timestamp": stamp(datetime.now(UTC))}
        sent = time.monotonic()
        answer = await self.client.call("StopTransaction", stop, timeout=60)
        assert answer[0] == 3, answer
        return sent, time.monotonic()


async def arrivals(peer: EmspPeer, session_id: str, timeout: float = 60) -> tuple[float, float]:
    """When the eMSP got the Session's COMPLETED push and the CDR's POST (monotonic)."""
    completed = await peer.wait_for(
        lambda r: r.path.endswith(f"/sessions/NL/BCD/{session_id}") and r.body.get("status") == "COMPLETED", timeout
    )
    cdr = await peer.wait_for(
        lambda r: r.method == "POST" and r.path.endswith("/cdrs") and r.body.get("session_id") == session_id, timeout
    )
    return completed.at, cdr.at


async def timed_session(peer: EmspPeer, charger: Charger) -> tuple[float, float, float]:
    """(StopTransaction answered, Session COMPLETED at the eMSP, CDR at the eMSP), seconds after
    StopTransaction was sent."""
    transaction_id = await charger.start()
    sent, answered = await charger.stop(transaction_id)
    completed, cdr = await arrivals(peer, str(transaction_id))
    return answered - sent, completed - sent, cdr - sent


LABELS = (
    "StopTransaction answered",
    "Session COMPLETED at the eMSP (baseline: the same outbox, no CDR to build)",
    "CDR at the eMSP",
)


def summary(name: str, runs: list[tuple[float, float, float]]) -> None:
    print(f"  {name} (n={len(runs)}):")
    for i, label in enumerate(LABELS):
        ms = [run[i] * 1000 for run in runs]
        print(
            f"    p50 {pct(ms, 50):7.1f} ms  p90 {pct(ms, 90):7.1f} ms  p99 {pct(ms, 99):7.1f} ms  "
            f"max {max(ms):7.1f} ms  {label}"
        )


async def main(args: argparse.Namespace) -> None:
    peer = await EmspPeer().start()
    chargers: list[Charger] = []
    with tempfile.TemporaryDirectory(prefix="bench-cdr-") as tmp, bench_databases(args.database) as dbs:
        database = dbs.new("cdr") or DatabaseFactory("sqlite", Path(tmp), None).new("cdr")
        cpo = seed_cpo(database, party_id="BCD", locations=-(-args.burst * 2 // 6), chargers_per_location=6)
        env = {**SETTINGS, "CPOLAB_CDR_POLL_INTERVAL": str(args.cdr_poll_interval)}
        api = CsmsApi(Path(tmp) / "api", database, env=env)
        try:
            await api.start()
            assert api.stack.api is not None
            async with httpx.AsyncClient(timeout=30) as http:
                emsp = register_emsp(database, http, api.url, peer, cpo.cpo_id, "BCD")
                await emsp.push_token(UID, whitelist="ALWAYS")
            seeded = cpo.of_version("1.6")[: max(1, args.burst)]
            chargers = list(await asyncio.gather(*(Charger.connect(api.ws_url, cpo.cpo_id, s) for s in seeded)))
            for _ in range(args.warmup):  # first-use costs (imports, prepared statements, the peer's client)
                await timed_session(peer, chargers[0])
            cpu = tree_cpu_seconds(api.stack.api.pid)
            sequential = [await timed_session(peer, chargers[0]) for _ in range(args.sessions)]
            sequential_cpu = tree_cpu_seconds(api.stack.api.pid) - cpu
            burst: list[tuple[float, float, float]] = []
            for _ in range(args.rounds):
                transactions = await asyncio.gather(*(c.start() for c in chargers))
                stops = await asyncio.gather(*(c.stop(t) for c, t in zip(chargers, transactions, strict=True)))
                arrived = await asyncio.gather(*(arrivals(peer, str(t)) for t in transactions))
                # Every session stopped at once: timed from the first StopTransaction sent.
                first = min(sent for sent, _ in stops)
                for (_, answered), (completed, cdr) in zip(stops, arrived, strict=True):
                    burst.append((answered - first, completed - first, cdr - first))
        finally:
            for charger in chargers:
                await charger.client.ws.close()
            api.stop()
            await peer.stop()
    cdrs = sum(1 for r in peer.received if r.method == "POST" and r.path.endswith("/cdrs"))
    print(
        f"StopTransaction → CDR POST at the eMSP, one API process, {args.database}, CDR poll interval "
        f"{args.cdr_poll_interval:g} s; {cdrs} CDRs received"
    )
    summary("sequential", sequential)
    print(
        "  API CPU per sequential session (start, meter, stop, CDR build + POST): "
        f"{sequential_cpu / len(sequential) * 1000:.1f} ms"
    )
    if burst:
        summary(f"burst of {len(chargers)}", burst)
    print("  target: CDR p50 ≤ 1 s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=30, help="sequential sessions timed (default 30)")
    p.add_argument("--burst", type=int, default=20, help="chargers stopping at once (default 20; 0: none)")
    p.add_argument("--rounds", type=int, default=3, help="bursts timed (default 3)")
    p.add_argument("--warmup", type=int, default=3, help="sessions before timing (default 3)")
    p.add_argument(
        "--cdr-poll-interval",
        type=float,
        default=2.0,
        help="CPOLAB_CDR_POLL_INTERVAL of the API (default 2, the setting's default); 60 shows what the "
        "wake-up alone delivers",
    )
    add_database_arg(p)
    args = p.parse_args(argv)
    if args.burst == 0:
        args.rounds = 0
    return args


if __name__ == "__main__":
    run_main(main(parse_args()))
