"""Cost per CPO, beside a minimal Temporal baseline measured in the same run.

One stack (tests.stack.Stack: Temporal dev server, `--workers` cpolab workers, one API process) plus
as many bench-only baseline workers (bench/noop_worker.py: one workflow, one no-op activity, the
production worker's options) on the same dev server. Three phases, one after another:

1. **baseline**: `--starters` concurrent starters, each starts a NoopWorkflow and waits for its result,
   back to back, for `--duration` s. This is what Temporal, the SDK and the bench client cost alone.
2. **tiny CPOs**: the same starters, each POSTs a tiny CPO (small-urban-ac 1×1) and waits until its
   row is READY, back to back, for `--duration` s.
3. **paced**: `--rate` creates/s spread over the starters' connections for `--paced-duration` s;
   POST latency from the scheduled send time (no coordinated omission).

Prints throughput of (1) and (2) and their ratio (target ≥ 50 %), CPU ms per workflow / per CPO by
process (from /proc/<pid>/stat: Temporal, the cpolab workers, the sim worker hosting the CPOs' pods, the
API, the client; with `--database postgres` also every process of the Postgres server),
and POST p50/p99 of (3) (target p99 ≤ 150 ms at 10/s).

    .venv/bin/python bench/bench_cost.py                        # app database: a SQLite file
    .venv/bin/python bench/bench_cost.py --database postgres    # a throwaway PostgreSQL server
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bench.app_database import BenchDatabases, add_database_arg, bench_databases  # noqa: E402
from bench.bench_create import (  # noqa: E402
    ORGS,
    TINY,
    CpuMeter,
    Phase,
    _party_ids,
    add_common_args,
    drain,
    paced,
    pct,
    print_table,
    run_main,
    stop_stack,
)
from bench.noop_workflow import TASK_QUEUE, NoopWorkflow  # noqa: E402
from tests.stack import Stack  # noqa: E402


class ReadyWatcher:
    """One poller of the cpo table for every starter waiting on READY (one cheap query per tick)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.waiting: dict[int, asyncio.Future[str]] = {}

    def wait(self, cpo_id: int) -> asyncio.Future[str]:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[cpo_id] = fut
        return fut

    async def run(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            if not self.waiting:
                continue
            low = min(self.waiting)
            rows = self.stack.query("SELECT id, status FROM cpo WHERE id >= ? AND status IN ('READY', 'FAILED')", low)
            for cpo_id, status in rows:
                fut = self.waiting.pop(int(cpo_id), None)  # type: ignore[arg-type]
                if fut is not None and not fut.done():
                    fut.set_result(str(status))


async def closed_loop(starters: int, duration: float, one: Callable[[int], Awaitable[bool]]) -> tuple[int, float]:
    """`starters` loops calling `one` back to back until `duration` has passed; returns (done, wall)."""
    deadline = time.perf_counter() + duration
    done = 0
    t0 = time.perf_counter()

    async def loop(i: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            if await one(i):
                done += 1

    await asyncio.gather(*(loop(i) for i in range(starters)))
    return done, time.perf_counter() - t0


class Meter:
    """CpuMeter of the stack's processes plus, on Postgres, every process of the database server."""

    def __init__(self, cpu: CpuMeter, dbs: BenchDatabases) -> None:
        self.cpu, self.dbs = cpu, dbs
        self.pg_start = dbs.server_cpu_seconds()

    def used(self) -> dict[str, float]:
        used = self.cpu.used()
        if self.dbs.server is not None:
            used["postgres"] = self.dbs.server_cpu_seconds() - self.pg_start
        return used


def cpu_row(label: str, used: dict[str, float], n: int) -> list[object]:
    workers = sum(v for k, v in used.items() if k.startswith("worker"))
    sim = sum(v for k, v in used.items() if k.startswith("sim worker")) if any("sim" in k for k in used) else None
    total = sum(used.values())
    cells = [used.get("temporal"), workers, sim, used.get("api"), used.get("postgres"), used.get("bench client"), total]
    # On SQLite there is no server process: its column stays empty ("-"), the work is inside the workers/API.
    return [label, n, *("-" if v is None else f"{1000 * v / max(n, 1):.1f}" for v in cells)]


async def main(args: argparse.Namespace) -> None:
    with bench_databases(args.database) as dbs:
        await measure(args, dbs)


async def measure(args: argparse.Namespace, dbs: BenchDatabases) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cpolab-bench-cost-"))
    stack = Stack(workdir, temporal_db=args.persistent, database=dbs.new("bench_cost"))
    print(
        f"bench_cost: {args.workers} cpolab workers and {args.workers} baseline workers, {args.starters} starters, "
        f"app database {args.database}"
    )
    clients: list[httpx.AsyncClient] = []
    try:
        await stack.start()
        for _ in range(args.workers - 1):
            stack.start_worker()
        cpo_workers = list(stack.workers)
        noop_workers = [
            stack._spawn(
                f"noop-worker-{i}", [sys.executable, "-m", "bench.noop_worker", "--address", stack.temporal_address]
            )
            for i in range(args.workers)
        ]
        stack.workers.extend(noop_workers)  # so stack.stop() stops them too
        temporal = await Client.connect(stack.temporal_address)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [stack.client(org=ORGS[i % len(ORGS)], limits=limits) for i in range(args.starters)]
        watcher = ReadyWatcher(stack)
        watch_task = asyncio.create_task(watcher.run())
        errors: dict[str, int] = {}
        serial = iter(range(10**9))

        async def noop(_: int) -> bool:
            await temporal.execute_workflow(
                NoopWorkflow.run,
                id=f"noop-{next(serial)}",
                task_queue=TASK_QUEUE,
                execution_timeout=timedelta(seconds=30),  # a dead baseline worker fails the bench
            )
            return True

        async def cpo(i: int) -> bool:
            resp = await clients[i].post("/ocpi/cpos", json={**TINY, "party_id": next(_party_ids)})
            if resp.status_code != 202:
                errors[str(resp.status_code)] = errors.get(str(resp.status_code), 0) + 1
                return False
            status = await asyncio.wait_for(watcher.wait(int(resp.json()["cpo_id"])), 120)
            if status != "READY":
                errors[status] = errors.get(status, 0) + 1
            return status == "READY"

        # Warm-up: every connection, the API's Temporal client, both task queues, imports.
        await closed_loop(args.starters, 2, noop)
        await closed_loop(args.starters, 2, cpo)
        await drain(stack, 120)

        def meter(workers: list[object], sims: tuple[object, ...] = ()) -> Meter:
            procs = {"temporal": stack.temporal, "api": stack.api}
            procs |= {f"worker {i + 1}": w for i, w in enumerate(workers)}
            # The sim worker hosts every CPO's pod (its chargers' simulators): part of a CPO's cost.
            procs |= {f"sim worker {i + 1}": w for i, w in enumerate(sims)}
            return Meter(CpuMeter(stack, procs), dbs)

        m = meter(noop_workers)
        base_n, base_wall = await closed_loop(args.starters, args.duration, noop)
        base_cpu = m.used()
        m = meter(cpo_workers, tuple(stack.sim_workers))
        cpo_n, cpo_wall = await closed_loop(args.starters, args.duration, cpo)
        cpo_cpu = m.used()
        await drain(stack, 120)

        m = meter(cpo_workers, tuple(stack.sim_workers))
        phase: Phase = await paced(clients, args.rate, args.paced_duration)
        await drain(stack, 300)  # their provisioning is part of what these creates cost
        paced_cpu = m.used()
        watch_task.cancel()

        base_rate, cpo_rate = base_n / base_wall, cpo_n / cpo_wall
        print(f"\nthroughput, {args.starters} starters, each start → done back to back for {args.duration:g} s")
        print_table(
            ["what", "done", "per s"],
            [
                ["baseline: 1 no-op activity", base_n, f"{base_rate:.1f}"],
                ["tiny CPO POST → READY", cpo_n, f"{cpo_rate:.1f}"],
            ],
        )
        verdict = "MET" if cpo_rate >= 0.5 * base_rate else "MISSED"
        print(f"ratio tiny CPOs / baseline: {100 * cpo_rate / base_rate:.0f} % (target ≥ 50 %: {verdict})")
        if errors:
            print(f"errors: {errors}")
        print("\nCPU ms per workflow / per CPO by process (100 % = one core; the box has 2)")
        print_table(
            ["phase", "n", "temporal", "workers", "sim worker", "api", "postgres", "bench client", "total"],
            [
                cpu_row("baseline", base_cpu, base_n),
                cpu_row("tiny CPOs, closed loop", cpo_cpu, cpo_n),
                cpu_row(f"tiny CPOs, paced {args.rate:g}/s", paced_cpu, len(phase.latencies_ms)),
            ],
        )
        lat = phase.latencies_ms
        verdict = "MET" if lat and pct(lat, 99) <= 150 else "MISSED"
        print(
            f"\nPOST /ocpi/cpos paced {args.rate:g}/s for {args.paced_duration:g} s: n {len(lat)}, "
            f"p50 {pct(lat, 50):.1f} ms, p90 {pct(lat, 90):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
            f"max {max(lat, default=float('nan')):.1f} ms, errors {phase.errors or 0} (target p99 ≤ 150 ms: {verdict})"
        )
    finally:
        stop_stack(stack, args.keep)
        for c in clients:
            await c.aclose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    add_database_arg(p)
    p.add_argument("--workers", type=int, default=2, help="cpolab workers, and as many baseline workers")
    p.add_argument("--starters", type=int, default=20, help="concurrent starters in the closed loops")
    p.add_argument("--duration", type=float, default=20, help="seconds per closed-loop phase")
    p.add_argument("--rate", type=float, default=10, help="paced phase: creates/s")
    p.add_argument("--paced-duration", type=float, default=20, help="paced phase: seconds")
    return p.parse_args(argv)


if __name__ == "__main__":
    run_main(main(parse_args()))
