"""End to end: trial output the DB would refuse never wedges an experiment (issue 13 item 4)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from katib.controller import reconcile as rec
from katib.controller.runner import ExperimentRunner
from katib.controller.trials import TrialCondition
from katib.controller.validation import load_experiment
from tests.controller.experiments import container, experiment

HOSTILE_TEXT = [
    "0001-01-01T00:00:00+01:00 loss=5",
    "9999-12-31T23:59:59-01:00 loss=6",
    "loss=" + "7" * 70_000,
]
HOSTILE_JSON = [
    '{"loss": 5, "timestamp": "0001-01-01T00:00:00+01:00"}',
    '{"loss": 6, "timestamp": "9999-12-31T23:59:59-01:00"}',
    '{"loss": "' + "7" * 70_000 + '"}',
    '{"loss": "nul\\u0000here"}',
]


@pytest.mark.parametrize("fmt", ["StdOut", "TEXT", "JSON"])
def test_hostile_lines_are_skipped_and_the_experiment_succeeds(tmp_path: Path, fmt: str) -> None:
    lines = HOSTILE_JSON if fmt == "JSON" else HOSTILE_TEXT
    good = '{"loss": 0.5}' if fmt == "JSON" else "loss=0.5"
    script = tmp_path / "hostile.py"
    target = "sys.stdout" if fmt == "StdOut" else "open(sys.argv[1], 'w')"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        out = {target}
        for line in {[*lines, good]!r}:
            print(line, file=out)
        out.flush()
        """)
    )
    doc = experiment(script, max_trials=2, parallel=2)
    container(doc)["command"] = [
        sys.executable,
        str(script),
        "/katib/metrics.log",
        "${trialParameters.x}",
        "${trialParameters.y}",
    ]
    if fmt != "StdOut":
        doc["spec"]["metricsCollectorSpec"] = {
            "collector": {"kind": "File"},
            "source": {
                "fileSystemPath": {"path": "/katib/metrics.log", "kind": "File", "format": fmt}
            },
        }
    results = tmp_path / "results"
    spec = load_experiment(doc)
    result = ExperimentRunner(spec, doc, results).run()
    assert result.decision.reason is rec.Reason.MAX_TRIALS_REACHED
    assert [t.condition for t in result.trials] == [TrialCondition.SUCCEEDED] * 2
    for trial in result.trials:
        loss = trial.metric("loss")
        assert loss is not None and loss.latest == "0.5"
        log = (results / "trials" / trial.name / "trial.log").read_text()
        assert "katib metrics collector: skipped line 3" in log
        assert log.count("katib metrics collector: skipped") == (2 if fmt == "JSON" else 1)
    # A rerun over the same results directory reads the stored outcome and does not crash.
    again = ExperimentRunner(load_experiment(doc), doc, results).run()
    assert again.decision.reason is rec.Reason.MAX_TRIALS_REACHED
