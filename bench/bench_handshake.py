"""Full OCPI handshake latency: POST credentials with Token A, including the CPO's two nested callbacks
(GET versions, GET version details) to an eMSP peer, on loopback against a real stack.

    .venv/bin/python bench/bench_handshake.py [--n 60]     (or -m bench.bench_handshake)

Token A is single use, so every handshake needs its own CPO: they are all created first and left to
finish provisioning, so the worker is idle while the handshakes are timed (one at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, `tests` (the stack it drives) must be importable

import httpx  # noqa: E402

from bench.bench_create import lift_quotas  # noqa: E402
from tests.emsp_peer import EmspPeer, new_cpo, register  # noqa: E402
from tests.stack import Stack, wait_status  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-handshake-") as tmp:
        stack = Stack(Path(tmp))
        peer = EmspPeer()
        try:
            await stack.start()
            await peer.start()
            async with stack.client() as control, httpx.AsyncClient(timeout=30) as http:
                cpos = [await new_cpo(control, party_id=f"B{i:02d}", name_prefix=f"bench{i}") for i in range(n)]
                for cpo in cpos:
                    await wait_status(control, cpo["cpo_id"], {"READY", "FAILED"}, timeout=300)
                await register(http, cpos[0], peer)  # warm-up: connection pools, first-query caches
                timings = []
                for cpo in cpos[1:]:
                    started = time.perf_counter()
                    resp, _ = await register(http, cpo, peer)
                    timings.append((time.perf_counter() - started) * 1000)
                    assert resp.status_code == 200 and resp.json()["status_code"] == 1000, resp.text
        finally:
            await peer.stop()
            stack.stop()
    print(f"handshakes: {len(timings)} (POST credentials incl. 2 callbacks, sequential, loopback)")
    print(f"p50 {pct(timings, 50):.1f} ms  p95 {pct(timings, 95):.1f} ms  mean {statistics.mean(timings):.1f} ms")
    print(f"min {min(timings):.1f} ms  max {max(timings):.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=61, choices=range(2, 101), help="CPOs to create (one warm-up, n-1 timed)"
    )
    lift_quotas()
    asyncio.run(main(parser.parse_args().n))
