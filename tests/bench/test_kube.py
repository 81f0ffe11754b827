"""``katib-bench kube`` at a tiny size: the real operator against the fake API server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from katib.bench.cli import main
from katib.bench.kube import run_bench


def test_every_trial_completes_and_the_figures_are_consistent() -> None:
    result = run_bench(8, 4, workers=2, delay=(0.01, 0.05), timeout=120)
    assert result.completed == 8
    assert result.trials_per_s > 0 and result.wall_s > 0
    assert 0 <= result.latency_p50 <= result.latency_p90 < 60
    assert 0 < result.reconcile_trial_p50 <= result.reconcile_trial_p90
    assert result.passes["experiment"] >= 1 and result.passes["trial"] >= 8
    # Every trial needs at least its Trial and its Job created, and its Job deleted when done.
    assert result.calls_per_trial["create"] >= 2
    assert result.calls_by_resource["create trials"] == 8
    assert result.calls_by_resource["create jobs"] == 8
    assert result.calls_by_resource.get("delete jobs", 0) >= 1


def test_the_subcommand_prints_the_figures_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["kube", "--runs", "3:3", "--delay", "0.01:0.02", "--workers", "2", "--out", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "3 trials, parallelTrialCount 3" in out and "API calls per trial" in out
    (saved,) = json.loads((tmp_path / "kube.json").read_text())
    assert saved["completed"] == 3


def test_malformed_runs_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kube", "--runs", "ten:2"]) == 2
    assert "--runs" in capsys.readouterr().err
