"""``katib status|trials -o json|yaml|csv`` keep their documented schema, and a failed trial's
exit code and last log lines show in ``katib run`` and ``katib trials`` (issue 13 item 14)."""

from __future__ import annotations

import csv
import io
import json
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controller.experiments import container, experiment
from tests.controller.test_cli import katib, write

TRIAL_KEYS = {
    "name",
    "index",
    "condition",
    "reason",
    "message",
    "parameters",
    "observation",
    "objectiveValue",
    "startTime",
    "completionTime",
    "exitCode",
    "logTail",
}
STATUS_KEYS = {
    "schemaVersion",
    "kind",
    "name",
    "condition",
    "reason",
    "message",
    "startTime",
    "completionTime",
    "objective",
    "counts",
    "bestTrial",
}
#: Trials with x > 0.5 die with exit code 3 after printing a line only they print.
SCRIPT = textwrap.dedent(
    """
    import sys
    x, y = float(sys.argv[1]), float(sys.argv[2])
    if x > 0.5:
        print(f"loading shard for {x}", flush=True)
        print("RuntimeError: CUDA out of memory (fake)", file=sys.stderr, flush=True)
        sys.exit(3)
    print(f"loss={(x - 0.3) ** 2 + y:.6f}")
    print("accuracy=0.5")
    """
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One mixed run shared by the tests: some trials fail, some succeed."""
    tmp = tmp_path_factory.mktemp("cli-output")
    script = tmp / "mixed.py"
    script.write_text(SCRIPT)
    doc = experiment(script, max_trials=8, parallel=2, maxFailedTrialCount=8)
    doc["spec"]["algorithm"] = {"algorithmName": "grid"}
    doc["spec"]["parameters"][0]["feasibleSpace"] = {"min": "0.2", "max": "0.8", "step": "0.2"}
    doc["spec"]["parameters"][1]["feasibleSpace"] = {"min": "0", "max": "0.1", "step": "0.1"}
    container(doc)["command"] = [
        sys.executable,
        str(script),
        "${trialParameters.x}",
        "${trialParameters.y}",
    ]
    results = tmp / "results"
    done = katib("run", str(write(tmp, doc)), "--results", str(results), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return results, done.stdout


def _check_trial(trial: dict[str, Any]) -> None:
    assert set(trial) == TRIAL_KEYS
    assert set(trial["parameters"]) == {"x", "y"}
    for moment in (trial["startTime"], trial["completionTime"]):
        assert moment.endswith("Z")
        datetime.fromisoformat(moment)
    if trial["condition"] == "Failed":
        assert trial["exitCode"] == 3
        assert trial["logTail"][-1] == "RuntimeError: CUDA out of memory (fake)"
        assert trial["logTail"][0].startswith("loading shard for")
    else:
        assert trial["condition"] == "Succeeded"
        assert trial["exitCode"] == 0 and trial["logTail"] == []
        loss = trial["observation"]["loss"]
        assert set(loss) == {"min", "max", "latest"}
        x, y = float(trial["parameters"]["x"]), float(trial["parameters"]["y"])
        assert float(loss["min"]) == pytest.approx((x - 0.3) ** 2 + y, abs=1e-5)
        assert trial["objectiveValue"] == loss["min"]
        assert trial["observation"]["accuracy"]["latest"] == "0.5"


def test_run_shows_why_trials_failed(finished: tuple[Path, str]) -> None:
    _, stdout = finished
    assert "failed (exit code 3): RuntimeError: CUDA out of memory (fake)" in stdout
    assert "failed (exit code 3); last lines of" in stdout
    assert "| loading shard for" in stdout


def test_trials_table_shows_exit_codes_and_log_tails(finished: tuple[Path, str]) -> None:
    results, _ = finished
    listing = katib("trials", str(results))
    assert listing.returncode == 0
    assert listing.stdout.count("failed (exit code 3); last lines of") == 4
    assert "| RuntimeError: CUDA out of memory (fake)" in listing.stdout


def test_trials_json_and_yaml_follow_the_schema(finished: tuple[Path, str]) -> None:
    results, _ = finished
    document = json.loads(katib("trials", str(results), "-o", "json").stdout)
    assert {k: document[k] for k in ("schemaVersion", "kind")} == {
        "schemaVersion": 1,
        "kind": "TrialList",
    }
    trials = document["trials"]
    assert [t["index"] for t in trials] == list(range(8))
    assert sorted(t["condition"] for t in trials) == ["Failed"] * 4 + ["Succeeded"] * 4
    for trial in trials:
        _check_trial(trial)
    assert yaml.safe_load(katib("trials", str(results), "-o", "yaml").stdout) == document
    best = json.loads(katib("trials", str(results), "-o", "json", "--best").stdout)["trials"]
    values = [float(t["objectiveValue"]) for t in best if t["condition"] == "Succeeded"]
    assert values == sorted(values)


def test_trials_csv_has_one_row_per_trial(finished: tuple[Path, str]) -> None:
    results, _ = finished
    rows = list(csv.DictReader(io.StringIO(katib("trials", str(results), "-o", "csv").stdout)))
    document = json.loads(katib("trials", str(results), "-o", "json").stdout)
    assert len(rows) == 8
    for row, trial in zip(rows, document["trials"], strict=True):
        assert row["name"] == trial["name"] and row["condition"] == trial["condition"]
        assert row["exitCode"] == str(trial["exitCode"])
        assert row["parameters.x"] == trial["parameters"]["x"]
        loss = trial["observation"].get("loss", {})
        assert row["observation.loss.min"] == loss.get("min", "")


def test_status_json_includes_the_best_trial(finished: tuple[Path, str]) -> None:
    results, _ = finished
    done = katib("status", str(results), "-o", "json")
    assert done.returncode == 0
    status = json.loads(done.stdout)
    assert set(status) == STATUS_KEYS
    assert status["kind"] == "ExperimentStatus" and status["condition"] == "Succeeded"
    assert status["counts"]["failed"] == 4 and status["counts"]["succeeded"] == 4
    assert status["objective"] == {"type": "minimize", "metricName": "loss", "goal": None}
    trials = json.loads(katib("trials", str(results), "-o", "json").stdout)["trials"]
    succeeded = [t for t in trials if t["condition"] == "Succeeded"]
    best = min(succeeded, key=lambda t: float(t["objectiveValue"]))
    assert status["bestTrial"] == best
    assert yaml.safe_load(katib("status", str(results), "-o", "yaml").stdout) == status


def test_bad_output_format_is_a_usage_error(finished: tuple[Path, str]) -> None:
    results, _ = finished
    assert katib("status", str(results), "-o", "csv").returncode == 2
