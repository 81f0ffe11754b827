"""Random search: independent draws from each parameter's prior distribution."""

from __future__ import annotations

from dataclasses import dataclass

from katib.api.settings import setting
from katib.suggestion.base import Algorithm, draw_distinct
from katib.suggestion.history import History
from katib.suggestion.space import Point


@dataclass(frozen=True)
class RandomSettings:
    """Settings of ``random`` (Katib's name and meaning)."""

    random_state: int | None = setting(None, ge=0, doc="seed; unset draws fresh entropy")


class RandomSearch(Algorithm):
    """Sample uniformly in the encoded space, i.e. from each parameter's distribution.

    Uniform, log-uniform, normal and log-normal priors are honoured (normal ones truncated to
    ``[min, max]``), steps and lists are respected, and in finite spaces no point is proposed twice
    — neither within a batch nor against the history — until the space is exhausted.

    >>> from katib.suggestion.base import ExperimentInfo
    >>> from katib.suggestion.space import ParameterSpec, ParameterType, SearchSpace
    >>> space = SearchSpace((ParameterSpec("x", ParameterType.INT, low=0, high=9),))
    >>> algo = RandomSearch(ExperimentInfo("demo", space), RandomSettings(random_state=1))
    >>> len(algo.suggest(History(direction="minimize"), 3))
    3
    """

    name = "random"
    settings_class = RandomSettings
    uses_objective = False

    def suggest(self, history: History, count: int) -> list[Point]:
        """``count`` random points, distinct from each other and from the history."""
        rng = self.rng(history)
        return draw_distinct(
            self.space,
            rng,
            lambda n: self.space.sample(rng, n),
            count,
            history,
        )
