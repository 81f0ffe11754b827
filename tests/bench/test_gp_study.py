"""Smoke tests of ``katib-bench gp-study`` and ``gp-latency`` on tiny workloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from katib.bench.cli import main


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
    exported = tmp_path / "runs.csv"
    assert main([*args, "--report-only", "--export", str(exported)]) == 0
    from_json = capsys.readouterr().out
    assert "| branin | 12 |" in from_json and "| branin@12 |" in from_json
    rows = exported.read_text().splitlines()
    assert rows[0].startswith("problem,contender,seed,budget,trials,wall_s,error,regret@12")
    assert len(rows) == 7
    # The CSV alone gives the same table and p-values (the wall times are rounded to 1 ms).
    csv_args = [*args[:-1], str(exported), "--report-only"]
    assert main(csv_args) == 0
    from_csv = capsys.readouterr().out
    assert _table(from_csv) == _table(from_json)
    with pytest.raises(SystemExit, match="only be read"):
        main(csv_args[:-1])


def _table(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("|")]


def test_gp_latency_prints_the_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    assert main(["gp-latency", "--history", "15", "--calls", "1", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "Optuna GPSampler ask + tell" in out and "GetSuggestions x2" in out
