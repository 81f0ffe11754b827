"""The backend seam and the loop's trust boundaries: races at the end of an experiment, replies
from an untrusted suggestion service, algorithm exhaustion, early-stopping rules."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from katib.api import api_pb2 as pb
from katib.controller import reconcile as rec
from katib.controller.local import LocalBackend
from katib.controller.runner import ExperimentRunner, RunResult
from katib.controller.trials import TrialCondition
from katib.controller.validation import load_experiment
from katib.earlystopping.rules import Comparison, Rule, RuleEvaluator, Semantics
from tests.controller.experiments import container, experiment, write_trial_script
from tests.controller.fakes import FixedRules, ScriptedSuggestion, serve

C = TrialCondition

#: The first trial to start exits at once with loss=0 (the goal); the second reports loss=0.2
#: and exits 0 a moment later.
FIRST_WINS = textwrap.dedent(
    """
    import os, sys, time
    lock = os.path.join(sys.argv[1], "first")
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        print("loss=0.0", flush=True)
    except FileExistsError:
        time.sleep(0.3)
        print("loss=0.2", flush=True)
    """
)


class LateStop(LocalBackend):
    """A backend whose stop comes just after the trials it stops exited by themselves: the
    window in which a trial that finished could be recorded Killed."""

    def stop(self, names: Any, hurry: Any = None) -> Any:
        for name in names:
            if name in self._running:
                self._running[name].popen.wait(timeout=30)
        return super().stop(names, hurry)


def test_a_trial_that_finished_before_the_goal_stop_keeps_its_result(tmp_path: Path) -> None:
    """Issue 13 item 1: the second trial exited 0 with its metrics before the stop that the
    first trial's goal caused; it must stay Succeeded with its observation, not Killed."""
    script = tmp_path / "first_wins.py"
    script.write_text(FIRST_WINS)
    doc = experiment(script, max_trials=2, parallel=2)
    doc["spec"]["objective"]["goal"] = 0.05
    doc["spec"]["objective"].pop("additionalMetricNames")
    container(doc)["command"] = [sys.executable, str(script), str(tmp_path)]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    result = ExperimentRunner(
        load_experiment(doc), doc, tmp_path / "results", backend=LateStop
    ).run()
    assert result.decision.reason is rec.Reason.GOAL_REACHED
    assert sorted(t.condition for t in result.trials) == [C.SUCCEEDED, C.SUCCEEDED]
    second = next(
        t for t in result.trials if t.objective_value(load_experiment(doc).objective) != "0.0"
    )
    assert second.metric("loss") is not None and second.metric("loss").latest == "0.2"


def point(request: pb.GetSuggestionsRequest, x: str = "0.5", y: str = "0.05") -> Any:
    item = pb.GetSuggestionsReply.ParameterAssignments(
        assignments=[
            pb.ParameterAssignment(name="x", value=x),
            pb.ParameterAssignment(name="y", value=y),
        ]
    )
    return item


def remote_run(tmp_path: Path, doc: dict[str, Any], address: str, **kwargs: Any) -> RunResult:
    spec = load_experiment(doc, check_algorithm=False)
    return ExperimentRunner(
        spec, doc, tmp_path / "results", suggestion_address=address, **kwargs
    ).run()


@pytest.mark.parametrize(
    "bad",
    ["../../escaped", "/abs/path", "UPPER", "a" * 64, "x..y", "dup", ""],
)
def test_bad_trial_names_from_a_service_are_replaced(tmp_path: Path, bad: str) -> None:
    def answer(request: pb.GetSuggestionsRequest) -> Any:
        reply = pb.GetSuggestionsReply()
        for i in range(request.current_request_number):
            item = reply.parameter_assignments.add()
            item.CopyFrom(point(request))
            item.trial_name = (
                "dup" if bad == "dup" else (bad if i == 0 else f"ok-{len(request.trials)}-{i}")
            )
        return reply

    script = write_trial_script(tmp_path)
    doc = experiment(script, max_trials=2, parallel=2)
    doc["spec"]["algorithm"] = {"algorithmName": "hyperband"}  # only the remote service knows it
    with serve(ScriptedSuggestion(answer)) as address:
        result = remote_run(tmp_path, doc, address)
    assert result.decision.reason is rec.Reason.MAX_TRIALS_REACHED
    names = [t.name for t in result.trials]
    assert (len(set(names)) == 2 and bad not in names[:1]) or bad == "dup"
    made = {p.name for p in (tmp_path / "results" / "trials").iterdir()}
    assert made == set(names)
    assert not (tmp_path / "escaped").exists() and not Path("/abs/path").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"x": "1.5"}, "outside"),
        ({"x": "nan"}, "finite"),
        ({"x": "0.5", "z": "1"}, "not a parameter"),
        ({"y": "0.05"}, "no value for x"),
    ],
)
def test_a_reply_outside_the_space_fails_before_anything_starts(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    def answer(request: pb.GetSuggestionsRequest) -> Any:
        reply = pb.GetSuggestionsReply()
        item = reply.parameter_assignments.add()
        base = {"x": "0.5", "y": "0.05"} if "z" in values else {}
        for name, value in {**base, **values}.items():
            item.assignments.add(name=name, value=value)
        return reply

    doc = experiment(write_trial_script(tmp_path), max_trials=1, parallel=1)
    with serve(ScriptedSuggestion(answer)) as address:
        result = remote_run(tmp_path, doc, address)
    assert result.decision.condition is rec.Condition.FAILED
    assert message in result.decision.message
    assert result.trials == []


def test_names_labels_and_settings_go_back_to_the_service_and_exhaustion_ends(
    tmp_path: Path,
) -> None:
    """A stateful service's trial names and labels are kept and sent back, its settings are
    overlaid on the next request (and persisted), and an empty reply with nothing running
    ends the experiment with ExperimentSuggestionEndReached."""

    def answer(request: pb.GetSuggestionsRequest) -> Any:
        reply = pb.GetSuggestionsReply()
        done = len(request.trials)
        reply.algorithm.algorithm_settings.add(name="rung", value=str(done))
        if done >= 3:
            return reply
        for i in range(min(request.current_request_number, 3 - done)):
            item = reply.parameter_assignments.add()
            item.CopyFrom(point(request, x=str(0.1 * (done + i + 1))))
            item.trial_name = f"gen-{done + i}"
            item.labels["generation"] = str(done + i)
        return reply

    service = ScriptedSuggestion(answer)
    doc = experiment(write_trial_script(tmp_path), max_trials=10, parallel=2)
    with serve(service) as address:
        result = remote_run(tmp_path, doc, address)
    assert result.decision.reason is rec.Reason.SUGGESTION_END_REACHED
    assert [t.name for t in result.trials] == ["gen-0", "gen-1", "gen-2"]
    assert all(t.condition is C.SUCCEEDED for t in result.trials)
    last = service.requests[-1]
    settings = {s.name: s.value for s in last.experiment.spec.algorithm.algorithm_settings}
    assert settings["rung"] == str(len(service.requests[-2].trials))  # the previous reply's
    sent = {t.name: t for t in last.trials}
    assert dict(sent["gen-1"].spec.labels) == {"generation": "1"}
    assert sent["gen-0"].status.start_time and sent["gen-0"].status.completion_time


def test_katib_semantics_use_best_objective_and_start_step() -> None:
    rules = [Rule("loss", 0.5, Comparison.GREATER, start_step=2)]
    tracker = RuleEvaluator(rules, "loss", maximize=False, semantics=Semantics.KATIB)
    assert not tracker.add("loss", "0.9")  # one report: start_step not reached
    assert not tracker.add("loss", "0.4")
    assert not tracker.add("loss", "0.95")  # best so far is 0.4, not > 0.5
    greedy = RuleEvaluator(rules, "loss", maximize=False, semantics=Semantics.KATIB)
    assert [greedy.add("loss", v) for v in ("0.9", "0.8")] == [False, True]
    # Katib's form: every rule must be met (here the accuracy rule never is)
    both = [*rules, Rule("accuracy", 0.2, Comparison.LESS, start_step=1)]
    every = RuleEvaluator(both, "loss", maximize=False, semantics=Semantics.KATIB)
    assert [every.add("loss", v) for v in ("0.9", "0.8")] == [False, False]
    assert every.add("accuracy", "0.1") and every.stop
    assert RuleEvaluator(both, "loss", maximize=False).add("accuracy", "0.1")  # any: at once


SLOW_LOSS = textwrap.dedent(
    """
    import sys, time
    x = float(sys.argv[1])
    for step in range(50):
        print(f"loss={0.9 if x > 0.5 else 0.1}", flush=True)
        time.sleep(0.1)
    """
)


def test_early_stopping_rules_stop_a_trial_and_keep_its_observation(tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SLOW_LOSS)

    def answer(request: pb.GetSuggestionsRequest) -> Any:
        reply = pb.GetSuggestionsReply()
        for i in range(request.current_request_number):
            x = "0.9" if len(request.trials) + i == 0 else "0.1"
            reply.parameter_assignments.add().CopyFrom(point(request, x=x))
        return reply

    doc = experiment(script, max_trials=2, parallel=1)
    doc["spec"]["objective"].pop("additionalMetricNames")
    doc["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}
    container(doc)["command"] = [sys.executable, str(script), "${trialParameters.x}"]
    container(doc)["args"] = ["${trialParameters.y}"]
    rules = FixedRules(
        [pb.EarlyStoppingRule(name="loss", value="0.5", comparison=pb.GREATER, start_step=3)]
    )
    with serve(ScriptedSuggestion(answer)) as address, serve(rules) as early:
        result = remote_run(tmp_path, doc, address, early_stopping_address=early)
    stopped, kept = result.trials
    assert stopped.condition is C.EARLY_STOPPED and stopped.reason == "TrialEarlyStopped"
    assert stopped.metric("loss") is not None and stopped.metric("loss").latest == "0.9"
    assert kept.condition is C.SUCCEEDED  # best 0.1 never exceeds 0.5
    assert rules.stopped == [stopped.name]
    assert rules.rule_requests and rules.rule_requests[0].db_manager_address


def test_a_resumed_run_sends_the_algorithm_settings_of_the_last_reply(tmp_path: Path) -> None:
    """``reply.algorithm`` settings are persisted in the results directory, as Katib keeps
    them in the Suggestion's status, so a new controller continues the algorithm's state."""

    def answer(request: pb.GetSuggestionsRequest) -> Any:
        reply = pb.GetSuggestionsReply()
        reply.algorithm.algorithm_settings.add(name="state", value=f"after-{len(request.trials)}")
        for _ in range(request.current_request_number):
            reply.parameter_assignments.add().CopyFrom(point(request))
        return reply

    doc = experiment(write_trial_script(tmp_path), max_trials=2, parallel=1)
    doc["spec"]["resumePolicy"] = "LongRunning"
    first = ScriptedSuggestion(answer)
    with serve(first) as address:
        remote_run(tmp_path, doc, address)
    doc["spec"]["maxTrialCount"] = 3
    second = ScriptedSuggestion(answer)
    with serve(second) as address:
        resumed = remote_run(tmp_path, doc, address)
    assert len(resumed.trials) == 3
    sent = {
        s.name: s.value for s in second.requests[0].experiment.spec.algorithm.algorithm_settings
    }
    assert sent["state"] == f"after-{len(first.requests[-1].trials)}"


#: The first trial to start reaches the goal once the other has reported loss=0.7 (it waits for
#: the other's marker file, written after the flushed line, not for a fixed moment that a
#: loaded machine may not honour); the other would then run for a minute.
GOAL_WHILE_ANOTHER_RUNS = textwrap.dedent(
    """
    import os, sys, time
    lock = os.path.join(sys.argv[1], "first")
    reported = os.path.join(sys.argv[1], "reported")
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
        deadline = time.monotonic() + 60
        while not os.path.exists(reported) and time.monotonic() < deadline:
            time.sleep(0.01)
        print("loss=0.0", flush=True)
    except FileExistsError:
        print("loss=0.7", flush=True)
        open(reported, "w").close()
        time.sleep(60)
    """
)


def test_a_trial_still_running_at_the_goal_is_killed_with_what_it_reported(
    tmp_path: Path,
) -> None:
    script = tmp_path / "goal.py"
    script.write_text(GOAL_WHILE_ANOTHER_RUNS)
    doc = experiment(script, max_trials=2, parallel=2)
    doc["spec"]["objective"]["goal"] = 0.05
    doc["spec"]["objective"].pop("additionalMetricNames")
    container(doc)["command"] = [sys.executable, str(script), str(tmp_path)]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    result = ExperimentRunner(load_experiment(doc), doc, tmp_path / "results").run()
    assert result.decision.reason is rec.Reason.GOAL_REACHED
    killed = next(t for t in result.trials if t.condition is C.KILLED)
    winner = next(t for t in result.trials if t.condition is C.SUCCEEDED)
    assert killed.metric("loss") is not None and killed.metric("loss").latest == "0.7"
    assert result.decision.best_trial == winner.name
