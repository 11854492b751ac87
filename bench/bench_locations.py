"""Benchmark: `GET locations?limit=100` on a 1,000-location CPO, 20 concurrent clients, ~10 s,
beside a static body of the same size served by the same uvicorn/Starlette stack in the same run.

Starts a real stack (Temporal dev server, worker, one uvicorn API process) in a temp dir, provisions
the CPO, registers with the independent eMSP test peer (real A→B→C handshake), walks every page once
(cold: renders and caches), then hammers the 10 pages round-robin with 20 concurrent keep-alive
httpx clients spread over client processes. Then the same clients hammer bench/static_app.py (one
precomputed page, the same uvicorn flags as the API) and the ratio is printed (target ≥ 60 %). The
pair is repeated `--rounds` times, alternated, and the median ratio printed.

    .venv/bin/python -m bench.bench_locations [--seconds 10] [--clients 20] [--procs 2]
        [--locations 1000] [--chargers-per-location 6] [--rounds 2] [--py-spy flame.svg|stacks.txt]
        [--database sqlite|postgres]

`--database postgres` starts a throwaway PostgreSQL server (bench/app_database.py, Debian's binaries),
gives the stack a database brought to head by the real `migrate` command and stops the server at the
end; default: a fresh SQLite file. Prints pages/s, latency p50/p99 and the response size. The
clients share the box with the server, so the figures are floors for the server.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.app_database import add_database_arg, bench_databases, tree_cpu_seconds  # noqa: E402
from tests.emsp_peer import EmspPeer  # noqa: E402
from tests.ocpi_locations_support import create_big_cpo, handshake, walk  # noqa: E402
from tests.stack import Stack, free_port, wait_http  # noqa: E402


async def _hammer(base: str, headers: dict[str, str], pages: int, clients: int, seconds: float, seed: int) -> list:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one(i: int) -> None:
        nonlocal errors
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as http:
            k = seed + i
            while time.perf_counter() < deadline:
                offset = (k % pages) * 100
                k += 1
                started = time.perf_counter()
                # Stream and drop the body: the client's own buffering is not what is measured.
                async with http.stream("GET", f"{base}/locations?offset={offset}&limit=100") as resp:
                    async for _ in resp.aiter_raw():
                        pass
                latencies.append(time.perf_counter() - started)
                if resp.status_code != 200:
                    errors += 1

    await asyncio.gather(*(one(i) for i in range(clients)))
    return [latencies, errors]


def _client_proc(base: str, headers: dict[str, str], pages: int, clients: int, seconds: float, seed: int, q) -> None:
    q.put(asyncio.run(_hammer(base, headers, pages, clients, seconds, seed)))


def _py_spy(out: str, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy (pip install py-spy) sampling the API process for `seconds`: a flame graph, or collapsed
    stacks (one line per stack, for grep and sort) when `out` ends in .txt."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--output", out, "--nonblocking"]
    if out.endswith(".txt"):
        cmd += ["--format", "raw"]
    return subprocess.Popen([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]])


@dataclass
class _Server:
    proc: subprocess.Popen[bytes]
    port: int


def _start_static(stack: Stack, body: Path) -> _Server:
    """bench/static_app.py under exactly the uvicorn flags tests.stack gives the API."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.static_app:app", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-access-log"]
    env = {**stack.env, "BENCH_STATIC_BODY": str(body)}
    return _Server(subprocess.Popen(cmd, cwd=ROOT, env=env), port)


async def _measure(
    label: str,
    base: str,
    headers: dict[str, str],
    pages: int,
    args: argparse.Namespace,
    server: Any,
    database: Any = None,
) -> tuple[float, float]:
    """Hammer `base` with the clients for args.seconds; print and return pages/s and server CPU ms per page."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    per_proc = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0) for i in range(args.procs)]
    procs = [
        ctx.Process(target=_client_proc, args=(base, headers, pages, n, args.seconds, i * 7, q))
        for i, n in enumerate(per_proc)
        if n
    ]
    cpu = tree_cpu_seconds(server.pid)
    db_cpu = tree_cpu_seconds(database.pid) if database else 0.0
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    cpu = tree_cpu_seconds(server.pid) - cpu
    db_cpu = tree_cpu_seconds(database.pid) - db_cpu if database else 0.0
    latencies = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    rate = len(latencies) / args.seconds
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"{label}: GET ?limit=100, {args.clients} clients / {len(procs)} procs, {args.seconds:.0f} s: "
        f"{rate:.0f} pages/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {errors} errors ({len(latencies)} requests); "
        f"server CPU {cpu / len(latencies) * 1000:.2f} ms per page"
        + (f", PostgreSQL CPU {db_cpu / len(latencies) * 1000:.2f} ms per page" if database else "")
    )
    return rate, cpu / len(latencies) * 1000


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--procs", type=int, default=2, help="client processes the clients are spread over")
    ap.add_argument("--locations", type=int, default=1000)
    ap.add_argument("--chargers-per-location", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2, help="locations/static pairs, alternated")
    ap.add_argument(
        "--py-spy", metavar="FILE", help="first an extra locations run, recorded with py-spy (.svg, or .txt: collapsed)"
    )
    add_database_arg(ap)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-locations-") as tmp, bench_databases(args.database) as dbs:
        database = dbs.new("bench_locations")
        stack = None
        emsp = EmspPeer(party_id="BEM")
        try:
            print(f"app database: {args.database}")
            stack = Stack(Path(tmp), database=database)
            await stack.start()
            await emsp.start()
            async with stack.client(org="bench") as cp, httpx.AsyncClient(timeout=30) as http:
                started = time.perf_counter()
                created = await create_big_cpo(
                    cp,
                    locations=args.locations,
                    party_id="BEN",
                    chargers_per_location=args.chargers_per_location,
                )
                print(f"provisioned {args.locations} locations in {time.perf_counter() - started:.1f} s")
                started = time.perf_counter()
                base, headers = await handshake(stack, http, created, emsp)
                took = (time.perf_counter() - started) * 1000
                print(f"credentials handshake (A→B→C, both callbacks): {took:.0f} ms")
            async with httpx.AsyncClient(timeout=60) as http:
                started = time.perf_counter()
                cold = await walk(http, f"{base}/locations?limit=100", headers)
                cold_s = time.perf_counter() - started
                size = statistics.mean(len(p.content) for p in cold)
                evses = sum(len(loc["evses"]) for p in cold for loc in p.json()["data"])
                print(
                    f"cold walk: {len(cold)} pages in {cold_s * 1000:.0f} ms; {evses} EVSEs; "
                    f"{size / 1024:.0f} KiB per page"
                )

            pg_proc = dbs.server.proc if dbs.server else None
            static_file = Path(tmp) / "static-page.json"
            static_file.write_bytes(cold[0].content)
            static_proc = _start_static(stack, static_file)
            try:
                static_base = f"http://127.0.0.1:{static_proc.port}"
                await wait_http(f"{static_base}/healthz")
                # Alternate the two, so a burst of load from elsewhere on the box hits both alike.
                ratios = []
                if args.py_spy:  # its own run: the sampler's CPU would skew a measured ratio
                    spy = _py_spy(args.py_spy, stack.api.pid, args.seconds)
                    await _measure("[py-spy] locations", base, headers, len(cold), args, stack.api, pg_proc)
                    spy.wait()
                for r in range(1, args.rounds + 1):
                    page, page_cpu = await _measure(
                        f"[{r}] locations", base, headers, len(cold), args, stack.api, pg_proc
                    )
                    static, static_cpu = await _measure(
                        f"[{r}] static body, same size", static_base, {}, len(cold), args, static_proc.proc
                    )
                    ratios.append(page / static)
                    print(
                        f"[{r}] ratio locations / static: {100 * page / static:.0f} % of the pages/s; "
                        f"server CPU per page {page_cpu / static_cpu:.1f}× the static one's"
                    )
            finally:
                static_proc.proc.terminate()
                static_proc.proc.wait(timeout=15)
            ratio = statistics.median(ratios)
            verdict = "MET" if ratio >= 0.6 else "MISSED"
            print(f"ratio locations / static, median of {len(ratios)}: {100 * ratio:.0f} % (target ≥ 60 %: {verdict})")
        finally:
            await emsp.stop()
            if stack is not None:
                stack.stop()
            if database is not None:
                database.dispose()


if __name__ == "__main__":
    asyncio.run(main())
