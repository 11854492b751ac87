"""Background activity at 1,000 chargers: what a CPO's own traffic costs and how fast it reaches the eMSP.

Starts its own stack (tests.stack.Stack: Temporal dev server, worker, sim worker, API) in a temp dir and
a real eMSP on loopback (tests.emsp_peer.EmspPeer). Creates one CPO of the stress template's kind sized by
overrides (`--locations` × 50 chargers, 1,000 by default) with `simulation: {time_scale, background_activity}`,
registers the eMSP, pushes `--tokens` tokens, and lets the background activity fill the EVSEs (its
warm-up places the drivers already parked at once, ~25 % of the EVSEs with the stress profile; the
ticks keep it there). After `--warmup` s it measures for `--window` s:

- push lag: for every EVSE status push the eMSP receives, receipt time − the EVSE's `last_updated`
  (stamped by the CSMS when it recorded the change, same box clock; OCPI's whole seconds, so up to
  1 s high): p50 / p99 / max (target p99 ≤ 2 s); the same for Session PATCHes (kWh growing);
- the share of EVSEs CHARGING (sampled from the database at the end);
- CPU of the API (CSMS + OCPI pushes), the sim worker, the worker and Temporal over the window.

Do not run it at 10,000 chargers on the shared box.

    .venv/bin/python bench/bench_background.py                       # 1,000 chargers, scale 60
    .venv/bin/python bench/bench_background.py --scale 1 --warmup 60 --window 300   # real time
    .venv/bin/python bench/bench_background.py --locations 4 --warmup 60 --window 30   # a quick look
    .venv/bin/python bench/bench_background.py --outbound-per-cpo 16   # the one CPO may push 16 at once
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.bench_create import CpuMeter, add_common_args, pct, print_table, run_main, stop_stack  # noqa: E402
from tests.charging_support import push_rfid_token  # noqa: E402
from tests.emsp_peer import EmspPeer, OcpiClient, ok, register  # noqa: E402
from tests.stack import Stack, wait_status  # noqa: E402

PARTY = "BGB"


def _lag(received_at: float, last_updated: str) -> float:
    return received_at - datetime.fromisoformat(last_updated.replace("Z", "+00:00")).timestamp()


async def _push_tokens(ocpi: OcpiClient, base: str, count: int) -> None:
    for n in range(count):
        uid = f"BENCH-DRIVER-{n:05d}"
        await push_rfid_token(ocpi, base, uid, contract_id=f"NL-EMS-C{n:08d}-B", issuer="Bench eMSP")


def _push_lags(peer: EmspPeer, since: float, module: str) -> list[float]:
    """Lags of the PATCHes of `module` received since `since`: EVSE statuses (`locations`, PATCH
    …/locations/{loc}/{evse}) or Session updates (`sessions`)."""
    return [
        _lag(r.wall_at, r.body["last_updated"])
        for r in list(peer.received)
        if r.wall_at >= since
        and r.method == "PATCH"
        and r.headers.get("ocpi-from-party-id") == PARTY
        and f"/{module}/" in r.path
        and isinstance(r.body, dict)
        and "last_updated" in r.body
        and (module != "locations" or "status" in r.body)
    ]


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-background-"))
    env = {"CPOLAB_OUTBOUND_PER_CPO": str(args.outbound_per_cpo)} if args.outbound_per_cpo else None
    stack = Stack(workdir, temporal_db=args.persistent, env=env)
    peer = EmspPeer()
    await peer.start()
    try:
        await stack.start()
        async with stack.client() as control, httpx.AsyncClient(timeout=60) as http:
            resp = await control.post(
                "/ocpi/cpos",
                json={
                    "template": "stress-10k",
                    "country_code": "NL",
                    "party_id": PARTY,
                    "name_prefix": "bench-bg",
                    "seed": 7,
                    "ttl_seconds": None,
                    "overrides": {"locations": args.locations, "chargers_per_location": 50},
                    "simulation": {"time_scale": args.scale, "background_activity": True},
                },
            )
            assert resp.status_code == 202, resp.text
            body = resp.json()
            cpo_id = int(body["cpo_id"])
            started = time.monotonic()
            status = await wait_status(control, body["cpo_id"], {"READY", "FAILED"}, timeout=900)
            assert status["status"] == "READY", status
            chargers = status["progress"]["chargers_total"]
            print(f"CPO {cpo_id}: {chargers} chargers READY in {time.monotonic() - started:.1f} s")
            registered, _ = await register(http, body, peer)
            ocpi = OcpiClient(http, ok(registered)["token"])
            await _push_tokens(ocpi, body["ocpi_peer_url"].removesuffix("/versions") + "/2.2.1", args.tokens)
            print(f"eMSP registered, {args.tokens} tokens pushed; warming up {args.warmup} s")
            await asyncio.sleep(args.warmup)

            since = time.time()
            meter = CpuMeter(stack)
            await asyncio.sleep(args.window)
            cpu = meter.used()
            lags = _push_lags(peer, since, "locations")
            session_lags = _push_lags(peer, since, "sessions")
            evses = stack.query("SELECT status, count(*) FROM evse WHERE cpo_id = ? GROUP BY status", cpo_id)
            sessions = len(
                [r for r in peer.received if r.headers.get("ocpi-from-party-id") == PARTY and "/sessions/" in r.path]
            )
            cdrs = len([r for r in peer.received if r.headers.get("ocpi-from-party-id") == PARTY and "/cdrs" in r.path])
        total = sum(int(n) for _, n in evses) or 1
        by_status = {str(s): int(n) for s, n in evses}
        print()
        print_table(
            ["chargers", "scale", "window s", "pushes", "p50 lag s", "p99 lag s", "max lag s", "charging %"],
            [
                [
                    args.locations * 50,
                    args.scale,
                    args.window,
                    f"{len(found)} {what}",
                    f"{pct(found, 50):.3f}",
                    f"{pct(found, 99):.3f}",
                    f"{max(found, default=float('nan')):.3f}",
                    f"{100 * by_status.get('CHARGING', 0) / total:.0f}",
                ]
                for what, found in (("EVSE status", lags), ("Session PATCH", session_lags))
            ],
        )
        print()
        print(f"EVSEs by status at the end: {by_status}; Session pushes {sessions}, CDRs {cdrs} (whole run)")
        print(
            f"CPU over the {args.window} s window (100 % = one core): "
            + ", ".join(f"{k} {100 * v / args.window:.0f} %" for k, v in cpu.items())
        )
    finally:
        await peer.stop()
        stop_stack(stack, args.keep)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--locations", type=int, default=20, help="locations of 50 chargers (20: 1,000 chargers)")
    p.add_argument("--scale", type=float, default=60.0, help="simulation.time_scale")
    p.add_argument("--tokens", type=int, default=50, help="tokens the eMSP pushes (its drivers)")
    p.add_argument("--warmup", type=float, default=180.0, help="seconds for the EVSEs to fill up")
    p.add_argument("--window", type=float, default=60.0, help="measured seconds")
    p.add_argument(
        "--outbound-per-cpo", type=int, default=0, help="CPOLAB_OUTBOUND_PER_CPO for the stack (0: the default, 4)"
    )
    add_common_args(p)
    args = p.parse_args(argv)
    if not 1 <= args.locations <= 40:
        p.error("--locations must be 1-40 (at most 2,000 chargers on the shared box)")
    return args


if __name__ == "__main__":
    run_main(main(parse_args()))
