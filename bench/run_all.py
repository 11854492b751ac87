"""Run the benchmarks one after another (`make bench`): create latency, POST → READY, status polling,
the OCPI credentials handshake and OCPI locations pages/s, OCPP messages/s of the CSMS,
the cost per CPO and per page beside minimal baselines, and provisioning throughput with 1 vs 2 workers on
Postgres (needs the PostgreSQL server package, as `pytest --db postgres` does). Each starts and stops its
own stack, so they never share CPU with one another.

    .venv/bin/python bench/run_all.py                # full run, in-memory Temporal (~7 min)
    .venv/bin/python bench/run_all.py --quick        # smaller loops (~2 min)
    .venv/bin/python bench/run_all.py --persistent   # Temporal on a SQLite WAL file, like `make run`

Figures are printed, never asserted: a missed target is reported as MISSED, and only a crash makes the
exit status non-zero. See bench/README.md for what each one measures.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BENCHES = {
    # Two workers, as `make run` starts: one per core.
    "create": (
        "bench.bench_create",
        ["--workers", "2"],
        ["--workers", "2", "--rates", "5", "10", "--duration", "6", "--per-client", "8"],
    ),
    # Tiny CPOs beside a no-op-activity baseline on the same server, 2 workers each (issue 7).
    "cost": ("bench.bench_cost", [], ["--duration", "10", "--paced-duration", "10"]),
    # 20 concurrent 1,000-charger CPOs with 1, then 2 workers, on a throwaway PostgreSQL server (issue 7).
    "workers": (
        "bench.bench_workers",
        ["--database", "postgres"],
        ["--database", "postgres", "--cpos", "5"],
    ),
    "ready": ("bench.bench_ready", [], ["--runs", "5", "--sizes", "6", "60", "600", "1000"]),
    "status": ("bench.bench_status", [], ["--duration", "8"]),
    "handshake": ("bench.bench_handshake", [], []),
    "locations": ("bench.bench_locations", [], []),
    # OCPP charger simulators: pods of 100 / 1,000 / 10,000 against the test CSMS, no stack.
    "sim": ("bench.bench_sim", [], ["--quick"]),
    # Charging sessions vs idle chargers in one simulator process (100 and 1,000, time scale 60).
    "sessions_sim": ("bench.bench_sessions_sim", [], ["--sizes", "100", "--window", "5"]),
    # OCPP messages/s of one API process, 100 raw chargers (Heartbeat/StatusNotification), no Temporal.
    "csms": ("bench.bench_csms", [], ["--duration", "8"]),
    # A killed sim worker's chargers back online on the other one (100 and 1,000 chargers).
    "failover": ("bench.bench_failover", [], ["--sizes", "100"]),
    # StopTransaction → CDR POST at the eMSP, one API process, no Temporal (issue 9).
    "cdr": ("bench.bench_cdr", [], ["--sessions", "10", "--burst", "10", "--rounds", "1"]),
    # Background activity on 1,000 chargers: EVSE status push lag and CPU (issue 9).
    "background": (
        "bench.bench_background",
        [],
        ["--locations", "2", "--scale", "600", "--warmup", "30", "--window", "15"],
    ),
}


def run(cmd: list[str], timeout: float = 1800) -> int:
    """Run one benchmark in its own process group, so a Ctrl-C reaches it exactly once, forwarded from
    here: it then stops its own stack in a `finally` (the stack's processes live in their own sessions,
    so a SIGKILL of the benchmark would leave them running)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon the cleanup
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter loops, no 10,000-charger CPO")
    p.add_argument("--persistent", action="store_true", help="Temporal on a SQLite WAL file, as `make run` does")
    p.add_argument("only", nargs="*", metavar="NAME", help=f"run only these of {', '.join(BENCHES)} (default: all)")
    args = p.parse_args()
    unknown = set(args.only) - set(BENCHES)
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    failed = []
    for name in args.only or BENCHES:
        module, full, quick = BENCHES[name]
        cmd = [sys.executable, "-m", module, *(quick if args.quick else full)]
        if args.persistent:
            cmd.append("--persistent")
        print(f"\n===== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        code = run(cmd)
        print(f"===== {name}: exit {code} after {time.monotonic() - t0:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
