"""Trial records and their pure transitions (reference 6.7) and observations (section 4).

A :class:`TrialRecord` is immutable; every change returns a new record, which the runner
persists. Observation values stay strings as Katib keeps them; ``"unavailable"`` marks a metric
with no numeric value.
"""

from __future__ import annotations

import enum
import secrets
import string
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from katib.controller.fields import go_float
from katib.controller.spec import Objective, Strategy
from katib.earlystopping.rules import Comparison, Rule, Semantics

UNAVAILABLE = "unavailable"


class TrialCondition(enum.StrEnum):
    """The last condition of a trial."""

    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    KILLED = "Killed"
    FAILED = "Failed"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    EARLY_STOPPED = "EarlyStopped"

    @property
    def completed(self) -> bool:
        """Whether the trial will not change any more."""
        return self not in (TrialCondition.CREATED, TrialCondition.RUNNING)


@dataclass(frozen=True)
class MetricValue:
    """One metric of a trial's observation: min, max and latest as Katib stores them."""

    name: str
    min: str = UNAVAILABLE
    max: str = UNAVAILABLE
    latest: str = UNAVAILABLE

    def value(self, strategy: Strategy) -> str:
        """The value that represents this metric under ``strategy`` (reference 1.3)."""
        if strategy is Strategy.MIN:
            return self.latest if self.min == UNAVAILABLE else self.min
        if strategy is Strategy.MAX:
            return self.latest if self.max == UNAVAILABLE else self.max
        return self.latest


@dataclass(frozen=True)
class LogEntry:
    """One observation-log row: ``time`` is UTC (``None`` for an untimed line)."""

    time: datetime | None
    name: str
    value: str


@dataclass(frozen=True)
class TrialRecord:
    """Everything the controller knows about one trial."""

    name: str
    index: int
    assignments: tuple[tuple[str, str], ...]
    condition: TrialCondition = TrialCondition.CREATED
    reason: str = "TrialCreated"
    message: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    start_time: datetime | None = None
    completion_time: datetime | None = None
    observation: tuple[MetricValue, ...] = ()
    exit_code: int | None = None
    attempts: int = 0
    #: Early-stopping rules fetched for the trial; ``None`` until fetched (or without
    #: ``spec.earlyStopping``), ``()`` when the service had none for it.
    stop_rules: tuple[Rule, ...] | None = None
    #: How ``stop_rules`` are evaluated: the form the early-stopping service answered in.
    stop_semantics: Semantics = Semantics.ANY
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def metric(self, name: str) -> MetricValue | None:
        """The observed metric ``name``, if any."""
        for item in self.observation:
            if item.name == name:
                return item
        return None

    def objective_value(self, objective: Objective) -> str | None:
        """The objective metric's value by its strategy; None when unobserved."""
        metric = self.metric(objective.objective_metric_name)
        if metric is None:
            return None
        strategy = objective.strategy(objective.objective_metric_name) or Strategy.LATEST
        return metric.value(strategy)

    def assignment_dict(self) -> dict[str, str]:
        """Parameter name -> value."""
        return dict(self.assignments)


class ObservationSummary:
    """The observation of a stream of rows, folded as they come, in constant memory.

    Rows may come in report order or in DB order (by time, then report); the result is the
    same. Latest is the value with the greatest timestamp, ties going to the later row; untimed
    rows count as the earliest time. Min and max keep, among numerically equal values ("0.5",
    "5e-1"), the spelling first in DB order. Non-numeric values only affect Latest; NaN never
    wins min or max.
    """

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self._wanted = {s.name for s in objective.metric_strategies}
        self._slots: dict[str, _Slot] = {}

    @property
    def names(self) -> frozenset[str]:
        """The metrics that have at least one row."""
        return frozenset(self._slots)

    def add(self, entries: Iterable[LogEntry]) -> None:
        """Fold rows in."""
        for entry in entries:
            if entry.name not in self._wanted:
                continue
            slot = self._slots.get(entry.name)
            if slot is None:
                slot = self._slots[entry.name] = _Slot()
            slot.add(entry)

    def observation(self) -> tuple[MetricValue, ...]:
        """One :class:`MetricValue` per observed metric, in the objective's metric order."""
        return tuple(
            self._slots[name].metric(name)
            for name in self.objective.metric_names
            if name in self._slots
        )


class _Slot:
    """Running min, max and latest of one metric."""

    __slots__ = (
        "high",
        "high_moment",
        "high_value",
        "latest",
        "low",
        "low_moment",
        "low_value",
        "moment",
    )

    def __init__(self) -> None:
        self.low = self.high = 0.0
        self.low_value = self.high_value = self.latest = UNAVAILABLE
        self.moment: datetime | None = None
        self.low_moment = self.high_moment = datetime.min

    def add(self, entry: LogEntry) -> None:
        moment = (entry.time or datetime.min).replace(tzinfo=None)
        number = go_float(entry.value)
        if number is not None and number == number:  # NaN never wins min/max
            # An equal value wins only when it is earlier in DB order (by time, then report).
            if (
                self.low_value == UNAVAILABLE
                or number < self.low
                or (number == self.low and moment < self.low_moment)
            ):
                self.low, self.low_value, self.low_moment = number, entry.value, moment
            if (
                self.high_value == UNAVAILABLE
                or number > self.high
                or (number == self.high and moment < self.high_moment)
            ):
                self.high, self.high_value, self.high_moment = number, entry.value, moment
        if self.moment is None or moment >= self.moment:
            self.moment, self.latest = moment, entry.value

    def metric(self, name: str) -> MetricValue:
        return MetricValue(
            name=name,
            min=self.low_value or UNAVAILABLE,
            max=self.high_value or UNAVAILABLE,
            latest=self.latest or UNAVAILABLE,
        )


_NAME_ALPHABET = string.ascii_lowercase + string.digits


def new_trial_name(experiment: str, *taken: Container[str]) -> str:
    """A fresh trial name, ``<experiment>-<8 random [a-z0-9]>``, in none of ``taken``."""
    while True:
        suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(8))
        name = f"{experiment}-{suffix}"
        if not any(name in names for names in taken):
            return name


def start(trial: TrialRecord, now: datetime) -> TrialRecord:
    """The trial once its process is running."""
    return replace(
        trial,
        condition=TrialCondition.RUNNING,
        reason="TrialRunning",
        message="Trial is running",
        start_time=now,
        completion_time=None,
        exit_code=None,
        attempts=trial.attempts + 1,
    )


def finish(
    trial: TrialRecord,
    exit_code: int,
    observation: tuple[MetricValue, ...],
    objective: Objective,
    now: datetime,
) -> TrialRecord:
    """The trial after its process exited (reference 6.7 transitions).

    Exit 0 with an objective value => Succeeded; exit 0 without => MetricsUnavailable;
    non-zero => Failed (the observation is kept for inspection).
    """
    done = replace(trial, exit_code=exit_code, completion_time=now, observation=observation)
    if exit_code != 0:
        return replace(
            done,
            condition=TrialCondition.FAILED,
            reason="TrialFailed",
            message=f"Trial process exited with code {exit_code}",
        )
    value = done.objective_value(objective)
    if value is None or value == UNAVAILABLE:
        return replace(
            done,
            condition=TrialCondition.METRICS_UNAVAILABLE,
            reason="MetricsUnavailable",
            message=f"Metric {objective.objective_metric_name!r} was not reported",
        )
    return replace(
        done,
        condition=TrialCondition.SUCCEEDED,
        reason="TrialSucceeded",
        message="Trial has succeeded",
    )


def kill(
    trial: TrialRecord,
    reason: str,
    message: str,
    now: datetime,
    observation: tuple[MetricValue, ...] | None = None,
    exit_code: int | None = None,
) -> TrialRecord:
    """The trial after the controller stopped it while it ran (what it reported is kept)."""
    return replace(
        trial,
        condition=TrialCondition.KILLED,
        reason=reason,
        message=message,
        completion_time=now,
        observation=trial.observation if observation is None else observation,
        exit_code=exit_code,
    )


def early_stop(
    trial: TrialRecord, exit_code: int, observation: tuple[MetricValue, ...], now: datetime
) -> TrialRecord:
    """The trial after its early-stopping rules were met and it was stopped (Katib's
    SetTrialStatus condition); its observation is kept."""
    return replace(
        trial,
        condition=TrialCondition.EARLY_STOPPED,
        reason="TrialEarlyStopped",
        message="Trial is early stopped",
        completion_time=now,
        observation=observation,
        exit_code=exit_code,
    )


def to_dict(trial: TrialRecord) -> dict[str, Any]:
    """A JSON-able form for the results directory."""
    return {
        "name": trial.name,
        "index": trial.index,
        "assignments": [list(a) for a in trial.assignments],
        "labels": [list(a) for a in trial.labels],
        "condition": trial.condition.value,
        "reason": trial.reason,
        "message": trial.message,
        "start_time": trial.start_time.isoformat() if trial.start_time else None,
        "completion_time": trial.completion_time.isoformat() if trial.completion_time else None,
        "observation": [[m.name, m.min, m.max, m.latest] for m in trial.observation],
        "exit_code": trial.exit_code,
        "attempts": trial.attempts,
        "stop_rules": None
        if trial.stop_rules is None
        else [
            [r.name, r.value, r.comparison.name.lower(), r.start_step] for r in trial.stop_rules
        ],
        "stop_semantics": trial.stop_semantics.value,
        "extra": trial.extra,
    }


def from_dict(data: Mapping[str, Any]) -> TrialRecord:
    """Inverse of :func:`to_dict`."""

    def when(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    return TrialRecord(
        name=data["name"],
        index=int(data["index"]),
        assignments=tuple((str(k), str(v)) for k, v in data["assignments"]),
        labels=tuple((str(k), str(v)) for k, v in data.get("labels", [])),
        condition=TrialCondition(data["condition"]),
        reason=data.get("reason", ""),
        message=data.get("message", ""),
        start_time=when(data.get("start_time")),
        completion_time=when(data.get("completion_time")),
        observation=tuple(MetricValue(*m) for m in data.get("observation", [])),
        exit_code=data.get("exit_code"),
        attempts=int(data.get("attempts", 0)),
        stop_rules=_rules(data.get("stop_rules")),
        # records written before the semantics were stored were evaluated Katib's way
        stop_semantics=Semantics(data.get("stop_semantics", Semantics.KATIB)),
        extra=dict(data.get("extra") or {}),
    )


def _rules(data: Any) -> tuple[Rule, ...] | None:
    if data is None:
        return None
    return tuple(
        Rule(str(name), float(value), Comparison[str(comparison).upper()], int(step))
        for name, value, comparison, step in data
    )
