"""Every benchmark runs as the script its docstring shows (`python bench/bench_x.py`), from any
directory: `--help` proves its imports (test support, bench-only workflows) resolve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import ROOT

DATABASE_CHOICE = "--database {sqlite,postgres}"


@pytest.mark.parametrize(
    ("script", "flags"),
    [
        ("bench_handshake.py", ["--n"]),
        ("bench_cost.py", ["--starters", DATABASE_CHOICE]),
        ("bench_workers.py", ["--phases", DATABASE_CHOICE]),
        ("bench_locations.py", ["--rounds", DATABASE_CHOICE]),
        ("bench_csms.py", ["--clients", DATABASE_CHOICE]),
        ("bench_sim.py", ["--sizes", "--interval"]),
        ("bench_sessions_sim.py", ["--sizes", "--scale"]),
        ("bench_failover.py", ["--sizes"]),
        ("bench_cdr.py", ["--sessions", "--burst", "--cdr-poll-interval", DATABASE_CHOICE]),
        ("bench_background.py", ["--locations", "--scale", "--outbound-per-cpo"]),
    ],
)
def test_bench_runs_as_a_script(tmp_path: Path, script: str, flags: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:"), out.stdout
    for flag in flags:
        assert flag in out.stdout, (flag, out.stdout)


def test_run_all_lists_every_bench_script() -> None:
    """Every bench_*.py is run by `make bench`."""
    from bench.run_all import BENCHES

    modules = {module for module, _, _ in BENCHES.values()}
    scripts = {f"bench.{p.stem}" for p in (ROOT / "bench").glob("bench_*.py")}
    assert scripts == modules
