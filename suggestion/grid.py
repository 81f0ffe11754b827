"""Grid search over every combination of parameter values (Katib's ``grid``).

Doubles need a ``step``; ints use theirs (default 1); lists are used as given. Points are visited
in a deterministic order — lexicographic with the first parameter varying slowest, or, when
``random_state`` is set, a seeded pseudo-shuffle of that order — skipping every point already in
the history (succeeded, failed or pending). Once every point is taken the service returns fewer
(eventually zero) assignments, which tells the controller the search is complete.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from katib.api.errors import InvalidArgument
from katib.api.settings import setting
from katib.suggestion.base import Algorithm, ExperimentInfo
from katib.suggestion.history import History
from katib.suggestion.space import Point


@dataclass(frozen=True)
class GridSettings:
    """Settings of ``grid``."""

    random_state: int | None = setting(
        None, ge=0, doc="when set, visit the grid in a seeded shuffled order"
    )


class GridSearch(Algorithm):
    """Exhaustive search of a finite grid, never repeating a point.

    >>> from katib.suggestion.base import ExperimentInfo
    >>> from katib.suggestion.space import ParameterSpec, ParameterType, SearchSpace
    >>> space = SearchSpace((ParameterSpec("x", ParameterType.INT, low=1, high=3),))
    >>> algo = GridSearch(ExperimentInfo("demo", space), GridSettings())
    >>> algo.suggest(History(direction="minimize"), 5)
    [{'x': 1}, {'x': 2}, {'x': 3}]
    """

    name = "grid"
    settings_class = GridSettings
    uses_objective = False

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """Every parameter must be enumerable, and the budget must fit in the grid."""
        problems = [
            f"parameter {p.name!r}: grid search needs feasibleSpace.step for a double parameter"
            for p in experiment.space.params
            if p.cardinality is None
        ]
        if problems:
            raise InvalidArgument(problems)
        size = experiment.space.cardinality
        assert size is not None
        if experiment.max_trial_count is not None and experiment.max_trial_count > size:
            raise InvalidArgument(
                f"maxTrialCount ({experiment.max_trial_count}) exceeds the {size} points of the "
                "grid; lower maxTrialCount or refine the steps"
            )

    def suggest(self, history: History, count: int) -> list[Point]:
        """The next ``count`` untried grid points in visiting order."""
        params = self.space.params
        sizes = [p.cardinality or 0 for p in params]
        total = math.prod(sizes)
        order = self._order(total)
        taken = history.taken_keys(self.space)
        chosen: list[Point] = []
        # Each index examined is either taken or chosen, so this loop is O(|taken| + count).
        for i in range(total):
            index = order(i)
            values = []
            for spec, size in zip(reversed(params), reversed(sizes), strict=True):
                index, digit = divmod(index, size)
                values.append(spec.value_at(digit))
            point = dict(zip(self.space.names, reversed(values), strict=True))
            key = self.space.key(point)
            if key not in taken:
                taken.add(key)
                chosen.append(point)
                if len(chosen) == count:
                    break
        return chosen

    def _order(self, total: int) -> Callable[[int], int]:
        if self.seed is None or total < 2:
            return lambda i: i
        # An affine bijection i -> (a*i + c) mod total with gcd(a, total) = 1; Python integers,
        # so grids beyond 2^63 points work too.
        rng = random.Random(self.seed)
        while True:
            a = rng.randrange(1, total)
            if math.gcd(a, total) == 1:
                break
        c = rng.randrange(total)
        return lambda i: (a * i + c) % total
