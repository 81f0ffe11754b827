"""The pure reconcile state machine, with no processes and no services."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katib.controller import reconcile as rec
from katib.controller import trials as tr
from katib.controller.spec import Experiment
from katib.controller.trials import LogEntry, MetricValue, TrialCondition, TrialRecord
from katib.controller.validation import load_experiment
from tests.controller.experiments import experiment

NOW = datetime(2024, 1, 1, tzinfo=UTC)
C = TrialCondition


def make_spec(**spec: Any) -> Experiment:
    return load_experiment(experiment("/t.py", **spec), ["random"])


def trial(i: int, condition: TrialCondition, loss: str | None = None) -> TrialRecord:
    observation = () if loss is None else (MetricValue("loss", loss, loss, loss),)
    return TrialRecord(
        name=f"t{i}",
        index=i,
        assignments=(("x", "0.1"),),
        condition=condition,
        observation=observation,
    )


def run(spec: Experiment, trials: list[TrialRecord], **state: Any) -> rec.Decision:
    return rec.reconcile(spec, trials, rec.SuggestionState(**state))


def test_first_step_requests_parallel_count() -> None:
    decision = run(make_spec(parallelTrialCount=3, maxTrialCount=10), [])
    assert (decision.condition, decision.request) == (rec.Condition.RUNNING, 3)


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ([C.RUNNING, C.RUNNING, C.CREATED], 0),
        ([C.SUCCEEDED, C.RUNNING, C.RUNNING], 1),
        ([C.SUCCEEDED] * 8 + [C.RUNNING], 1),  # budget 10: 8 done + 1 active -> 1 more
        ([C.SUCCEEDED] * 7 + [C.METRICS_UNAVAILABLE, C.RUNNING], 1),  # MU counts as completed
        ([C.SUCCEEDED] * 9 + [C.RUNNING], 0),
        ([C.FAILED, C.KILLED, C.EARLY_STOPPED], 3),
    ],
)
def test_request_arithmetic(conditions: list[TrialCondition], expected: int) -> None:
    spec = make_spec(parallelTrialCount=3, maxTrialCount=10, maxFailedTrialCount=5)
    trials = [trial(i, c, "0.5" if c is C.SUCCEEDED else None) for i, c in enumerate(conditions)]
    assert run(spec, trials).request == expected


def test_unlimited_budget_keeps_parallelism() -> None:
    spec = make_spec(parallelTrialCount=2)
    doc_spec = replace(spec, max_trial_count=None)
    trials = [trial(i, C.SUCCEEDED, "1") for i in range(50)]
    assert run(doc_spec, trials).request == 2


def test_created_trials_are_started() -> None:
    decision = run(make_spec(), [trial(0, C.CREATED), trial(1, C.RUNNING)])
    assert decision.start == ("t0",)


def test_max_trials_reached() -> None:
    spec = make_spec(maxTrialCount=3, parallelTrialCount=2)
    decision = run(spec, [trial(i, C.SUCCEEDED, "0.5") for i in range(3)])
    assert (decision.condition, decision.reason) == (
        rec.Condition.SUCCEEDED,
        rec.Reason.MAX_TRIALS_REACHED,
    )
    assert decision.request == 0


def test_goal_reached_stops_running_trials() -> None:
    spec = make_spec(objective={"type": "minimize", "objectiveMetricName": "loss", "goal": 0.1})
    trials = [trial(0, C.SUCCEEDED, "0.05"), trial(1, C.RUNNING), trial(2, C.CREATED)]
    decision = run(spec, trials)
    assert decision.reason is rec.Reason.GOAL_REACHED
    assert decision.stop == ("t1", "t2")
    assert decision.best_trial == "t0"


def test_goal_for_maximize() -> None:
    spec = make_spec(objective={"type": "maximize", "objectiveMetricName": "loss", "goal": 0.9})
    assert run(spec, [trial(0, C.SUCCEEDED, "0.8")]).condition is rec.Condition.RUNNING
    assert run(spec, [trial(0, C.SUCCEEDED, "0.9")]).reason is rec.Reason.GOAL_REACHED


@pytest.mark.parametrize(
    ("failed", "unavailable", "condition"),
    [
        (2, 0, rec.Condition.RUNNING),
        (3, 0, rec.Condition.FAILED),
        (1, 2, rec.Condition.FAILED),
        (0, 2, rec.Condition.RUNNING),
    ],
)
def test_max_failed_counts_failed_and_metrics_unavailable(
    failed: int, unavailable: int, condition: rec.Condition
) -> None:
    spec = make_spec(maxFailedTrialCount=3, maxTrialCount=10)
    trials = [trial(i, C.FAILED) for i in range(failed)]
    trials += [trial(10 + i, C.METRICS_UNAVAILABLE) for i in range(unavailable)]
    decision = run(spec, trials)
    assert decision.condition is condition
    if condition is rec.Condition.FAILED:
        assert decision.reason is rec.Reason.FAILED


def test_max_failed_zero_is_not_triggered_without_failures() -> None:
    spec = make_spec(maxFailedTrialCount=0)
    assert run(spec, [trial(0, C.SUCCEEDED, "1")]).condition is rec.Condition.RUNNING


def test_exhausted_search_space_waits_for_running_then_succeeds() -> None:
    spec = make_spec(maxTrialCount=10)
    running = run(spec, [trial(0, C.SUCCEEDED, "1"), trial(1, C.RUNNING)], exhausted=True)
    assert (running.condition, running.request) == (rec.Condition.RUNNING, 0)
    done = run(spec, [trial(0, C.SUCCEEDED, "1"), trial(1, C.SUCCEEDED, "2")], exhausted=True)
    assert done.reason is rec.Reason.SUGGESTION_END_REACHED


def test_exhausted_before_any_trial_succeeds_with_zero_trials() -> None:
    spec = make_spec(maxTrialCount=10)
    state = rec.after_suggestions(rec.SuggestionState(), 2, 0, rec.Counts())
    decision = rec.reconcile(spec, [], state)
    assert (decision.condition, decision.reason) == (
        rec.Condition.SUCCEEDED,
        rec.Reason.SUGGESTION_END_REACHED,
    )
    assert (decision.request, decision.start, decision.counts.trials) == (0, (), 0)


def test_resume_start_respects_lowered_parallel_and_max() -> None:
    created = [trial(i, C.CREATED) for i in range(3)]
    spec = make_spec(maxTrialCount=1, parallelTrialCount=1, maxFailedTrialCount=1)
    assert run(spec, created).start == ("t0",)
    spec = make_spec(maxTrialCount=10, parallelTrialCount=2)
    assert run(spec, created).start == ("t0", "t1")
    # one slot busy, so one more starts; the queue keeps creation order
    busy = [trial(0, C.RUNNING), *created[1:]]
    assert run(spec, busy).start == ("t1",)
    # budget: 2 done + 1 running leaves no room under maxTrialCount 3 despite free slots
    spec = make_spec(maxTrialCount=3, parallelTrialCount=3)
    trials = [trial(0, C.SUCCEEDED, "1"), trial(1, C.FAILED), trial(2, C.RUNNING)]
    decision = run(spec, [*trials, trial(3, C.CREATED), trial(4, C.CREATED)])
    assert (decision.start, decision.request) == ((), 0)
    # queued trials beyond the budget never start; the experiment ends with them Created
    done = run(spec, [*trials[:2], trial(2, C.SUCCEEDED, "2"), trial(3, C.CREATED)])
    assert done.reason is rec.Reason.MAX_TRIALS_REACHED and done.start == ()


@pytest.mark.parametrize(
    ("strategy", "condition"),
    [("min", rec.Condition.SUCCEEDED), ("latest", rec.Condition.RUNNING)],
)
def test_goal_uses_the_objective_strategy(strategy: str, condition: rec.Condition) -> None:
    spec = make_spec(
        objective={
            "type": "minimize",
            "objectiveMetricName": "loss",
            "goal": 0.1,
            "metricStrategies": [{"name": "loss", "value": strategy}],
        }
    )
    # the loss dipped to 0.05 during training but ended at 0.5
    seen = TrialRecord(
        name="t0",
        index=0,
        assignments=(("x", "0.1"),),
        condition=C.SUCCEEDED,
        observation=(MetricValue("loss", "0.05", "0.9", "0.5"),),
    )
    decision = run(spec, [seen])
    assert decision.condition is condition
    assert decision.best_trial == "t0"


def test_after_suggestions_marks_exhaustion_only_when_nothing_is_active() -> None:
    state = rec.SuggestionState()
    idle = rec.Counts(trials=2, succeeded=2)
    busy = rec.Counts(trials=3, succeeded=2, running=1)
    assert rec.after_suggestions(state, 3, 3, idle) == rec.SuggestionState()
    assert rec.after_suggestions(state, 3, 0, idle).exhausted
    # short or empty while trials run: wait, and ask again once another trial completes
    for received in (0, 1):
        waiting = rec.after_suggestions(state, 3, received, busy)
        assert not waiting.exhausted and waiting.waiting_at == 2
    short = rec.after_suggestions(state, 3, 1, idle)  # the one new trial is now active
    assert not short.exhausted and short.waiting_at == 2


def test_empty_reply_while_trials_run_waits_then_asks_again() -> None:
    spec = make_spec(maxTrialCount=10, parallelTrialCount=2)
    running = [trial(0, C.SUCCEEDED, "1"), trial(1, C.RUNNING)]
    state = rec.after_suggestions(rec.SuggestionState(), 1, 0, rec.Counts.of(running))
    waiting = rec.reconcile(spec, running, state)
    assert (waiting.condition, waiting.request) == (rec.Condition.RUNNING, 0)
    done = [trial(0, C.SUCCEEDED, "1"), trial(1, C.SUCCEEDED, "2")]
    asks = rec.reconcile(spec, done, state)  # a trial completed: ask again, do not end
    assert (asks.condition, asks.request) == (rec.Condition.RUNNING, 2)
    ended = rec.after_suggestions(state, 2, 0, rec.Counts.of(done))
    final = rec.reconcile(spec, done, ended)
    assert (final.condition, final.reason) == (
        rec.Condition.SUCCEEDED,
        rec.Reason.SUGGESTION_END_REACHED,
    )


def test_suggestion_failure_fails_experiment() -> None:
    decision = run(make_spec(), [], failed_message="boom")
    assert (decision.condition, decision.reason) == (rec.Condition.FAILED, rec.Reason.FAILED)
    assert "boom" in decision.message


def test_best_trial_first_strict_improvement_skipping_unavailable() -> None:
    spec = make_spec()
    trials = [
        trial(0, C.SUCCEEDED, "0.5"),
        trial(1, C.METRICS_UNAVAILABLE, "unavailable"),
        trial(2, C.SUCCEEDED, "0.3"),
        trial(3, C.SUCCEEDED, "0.3"),
    ]
    assert rec.best_trial(spec, trials).name == "t2"  # type: ignore[union-attr]


def test_counts() -> None:
    conditions = [
        C.CREATED,
        C.RUNNING,
        C.SUCCEEDED,
        C.FAILED,
        C.KILLED,
        C.METRICS_UNAVAILABLE,
        C.EARLY_STOPPED,
    ]
    counts = rec.Counts.of([trial(i, c) for i, c in enumerate(conditions)])
    assert (counts.trials, counts.active, counts.completed) == (7, 2, 5)


def test_restart_rules() -> None:
    never = make_spec(maxTrialCount=6)
    long_running = make_spec(maxTrialCount=6, resumePolicy="LongRunning")
    done = (rec.Condition.SUCCEEDED, rec.Reason.MAX_TRIALS_REACHED)
    assert not rec.can_restart(never, *done, 4)
    assert rec.can_restart(long_running, *done, 4)
    assert not rec.can_restart(long_running, *done, 6)
    assert not rec.can_restart(long_running, rec.Condition.SUCCEEDED, rec.Reason.GOAL_REACHED, 4)


def test_trial_transitions() -> None:
    spec = make_spec()
    created = trial(0, C.CREATED)
    started = tr.start(created, NOW)
    assert (started.condition, started.attempts) == (C.RUNNING, 1)
    obs = (MetricValue("loss", "0.1", "0.4", "0.2"),)
    assert tr.finish(started, 0, obs, spec.objective, NOW).condition is C.SUCCEEDED
    assert tr.finish(started, 2, obs, spec.objective, NOW).condition is C.FAILED
    assert tr.finish(started, 0, (), spec.objective, NOW).condition is C.METRICS_UNAVAILABLE
    unavailable = (MetricValue("loss", latest="unavailable"),)
    assert tr.finish(started, 0, unavailable, spec.objective, NOW).condition is (
        C.METRICS_UNAVAILABLE
    )
    assert tr.from_dict(tr.to_dict(started)) == started


def test_observation_min_max_latest() -> None:
    spec = make_spec()
    t = [datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(4)]
    entries = [
        LogEntry(t[2], "loss", "0.5"),
        LogEntry(t[1], "loss", "0.2"),
        LogEntry(t[3], "loss", "0.3"),
        LogEntry(None, "accuracy", "0.7"),
        LogEntry(None, "accuracy", "n/a"),
        LogEntry(t[0], "other", "1"),
    ]
    summary = tr.ObservationSummary(spec.objective)
    summary.add(entries)
    loss, accuracy = summary.observation()
    assert (loss.min, loss.max, loss.latest) == ("0.2", "0.5", "0.3")
    assert (accuracy.min, accuracy.max, accuracy.latest) == ("0.7", "0.7", "n/a")
    assert loss.value(spec.objective.strategy("loss")) == "0.2"  # type: ignore[arg-type]
    assert summary.names == {"loss", "accuracy"}

    # Folded in pieces (as the backend reports while a trial runs) it is the same.
    pieces = tr.ObservationSummary(spec.objective)
    for entry in entries:
        pieces.add([entry])
    assert pieces.observation() == summary.observation()


def test_observation_ties_nan_and_no_numbers() -> None:
    spec = make_spec()
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    summary = tr.ObservationSummary(spec.objective)
    summary.add(
        [
            LogEntry(moment, "loss", "nan"),
            LogEntry(moment, "loss", "0.4"),  # same time, later row: latest
            LogEntry(None, "loss", "0.1"),  # untimed: earliest, still the minimum
            LogEntry(None, "accuracy", "n/a"),
        ]
    )
    loss, accuracy = summary.observation()
    assert (loss.min, loss.max, loss.latest) == ("0.1", "0.4", "0.4")
    assert (accuracy.min, accuracy.max, accuracy.latest) == (
        tr.UNAVAILABLE,
        tr.UNAVAILABLE,
        "n/a",
    )


_SPELLINGS = st.sampled_from(["0.5", "5e-1", "1", "1.0", "2", "nan", "n/a", "-0.5"])
_MOMENTS = st.one_of(
    st.none(), st.integers(0, 3).map(lambda s: datetime(2024, 1, 1, 0, 0, s, tzinfo=UTC))
)


@given(st.lists(st.tuples(_MOMENTS, _SPELLINGS), max_size=12))
def test_observation_is_the_same_in_report_and_db_order(
    rows: list[tuple[datetime | None, str]],
) -> None:
    """The backend folds rows as it reports them; the DB returns them by time, then report."""
    spec = make_spec()
    entries = [LogEntry(moment, "loss", value) for moment, value in rows]
    by_time = sorted(entries, key=lambda e: e.time or datetime.min.replace(tzinfo=UTC))
    reported, stored = tr.ObservationSummary(spec.objective), tr.ObservationSummary(spec.objective)
    reported.add(entries)
    stored.add(by_time)
    assert reported.observation() == stored.observation()


def test_observation_equal_values_keep_the_db_order_spelling() -> None:
    spec = make_spec()
    summary = tr.ObservationSummary(spec.objective)
    summary.add(
        [LogEntry(datetime(2024, 1, 1, tzinfo=UTC), "loss", "5e-1"), LogEntry(None, "loss", "0.5")]
    )
    (loss,) = summary.observation()
    assert (loss.min, loss.max, loss.latest) == ("0.5", "0.5", "5e-1")


def test_observation_reads_numbers_as_katib_does() -> None:
    """Min and max count only what Go's ParseFloat reads: no '1_000', no non-ASCII digits."""
    spec = make_spec()
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    summary = tr.ObservationSummary(spec.objective)
    summary.add(
        [
            LogEntry(moment, "loss", "0.5"),
            LogEntry(moment, "loss", "١٢"),
            LogEntry(moment, "loss", "1_000"),
            LogEntry(moment, "loss", " 7"),
            LogEntry(moment, "loss", "-Inf"),
        ]
    )
    (loss,) = [m for m in summary.observation() if m.name == "loss"]
    assert (loss.min, loss.max) == ("-Inf", "0.5")
