"""Katib ``Trial`` protos as domain trials: the history every service decodes the same way.

Suggestion algorithms, early-stopping rules and NAS controllers all receive the experiment's
trials in Katib's protobuf form. This module turns one into a :class:`Trial` (name, condition,
labels, timestamps, observation, objective value) once, at the edge; the services above it
see only these objects. Assignments become a typed point only where a search space is known:
pass ``parse_point`` (the suggestion service passes its space's parser).

No gRPC here, and no numpy: early stopping and the controller can import it cheaply.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from katib.api import api_pb2 as pb

logger = logging.getLogger(__name__)


class Direction(StrEnum):
    """Objective direction."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class TrialState(StrEnum):
    """A trial's condition, as the services see it."""

    PENDING = "pending"  # created or running: its point is taken, its value unknown
    SUCCEEDED = "succeeded"
    EARLY_STOPPED = "early_stopped"
    FAILED = "failed"  # failed, killed or in an unknown state
    METRICS_UNAVAILABLE = "metrics_unavailable"


CONDITIONS: dict[int, TrialState] = {
    pb.TrialStatus.CREATED: TrialState.PENDING,
    pb.TrialStatus.RUNNING: TrialState.PENDING,
    pb.TrialStatus.SUCCEEDED: TrialState.SUCCEEDED,
    pb.TrialStatus.EARLYSTOPPED: TrialState.EARLY_STOPPED,
    pb.TrialStatus.METRICSUNAVAILABLE: TrialState.METRICS_UNAVAILABLE,
    pb.TrialStatus.FAILED: TrialState.FAILED,
    pb.TrialStatus.KILLED: TrialState.FAILED,
    pb.TrialStatus.UNKNOWN: TrialState.FAILED,
}


@dataclass(frozen=True)
class Trial:
    """One trial: its point, state and objective value (in the user's direction).

    Trials may be shared between requests (see ``katib.suggestion.lazy``): treat every field
    as read-only. ``point`` is ``None`` when the trial's assignments do not fit the current
    search space (for example after the space was edited) or no space was given; such trials
    are kept for counting but never modelled. ``assignments`` are the raw name/value strings.
    """

    name: str
    point: dict[str, Any] | None
    state: TrialState
    value: float | None = None
    metrics: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    #: ``point``'s ``SearchSpace.key`` in the experiment's space, when the decoder computed
    #: it (decoded trials are reused across requests, so de-duplication pays for it once).
    key: tuple[str, ...] | None = field(default=None, compare=False, repr=False)
    #: When the trial started and finished (UTC), as the controller reported them.
    start_time: datetime | None = None
    completion_time: datetime | None = None

    @property
    def is_complete(self) -> bool:
        """Finished with a usable objective value (succeeded or early-stopped)."""
        return (
            self.state in (TrialState.SUCCEEDED, TrialState.EARLY_STOPPED)
            and self.value is not None
            and self.point is not None
        )


#: Parses a trial's assignments into ``(point, key)``; raises ``ValueError`` when they don't fit.
PointParser = Callable[[dict[str, str]], tuple[dict[str, Any], tuple[str, ...]]]


def trial_from_proto(
    trial: pb.Trial, objective_metric: str, parse_point: PointParser | None = None
) -> Trial:
    """Decode one Katib trial; ``parse_point`` turns its assignments into a typed point."""
    point: dict[str, Any] | None = None
    key: tuple[str, ...] | None = None
    if parse_point is not None:
        assignments = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
        try:
            point, key = parse_point(assignments)
        except ValueError as exc:
            logger.warning("trial %s ignored for modelling: %s", trial.name, exc)
    metrics = {m.name: m.value for m in trial.status.observation.metrics}
    return Trial(
        name=trial.name,
        point=point,
        state=CONDITIONS.get(trial.status.condition, TrialState.FAILED),
        value=parse_objective(metrics.get(objective_metric, "")),
        metrics=metrics,
        labels=dict(trial.spec.labels),
        key=key,
        start_time=parse_time(trial.status.start_time),
        completion_time=parse_time(trial.status.completion_time),
    )


def parse_objective(value: str) -> float | None:
    """An observation value as a float, or ``None`` when missing or ``"unavailable"``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime; ``None`` when empty or unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        logger.warning("ignoring unreadable trial timestamp %r", text[:64])
        return None
