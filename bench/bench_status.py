"""Status polling under provisioning load: 50 concurrent pollers on GET /ocpi/cpos/{id}/status.

Starts its own stack (tests.stack.Stack: Temporal dev server, one worker, one API process) in a temp
dir. A feeder keeps `--provisioning` 1,000-charger CPOs (small-urban-ac 40 × 25) provisioning for the
whole window: whenever one is seen READY, it creates the next. Meanwhile 50 pollers, each on its own
keep-alive connection, call the status URL of the CPOs being provisioned back to back (closed loop, no
sleep) for `--duration` seconds. Each poll is a JWT check, a DB read and, while the CPO is not
terminal, a `state` query to its workflow (1 s RPC timeout, DB fallback).

Target (issue 2): ≥ 100 polls/s sustained with 50 concurrent pollers while CPOs are provisioning.

    .venv/bin/python bench/bench_status.py
    .venv/bin/python bench/bench_status.py --persistent    # SQLite WAL file, like `make run`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.bench_create import CpuMeter, add_common_args, pct, print_table, run_main, stop_stack  # noqa: E402
from tests.stack import Stack  # noqa: E402

POLLERS = 50
ORG = "bench-status"
BIG = {
    "template": "small-urban-ac",
    "country_code": "NL",
    "name_prefix": "bench",
    "ttl_seconds": 3600,
    "overrides": {"locations": 40, "chargers_per_location": 25},
}
_party_ids = ("".join(p) for p in itertools.product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", repeat=3))


class Load:
    def __init__(self) -> None:
        self.active: list[str] = []  # CPO ids currently being provisioned (what pollers hit)
        self.last_status: dict[str, str] = {}
        self.created = 0
        self.ready = 0
        self.latencies_ms: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.stop = asyncio.Event()
        self.slots = asyncio.Semaphore(0)  # released when an active CPO is seen READY

    async def create(self, client: httpx.AsyncClient) -> None:
        resp = await client.post("/ocpi/cpos", json={**BIG, "party_id": next(_party_ids)})
        if resp.status_code != 202:
            raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:300]}")
        self.active.append(resp.json()["cpo_id"])
        self.created += 1

    async def feeder(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            await self.slots.acquire()
            if not self.stop.is_set():
                await self.create(client)

    def seen(self, cpo_id: str, status: str) -> None:
        if status == "READY" and self.last_status.get(cpo_id) != "READY" and cpo_id in self.active:
            self.active.remove(cpo_id)
            self.ready += 1
            self.slots.release()
        self.last_status[cpo_id] = status

    async def poller(self, client: httpx.AsyncClient, offset: int) -> None:
        i = offset
        while not self.stop.is_set():
            active = self.active or list(self.last_status)
            cpo_id = active[i % len(active)]
            i += 1
            t0 = time.perf_counter()
            try:
                resp = await client.get(f"/ocpi/cpos/{cpo_id}/status")
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            if self.stop.is_set():
                return  # finished after the window closed: not counted
            if resp.status_code != 200:
                self.errors[str(resp.status_code)] += 1
                continue
            status = resp.json()["status"]
            self.latencies_ms.append(elapsed)
            self.statuses[status] += 1
            self.seen(cpo_id, status)


async def main(args: argparse.Namespace) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="cpolab-bench-status-"))
    stack = Stack(workdir, temporal_db=args.persistent)
    mode = "persistent WAL (make run)" if args.persistent else "in-memory"
    print(f"bench_status: Temporal dev server {mode}, 1 worker, 1 API process; {POLLERS} pollers; workdir {workdir}")
    clients: list[httpx.AsyncClient] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await stack.start()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [stack.client(org=ORG, limits=limits) for _ in range(POLLERS)]
        async with stack.client(org=ORG) as creator:
            load = Load()
            for _ in range(args.provisioning):
                await load.create(creator)
            for i, c in enumerate(clients):  # open every connection before the clock starts
                await c.get(f"/ocpi/cpos/{load.active[i % len(load.active)]}/status")
            t0 = time.perf_counter()
            cpu = CpuMeter(stack)
            tasks += [asyncio.create_task(load.poller(c, i)) for i, c in enumerate(clients)]
            feeder = asyncio.create_task(load.feeder(creator))
            tasks.append(feeder)
            await asyncio.sleep(args.duration)
            load.stop.set()
            window = time.perf_counter() - t0
            cpu_report = cpu.report()
            load.slots.release()
            await asyncio.gather(*tasks)
            await feeder

        lat = load.latencies_ms
        rate = len(lat) / window
        provisioning = load.statuses["PROVISIONING"] + load.statuses["PENDING"]
        print(
            f"\n{POLLERS} pollers for {window:.1f} s while {args.provisioning} × 1,000-charger CPOs kept provisioning "
            f"({load.created} created, {load.ready} reached READY in the window)"
        )
        print_table(
            [
                "polls",
                "polls/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "> 1 s",
                "errors",
                "saw PROVISIONING",
                "target",
            ],
            [
                [
                    len(lat),
                    f"{rate:.0f}",
                    f"{pct(lat, 50):.1f}",
                    f"{pct(lat, 90):.1f}",
                    f"{pct(lat, 99):.1f}",
                    f"{max(lat):.0f}",
                    sum(1 for x in lat if x > 1000),
                    (sum(load.errors.values()) and dict(load.errors)) or 0,
                    f"{100 * provisioning / max(1, len(lat)):.0f}%",
                    "≥ 100/s " + ("MET" if rate >= 100 and not load.errors else "MISSED"),
                ]
            ],
        )
        print(f"status seen: {dict(load.statuses)}")
        print(cpu_report)
        return {
            "polls_per_s": rate,
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "errors": sum(load.errors.values()),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop_stack(stack, args.keep)
        for c in clients:
            await c.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--duration", type=float, default=15, help="polling window, seconds")
    p.add_argument("--provisioning", type=int, default=3, help="1,000-charger CPOs kept provisioning at once")
    return p.parse_args(argv)


if __name__ == "__main__":
    run_main(main(parse_args()))
