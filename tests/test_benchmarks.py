"""The benchmark scripts run end to end on tiny workloads and print their figures.

Figures are not asserted (speed is measured by running the scripts, not by tests); these keep
the scripts from rotting as the code they measure changes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(module: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("in_process", [False, True])
def test_suggestion_latency(in_process: bool) -> None:
    args = ["--algorithm", "sobol", "--history", "30", "--calls", "5", "--seconds", "0.3"]
    out = _run("suggestion_latency", *args, *(["--in-process"] if in_process else []))
    assert re.search(r"^sobol\s+30\s+[\d.]+\s+[\d.]+\s+\d+$", out, re.M), out


def test_controller_overhead() -> None:
    out = _run("controller_overhead", "--trials", "8", "--parallel", "2")
    assert re.search(r"controller overhead: -?[\d.]+ ms/trial", out), out


def test_db_throughput_sqlite() -> None:
    out = _run("db_throughput", "--backends", "sqlite", "--rows", "2000", "--singles", "50")
    assert re.search(r"^sqlite\s+[\d,]+\s+[\d,]+\s+[\d.]+\s+[\d.]+$", out, re.M), out


def test_tpe_latency() -> None:
    out = _run("tpe_latency", "--history", "40", "--calls", "2")
    for name in ("tpe", "multivariate-tpe"):
        assert re.search(rf"^{name} GetSuggestions x1\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M), out


def test_tpe_vs_optuna(tmp_path: Path) -> None:
    cache = tmp_path / "runs.json"
    args = ["--seeds", "3", "--trials", "15", "--problem", "branin-2d", "--cache", str(cache)]
    out = _run("tpe_vs_optuna", *args)
    assert "median regret" in out and "Mann-Whitney" in out, out
    assert cache.exists()
