"""The ask/tell interface every contender is driven through, and how contenders are named.

A contender is one of:

* a Katib algorithm served by *our* suggestion service, started in process (``random``,
  ``sobol``, ``tpe``, ... — any name in :func:`katib.suggestion.registry.names`);
* any Katib-compatible suggestion service reached by address (``--service NAME=HOST:PORT``);
* a peer library driven directly through its own ask/tell API (``optuna:tpe``, ``cma``, ...).

All three are wrapped as an :class:`Optimizer`: :meth:`~Optimizer.ask` returns up to ``count``
points (fewer means the search space is exhausted), :meth:`~Optimizer.tell` reports the value of
the ``index``-th point asked so far (``None`` for a failed evaluation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from katib.bench.problems import Problem
from katib.suggestion.space import Point


class Optimizer(Protocol):
    """One optimisation run of one contender on one problem with one seed."""

    def ask(self, count: int) -> list[Point]:
        """Up to ``count`` new points; fewer only when the space is exhausted."""
        ...

    def tell(self, index: int, value: float | None) -> None:
        """The objective of the ``index``-th point asked (0-based); ``None`` if it failed."""
        ...

    def close(self) -> None:
        """Release resources (channels, studies)."""
        ...


@dataclass(frozen=True)
class RunSettings:
    """What a contender may know about a run besides the problem: budget, batch and seed."""

    seed: int
    budget: int
    batch: int
    asynchronous: bool = False


#: Builds a fresh optimiser for a problem and run settings.
OptimizerFactory = Callable[[Problem, RunSettings], Optimizer]


@dataclass(frozen=True)
class Contender:
    """A named optimiser factory; ``kind`` is ``katib`` (ours), ``service`` or ``peer``."""

    name: str
    kind: str
    make: OptimizerFactory
    description: str = ""
