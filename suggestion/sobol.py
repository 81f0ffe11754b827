"""Scrambled Sobol quasi-random search.

The trials of an experiment follow one Owen-scrambled Sobol sequence: the ``n``-th call with
``k`` trials already created continues at index ``k``, so the points of many small batches
together keep the low-discrepancy property of a single long run. The scrambling seed is
``random_state`` or, when unset, a CRC-32 of the experiment name, so a restarted service continues
the same sequence.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from katib.api.cache import estimate_bytes, shared
from katib.api.settings import setting
from katib.suggestion.base import Algorithm, draw_distinct
from katib.suggestion.history import History
from katib.suggestion.space import Point

# Batches are rarely powers of two; the sequence as a whole keeps its balance across calls.
warnings.filterwarnings(
    "ignore", message="The balance properties of Sobol' points require", category=UserWarning
)


@dataclass(frozen=True)
class SobolSettings:
    """Settings of ``sobol``."""

    random_state: int | None = setting(
        None, ge=0, doc="scrambling seed; unset uses a hash of the experiment name"
    )


class SobolSearch(Algorithm):
    """Quasi-random points from a scrambled Sobol sequence, continued across calls.

    >>> from katib.suggestion.base import ExperimentInfo
    >>> from katib.suggestion.space import ParameterSpec, ParameterType, SearchSpace
    >>> space = SearchSpace((ParameterSpec("x", ParameterType.DOUBLE, low=0, high=1),))
    >>> algo = SobolSearch(ExperimentInfo("demo", space), SobolSettings(random_state=0))
    >>> len(algo.suggest(History(direction="minimize"), 4))
    4
    """

    name = "sobol"
    settings_class = SobolSettings
    uses_objective = False

    def suggest(self, history: History, count: int) -> list[Point]:
        """The next ``count`` Sobol points, skipping points the history already has."""
        cache = shared()
        key = ("sobol-engine", self.space.dim, self.stable_seed)
        kept = cache.take(key)  # scrambling costs milliseconds: keep the engine, reset it
        if kept is None:
            from scipy.stats import qmc

            engine = qmc.Sobol(d=self.space.dim, scramble=True, seed=self.stable_seed)
            kept = (engine, estimate_bytes(vars(engine)))
        engine, nbytes = kept
        try:
            return self._continue(engine, history, count)
        finally:
            engine.reset()  # as new: the next call's answer cannot depend on this one
            cache.put(key, kept, nbytes)

    def _continue(self, engine: Any, history: History, count: int) -> list[Point]:
        if len(history):
            engine.fast_forward(len(history))

        def draw(n: int) -> list[Point]:
            return self.space.decode(engine.random(n))

        # Positions can repeat when trials leave the history (Katib drops MetricsUnavailable
        # ones), so even continuous points are checked against the trials that exist.
        rng = self.rng(history, seed=self.stable_seed)
        return draw_distinct(self.space, rng, draw, count, history, check_continuous=True)
