"""Provisioning throughput with 1 vs 2 workers: chargers READY per second while `--cpos` CPOs of
1,000 chargers each (small-urban-ac 40×25) are created at once.

One app database server for the whole run (`--database postgres`: a throwaway PostgreSQL server; or
SQLite files), and for each entry of `--phases` (worker counts, default `1 2`) a fresh stack on a
fresh database: Temporal dev server, N workers, one API process. Each phase:

1. warm-up: 4 tiny CPOs per worker to READY (imports, connections, the workflow sandbox's first load);
2. `--cpos` concurrent POSTs, each from its own org and party id; the bench then polls the cpo table
   (one query every 50 ms, not the status endpoint, which would load Temporal with queries) until
   every row is READY. Throughput = chargers / (first POST → last READY);
3. where the time goes: the Temporal histories of all those CPOs summed per activity type
   (run time, queue wait = scheduled → started), plus workflow tasks;
4. DELETE all, wait until every row is DESTROYED (timed too).

CPU seconds by process over step 2 (from /proc: Temporal, each worker, the API, every process of the
Postgres server, the bench client). The box has 2 cores, so a phase of W s offers 2·W CPU s.
The box is shared: run `--phases 1 2 2 1` to see the drift, and compare ratios, not absolute figures.

    .venv/bin/python bench/bench_workers.py --database postgres
    .venv/bin/python bench/bench_workers.py --database sqlite --phases 1 2 2 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bench.app_database import BenchDatabases, add_database_arg, bench_databases, tree_cpu_seconds  # noqa: E402
from bench.bench_create import TINY, _party_ids, add_common_args, print_table, run_main, stop_stack  # noqa: E402
from bench.bench_ready import CURVE, check_caps, history_breakdown  # noqa: E402
from tests.stack import Stack  # noqa: E402

TEMPLATE, LOCATIONS, PER_LOCATION = CURVE[1000]  # small-urban-ac 40×25, checked against the caps
POLL = 0.05


@dataclass
class PhaseResult:
    workers: int
    chargers: int = 0
    wall_s: float = 0.0
    ready_s: list[float] = field(default_factory=list)  # per CPO, from the first POST
    post_ms: list[float] = field(default_factory=list)
    destroy_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average before, after

    @property
    def rate(self) -> float:
        return self.chargers / self.wall_s


class CpuSplit:
    """CPU seconds per process between construction and `used()`, each with its descendants."""

    def __init__(self, stack: Stack, dbs: BenchDatabases) -> None:
        self.procs = {"temporal": stack.temporal, "api": stack.api}
        self.procs |= {f"worker {i + 1}": w for i, w in enumerate(stack.workers)}
        self.dbs = dbs
        self.start = self._snapshot()

    def _snapshot(self) -> dict[str, float]:
        out = {name: tree_cpu_seconds(p.pid) for name, p in self.procs.items() if p is not None}
        if self.dbs.server is not None:
            out["postgres"] = self.dbs.server_cpu_seconds()
        user, system = os.times()[:2]
        out["bench client"] = user + system
        return out

    def used(self) -> dict[str, float]:
        end = self._snapshot()
        return {k: end[k] - self.start[k] for k in end}


async def wait_rows(stack: Stack, ids: list[int], status: str, t0: float, timeout: float) -> dict[int, float]:
    """Poll the cpo table until every row of `ids` has `status`; returns when each was first seen so."""
    seen: dict[int, float] = {}
    low, high = min(ids), max(ids)
    while len(seen) < len(ids):
        rows = stack.query("SELECT id, status FROM cpo WHERE id >= ? AND id <= ?", low, high)
        now = time.perf_counter() - t0
        for cpo_id, st in rows:
            if st == status and int(cpo_id) in ids:  # type: ignore[call-overload]
                seen.setdefault(int(cpo_id), now)  # type: ignore[call-overload]
            elif st == "FAILED":
                raise RuntimeError(f"CPO {cpo_id} FAILED")
        if now > timeout:
            raise RuntimeError(f"{len(ids) - len(seen)} CPOs not {status} after {timeout:.0f} s")
        await asyncio.sleep(POLL)
    return seen


async def history_totals(temporal: Client, ids: list[int]) -> dict[str, dict[str, float]]:
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"n": 0, "run": 0.0, "wait": 0.0})
    for cpo_id in ids:
        h = await history_breakdown(temporal, str(cpo_id))
        rows: dict[str, dict[str, float]] = {**h["per_type"], "(workflow tasks)": h["wft"]}  # type: ignore[dict-item]
        for name, r in rows.items():
            for k in ("n", "run", "wait"):
                totals[name][k] += r[k]
    return dict(totals)


async def run_phase(workers: int, dbs: BenchDatabases, args: argparse.Namespace, index: int) -> PhaseResult:
    workdir = Path(tempfile.mkdtemp(prefix=f"cpolab-bench-workers-{index}-"))
    stack = Stack(workdir, temporal_db=args.persistent, database=dbs.new(f"bench_workers_{workers}w"))
    result = PhaseResult(workers)
    clients: list[httpx.AsyncClient] = []
    try:
        await stack.start()
        for _ in range(workers - 1):
            stack.start_worker()
        temporal = await Client.connect(stack.temporal_address)
        clients = [stack.client(org=f"bench-workers-{i}") for i in range(args.cpos)]
        await check_caps(clients[0], [1000])
        # Warm-up: imports, the workflow sandbox's first load and the first DB connections of every
        # worker are paid here, not in the measurement. Tasks go to whichever worker polls first, so a
        # few tiny CPOs per worker, at once, make every worker take some.
        warm_ids = []
        for i in range(4 * workers):
            warm = await clients[i % len(clients)].post("/ocpi/cpos", json={**TINY, "party_id": next(_party_ids)})
            warm.raise_for_status()
            warm_ids.append(int(warm.json()["cpo_id"]))
        await wait_rows(stack, warm_ids, "READY", time.perf_counter(), args.timeout)

        payload = {
            "template": TEMPLATE,
            "country_code": "NL",
            "name_prefix": "bench",
            "ttl_seconds": 3600,
            "overrides": {"locations": LOCATIONS, "chargers_per_location": PER_LOCATION},
        }

        async def post(client: httpx.AsyncClient) -> int:
            t = time.perf_counter()
            resp = await client.post("/ocpi/cpos", json={**payload, "party_id": next(_party_ids)})
            result.post_ms.append(1000 * (time.perf_counter() - t))
            if resp.status_code != 202:
                raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:300]}")
            return int(resp.json()["cpo_id"])

        load_before = os.getloadavg()[0]
        cpu = CpuSplit(stack, dbs)
        t0 = time.perf_counter()
        ids = await asyncio.gather(*(post(c) for c in clients))
        ready = await wait_rows(stack, ids, "READY", t0, args.timeout)
        result.cpu = cpu.used()
        result.wall_s = max(ready.values())
        result.ready_s = sorted(ready.values())
        result.chargers = len(ids) * LOCATIONS * PER_LOCATION
        result.load = (load_before, os.getloadavg()[0])
        print(
            f"  {workers} worker(s): {result.chargers:,} chargers READY in {result.wall_s:.1f} s "
            f"= {result.rate:.0f} chargers/s (load {result.load[0]:.1f} → {result.load[1]:.1f})",
            flush=True,
        )
        result.per_type = await history_totals(temporal, ids)

        t1 = time.perf_counter()
        for client, cpo_id in zip(clients, ids, strict=True):
            resp = await client.delete(f"/ocpi/cpos/{cpo_id}")
            if resp.status_code not in (200, 202):
                raise RuntimeError(f"delete failed: {resp.status_code} {resp.text[:200]}")
        await wait_rows(stack, ids, "DESTROYED", t1, args.timeout)
        result.destroy_s = time.perf_counter() - t1
        return result
    finally:
        for c in clients:
            await c.aclose()
        stop_stack(stack, args.keep)


def print_phase_table(results: list[PhaseResult]) -> None:
    rows = []
    for r in results:
        rows.append(
            [
                r.workers,
                f"{r.chargers:,}",
                f"{r.wall_s:.1f}",
                f"{r.rate:.0f}",
                f"{r.ready_s[0]:.1f} / {statistics.median(r.ready_s):.1f} / {r.ready_s[-1]:.1f}",
                f"{statistics.median(r.post_ms):.0f} / {max(r.post_ms):.0f}",
                f"{r.destroy_s:.1f}",
                f"{r.load[0]:.1f} → {r.load[1]:.1f}",
            ]
        )
    headers = ["workers", "chargers", "wall s", "chargers/s", "READY first/median/last s", "POST ms p50/max"]
    print_table([*headers, "destroy s", "load"], rows)


def print_cpu_table(results: list[PhaseResult]) -> None:
    names = sorted({k for r in results for k in r.cpu}, key=lambda k: (k != "temporal", k))
    rows = []
    for r in results:
        offered = 2 * r.wall_s
        total = sum(r.cpu.values())
        cells = [f"{r.cpu.get(n, 0.0):.1f}" if n in r.cpu else "" for n in names]
        rows.append([r.workers, *cells, f"{total:.1f}", f"{100 * total / offered:.0f} %", f"{r.chargers / total:.0f}"])
    print_table(["workers", *names, "total", "of 2 cores", "chargers per CPU s"], rows)


def print_time_table(results: list[PhaseResult]) -> None:
    names = sorted({k for r in results for k in r.per_type})
    rows = []
    for r in results:
        for name in names:
            t = r.per_type.get(name)
            if not t or not t["n"]:
                continue
            rows.append(
                [
                    r.workers,
                    name,
                    int(t["n"]),
                    f"{t['run']:.1f}",
                    f"{1000 * t['run'] / t['n']:.0f}",
                    f"{t['wait']:.1f}",
                    f"{1000 * t['wait'] / t['n']:.0f}",
                ]
            )
    print_table(["workers", "activity", "n", "run Σ s", "run ms/each", "queue Σ s", "queue ms/each"], rows)


def print_summary(results: list[PhaseResult]) -> None:
    """Throughput = the CPU the stack got from the (shared) box × chargers per CPU second; the second
    factor says whether a worker count makes provisioning cheaper, the first is mostly the neighbours'."""
    by_workers: dict[int, list[PhaseResult]] = defaultdict(list)
    for r in results:
        by_workers[r.workers].append(r)
    rate = {w: statistics.mean(r.rate for r in v) for w, v in by_workers.items()}
    per_cpu = {w: statistics.mean(r.chargers / sum(r.cpu.values()) for r in v) for w, v in by_workers.items()}
    for w, v in sorted(by_workers.items()):
        print(
            f"{w} worker(s): " + ", ".join(f"{r.rate:.0f}" for r in v) + f" chargers/s (mean {rate[w]:.0f}); "
            f"{per_cpu[w]:.0f} chargers per CPU second"
        )
    if 1 in rate and 2 in rate:
        print(
            f"ratio 2 workers / 1 worker: {rate[2] / rate[1]:.2f} in chargers/s, "
            f"{per_cpu[2] / per_cpu[1]:.2f} in chargers per CPU second"
        )
        print_ceiling(by_workers[1])


def print_ceiling(one_worker: list[PhaseResult]) -> None:
    """What the 1-worker CPU split allows on a quiet box of this many cores: one worker process uses at
    most one core (the GIL), so its phase lasts at least max(worker CPU, all CPU / cores); with two
    workers sharing the same work evenly, max(worker CPU / 2, all CPU / cores)."""
    cores = os.cpu_count() or 1
    worker = statistics.mean(r.cpu["worker 1"] for r in one_worker)
    total = statistics.mean(sum(r.cpu.values()) for r in one_worker)
    chargers = one_worker[0].chargers
    one, two = max(worker, total / cores), max(worker / 2, total / cores)
    print(
        f"CPU-bound ceiling on a quiet {cores}-core box, from the 1-worker CPU split (worker {worker:.1f} s of "
        f"{total:.1f} s): 1 worker {chargers / one:.0f}, 2 workers {chargers / two:.0f} chargers/s, "
        f"ratio ≤ {one / two:.2f}"
    )


async def main(args: argparse.Namespace) -> None:
    print(
        f"bench_workers: {args.cpos} concurrent CPOs of {LOCATIONS * PER_LOCATION:,} chargers "
        f"({TEMPLATE} {LOCATIONS}×{PER_LOCATION}), phases {args.phases} workers, {args.database}, "
        f"{os.cpu_count()} cores"
    )
    results: list[PhaseResult] = []
    with bench_databases(args.database) as dbs:
        for i, workers in enumerate(args.phases):
            results.append(await run_phase(workers, dbs, args, i))
    print(f"\nthroughput, first POST → last READY ({args.database}):")
    print_phase_table(results)
    print("\nCPU seconds by process over first POST → last READY (100 % = one core):")
    print_cpu_table(results)
    print(f"\nwhere the time goes: Temporal histories of the {args.cpos} CPOs, summed per activity type")
    print_time_table(results)
    print()
    print_summary(results)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    add_database_arg(p)
    p.add_argument("--phases", type=int, nargs="+", default=[1, 2], help="worker count of each phase, in order")
    p.add_argument("--cpos", type=int, default=20, help="concurrent 1,000-charger CPOs per phase")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for READY / DESTROYED")
    return p.parse_args(argv)


if __name__ == "__main__":
    run_main(main(parse_args()))
