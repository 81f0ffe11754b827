"""Trial history, decoded once from the request and shared by every algorithm.

The objective direction is applied here and only here: :meth:`History.losses` returns values to
*minimise* (negated for maximise), with non-finite values clipped and logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property

import numpy as np

from katib.suggestion.space import Point, SearchSpace

logger = logging.getLogger(__name__)


class Direction(StrEnum):
    """Objective direction."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class TrialState(StrEnum):
    """A trial's condition, as the suggestion service sees it."""

    PENDING = "pending"  # created or running: its point is taken, its value unknown
    SUCCEEDED = "succeeded"
    EARLY_STOPPED = "early_stopped"
    FAILED = "failed"  # failed, killed or in an unknown state
    METRICS_UNAVAILABLE = "metrics_unavailable"


@dataclass(frozen=True)
class Trial:
    """One trial: its point, state and objective value (in the user's direction).

    Trials may be shared between requests (see ``proto.history_from_proto``): treat ``point``
    as read-only. ``point`` is ``None`` when the trial's assignments do not fit the current
    search space (for example after the space was edited); such trials are kept for counting
    but never modelled.
    """

    name: str
    point: Point | None
    state: TrialState
    value: float | None = None
    metrics: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    #: ``point``'s :meth:`SearchSpace.key` in the experiment's space, when the decoder computed
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


class History:
    """Every trial of an experiment plus the objective direction.

    Algorithms use :attr:`completed` (trials with values), :attr:`pending` (points taken but not
    evaluated yet: diversify against them) and :attr:`failed` (points that failed; not retried by
    the algorithms that enumerate). Trials may be supplied lazily through ``loader`` with their
    ``names`` up front, so algorithms that only need the count (random or Sobol search over a
    continuous space) never pay for decoding thousands of trials.
    """

    def __init__(
        self,
        direction: Direction | str,
        trials: Sequence[Trial] = (),
        *,
        loader: Callable[[], Sequence[Trial]] | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        self.direction = Direction(direction)
        if loader is None:
            self.__dict__["trials"] = tuple(trials)
        self._loader = loader
        self._names = None if names is None else tuple(names)

    @cached_property
    def trials(self) -> tuple[Trial, ...]:
        """Every trial, decoded, in request order."""
        assert self._loader is not None
        return tuple(self._loader())

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every trial's name, in request order."""
        return self._names if self._names is not None else tuple(t.name for t in self.trials)

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def completed(self) -> tuple[Trial, ...]:
        """Trials with an objective value, in request order."""
        return tuple(t for t in self.trials if t.is_complete)

    @cached_property
    def pending(self) -> tuple[Trial, ...]:
        """Created or running trials with a valid point."""
        return tuple(
            t for t in self.trials if t.state is TrialState.PENDING and t.point is not None
        )

    @cached_property
    def failed(self) -> tuple[Trial, ...]:
        """Failed, killed, metrics-unavailable, or finished-without-value trials with a point."""
        return tuple(
            t
            for t in self.trials
            if t.point is not None and t.state is not TrialState.PENDING and not t.is_complete
        )

    def points(self, trials: Sequence[Trial] | None = None) -> list[Point]:
        """The points of ``trials`` (default: every trial that has one)."""
        chosen = self.trials if trials is None else trials
        return [t.point for t in chosen if t.point is not None]

    def losses(self) -> np.ndarray:
        """Objective values of :attr:`completed` as losses to minimise, shape ``(n,)``.

        Maximised objectives are negated. ``±inf`` and ``nan`` are replaced by the worst finite
        loss seen (or 0 when there is none), with a warning.
        """
        values = np.array([t.value for t in self.completed], dtype=float)
        if self.direction is Direction.MAXIMIZE:
            values = -values
        bad = ~np.isfinite(values)
        if bad.any():
            finite = values[~bad]
            worst = float(finite.max()) if finite.size else 0.0
            logger.warning("clipping %d non-finite objective values to %g", int(bad.sum()), worst)
            values = np.where(bad, worst, values)
        return values

    def best(self) -> Trial | None:
        """The completed trial with the best objective, or ``None``."""
        if not self.completed:
            return None
        return self.completed[int(np.argmin(self.losses()))]

    def taken_keys(self, space: SearchSpace) -> set[tuple[str, ...]]:
        """Canonical keys of every point already tried or pending (for de-duplication)."""
        return {
            t.key if t.key is not None else space.key(t.point)
            for t in self.trials
            if t.point is not None
        }


def parse_objective(value: str) -> float | None:
    """An observation value as a float, or ``None`` when missing or ``"unavailable"``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
