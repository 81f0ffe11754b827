"""Katib's CRs <-> the controller's records (controller/kube/objects.py): pure conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from katib.api.errors import InvalidArgument
from katib.controller import reconcile as rec
from katib.controller.kube import objects as ob
from katib.controller.spec import ObjectiveType, Strategy
from katib.controller.trials import MetricValue, TrialCondition, TrialRecord
from katib.controller.validation import load_experiment, load_objective
from katib.earlystopping.rules import Comparison, Semantics
from tests.controller.experiments import experiment

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)


def _trial(name: str = "t-1", status: dict | None = None, **spec: object) -> dict:
    return {
        "apiVersion": ob.API_VERSION,
        "kind": "Trial",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {
            "parameterAssignments": [{"name": "x", "value": "0.5"}, {"name": "y", "value": "1"}],
            **spec,
        },
        "status": status or {},
    }


def test_times_round_trip_in_utc() -> None:
    assert ob.format_time(T0) == "2026-01-02T03:04:05Z"
    assert ob.parse_time("2026-01-02T03:04:05Z") == T0
    assert ob.parse_time("") is None
    assert ob.parse_time("yesterday") is None
    assert ob.parse_time(5) is None


def test_set_condition_follows_katibs_rules() -> None:
    first = ob.set_condition([], "Running", True, "R", "running", T0)
    assert first == [
        {
            "type": "Running",
            "status": "True",
            "reason": "R",
            "message": "running",
            "lastUpdateTime": "2026-01-02T03:04:05Z",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
        }
    ]
    assert ob.set_condition(first, "Running", True, "R", "running", T1) == first  # no-op
    reworded = ob.set_condition(first, "Running", True, "R", "still running", T1)
    assert reworded[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"  # status did not flip
    assert reworded[0]["lastUpdateTime"] == "2026-01-02T03:04:35Z"
    flipped = ob.set_condition(first, "Running", False, "R", "done", T1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T03:04:35Z"
    assert flipped[0]["status"] == "False"
    assert first[0]["status"] == "True"  # the input is never changed
    both = ob.set_condition(flipped, "Succeeded", True, "S", "ok", T1)
    assert [c["type"] for c in both] == ["Running", "Succeeded"]


def test_trial_transitions_and_the_record_they_read_back_as() -> None:
    created = ob.mark_trial(None, TrialCondition.CREATED, "TrialCreated", "created", T0)
    running = ob.mark_trial(created, TrialCondition.RUNNING, "TrialRunning", "running", T0)
    observation = (
        MetricValue("loss", "0.1", "0.9", "0.2"),
        MetricValue("acc", "0.5", "0.7", "0.7"),
    )
    done = ob.mark_trial(
        running, TrialCondition.SUCCEEDED, "TrialSucceeded", "ok", T1, observation
    )
    by_type = {c["type"]: c for c in done["conditions"]}
    assert by_type["Running"]["status"] == "False"
    assert by_type["Running"]["reason"] == "TrialRunning"  # kept, as Katib does
    assert by_type["Succeeded"]["status"] == "True"
    assert done["startTime"] == "2026-01-02T03:04:05Z"
    assert done["completionTime"] == "2026-01-02T03:04:35Z"
    record = ob.trial_record(_trial(status=done), 3, (("k", "v"),))
    assert record == TrialRecord(
        name="t-1",
        index=3,
        assignments=(("x", "0.5"), ("y", "1")),
        condition=TrialCondition.SUCCEEDED,
        reason="TrialSucceeded",
        message="ok",
        labels=(("k", "v"),),
        start_time=T0,
        completion_time=T1,
        observation=observation,
    )
    assert "completionTime" not in running


@pytest.mark.parametrize(
    ("true", "expected"),
    [
        ((), TrialCondition.CREATED),
        (("Created", "Running"), TrialCondition.RUNNING),
        (("Created", "Running", "MetricsUnavailable"), TrialCondition.METRICS_UNAVAILABLE),
        (("Running", "Failed", "Killed"), TrialCondition.KILLED),
        (("Succeeded", "Failed"), TrialCondition.FAILED),
        (("EarlyStopped", "Succeeded"), TrialCondition.SUCCEEDED),
    ],
)
def test_trial_condition_uses_katibs_precedence(
    true: tuple[str, ...], expected: TrialCondition
) -> None:
    conditions = [{"type": t, "status": "True", "reason": t} for t in true]
    conditions.append({"type": "Succeeded", "status": "False", "reason": "no"})
    if "Succeeded" in true:
        conditions.pop()
    assert ob.trial_condition(_trial(status={"conditions": conditions}))[0] is expected


def test_trial_rules_and_semantics_are_read_from_the_trial() -> None:
    trial = _trial(
        earlyStoppingRules=[
            {"name": "loss", "value": "0.5", "comparison": "less", "startStep": 2},
            {"name": "bad", "value": "not a number", "comparison": "less"},
        ]
    )
    trial["metadata"]["annotations"] = {"katib.kubeflow.org/early-stopping-semantics": "any"}
    record = ob.trial_record(trial, 0)
    assert record.stop_rules is not None and len(record.stop_rules) == 1
    rule = record.stop_rules[0]
    assert (rule.name, rule.value, rule.comparison, rule.start_step) == (
        "loss",
        0.5,
        Comparison.LESS,
        2,
    )
    assert record.stop_semantics is Semantics.ANY
    assert ob.trial_record(_trial(), 0).stop_rules is None


def test_suggestion_status_round_trips_assignments_state_and_settings() -> None:
    assigned = (
        ob.Assigned("e-a", (("x", "0.1"),), (("pbt/generation", "1"),)),
        ob.Assigned("e-b", (("x", "0.2"),)),
    )
    view = ob.SuggestionView(
        assigned=assigned,
        state=rec.SuggestionState(exhausted=True),
        overlay={"state": "abc"},
        validated=True,
    )
    status = ob.suggestion_status({"other": 1}, view, T0)
    assert status["suggestionCount"] == 2
    assert status["other"] == 1
    back = ob.read_suggestion({"status": status})
    assert back == view
    failed = ob.suggestion_status(
        status, ob.SuggestionView(assigned, rec.SuggestionState(failed_message="boom")), T1
    )
    again = ob.read_suggestion({"status": failed})
    assert again.state.failed_message == "boom"
    cleared = ob.read_suggestion(
        {"status": ob.suggestion_status(failed, ob.SuggestionView(assigned), T1)}
    )
    assert cleared.state.failed_message == ""
    assert ob.read_suggestion(None) == ob.SuggestionView()


def _records() -> list[TrialRecord]:
    def rec_(name: str, cond: TrialCondition, loss: str | None) -> TrialRecord:
        obs = () if loss is None else (MetricValue("loss", loss, loss, loss),)
        return TrialRecord(name, 0, (("x", name),), condition=cond, observation=obs)

    return [
        rec_("a", TrialCondition.SUCCEEDED, "0.5"),
        rec_("b", TrialCondition.FAILED, None),
        rec_("c", TrialCondition.SUCCEEDED, "0.2"),
        rec_("d", TrialCondition.RUNNING, None),
        rec_("e", TrialCondition.CREATED, None),
    ]


def test_experiment_status_counts_lists_and_best_trial() -> None:
    records = _records()
    decision = rec.Decision(
        rec.Condition.RUNNING,
        rec.Reason.RUNNING,
        "Experiment is running",
        rec.Counts.of(records),
        "c",
    )
    status = ob.experiment_status(ob.experiment_created(None, T0), decision, records, T1)
    assert status["trials"] == 5
    assert (status["trialsSucceeded"], status["succeededTrialList"]) == (2, ["a", "c"])
    assert (status["trialsFailed"], status["failedTrialList"]) == (1, ["b"])
    assert (status["trialsRunning"], status["runningTrialList"]) == (1, ["d"])
    assert (status["trialsPending"], status["pendingTrialList"]) == (1, ["e"])
    assert "trialsKilled" not in status and "killedTrialList" not in status
    assert status["currentOptimalTrial"] == {
        "bestTrialName": "c",
        "parameterAssignments": [{"name": "x", "value": "c"}],
        "observation": {
            "metrics": [{"name": "loss", "min": "0.2", "max": "0.2", "latest": "0.2"}]
        },
    }
    assert status["startTime"] == "2026-01-02T03:04:05Z"
    assert "completionTime" not in status
    assert ob.experiment_condition({"status": status})[0] is rec.Condition.RUNNING
    assert ob.experiment_status(status, decision, records, T1 + timedelta(1)) == status

    done = rec.Decision(
        rec.Condition.SUCCEEDED,
        rec.Reason.MAX_TRIALS_REACHED,
        "max trials",
        rec.Counts.of(records),
        "c",
    )
    final = ob.experiment_status(status, done, records, T1)
    conditions = {c["type"]: c for c in final["conditions"]}
    assert conditions["Running"]["status"] == "False"
    assert conditions["Succeeded"]["reason"] == "ExperimentMaxTrialsReached"
    assert final["completionTime"] == "2026-01-02T03:04:35Z"
    assert ob.experiment_condition({"status": final})[:2] == (
        rec.Condition.SUCCEEDED,
        "ExperimentMaxTrialsReached",
    )
    restarted = ob.experiment_restarting(final, T1)
    assert "completionTime" not in restarted
    assert ob.experiment_condition({"status": restarted})[0] is rec.Condition.RESTARTING
    types = [c["type"] for c in restarted["conditions"]]
    assert "Succeeded" not in types and "Restarting" in types


def test_experiment_failed_keeps_the_problems_and_times() -> None:
    status = ob.experiment_failed(None, "Experiment is invalid: spec.x: bad", T0)
    kind, reason, message = ob.experiment_condition({"status": status})
    assert (kind, reason, message) == (
        rec.Condition.FAILED,
        "ExperimentFailed",
        "Experiment is invalid: spec.x: bad",
    )
    assert status["startTime"] == status["completionTime"] == "2026-01-02T03:04:05Z"


def test_suggestion_object_is_owned_by_its_experiment(tmp_path: object) -> None:
    raw = experiment("trial.py", name="exp")
    raw["metadata"]["uid"] = "u-1"
    spec = load_experiment(raw)
    body = ob.suggestion_object(raw, spec)
    assert body["metadata"]["name"] == "exp"
    assert body["metadata"]["namespace"] == "kubeflow"
    assert body["metadata"]["labels"][ob.LABEL_EXPERIMENT] == "exp"
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Experiment",
            "name": "exp",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert body["spec"]["algorithm"]["algorithmName"] == "random"
    assert ob.owned_by(body, "Experiment") == "exp"
    assert ob.owned_by(body, "Trial") is None


def test_load_objective_defaults_strategies_and_names_the_field() -> None:
    objective = load_objective(
        {"type": "maximize", "objectiveMetricName": "acc", "additionalMetricNames": ["loss"]}
    )
    assert objective.type is ObjectiveType.MAXIMIZE
    assert objective.strategy("loss") is Strategy.MAX
    with pytest.raises(InvalidArgument) as info:
        load_objective({"type": "sideways", "objectiveMetricName": "acc"}, "Trial.spec.objective")
    assert info.value.problems == [
        "Trial.spec.objective.type: must be minimize or maximize, got 'sideways'"
    ]
