"""bench/bench_handshake.py runs as the script its docstring shows (`python bench/bench_handshake.py`),
from any directory (it used to crash importing `tests`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.stack import ROOT


def test_bench_handshake_runs_as_a_script(tmp_path: Path) -> None:
    script = ROOT / "bench" / "bench_handshake.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "--n" in out.stdout, out.stdout


def test_bench_cost_runs_as_a_script(tmp_path: Path) -> None:
    """bench_cost imports the bench-only baseline workflow; --help proves the imports resolve."""
    script = ROOT / "bench" / "bench_cost.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "--starters" in out.stdout, out.stdout
    assert "--database {sqlite,postgres}" in out.stdout, out.stdout


def test_bench_workers_runs_as_a_script(tmp_path: Path) -> None:
    """bench_workers imports bench_ready's history breakdown and the Postgres helpers of the tests."""
    script = ROOT / "bench" / "bench_workers.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "--phases" in out.stdout, out.stdout
    assert "--database {sqlite,postgres}" in out.stdout, out.stdout


def test_run_all_lists_every_bench_script() -> None:
    """Every bench_*.py is run by `make bench`."""
    from bench.run_all import BENCHES

    modules = {module for module, _, _ in BENCHES.values()}
    scripts = {f"bench.{p.stem}" for p in (ROOT / "bench").glob("bench_*.py")}
    assert scripts == modules
