"""POST /ocpi/cpos → READY: how long provisioning takes, and where the time goes.

Starts its own stack (tests.stack.Stack: Temporal dev server, one worker, the API) in a temp dir,
then, one CPO at a time (nothing else runs, so every figure is the cost of that CPO alone):

1. `small-urban-ac` with the template defaults (2 × 3 = 6 chargers), `--runs` times → median, range;
2. the size curve 6 / 60 / 600 / 1,000 / 10,000 chargers (`--sizes` picks a subset);
3. for every curve point: the status steps seen while polling every 50 ms, and the Temporal history
   of `cpo-{id}` split per activity type (scheduled→started = queue wait, started→completed = run);
4. DELETE → DESTROYED (teardown) for each curve point.

Targets (issue 2): small-urban-ac median ≤ 2 s; 1,000 chargers ≤ 30 s.

    .venv/bin/python bench/bench_ready.py                 # in-memory Temporal (what tests use)
    .venv/bin/python bench/bench_ready.py --persistent    # SQLite WAL file, like `make run`
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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

from bench.bench_create import CpuMeter, add_common_args, print_table, run_main, stop_stack  # noqa: E402
from tests.stack import Stack  # noqa: E402

POLL_INTERVAL = 0.05
# chargers → (template, locations, chargers_per_location); all inside the template caps (checked at start).
CURVE = {
    6: ("small-urban-ac", 2, 3),
    60: ("small-urban-ac", 10, 6),
    600: ("small-urban-ac", 40, 15),
    1000: ("small-urban-ac", 40, 25),
    10000: ("stress-10k", 200, 50),
}
_party_ids = (
    "".join(p) for p in itertools.product("BCDFGHJKLMNPQRSTVWXZ", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", "0123456789")
)


@dataclass
class Run:
    chargers: int
    cpo_id: str
    post_ms: float
    ready_s: float
    steps: list[tuple[str, float]]  # (step or status, first seen at s after POST)
    post_wall: float = 0.0  # time.time() at POST, to line the history timestamps up with polling
    history: dict[str, object] = field(default_factory=dict)
    destroy_s: float | None = None
    cpu: str = ""


def body(template: str, locations: int | None, per_location: int | None) -> dict[str, object]:
    out: dict[str, object] = {
        "template": template,
        "country_code": "NL",
        "party_id": next(_party_ids),
        "name_prefix": "bench",
        "seed": 20240601,
        "ttl_seconds": 3600,
    }
    if locations is not None:
        out["overrides"] = {"locations": locations, "chargers_per_location": per_location}
    return out


async def provision(client: httpx.AsyncClient, payload: dict[str, object], timeout: float) -> Run:
    """POST, then poll status every 50 ms until READY."""
    wall = time.time()
    t0 = time.perf_counter()
    resp = await client.post("/ocpi/cpos", json=payload)
    post_ms = (time.perf_counter() - t0) * 1000
    if resp.status_code != 202:
        raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:300]}")
    cpo_id = resp.json()["cpo_id"]
    timeline: list[tuple[str, float]] = []
    last = None
    while True:
        st = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
        now = time.perf_counter() - t0
        progress = st.get("progress") or {}
        marker = st["status"]
        if marker == "PROVISIONING":
            marker = progress.get("current_step") or "PROVISIONING (steps done, marking READY)"
        if marker != last:
            timeline.append((marker, now))
            last = marker
        if st["status"] == "READY":
            return Run(0, cpo_id, post_ms, now, timeline, post_wall=wall)
        if st["status"] in ("FAILED", "DESTROYED") or now > timeout:
            raise RuntimeError(f"CPO {cpo_id} did not become READY: {st}")
        await asyncio.sleep(POLL_INTERVAL)


async def destroy(client: httpx.AsyncClient, cpo_id: str, timeout: float = 300) -> float:
    t0 = time.perf_counter()
    resp = await client.delete(f"/ocpi/cpos/{cpo_id}")
    if resp.status_code not in (200, 202):
        raise RuntimeError(f"delete failed: {resp.status_code} {resp.text[:200]}")
    while True:
        st = (await client.get(f"/ocpi/cpos/{cpo_id}/status")).json()
        if st["status"] == "DESTROYED":
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"CPO {cpo_id} not destroyed: {st}")
        await asyncio.sleep(POLL_INTERVAL)


def _ns(ev) -> int:  # type: ignore[no-untyped-def]
    return ev.event_time.ToNanoseconds()


async def history_breakdown(temporal: Client, cpo_id: str) -> dict[str, object]:
    """Per activity type: count, wall window, summed queue wait and run time; workflow-task totals."""
    hist = await temporal.get_workflow_handle(f"cpo-{cpo_id}").fetch_history()
    events = list(hist.events)
    t_start = _ns(events[0])
    started_wall = t_start / 1e9
    scheduled: dict[int, tuple[str, int]] = {}
    started: dict[int, int] = {}
    per_type: dict[str, dict[str, float]] = defaultdict(
        lambda: {"n": 0, "wait": 0.0, "run": 0.0, "first": float("inf"), "last": 0.0}
    )
    wft = {"n": 0, "wait": 0.0, "run": 0.0}
    wft_sched: dict[int, int] = {}
    wft_start: dict[int, int] = {}
    ready_at = None
    for ev in events:
        kind = ev.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            scheduled[ev.event_id] = (ev.activity_task_scheduled_event_attributes.activity_type.name, _ns(ev))
        elif kind == "activity_task_started_event_attributes":
            started[ev.activity_task_started_event_attributes.scheduled_event_id] = _ns(ev)
        elif kind == "activity_task_completed_event_attributes":
            sid = ev.activity_task_completed_event_attributes.scheduled_event_id
            name, t_sched = scheduled[sid]
            t_started = started.get(sid, t_sched)
            row = per_type[name]
            row["n"] += 1
            row["wait"] += (t_started - t_sched) / 1e9
            row["run"] += (_ns(ev) - t_started) / 1e9
            row["first"] = min(row["first"], (t_sched - t_start) / 1e9)
            row["last"] = max(row["last"], (_ns(ev) - t_start) / 1e9)
            if name == "record_status":
                ready_at = (_ns(ev) - t_start) / 1e9  # the last one before READY is the READY write
        elif kind == "marker_recorded_event_attributes" and ev.marker_recorded_event_attributes.marker_name == (
            "core_local_activity"
        ):
            # Local activities (the status records) leave only a marker, written when the workflow task
            # that ran them completes; their run time is inside the workflow-task figures.
            row = per_type["record_status (local)"]
            row["n"] += 1
            row["first"] = min(row["first"], (_ns(ev) - t_start) / 1e9)
            row["last"] = max(row["last"], (_ns(ev) - t_start) / 1e9)
            ready_at = (_ns(ev) - t_start) / 1e9
        elif kind == "workflow_task_scheduled_event_attributes":
            wft_sched[ev.event_id] = _ns(ev)
        elif kind == "workflow_task_started_event_attributes":
            wft_start[ev.event_id] = _ns(ev)
            wft["wait"] += (
                _ns(ev) - wft_sched.get(ev.workflow_task_started_event_attributes.scheduled_event_id, _ns(ev))
            ) / 1e9
        elif kind == "workflow_task_completed_event_attributes":
            wft["n"] += 1
            wft["run"] += (
                _ns(ev) - wft_start.get(ev.workflow_task_completed_event_attributes.started_event_id, _ns(ev))
            ) / 1e9
    return {
        "events": len(events),
        "per_type": dict(per_type),
        "wft": wft,
        "ready_recorded_at": ready_at,
        "started_wall": started_wall,
    }


def step_dwell(run: Run) -> dict[str, float]:
    """Seconds each status/step was observed (first seen → next first seen), from polling."""
    out: dict[str, float] = {}
    points = [("POST → first status", 0.0), *run.steps]
    for (name, t), (_, t_next) in itertools.pairwise(points):
        out[name] = out.get(name, 0.0) + (t_next - t)
    return out


def print_breakdown(run: Run) -> None:
    print(f"\n-- where the time goes: {run.chargers:,} chargers (CPO {run.cpo_id}, READY after {run.ready_s:.2f} s) --")
    dwell = step_dwell(run)
    print("observed while polling (first seen → next first seen; 50 ms resolution):")
    print_table(
        ["phase", "seconds", "share"],
        [[k, f"{v:.2f}", f"{100 * v / run.ready_s:.0f}%"] for k, v in dwell.items()],
    )
    h = run.history
    offset = h["started_wall"] - run.post_wall  # type: ignore[operator]
    print(
        f"workflow started {1000 * offset:.0f} ms after the POST was sent; READY written to the DB at "
        f"{offset + h['ready_recorded_at']:.2f} s; first poll that saw READY at {run.ready_s:.2f} s"  # type: ignore[operator]
    )
    print(run.cpu)
    per_type: dict[str, dict[str, float]] = h["per_type"]  # type: ignore[assignment]
    wft: dict[str, float] = h["wft"]  # type: ignore[assignment]
    print(f"Temporal history ({h['events']} events); times relative to WorkflowExecutionStarted:")
    rows = []
    for name, r in sorted(per_type.items(), key=lambda kv: kv[1]["first"]):
        rows.append(
            [
                name,
                int(r["n"]),
                f"{r['first']:.2f}-{r['last']:.2f}",
                f"{r['last'] - r['first']:.2f}",
                f"{r['run']:.2f}",
                f"{1000 * r['run'] / r['n']:.0f}",
                f"{1000 * r['wait'] / r['n']:.0f}",
            ]
        )
    rows.append(
        [
            "(workflow tasks)",
            int(wft["n"]),
            "",
            "",
            f"{wft['run']:.2f}",
            f"{1000 * wft['run'] / max(1, wft['n']):.0f}",
            f"{1000 * wft['wait'] / max(1, wft['n']):.0f}",
        ]
    )
    print_table(["activity", "n", "window s", "wall s", "run Σ s", "run ms/each", "queue ms/each"], rows)


async def check_caps(client: httpx.AsyncClient, sizes: list[int]) -> None:
    templates = {t["slug"]: t for t in (await client.get("/ocpi/cpos/templates")).json()["data"]}
    for size in sizes:
        slug, locs, per = CURVE[size]
        caps = templates[slug]["caps"]
        ok = caps["locations"]["min"] <= locs <= caps["locations"]["max"] and (
            caps["chargers_per_location"]["min"] <= per <= caps["chargers_per_location"]["max"]
        )
        if not ok:
            raise SystemExit(f"{slug} {locs}×{per} is outside the caps {caps}")


async def main(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="cpolab-bench-ready-"))
    stack = Stack(workdir, temporal_db=args.persistent)
    mode = "persistent WAL (make run)" if args.persistent else "in-memory"
    print(f"bench_ready: Temporal dev server {mode}, 1 worker, 1 API process; workdir {workdir}")
    try:
        await stack.start()
        temporal = await Client.connect(stack.temporal_address)
        async with stack.client(org="bench-ready") as client:
            await check_caps(client, args.sizes)
            # Warm-up: the first create pays imports, lazy connections and the sandbox's first load.
            await provision(client, body("small-urban-ac", 1, 1), 60)

            small: list[Run] = []
            for _ in range(args.runs):
                run = await provision(client, body("small-urban-ac", None, None), 60)
                run.chargers = 6
                small.append(run)
                await destroy(client, run.cpo_id)
            times = [r.ready_s for r in small]
            print("\nsmall-urban-ac runs, s: " + " ".join(f"{t:.2f}" for t in times))
            print(f"\nsmall-urban-ac defaults (6 chargers), {len(small)} sequential runs, poll every 50 ms:")
            print_table(
                ["median s", "min s", "max s", "POST ms median", "target"],
                [
                    [
                        f"{statistics.median(times):.2f}",
                        f"{min(times):.2f}",
                        f"{max(times):.2f}",
                        f"{statistics.median(r.post_ms for r in small):.0f}",
                        "≤ 2 s " + ("MET" if statistics.median(times) <= 2 else "MISSED"),
                    ]
                ],
            )

            curve: list[Run] = []
            for size in args.sizes:
                slug, locs, per = CURVE[size]
                cpu = CpuMeter(stack)
                run = await provision(client, body(slug, locs, per), args.timeout)
                run.cpu = cpu.report()
                run.chargers = size
                run.history = await history_breakdown(temporal, run.cpo_id)
                run.destroy_s = await destroy(client, run.cpo_id, timeout=args.timeout)
                curve.append(run)
                print(
                    f"  {size:>6,} chargers: READY {run.ready_s:6.2f} s, destroyed in {run.destroy_s:5.2f} s",
                    flush=True,
                )

        print("\nPOST → READY curve (one CPO at a time):")
        rows = []
        prev = None
        for run in curve:
            slug, locs, per = CURVE[run.chargers]
            growth = (
                "" if prev is None else f"×{run.ready_s / prev.ready_s:.1f} for ×{run.chargers / prev.chargers:.0f}"
            )
            rows.append(
                [
                    f"{run.chargers:,}",
                    f"{slug} {locs}×{per}",
                    f"{run.ready_s:.2f}",
                    f"{1000 * run.ready_s / run.chargers:.1f}",
                    growth,
                    run.history["events"],
                    f"{run.destroy_s:.2f}",
                ]
            )
            prev = run
        print_table(["chargers", "template", "READY s", "ms/charger", "growth", "history events", "destroy s"], rows)
        big = [r for r in curve if r.chargers == 1000]
        if big:
            print(
                f"target 1,000 chargers ≤ 30 s: {'MET' if big[0].ready_s <= 30 else 'MISSED'} ({big[0].ready_s:.2f} s)"
            )
        for run in curve:
            if run.chargers in args.breakdown:
                print_breakdown(run)
        return {
            "small_median_s": statistics.median(times),
            "small_times_s": times,
            "curve": {r.chargers: {"ready_s": r.ready_s, "destroy_s": r.destroy_s} for r in curve},
        }
    finally:
        stop_stack(stack, args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--runs", type=int, default=10, help="sequential small-urban-ac runs for the median")
    p.add_argument("--sizes", type=int, nargs="*", default=sorted(CURVE), choices=sorted(CURVE))
    p.add_argument("--breakdown", type=int, nargs="*", default=[1000, 10000], help="curve points to break down")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for one CPO")
    return p.parse_args(argv)


if __name__ == "__main__":
    run_main(main(parse_args()))
