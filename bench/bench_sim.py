"""Charger simulators at scale: memory per charger, idle CPU and time to all online, per pod size.

For every size N of `--sizes` (default 100, 1,000, 10,000), in fresh processes so one size's heap does
not flatter the next:
1. the test CSMS peer (`tests/ocpp_csms_peer.py`, counting mode: accepts anyone, answers every
   BootNotification Accepted with `--interval`, pings every charger every `--csms-ping` s) in its own
   process;
2. a pod process (this script with `--child`) that builds N chargers (half OCPP 1.6, half 2.0.1,
   `--evses` EVSEs of one connector each), measures its RSS, runs `Pod.run()` until every charger is
   online (time to all online, and the CPU both processes used for it), waits `--settle` s (by
   default until every periodic timer has fired once: steady state), then measures its RSS again (KB
   per charger) and the CPU it and the CSMS use over `--idle` s of idling (by default one whole period
   of the Heartbeat and ping timers), and finally cancels the pod (time until every socket is closed).

Idle CPU is the sum of three event streams, each N per period: Heartbeats (`--interval`), the
simulators' own pings (`--ping`) and the pongs they owe the CSMS's pings (`--csms-ping`, 20 s by
default in websockets and uvicorn). Set one to 0 to see the others alone.

Targets (SIM brief): 10,000 idle chargers in one process ≤ 600 MB RSS and ≤ 10 % of a core.

    .venv/bin/python bench/bench_sim.py                       # 100, 1,000, 10,000 chargers (~12 min)
    .venv/bin/python bench/bench_sim.py --quick               # 100 and 1,000, timers at 20 s (~2 min)
    .venv/bin/python bench/bench_sim.py --sizes 10000 --interval 300 --csms-ping 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_TICK = os.sysconf("SC_CLK_TCK")
TARGET_RSS_MB, TARGET_CPU_PCT = 600, 10.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the pod process --------------------------------------------------------------------------------


async def run_pod(args: argparse.Namespace) -> dict[str, float]:
    import ocpp.messages

    from app.sim.config import ChargerConfig, SimEvse, Tunables
    from app.sim.pod import Pod

    ocpp.messages.ASYNC_VALIDATION = not args.inline_validation

    evses = tuple(SimEvse(e, 1) for e in range(1, args.evses + 1))
    configs = [
        ChargerConfig(
            identity=f"BENCH-{n:05d}",
            password=f"bench-password-{n:05d}-0123456789",
            ocpp_version="1.6" if n % 2 else "2.0.1",
            vendor="BenchVendor",
            model="BenchModel",
            serial_number=f"SN{n:08d}",
            firmware_version="1.0.0",
            evses=evses,
            csms_url=f"ws://127.0.0.1:{args.port}/ocpp/1",
            headers=(("X-Cpolab-Pod-Generation", "1"),),
        )
        for n in range(args.child)
    ]
    gc.collect()
    me = os.getpid()
    rss_before = rss_kb(me)
    pod = Pod(configs, seed=1, tunables=Tunables(ping_interval=args.ping or None))
    del configs
    started = time.perf_counter()
    ramp_pod, ramp_csms = cpu_seconds(me), cpu_seconds(args.csms_pid)
    task = asyncio.create_task(pod.run())
    next_progress = started + 5
    while pod.online() < args.child:
        now = time.perf_counter()
        if task.done() or now - started > args.timeout:
            raise SystemExit(f"only {pod.online()} of {args.child} online after {args.timeout} s: {pod.stats()}")
        if now > next_progress:
            print(f"    {now - started:5.0f} s: {pod.stats()}", file=sys.stderr, flush=True)
            next_progress += 5
        await asyncio.sleep(0.05)
    to_online = time.perf_counter() - started
    ramp_pod, ramp_csms = cpu_seconds(me) - ramp_pod, cpu_seconds(args.csms_pid) - ramp_csms
    await asyncio.sleep(args.settle)
    cpu_pod, cpu_csms, t0 = cpu_seconds(me), cpu_seconds(args.csms_pid), time.perf_counter()
    await asyncio.sleep(args.idle)
    wall = time.perf_counter() - t0
    idle_pod, idle_csms = cpu_seconds(me) - cpu_pod, cpu_seconds(args.csms_pid) - cpu_csms
    rss_after = rss_kb(me)
    stats = pod.stats()
    t0 = time.perf_counter()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return {
        "chargers": args.child,
        "online_s": to_online,
        "ramp_cpu_s": ramp_pod,
        "ramp_csms_cpu_s": ramp_csms,
        "rss_before_kb": rss_before,
        "rss_kb": rss_after,
        "kb_per_charger": (rss_after - rss_before) / args.child,
        "idle_cpu_pct": 100 * idle_pod / wall,
        "csms_cpu_pct": 100 * idle_csms / wall,
        "cancel_s": time.perf_counter() - t0,
        "reconnects": stats["reconnects"],
        "failed_connects": stats["failed_connects"],
        "online_at_end": stats["online"],
    }


def child_main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    print(json.dumps(asyncio.run(run_pod(args))), flush=True)


# --- the orchestrator -------------------------------------------------------------------------------


def start_csms(args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    cmd = [sys.executable, str(ROOT / "tests" / "ocpp_csms_peer.py"), "--interval", str(args.interval)]
    cmd += ["--ping", str(args.csms_ping)] + (["--inline-validation"] if args.inline_validation else [])
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"the CSMS peer did not start: {line!r}")
    return proc, int(line.split()[1])


def measure(size: int, args: argparse.Namespace) -> dict[str, float]:
    csms, port = start_csms(args)
    try:
        cmd = [sys.executable, __file__, "--child", str(size), "--port", str(port), "--csms-pid", str(csms.pid)]
        cmd += ["--idle", str(args.idle), "--settle", str(args.settle), "--evses", str(args.evses)]
        cmd += ["--timeout", str(args.timeout), "--ping", str(args.ping)]
        cmd += ["--inline-validation"] if args.inline_validation else []
        out = subprocess.run(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=args.timeout + args.settle + args.idle + 180
        )
        if out.returncode != 0:
            raise SystemExit(f"the pod of {size} failed (its progress and error are above)")
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
        f"Pods of N chargers (half 1.6, half 2.0.1, {args.evses} EVSEs each) against the test CSMS "
        f"(heartbeat interval {args.interval} s; WebSocket pings: simulators every {args.ping or 'never'} s, CSMS "
        f"every {args.csms_ping or 'never'} s; schema checks {'inline' if args.inline_validation else 'in threads'}); "
        f"idle window {args.idle} s after {args.settle} s settling.\n"
    )
    rows = []
    for size in args.sizes:
        r = measure(size, args)
        rows.append(
            [
                f"{size:,}",
                f"{r['online_s']:.2f}",
                f"{r['rss_kb'] / 1024:.0f}",
                f"{r['kb_per_charger']:.1f}",
                f"{r['idle_cpu_pct']:.1f}",
                f"{r['csms_cpu_pct']:.1f}",
                f"{r['cancel_s']:.2f}",
                int(r["reconnects"]),
            ]
        )
        print(f"  {size:,} chargers: {json.dumps(r)}", flush=True)
    print()
    headers = ["chargers", "all online s", "RSS MB", "KB/charger", "idle CPU %", "CSMS CPU %", "cancel s", "reconn."]
    print_table(headers, rows)
    biggest = max(args.sizes)
    r_big = rows[args.sizes.index(biggest)]
    if biggest >= 10_000:
        rss_ok = float(r_big[2]) <= TARGET_RSS_MB * biggest / 10_000
        cpu_ok = float(r_big[4]) <= TARGET_CPU_PCT
        print(
            f"\ntarget at {biggest:,}: RSS ≤ {TARGET_RSS_MB} MB per 10,000 {'met' if rss_ok else 'MISSED'}, "
            f"idle CPU ≤ {TARGET_CPU_PCT:.0f} % of a core {'met' if cpu_ok else 'MISSED'}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000], help="pod sizes (chargers)")
    p.add_argument("--quick", action="store_true", help="sizes 100 and 1,000; heartbeats and pings every 20 s")
    p.add_argument("--idle", type=float, help="idle window for the CPU figure, s (default: one period, below)")
    p.add_argument("--settle", type=float, help="wait after all online before measuring, s (default: period + 5)")
    p.add_argument("--interval", type=int, default=60, help="heartbeat interval the CSMS answers (s)")
    p.add_argument("--evses", type=int, default=2, help="EVSEs per charger (one connector each)")
    p.add_argument("--ping", type=float, default=0, help="the simulators' WebSocket ping interval, s (0: none)")
    p.add_argument("--csms-ping", type=float, default=20, help="the CSMS's ping interval, s (0: none; uvicorn: 20)")
    p.add_argument(
        "--inline-validation",
        action="store_true",
        help="ocpp.messages.ASYNC_VALIDATION = False in both processes (schema checks on the loop, not in threads)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="give up when not all online after this (s)")
    p.add_argument("--persistent", action="store_true", help="ignored (no Temporal here); run_all passes it to all")
    # internal: the pod process
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--csms-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.interval, args.csms_ping = [100, 1000], 20, 20
    # Steady state: every charger has had its first Heartbeat and pings before the window opens, and
    # the window spans one whole period of each, so clustered timers (a small pod boots within a
    # second) cannot fall in or out of it by luck.
    period = max(args.interval, args.ping, args.csms_ping)
    args.idle = period if args.idle is None else args.idle
    args.settle = period + 5 if args.settle is None else args.settle
    return args


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.child:
        child_main(parsed)
    else:
        main(parsed)
