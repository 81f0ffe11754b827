"""The experiment's reconcile step as a pure function (reference 6.4-6.6, fixes of 9.12).

:func:`reconcile` maps (spec, trials, suggestion state) to a :class:`Decision`: the experiment's
condition and counts, its best trial, how many suggestions to ask for, which trials to start and
which to stop. It performs no I/O; the runner carries decisions out and feeds results back.

Arithmetic differs from Katib's where Katib is inconsistent: MetricsUnavailable trials count as
completed both when deciding how many trials to create and when checking ``maxTrialCount``, so
an experiment never runs more than ``maxTrialCount`` trials.

Created trials form a queue. At most ``parallelTrialCount - running`` of them start at a time,
and never more than ``maxTrialCount - completed - running``, so lowering either count before a
resume is honoured. Katib deletes the newest trials when parallelism shrinks; we keep the excess
queued instead (Created, in creation order): they start as running trials finish, or, if the
budget runs out first, stay Created and are the first to run if the experiment is restarted with
a larger ``maxTrialCount``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from katib.controller.spec import Experiment, ObjectiveType, ResumePolicy
from katib.controller.trials import UNAVAILABLE, TrialCondition, TrialRecord


class Condition(enum.StrEnum):
    """Experiment condition types."""

    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(enum.StrEnum):
    """Experiment condition reasons, as Katib spells them."""

    CREATED = "ExperimentCreated"
    RUNNING = "ExperimentRunning"
    RESTARTING = "ExperimentRestarting"
    GOAL_REACHED = "ExperimentGoalReached"
    MAX_TRIALS_REACHED = "ExperimentMaxTrialsReached"
    SUGGESTION_END_REACHED = "ExperimentSuggestionEndReached"
    FAILED = "ExperimentFailed"


@dataclass(frozen=True)
class Counts:
    """Trial counts by condition (reference 6.6)."""

    trials: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    killed: int = 0
    early_stopped: int = 0
    metrics_unavailable: int = 0

    @property
    def active(self) -> int:
        """Trials created or running."""
        return self.pending + self.running

    @property
    def completed(self) -> int:
        """Trials that will not change any more (MetricsUnavailable included)."""
        return self.trials - self.active

    @classmethod
    def of(cls, trials: Sequence[TrialRecord]) -> Counts:
        """Count ``trials`` by their condition."""
        by = {c: 0 for c in TrialCondition}
        for trial in trials:
            by[trial.condition] += 1
        return cls(
            trials=len(trials),
            pending=by[TrialCondition.CREATED],
            running=by[TrialCondition.RUNNING],
            succeeded=by[TrialCondition.SUCCEEDED],
            failed=by[TrialCondition.FAILED],
            killed=by[TrialCondition.KILLED],
            early_stopped=by[TrialCondition.EARLY_STOPPED],
            metrics_unavailable=by[TrialCondition.METRICS_UNAVAILABLE],
        )


@dataclass(frozen=True)
class SuggestionState:
    """What the controller remembers about the suggestion service between calls.

    ``exhausted``: the service answered with nothing while no trial was active, so it has
    nothing more to suggest. ``waiting_at``: the service answered short while trials were
    active, when this many trials had completed; it is asked again once another completes.
    """

    exhausted: bool = False
    failed_message: str = ""
    waiting_at: int | None = None


@dataclass(frozen=True)
class Decision:
    """What to do next, and the experiment's status after this step."""

    condition: Condition
    reason: Reason
    message: str
    counts: Counts
    best_trial: str | None
    request: int = 0
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    #: Created trials that need their early-stopping rules fetched before they may start.
    fetch_rules: tuple[str, ...] = ()

    @property
    def completed(self) -> bool:
        """Whether the experiment has finished (Succeeded or Failed)."""
        return self.condition in (Condition.SUCCEEDED, Condition.FAILED)


def best_trial(spec: Experiment, trials: Sequence[TrialRecord]) -> TrialRecord | None:
    """The current optimal trial (reference 6.6): first strict improvement in trial order.

    A non-numeric objective value (e.g. a DARTS genotype) becomes best unconditionally.
    """
    best: TrialRecord | None = None
    best_value = math.nan
    maximize = spec.objective.type is ObjectiveType.MAXIMIZE
    for trial in trials:
        text = trial.objective_value(spec.objective)
        if text is None or text == UNAVAILABLE:
            continue
        try:
            value = float(text)
        except ValueError:
            best, best_value = trial, math.nan
            continue
        if value != value:
            continue
        if best is None or best_value != best_value:
            better = best is None
        else:
            better = value > best_value if maximize else value < best_value
        if better:
            best, best_value = trial, value
    return best


def goal_reached(spec: Experiment, best: TrialRecord | None) -> bool:
    """Whether the best trial meets ``objective.goal``."""
    goal = spec.objective.goal
    if goal is None or best is None:
        return False
    try:
        value = float(best.objective_value(spec.objective) or "nan")
    except ValueError:
        return False
    if spec.objective.type is ObjectiveType.MAXIMIZE:
        return value >= goal
    return value <= goal


_SUGGESTION_END = (
    Condition.SUCCEEDED,
    Reason.SUGGESTION_END_REACHED,
    "Experiment has succeeded because the suggestion service has nothing more to suggest "
    "(the search space is exhausted)",
)


def _outcome(
    spec: Experiment, counts: Counts, best: TrialRecord | None, state: SuggestionState
) -> tuple[Condition, Reason, str]:
    """The experiment's condition, checked in Katib's order (reference 6.5)."""
    if state.failed_message:
        return Condition.FAILED, Reason.FAILED, f"Suggestion has failed: {state.failed_message}"
    if counts.trials == 0:
        if state.exhausted:  # nothing was ever suggested: nothing will ever run
            return _SUGGESTION_END
        return Condition.RUNNING, Reason.RUNNING, "Experiment is running"
    if goal_reached(spec, best):
        return (
            Condition.SUCCEEDED,
            Reason.GOAL_REACHED,
            "Experiment has succeeded because Objective goal has reached",
        )
    failed = counts.failed + counts.metrics_unavailable
    limit = spec.max_failed_trial_count
    if limit is not None and failed > 0 and failed >= limit:
        return (
            Condition.FAILED,
            Reason.FAILED,
            "Experiment has failed because max failed count has reached",
        )
    if spec.max_trial_count is not None and counts.completed >= spec.max_trial_count:
        return (
            Condition.SUCCEEDED,
            Reason.MAX_TRIALS_REACHED,
            "Experiment has succeeded because max trial count has reached",
        )
    if state.exhausted and counts.active == 0:
        return _SUGGESTION_END
    return Condition.RUNNING, Reason.RUNNING, "Experiment is running"


def requests_needed(spec: Experiment, counts: Counts, state: SuggestionState) -> int:
    """How many new suggestions to ask for: fill ``parallelTrialCount``, stay within budget."""
    if state.exhausted:
        return 0
    if state.waiting_at is not None and state.waiting_at == counts.completed and counts.active:
        return 0  # the service answered short: ask again when a trial has completed
    required = spec.parallel_trial_count
    if spec.max_trial_count is not None:
        required = min(required, spec.max_trial_count - counts.completed)
    return max(0, required - counts.active)


def startable(spec: Experiment, counts: Counts) -> int:
    """How many Created trials may start now: free parallel slots, within the trial budget."""
    room = spec.parallel_trial_count - counts.running
    if spec.max_trial_count is not None:
        room = min(room, spec.max_trial_count - counts.completed - counts.running)
    return max(0, room)


def reconcile(spec: Experiment, trials: Sequence[TrialRecord], state: SuggestionState) -> Decision:
    """One reconcile step. Trials are in creation order."""
    counts = Counts.of(trials)
    best = best_trial(spec, trials)
    condition, reason, message = _outcome(spec, counts, best, state)
    best_name = best.name if best else None
    if condition in (Condition.SUCCEEDED, Condition.FAILED):
        active = tuple(t.name for t in trials if not t.condition.completed)
        return Decision(condition, reason, message, counts, best_name, stop=active)
    pending = tuple(t for t in trials if t.condition is TrialCondition.CREATED)
    pending = pending[: startable(spec, counts)]
    fetch: tuple[str, ...] = ()
    if spec.early_stopping is not None:
        fetch = tuple(t.name for t in pending if t.stop_rules is None)
    return Decision(
        condition,
        reason,
        message,
        counts,
        best_name,
        request=requests_needed(spec, counts, state),
        start=() if fetch else tuple(t.name for t in pending),
        fetch_rules=fetch,
    )


def after_suggestions(
    state: SuggestionState, requested: int, received: int, counts: Counts
) -> SuggestionState:
    """The state after a GetSuggestions reply; ``counts`` are the trials before it.

    Nothing suggested while no trial is active: the service has nothing more to suggest (a
    grid done, Hyperband's brackets done, DARTS's single trial), and the experiment ends. A
    short reply while trials are active means wait: the service may have more once they
    complete (Hyperband's next rung), so it is asked again after the next completion.
    """
    if received == 0 and counts.active == 0:
        return SuggestionState(exhausted=True, failed_message=state.failed_message)
    if received < requested:
        return SuggestionState(failed_message=state.failed_message, waiting_at=counts.completed)
    return SuggestionState(failed_message=state.failed_message)


def can_restart(
    spec: Experiment, condition: Condition, reason: Reason | str, trial_count: int
) -> bool:
    """Whether a completed experiment may continue (reference 6.2 rule 4, 6.8).

    ``trial_count`` counts the trials that ran; Created trials still queued are not counted
    (Katib counts every trial), so they do not use up a raised ``maxTrialCount``.
    """
    return (
        condition is Condition.SUCCEEDED
        and reason == Reason.MAX_TRIALS_REACHED
        and spec.resume_policy in (ResumePolicy.LONG_RUNNING, ResumePolicy.FROM_VOLUME)
        and spec.max_trial_count is not None
        and spec.max_trial_count > trial_count
    )
