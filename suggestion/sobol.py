"""Scrambled Sobol quasi-random search.

The trials of an experiment follow one Owen-scrambled Sobol sequence: the ``n``-th call with
``k`` trials already created continues at index ``k``, so the points of many small batches
together keep the low-discrepancy property of a single long run. The scrambling seed is
``random_state`` or, when unset, a CRC-32 of the experiment name, so a restarted service continues
the same sequence.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

from katib.suggestion.base import Algorithm, draw_distinct
from katib.suggestion.history import History
from katib.suggestion.settings import setting
from katib.suggestion.space import Point


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
        """The next ``count`` Sobol points (skipping repeats in finite spaces)."""
        from scipy.stats import qmc

        seed = self.seed if self.seed is not None else zlib.crc32(self.experiment.name.encode())
        engine = qmc.Sobol(d=self.space.dim, scramble=True, seed=seed)
        if len(history):
            engine.fast_forward(len(history))

        def draw(n: int) -> list[Point]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # balance warning for n != 2**m
                return self.space.decode(engine.random(n))

        return draw_distinct(self.space, self.rng(history), draw, count, history)
