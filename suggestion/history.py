"""Trial history, decoded once from the request and shared by every algorithm.

The objective direction is applied here and only here: :meth:`History.losses` returns values to
*minimise* (negated for maximise), with non-finite values clipped and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

from katib.api.trials import Direction, Trial, TrialState
from katib.suggestion.space import Point, SearchSpace

logger = logging.getLogger(__name__)


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

    @cached_property
    def sorted_names(self) -> bytes:
        """Every trial's name, sorted and joined by newlines (UTF-8): the history's identity
        for seeding (see ``Algorithm.rng``)."""
        return "\n".join(sorted(self.names)).encode()

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
        """Canonical keys of every point already tried or pending (for de-duplication).

        A new set each call (callers add to it); computed once per space.
        """
        memo = self.__dict__.get("_taken")
        if memo is None or memo[0] is not space:
            keys = {
                t.key if t.key is not None else space.key(t.point)
                for t in self.trials
                if t.point is not None
            }
            memo = self.__dict__["_taken"] = (space, keys)
        return set(memo[1])
