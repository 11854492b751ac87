"""What charging sessions cost the simulators: N chargers each charging a car vs N idle chargers.

For every size N of `--sizes` (default 100 and 1,000) and both modes, in fresh processes:
1. the test CSMS peer (`tests/ocpp_csms_peer.py`, counting mode: answers Boot, Status, Authorize,
   Start/Stop, MeterValues and TransactionEvent) in its own process;
2. a pod process (this script with `--child`) that runs N chargers (half OCPP 1.6, half 2.0.1, one AC
   22 kW EVSE each, `time_scale` `--scale`) until all are online; in `sessions` mode it then starts
   one session per charger through the simulate control (`Pod.simulate`: plug, Authorize, Start, the
   car charging toward a target it does not reach within the run); after `--settle` s it measures
   its CPU (and the CSMS's) over `--window` s and its RSS.

Samples go out every MeterValueSampleInterval (60 simulated s by default) = one per second per
session at scale 60, so N sessions send N MeterValues / TransactionEvents a second.

    .venv/bin/python bench/bench_sessions_sim.py                  # 100 and 1,000 (~2 min)
    .venv/bin/python bench/bench_sessions_sim.py --sizes 100 --window 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_sim import cpu_seconds, raise_fd_limit, rss_kb, start_csms  # noqa: E402

MODES = ("idle", "sessions")


async def run_pod(args: argparse.Namespace) -> dict[str, float]:
    import ocpp.messages

    from app.sim.config import ChargerConfig, SimEvse, Tunables
    from app.sim.pod import Pod

    ocpp.messages.ASYNC_VALIDATION = not args.inline_validation

    evses = (SimEvse(1, 1, "AC_3_PHASE", 230, 32, 22_080),)
    configs = [
        ChargerConfig(
            identity=f"SESS-{n:05d}",
            password=f"bench-password-{n:05d}-0123456789",
            ocpp_version="1.6" if n % 2 else "2.0.1",
            vendor="BenchVendor",
            model="BenchModel",
            serial_number="",
            firmware_version="",
            evses=evses,
            csms_url=f"ws://127.0.0.1:{args.port}/ocpp/1",
            time_scale=args.scale,
        )
        for n in range(args.child)
    ]
    gc.collect()
    me = os.getpid()
    rss_before = rss_kb(me)
    pod = Pod(configs, seed=1, tunables=Tunables(connect_concurrency=50))
    task = asyncio.create_task(pod.run())
    started = time.perf_counter()
    while pod.online() < args.child:
        if task.done() or time.perf_counter() - started > args.timeout:
            raise SystemExit(f"only {pod.online()} of {args.child} online: {pod.stats()}")
        await asyncio.sleep(0.05)
    refused = 0
    if args.mode == "sessions":
        for n, config in enumerate(configs):
            where = {"connector_id": 1} if config.ocpp_version == "1.6" else {"evse_id": 1}
            # a target far away and a low start SoC: every car still draws power during the window
            command = {"action": "start", "id_tag": f"T{n:05d}", "target_kwh": 500, "soc_percent": 5, **where}
            status, _ = pod.simulate(config.identity, command)
            refused += status != "Accepted"
    del configs
    await asyncio.sleep(args.settle)
    cpu_pod, cpu_csms, t0 = cpu_seconds(me), cpu_seconds(args.csms_pid), time.perf_counter()
    sent0 = pod.stats()["sent"]
    await asyncio.sleep(args.window)
    wall = time.perf_counter() - t0
    stats = pod.stats()
    pod_cpu, csms_cpu = cpu_seconds(me) - cpu_pod, cpu_seconds(args.csms_pid) - cpu_csms
    rss_after = rss_kb(me)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return {
        "chargers": args.child,
        "mode": args.mode,
        "refused_starts": refused,
        "online_at_end": stats["online"],
        "transactions": stats["transactions"],
        # one sample per session per (interval / scale) real seconds is due; a backlog means the
        # process (or the CSMS) cannot keep up
        "due_per_s": stats["transactions"] * args.scale / 60,
        "sent_per_s": (stats["sent"] - sent0) / wall,
        "queued_at_end": stats["queued"],
        "rss_mb": rss_after / 1024,
        "kb_per_charger": (rss_after - rss_before) / args.child,
        "cpu_pct": 100 * pod_cpu / wall,
        "csms_cpu_pct": 100 * csms_cpu / wall,
    }


def measure(size: int, mode: str, args: argparse.Namespace) -> dict[str, float]:
    csms_args = argparse.Namespace(interval=300, csms_ping=0, inline_validation=args.inline_validation)
    csms, port = start_csms(csms_args)
    try:
        cmd = [sys.executable, __file__, "--child", str(size), "--mode", mode, "--port", str(port)]
        cmd += ["--csms-pid", str(csms.pid), "--scale", str(args.scale), "--settle", str(args.settle)]
        cmd += ["--window", str(args.window), "--timeout", str(args.timeout)]
        cmd += ["--inline-validation"] if args.inline_validation else []
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=args.timeout + 300)
        if out.returncode != 0:
            raise SystemExit(f"the {mode} pod of {size} failed")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        csms.terminate()
        try:
            csms.wait(timeout=30)
        except subprocess.TimeoutExpired:
            csms.kill()


def main(args: argparse.Namespace) -> None:
    from bench.bench_create import print_table

    print(
        f"N chargers (half 1.6, half 2.0.1, one AC 22 kW EVSE each) at time scale {args.scale}: idle vs one "
        f"charging session each; CPU over {args.window} s after {args.settle} s settling.\n"
    )
    rows = []
    for size in args.sizes:
        idle, busy = (measure(size, mode, args) for mode in MODES)
        for r in (idle, busy):
            print(f"  {json.dumps(r)}", flush=True)
        # Idle chargers cost ~0 CPU between Heartbeats, so the CPU ratio is mostly a division by ~0: the
        # extra CPU per session (ms per real second) is the figure that scales.
        ratio = busy["cpu_pct"] / idle["cpu_pct"] if idle["cpu_pct"] >= 0.1 else float("inf")
        rows.append(
            [
                f"{size:,}",
                f"{idle['cpu_pct']:.1f}",
                f"{busy['cpu_pct']:.1f}",
                "n/a (idle ≈ 0)" if ratio == float("inf") else f"{ratio:.1f}×",
                f"{10 * (busy['cpu_pct'] - idle['cpu_pct']) / size:.2f}",
                f"{idle['rss_mb']:.0f}",
                f"{busy['rss_mb']:.0f}",
                f"{busy['rss_mb'] / idle['rss_mb']:.2f}×",
                f"{(busy['rss_mb'] - idle['rss_mb']) * 1024 / size:.1f}",
                f"{busy['csms_cpu_pct']:.1f}",
                f"{busy['sent_per_s']:.0f} / {busy['due_per_s']:.0f}",
                int(busy["queued_at_end"]),
                int(busy["refused_starts"] + size - busy["online_at_end"]),
            ]
        )
    print()
    headers = ["chargers", "idle CPU %", "sessions CPU %", "CPU ratio", "ms CPU/s per session", "idle RSS MB"]
    headers += ["sessions RSS MB", "RSS ratio", "KB per session", "CSMS CPU %", "sent/due msgs/s", "backlog"]
    headers += ["refused/offline"]
    print_table(headers, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="pod sizes (chargers)")
    p.add_argument("--scale", type=float, default=60.0, help="time_scale of every charger")
    p.add_argument("--window", type=float, default=15.0, help="CPU measuring window, s")
    p.add_argument("--settle", type=float, default=5.0, help="wait after the starts before measuring, s")
    p.add_argument("--timeout", type=float, default=120.0, help="give up when not all online after this (s)")
    p.add_argument(
        "--inline-validation",
        action="store_true",
        help="ocpp.messages.ASYNC_VALIDATION = False in both processes (schema checks on the loop, not in threads)",
    )
    p.add_argument("--persistent", action="store_true", help="ignored (no Temporal here); run_all passes it to all")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--csms-pid", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.child:
        raise_fd_limit()
        print(json.dumps(asyncio.run(run_pod(parsed))), flush=True)
    else:
        main(parsed)
