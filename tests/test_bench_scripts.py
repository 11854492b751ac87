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


def test_bench_locations_runs_as_a_script(tmp_path: Path) -> None:
    """bench_locations imports the test support (PostgreSQL server, migrate); --help proves they resolve."""
    script = ROOT / "bench" / "bench_locations.py"
    out = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "--postgres" in out.stdout and "--rounds" in out.stdout, out.stdout
