"""Early stopping and multi-fidelity end to end: ``katib run`` with the built-in services.

The trials are a fast, deterministic learning curve (``loss = x + 1 / epoch``, one report per
epoch), so which trials a rule stops is known in advance; real processes, the in-process
suggestion, DB and early-stopping services over loopback gRPC.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import FailedPrecondition
from katib.controller import reconcile as rec
from katib.controller.earlystop import EarlyStopping
from katib.controller.runner import ExperimentRunner, RunResult
from katib.controller.trials import TrialCondition
from katib.controller.validation import load_experiment
from katib.db.testing import free_port
from tests.controller.experiments import container
from tests.controller.fakes import FixedRules, ScriptedSuggestion, serve

C = TrialCondition
KATIB = [sys.executable, "-m", "katib.controller.cli"]

#: loss = x + 1/epoch after every epoch; a short pause per epoch lets a rule act while it runs.
CURVE = textwrap.dedent(
    """
    import sys, time
    x, epochs = float(sys.argv[1]), int(sys.argv[2])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
    for epoch in range(1, epochs + 1):
        print(f"epoch={epoch} loss={x + 1 / epoch:.6f}", flush=True)
        time.sleep(pause)
    """
)


def curve_experiment(script: Path, name: str, epochs: str = "6", **spec: Any) -> dict[str, Any]:
    """An experiment over x (grid 0, 0.25, ..., 1) whose trials run :data:`CURVE`."""
    doc: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "grid"},
            "parallelTrialCount": 1,
            "maxTrialCount": 5,
            "maxFailedTrialCount": 1,
            "parameters": [
                {
                    "name": "x",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0", "max": "1", "step": "0.25"},
                }
            ],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "training",
                                        "image": "python",
                                        "command": [
                                            sys.executable,
                                            str(script),
                                            "${trialParameters.x}",
                                            epochs,
                                        ],
                                    }
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
            **spec,
        },
    }
    return doc


def write_curve(tmp_path: Path) -> Path:
    path = tmp_path / "curve.py"
    path.write_text(CURVE)
    return path


def test_katib_run_stops_trials_with_the_built_in_medianstop(tmp_path: Path) -> None:
    """Grid order is x = 0, 0.25, 0.5, 0.75, 1: the first two complete, and each later trial
    is worse than the median of the running averages from its second report on."""
    doc = curve_experiment(
        write_curve(tmp_path),
        "median-curve",
        earlyStopping={
            "algorithmName": "medianstop",
            "algorithmSettings": [
                {"name": "min_trials_required", "value": "2"},
                {"name": "start_step", "value": "2"},
            ],
        },
    )
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    results = tmp_path / "results"
    done = subprocess.run(
        [*KATIB, "run", str(path), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 trials: 2 succeeded, 3 early stopped" in done.stdout
    assert "ExperimentMaxTrialsReached" in done.stdout  # early-stopped trials count
    assert done.stdout.count(" early stopped (loss=") == 3  # progress marks each one
    listed = subprocess.run(
        [*KATIB, "trials", str(results), "-o", "json"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    trials = {float(t["parameters"]["x"]): t for t in json.loads(listed.stdout)["trials"]}
    assert [trials[x]["condition"] for x in (0, 0.25)] == ["Succeeded"] * 2
    for x in (0.5, 0.75, 1):
        trial = trials[x]
        assert trial["condition"] == "EarlyStopped" and trial["reason"] == "TrialEarlyStopped"
        loss = float(trial["observation"]["loss"]["min"])  # the observation is kept
        # stopped at its 2nd report (median of 0.75 and 1.0 is 0.875 < x + 1/2), not later
        assert loss == x + 0.5
    table = subprocess.run(
        [*KATIB, "trials", str(results)], capture_output=True, text=True, timeout=60
    )
    assert table.stdout.count("EarlyStopped") == 3


def two_rules(request: Any) -> list[pb.EarlyStoppingRule]:
    """A rule the curves meet (loss > 0.5 from the first report) and one they never meet."""
    return [
        pb.EarlyStoppingRule(name="loss", value="0.5", comparison=pb.GREATER, start_step=1),
        pb.EarlyStoppingRule(name="loss", value="-1", comparison=pb.LESS, start_step=1),
    ]


def _run_with(tmp_path: Path, rules: FixedRules, results: str) -> RunResult:
    doc = curve_experiment(
        write_curve(tmp_path), "semantics", "4", earlyStopping={"algorithmName": "medianstop"}
    )
    doc["spec"]["maxTrialCount"] = 2
    spec = load_experiment(doc)
    with serve(rules) as address:
        return ExperimentRunner(
            spec, doc, tmp_path / results, early_stopping_address=address
        ).run()


def test_the_rule_form_follows_what_the_service_answered(tmp_path: Path) -> None:
    """A service that does not echo ``katib-rule-semantics`` (Katib's) answered in Katib's
    form, where every rule must be met; one that echoes ``any`` stops at the first."""
    katib = _run_with(tmp_path, FixedRules(two_rules), "katib")
    assert [t.condition for t in katib.trials] == [C.SUCCEEDED] * 2
    assert {t.stop_semantics.value for t in katib.trials} == {"katib"}
    echoed = FixedRules(two_rules, announce="any")
    anyform = _run_with(tmp_path, echoed, "any")
    assert [t.condition for t in anyform.trials] == [C.EARLY_STOPPED] * 2
    assert echoed.stopped == [t.name for t in anyform.trials]


def test_running_trials_get_fresher_rules_when_a_trial_ends(tmp_path: Path) -> None:
    """Rules are asked for again whenever a trial ends: the long trial starts with none and is
    stopped by the rule that came once the short one ended."""
    script = write_curve(tmp_path)
    doc = curve_experiment(script, "refresh", "40", earlyStopping={"algorithmName": "asha"})
    doc["spec"]["parallelTrialCount"] = 2
    doc["spec"]["maxTrialCount"] = 2
    doc["spec"]["algorithm"] = {"algorithmName": "scripted"}

    def answer(request: pb.GetSuggestionsRequest) -> Any:
        reply = pb.GetSuggestionsReply()
        for i in range(request.current_request_number):
            x = "0" if len(request.trials) + i == 0 else "1"
            item = reply.parameter_assignments.add()
            item.assignments.add(name="x", value=x)
        return reply

    def after_one_ended(request: Any) -> list[pb.EarlyStoppingRule]:
        ended = [t for t in request.trials if t.status.condition == pb.TrialStatus.SUCCEEDED]
        if not ended:
            return []
        return [
            pb.EarlyStoppingRule(name="loss", value="0.5", comparison=pb.GREATER, start_step=1)
        ]

    rules = FixedRules(after_one_ended, announce="any")
    # trial 0 (x = 0) reports twice and ends; trial 1 (x = 1) would run 40 epochs
    container(doc)["command"] = [
        sys.executable,
        "-c",
        "import subprocess, sys; x = sys.argv[1]; "
        f"sys.exit(subprocess.call([sys.executable, {str(script)!r}, x, "
        "'2' if x == '0' else '40', '0.1']))",
        "${trialParameters.x}",
    ]
    spec = load_experiment(doc, check_algorithm=False)
    with serve(ScriptedSuggestion(answer)) as suggestion, serve(rules) as early:
        result = ExperimentRunner(
            spec,
            doc,
            tmp_path / "results",
            suggestion_address=suggestion,
            early_stopping_address=early,
        ).run()
    first, second = result.trials
    assert first.condition is C.SUCCEEDED
    assert second.condition is C.EARLY_STOPPED
    assert second.stop_rules and second.stop_rules[0].value == 0.5
    assert len(rules.rule_requests) >= 2  # once to start, again when the first trial ended
    assert result.decision.reason is rec.Reason.MAX_TRIALS_REACHED


def test_hyperband_runs_its_schedule_beyond_the_declared_resource_range(tmp_path: Path) -> None:
    """r_l = 3, eta = 3: 3 configs at 1 epoch -> the best at 3; then 2 configs at 3 epochs.
    The experiment declares epochs in [1, 1] (as Katib's example does); hyperband owns it."""
    script = write_curve(tmp_path)
    doc = curve_experiment(
        script,
        "hyperband-curve",
        algorithm={
            "algorithmName": "hyperband",
            "algorithmSettings": [
                {"name": "resource_name", "value": "epochs"},
                {"name": "r_l", "value": "3"},
                {"name": "eta", "value": "3"},
                {"name": "random_state", "value": "1"},
            ],
        },
    )
    doc["spec"]["parameters"] = [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "1"}},
    ]
    doc["spec"]["trialTemplate"]["trialParameters"].append(
        {"name": "epochs", "reference": "epochs"}
    )
    doc["spec"].update(parallelTrialCount=3, maxTrialCount=20, maxFailedTrialCount=0)
    container(doc)["command"] = [
        sys.executable,
        str(script),
        "${trialParameters.x}",
        "${trialParameters.epochs}",
        "0",
    ]
    result = ExperimentRunner(load_experiment(doc), doc, tmp_path / "results").run()
    assert result.decision.reason is rec.Reason.SUGGESTION_END_REACHED, result.decision.message
    assert [t.condition for t in result.trials] == [C.SUCCEEDED] * 6
    epochs = [dict(t.assignments)["epochs"] for t in result.trials]
    assert sorted(epochs) == ["1", "1", "1", "3", "3", "3"]
    at = {
        e: [dict(t.assignments)["x"] for t in result.trials if dict(t.assignments)["epochs"] == e]
        for e in ("1", "3")
    }
    best_at_one = min(at["1"], key=float)
    assert best_at_one in at["3"]  # the best of the first rung goes on


def test_an_unavailable_service_is_retried_until_it_answers(tmp_path: Path) -> None:
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_EarlyStoppingServicer_to_server(FixedRules(two_rules), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    timer = threading.Timer(1.0, server.start)  # comes up after the first attempts failed
    timer.start()
    doc = curve_experiment(write_curve(tmp_path), "retry", earlyStopping={"algorithmName": "x"})
    spec = load_experiment(doc)
    early = EarlyStopping(f"127.0.0.1:{port}", timeout=5)
    try:
        early.validate(spec)
        answer = early.rules(spec, [], {}, "127.0.0.1:1")
    finally:
        timer.join()
        early.close()
        server.stop(None)
    assert len(answer.rules) == 2 and answer.semantics.value == "katib"
    cancelled = EarlyStopping(f"127.0.0.1:{free_port()}", cancelled=lambda: True, timeout=5)
    with pytest.raises(FailedPrecondition, match="UNAVAILABLE"):
        cancelled.rules(spec, [], {}, "127.0.0.1:1")
    cancelled.close()
