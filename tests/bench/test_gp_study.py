"""Smoke tests of ``katib-bench gp-study`` and ``gp-latency`` on tiny workloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from katib.bench.cli import main
from katib.bench.gp_study import _holm


def test_gp_study_runs_caches_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "study.json"
    args = [
        "gp-study",
        "--problems",
        "branin",
        "--contenders",
        "bayesianoptimization,random",
        "--seeds",
        "3",
        "--budget",
        "12",
        "--cache",
        str(cache),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| branin | 12 |" in out and "Mann-Whitney U over 1 cells" in out
    runs = json.loads(cache.read_text())
    assert len(runs) == 6 and all(len(r["regret"]) == 12 for r in runs.values())
    # A second run only reports: everything is cached.
    assert main([*args, "--report-only"]) == 0
    assert "| branin | 12 |" in capsys.readouterr().out


def test_holm_rejects_step_down() -> None:
    assert _holm([0.001, 0.03, 0.04], 0.05) == 1  # 0.001 < 0.05 / 3, 0.03 > 0.05 / 2
    assert _holm([0.001, 0.01, 0.04], 0.05) == 3


def test_gp_latency_prints_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    assert main(["gp-latency", "--history", "15", "--calls", "1", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "Optuna GPSampler ask + tell" in out and "GetSuggestions x2" in out
