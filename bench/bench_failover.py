"""Failover of live chargers: SIGKILL the sim worker that hosts a CPO's pods, time until every
charger is online again on the other sim worker.

Starts its own stack (Temporal dev server, one worker, the API, two sim workers), creates one CPO
per size (`--sizes`, default 100 and 1,000 chargers), waits for READY (every charger online), then
kills the sim worker holding the most chargers and measures, from the kill:
- until the CSMS saw them drop (the sockets close with the process: OFFLINE at once),
- until every charger is ONLINE again (pod heartbeat timeout 20 s + retry + reconnect and boot).
Baseline beside it: the same CPO's first boot (POST → READY), so the figure reads as "failover =
heartbeat timeout + N × a first boot".

    .venv/bin/python bench/bench_failover.py [--sizes 100 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_create import add_common_args, print_table, run_main, stop_stack  # noqa: E402
from bench.bench_ready import body, provision  # noqa: E402
from tests.stack import Stack  # noqa: E402
from tests.test_charger_pods import sockets_to  # noqa: E402

CURVE = {100: ("small-urban-ac", 10, 10), 1000: ("small-urban-ac", 40, 25)}


def counts(stack: Stack, cpo_id: int) -> dict[str, int]:
    rows = stack.query("SELECT status, count(*) FROM charger WHERE cpo_id = ? GROUP BY status", cpo_id)
    return {str(s): int(n) for s, n in rows}


async def failover(stack: Stack, chargers: int) -> list[object]:
    template, locations, per_location = CURVE[chargers]
    async with stack.client() as client:
        run = await provision(client, body(template, locations, per_location), timeout=600)
    cpo_id = int(run.cpo_id)
    live = [p for p in stack.sim_workers if p.poll() is None]
    held = {p.pid: sockets_to(p.pid, stack.api_port) for p in live}
    victim = max(live, key=lambda p: held[p.pid])
    moved = held[victim.pid]
    t0 = time.perf_counter()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    seen_drop = None
    while True:
        now = time.perf_counter() - t0
        c = counts(stack, cpo_id)
        if seen_drop is None and c.get("ONLINE", 0) < chargers:
            seen_drop = now
        if seen_drop is not None and c.get("ONLINE", 0) == chargers:
            back = now
            break
        if now > 300:
            raise RuntimeError(f"chargers not back after 300 s: {c}")
        await asyncio.sleep(0.1)
    stack.start_sim_worker()  # the next size again has two sim workers to fail over between
    return [chargers, moved, f"{run.ready_s:.1f}", f"{seen_drop:.2f}", f"{back:.1f}"]


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cpolab-bench-failover-"))
    stack = Stack(workdir, temporal_db=args.persistent)
    try:
        await stack.start()
        stack.start_sim_worker()
        rows = [await failover(stack, n) for n in args.sizes]
        print("\nFailover after SIGKILL of the sim worker holding the pods (2 sim workers, 1 worker, 1 API):")
        print_table(["chargers", "moved", "first boot: POST→READY s", "offline seen s", "all online again s"], rows)
    finally:
        stop_stack(stack, args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=sorted(CURVE), choices=sorted(CURVE))
    add_common_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    run_main(main(parse_args()))
