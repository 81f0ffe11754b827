"""End-to-end runs: real trial processes, real suggestion and DB services over gRPC."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from katib.api.errors import FailedPrecondition, InvalidArgument
from katib.controller import reconcile as rec
from katib.controller.runner import ExperimentRunner, RunResult
from katib.controller.services import Suggestions as SuggestionClient
from katib.controller.trials import TrialCondition
from katib.controller.validation import load_experiment
from tests.controller.experiments import container, experiment, write_trial_script

C = TrialCondition


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return write_trial_script(tmp_path)


def run(tmp_path: Path, doc: dict[str, Any], results: str = "results") -> RunResult:
    return ExperimentRunner(load_experiment(doc), doc, tmp_path / results).run()


def conditions(result: RunResult) -> list[TrialCondition]:
    return [t.condition for t in result.trials]


def test_success_runs_max_trials_with_observations(tmp_path: Path, script: Path) -> None:
    result = run(tmp_path, experiment(script, max_trials=4, parallel=2))
    assert result.decision.reason is rec.Reason.MAX_TRIALS_REACHED
    assert conditions(result) == [C.SUCCEEDED] * 4
    for trial in result.trials:
        x, y = (float(v) for _, v in trial.assignments)
        loss = trial.metric("loss")
        assert loss is not None
        assert float(loss.min) == pytest.approx((x - 0.3) ** 2 + y, abs=1e-5)
        assert float(loss.max) == pytest.approx((x - 0.3) ** 2 + y + 1, abs=1e-5)
        assert (tmp_path / "results" / "trials" / trial.name / "trial.log").exists()
    best = min(result.trials, key=lambda t: float(t.metric("loss").min))  # type: ignore[union-attr]
    assert result.decision.best_trial == best.name


def test_goal_reached(tmp_path: Path, script: Path) -> None:
    doc = experiment(
        script,
        max_trials=6,
        parallel=1,
        objective={"type": "minimize", "objectiveMetricName": "loss", "goal": 5},
    )
    result = run(tmp_path, doc)
    assert result.decision.reason is rec.Reason.GOAL_REACHED
    assert conditions(result) == [C.SUCCEEDED]


def test_failures_below_max_failed_end_with_max_trials(tmp_path: Path, script: Path) -> None:
    doc = experiment(script, mode="fail", max_trials=2, parallel=1, maxFailedTrialCount=2)
    result = run(tmp_path, doc)
    assert conditions(result) == [C.FAILED, C.FAILED]
    assert result.decision.reason is rec.Reason.FAILED  # 2 failures reach the limit of 2
    doc = experiment(script, mode="fail", max_trials=2, parallel=1, name="nolimit")
    doc["spec"].pop("maxFailedTrialCount")
    result = run(tmp_path, doc, results="nolimit")
    assert conditions(result) == [C.FAILED, C.FAILED]
    assert (result.decision.condition, result.decision.reason) == (
        rec.Condition.SUCCEEDED,
        rec.Reason.MAX_TRIALS_REACHED,
    )
    assert result.trials[0].exit_code == 3
    log = tmp_path / "nolimit" / "trials" / result.trials[0].name / "trial.log"
    assert log.read_text() == "crashing\n"


def test_failures_beyond_max_failed_fail_and_stop(tmp_path: Path, script: Path) -> None:
    result = run(
        tmp_path, experiment(script, mode="fail", max_trials=10, parallel=2, maxFailedTrialCount=2)
    )
    assert (result.decision.condition, result.decision.reason) == (
        rec.Condition.FAILED,
        rec.Reason.FAILED,
    )
    assert conditions(result).count(C.FAILED) >= 2
    assert set(conditions(result)) <= {C.FAILED, C.KILLED}
    # The two first trials fail a few ms apart; after the first, one replacement is created
    # (as in Katib: a free slot, budget left, 1 failure < 2), and it is killed (or fails)
    # when the second failure fails the experiment. Never more than parallel + limit - 1.
    assert len(result.trials) in (2, 3)


def test_failures_reaching_max_failed_in_one_step_run_no_more_trials(tmp_path: Path) -> None:
    doc = experiment(tmp_path / "missing.py", max_trials=10, parallel=2, maxFailedTrialCount=2)
    container(doc)["command"][0] = str(tmp_path / "no-such-interpreter")
    result = run(tmp_path, doc)
    assert (result.decision.condition, result.decision.reason) == (
        rec.Condition.FAILED,
        rec.Reason.FAILED,
    )
    assert conditions(result) == [C.FAILED, C.FAILED]  # exactly parallelTrialCount trials
    assert all("cannot start the trial" in t.message for t in result.trials)


def test_trial_without_metric_is_metrics_unavailable(tmp_path: Path, script: Path) -> None:
    result = run(
        tmp_path,
        experiment(script, mode="silent", max_trials=2, parallel=1, maxFailedTrialCount=2),
    )
    assert conditions(result) == [C.METRICS_UNAVAILABLE] * 2
    assert result.decision.reason is rec.Reason.FAILED  # MetricsUnavailable counts as failed
    loss = result.trials[0].metric("loss")
    assert loss is not None and loss.latest == "unavailable"


SHELL_VALUES = ["a; touch pwned", "$(touch pwned2) `id` $HOME", "\"quote' & | > x"]


def test_shell_metacharacters_pass_literally_and_grid_ends(tmp_path: Path) -> None:
    echo = tmp_path / "echo.py"
    echo.write_text(
        textwrap.dedent("""
        import json, os, sys
        json.dump({"argv": sys.argv[1:], "trial": os.environ["KATIB_TRIAL_NAME"]},
                  open("argv.json", "w"))
        print("loss=1")
    """)
    )
    doc = experiment(echo, parallel=2)
    doc["spec"].pop("maxTrialCount")
    doc["spec"]["algorithm"] = {"algorithmName": "grid"}
    doc["spec"]["parameters"] = [
        {"name": "v", "parameterType": "categorical", "feasibleSpace": {"list": SHELL_VALUES}}
    ]
    doc["spec"]["trialTemplate"]["trialParameters"] = [{"name": "v", "reference": "v"}]
    container(doc)["command"] = [
        sys.executable,
        str(echo),
        "--v=${trialParameters.v}",
        "${trialParameters.v}",
    ]
    result = run(tmp_path, doc)
    assert result.decision.reason is rec.Reason.SUGGESTION_END_REACHED
    seen = []
    for trial in result.trials:
        data = json.loads((tmp_path / "results" / "trials" / trial.name / "argv.json").read_text())
        (value,) = (v for k, v in trial.assignments)
        assert data == {"argv": [f"--v={value}", value], "trial": trial.name}
        seen.append(value)
    assert sorted(seen) == sorted(SHELL_VALUES)
    assert not list(tmp_path.rglob("pwned*"))


@pytest.mark.parametrize("fmt", ["TEXT", "JSON"])
def test_file_collector(tmp_path: Path, fmt: str) -> None:
    project = tmp_path / "proj" / "katib"  # contains the metrics directory's name
    project.mkdir(parents=True)
    writer = project / "writer.py"
    line = (
        'f"{{\\"loss\\": {x}, \\"timestamp\\": 1}}"'
        if fmt == "JSON"
        else 'f"2024-01-01T00:00:00Z loss={x}"'
    )
    writer.write_text(
        textwrap.dedent(f"""
        import os, sys
        x = float(sys.argv[2])
        os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
        with open(sys.argv[1], "w") as f:
            print({line}, file=f)
        print("loss=999")  # stdout is not the metrics source
    """)
    )
    doc = experiment(writer, max_trials=2, parallel=2)
    doc["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "File"},
        "source": {
            "fileSystemPath": {"path": "/katib/metrics.log", "kind": "File", "format": fmt}
        },
    }
    container(doc)["command"] = [
        sys.executable,
        str(writer),
        "/katib/metrics.log",
        "${trialParameters.x}",
        "${trialParameters.y}",
    ]
    result = run(tmp_path, doc)
    assert conditions(result) == [C.SUCCEEDED] * 2
    for trial in result.trials:
        assert trial.metric("loss").latest == trial.assignment_dict()["x"]  # type: ignore[union-attr]
        assert (tmp_path / "results" / "trials" / trial.name / "katib" / "metrics.log").exists()


def test_push_collector(tmp_path: Path) -> None:
    pusher = tmp_path / "pusher.py"
    pusher.write_text(
        textwrap.dedent("""
        import sys
        from katib.controller.push import report_metrics
        print("debug: previous best loss=-100", flush=True)  # stdout is not scraped for Push
        report_metrics({"loss": float(sys.argv[1]) + 1})
        report_metrics({"loss": float(sys.argv[1]), "accuracy": 0.5})
    """)
    )
    doc = experiment(pusher, max_trials=2, parallel=2)
    doc["spec"]["metricsCollectorSpec"] = {"collector": {"kind": "Push"}}
    container(doc)["command"] = [
        sys.executable,
        str(pusher),
        "${trialParameters.x}",
        "${trialParameters.y}",
    ]
    result = run(tmp_path, doc)
    assert conditions(result) == [C.SUCCEEDED] * 2
    for trial in result.trials:
        assert float(trial.metric("loss").min) == pytest.approx(  # type: ignore[union-attr]
            float(trial.assignment_dict()["x"])
        )


def test_stdout_trial_that_also_pushes_counts_both(tmp_path: Path) -> None:
    """As in Katib, the observation is everything the DB holds for the trial: the rows the
    StdOut collector parsed and those the trial pushed itself with report_metrics()."""
    both = tmp_path / "both.py"
    both.write_text(
        textwrap.dedent("""
        import os, sys
        from katib.controller.push import report_metrics
        print(f"loss={sys.argv[1]}", flush=True)
        try:  # only the first trial pushes, a lower loss than it prints
            os.close(os.open(sys.argv[2], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        else:
            report_metrics({"loss": float(sys.argv[1]) - 10})
    """)
    )
    doc = experiment(both, max_trials=2, parallel=1)
    container(doc)["command"] = [sys.executable, str(both), "${trialParameters.x}"]
    container(doc)["args"] = [str(tmp_path / "pushed"), "${trialParameters.y}"]
    result = run(tmp_path, doc)
    assert conditions(result) == [C.SUCCEEDED] * 2
    first, second = result.trials
    x0, x1 = (float(t.assignment_dict()["x"]) for t in (first, second))
    assert float(first.metric("loss").min) == pytest.approx(x0 - 10)  # type: ignore[union-attr]
    assert float(second.metric("loss").min) == pytest.approx(x1)  # type: ignore[union-attr]


def test_file_trial_that_appends_and_pushes_keeps_both(tmp_path: Path) -> None:
    """An append-only metrics file is not re-reported from scratch at the end, so rows the
    trial pushed itself survive and count in its observation."""
    writer = tmp_path / "appender.py"
    writer.write_text(
        textwrap.dedent("""
        import os, sys, time
        from katib.controller.push import report_metrics
        path = sys.argv[1]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for value in ("0.9", "0.5"):
            with open(path, "a") as f:
                print(f"loss={value}", file=f)
            time.sleep(1.2)  # past a flush, so the first rows are streamed to the DB
        report_metrics({"loss": -1.0})
        with open(path, "a") as f:
            print("loss=0.4", file=f)
    """)
    )
    doc = experiment(writer, max_trials=1, parallel=1)
    doc["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": "/katib/metrics.log", "kind": "File"}},
    }
    container(doc)["command"] = [sys.executable, str(writer), "/katib/metrics.log"]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    result = run(tmp_path, doc)
    assert conditions(result) == [C.SUCCEEDED]
    loss = result.trials[0].metric("loss")
    assert loss is not None
    assert (float(loss.min), float(loss.max)) == (-1.0, 0.9)


def test_push_trial_that_never_reports_is_metrics_unavailable(tmp_path: Path) -> None:
    silent = tmp_path / "silent.py"
    silent.write_text("print('loss=0.5')\n")  # looks like a metric, but Push ignores stdout
    doc = experiment(silent, max_trials=1, parallel=1, maxFailedTrialCount=1)
    doc["spec"]["metricsCollectorSpec"] = {"collector": {"kind": "Push"}}
    container(doc)["command"] = [sys.executable, str(silent), "${trialParameters.x}"]
    container(doc)["args"] = ["${trialParameters.y}"]
    result = run(tmp_path, doc)
    assert conditions(result) == [C.METRICS_UNAVAILABLE]
    assert result.trials[0].metric("loss").latest == "unavailable"  # type: ignore[union-attr]


def test_invalid_algorithm_settings_fail_before_any_trial(tmp_path: Path, script: Path) -> None:
    doc = experiment(script)
    doc["spec"]["algorithm"]["algorithmSettings"] = [{"name": "random_state", "value": "-4"}]
    with pytest.raises(InvalidArgument, match="Validation failed"):
        run(tmp_path, doc)
    assert not (tmp_path / "results" / "trials").exists()


def test_resume_policy_never_vs_long_running(tmp_path: Path, script: Path) -> None:
    doc = experiment(script, max_trials=2, parallel=2)
    first = run(tmp_path, doc)
    doc["spec"]["maxTrialCount"] = 3
    again = run(tmp_path, doc)
    assert "does not restart" in again.note
    assert [t.name for t in again.trials] == [t.name for t in first.trials]

    doc = experiment(script, max_trials=2, parallel=2, resumePolicy="LongRunning", name="lr")
    first = run(tmp_path, doc, results="lr")
    doc["spec"]["maxTrialCount"] = 3
    more = run(tmp_path, doc, results="lr")
    assert more.decision.reason is rec.Reason.MAX_TRIALS_REACHED
    assert [t.name for t in more.trials[:2]] == [t.name for t in first.trials]
    assert len(more.trials) == 3 and all(t.attempts == 1 for t in more.trials)


def test_changed_experiment_is_refused_in_the_same_results_dir(
    tmp_path: Path, script: Path
) -> None:
    run(tmp_path, experiment(script, max_trials=1, parallel=1))
    doc = experiment(script, max_trials=1, parallel=1)
    doc["spec"]["objective"]["type"] = "maximize"
    with pytest.raises(InvalidArgument, match="different experiment"):
        run(tmp_path, doc)


def test_resume_with_lower_parallel_and_max_trial_count(tmp_path: Path, script: Path) -> None:
    doc = experiment(script, mode="slow", max_trials=6, parallel=3)
    container(doc)["env"] = [{"name": "TRIAL_SLEEP", "value": "0.3"}]

    def interrupt_when_three_run(decision: rec.Decision, trials: list[Any]) -> None:
        if sum(t.condition is C.RUNNING for t in trials) == 3:
            raise KeyboardInterrupt

    runner = ExperimentRunner(
        load_experiment(doc), doc, tmp_path / "results", on_progress=interrupt_when_three_run
    )
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    doc["spec"].update(parallelTrialCount=1, maxTrialCount=2, maxFailedTrialCount=2)
    most_running = []

    def watch(decision: rec.Decision, trials: list[Any]) -> None:
        most_running.append(sum(t.condition is C.RUNNING for t in trials) + len(decision.start))

    result = ExperimentRunner(
        load_experiment(doc), doc, tmp_path / "results", on_progress=watch
    ).run()
    assert max(most_running) == 1  # never more than the new parallelTrialCount
    assert result.decision.reason is rec.Reason.MAX_TRIALS_REACHED
    # the two oldest ran one at a time; the third stays queued, never started
    assert conditions(result) == [C.SUCCEEDED, C.SUCCEEDED, C.CREATED]
    assert [t.attempts for t in result.trials] == [2, 2, 1]


REWRITER = textwrap.dedent("""
    import os, sys, time
    path, how = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    values = ["0.900000", "0.5", "0.100000"] if how == "shorter" else ["0.9", "0.5", "0.1"]
    for value in values:
        if how == "replace":  # write a new file and rename it over the old one
            with open(path + ".tmp", "w") as f:
                print(f"loss={value}", file=f)
            os.replace(path + ".tmp", path)
        else:  # truncate and rewrite in place
            with open(path, "w") as f:
                print(f"loss={value}", file=f)
        time.sleep(0.7)  # longer than a poll, so the controller sees every version
""")


@pytest.mark.parametrize("how", ["same-length", "shorter", "replace"])
def test_rewritten_metrics_file_ends_as_the_file_ends(tmp_path: Path, how: str) -> None:
    writer = tmp_path / "rewriter.py"
    writer.write_text(REWRITER)
    doc = experiment(writer, max_trials=1, parallel=1, maxFailedTrialCount=1)
    doc["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": "/katib/metrics.log", "kind": "File"}},
    }
    container(doc)["command"] = [sys.executable, str(writer), "/katib/metrics.log", how]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    result = run(tmp_path, doc)
    assert conditions(result) == [C.SUCCEEDED]
    loss = result.trials[0].metric("loss")
    assert loss is not None
    # the observation log holds exactly what the file holds at the end
    assert float(loss.min) == float(loss.max) == float(loss.latest) == pytest.approx(0.1)


def test_rerun_resumes_after_a_suggestion_service_failure(
    tmp_path: Path, script: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = experiment(script, max_trials=3, parallel=1)
    real_get = SuggestionClient.get
    calls = []

    def failing_second_time(self: SuggestionClient, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise FailedPrecondition("GetSuggestions failed: INTERNAL: boom")
        return real_get(self, *args)

    monkeypatch.setattr(SuggestionClient, "get", failing_second_time)
    failed = run(tmp_path, doc)
    assert (failed.decision.condition, failed.decision.reason) == (
        rec.Condition.FAILED,
        rec.Reason.FAILED,
    )
    assert "boom" in failed.decision.message
    assert conditions(failed) == [C.SUCCEEDED]
    monkeypatch.setattr(SuggestionClient, "get", real_get)
    resumed = run(tmp_path, doc)
    assert resumed.decision.reason is rec.Reason.MAX_TRIALS_REACHED
    assert conditions(resumed) == [C.SUCCEEDED] * 3
    assert resumed.trials[0] == failed.trials[0]  # not re-run
