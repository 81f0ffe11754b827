"""Benchmark problems: a search space, an objective to minimise and (when known) its optimum.

A :class:`Problem` is independent of any optimiser. Its objective takes a point (``dict`` of
parameter values, as :class:`katib.suggestion.space.SearchSpace` decodes them) and a seeded
``numpy.random.Generator`` for observation noise, and returns an :class:`Evaluation`: the value the
optimiser observes and the noise-free value regret is measured on.

Problems are built lazily by name (:func:`get`), so listing them never imports scikit-learn::

    >>> problem = get("branin")
    >>> problem.space.names
    ['x0', 'x1']
    >>> round(problem.optimum, 6)
    0.397887
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from katib.bench.synthetic import FUNCTIONS, SyntheticFunction
from katib.suggestion.space import (
    Distribution,
    ParameterSpec,
    ParameterType,
    Point,
    SearchSpace,
)

logger = logging.getLogger(__name__)

#: Dimensions in which the scalable synthetic functions are offered.
SCALABLE_DIMS = (2, 5, 10)


@dataclass(frozen=True)
class Evaluation:
    """One objective evaluation: ``value`` is observed by the optimiser, ``true_value`` is
    noise-free (equal to ``value`` for deterministic problems)."""

    value: float
    true_value: float


@dataclass(frozen=True)
class Problem:
    """A minimisation problem over a Katib search space.

    ``optimum`` is the known global minimum of the noise-free objective, or ``None`` when it is
    unknown (machine-learning tasks); regret is then measured against the best value seen across
    all runs of the problem in one results set.
    """

    name: str
    space: SearchSpace
    objective: Callable[[Point, np.random.Generator], Evaluation] = field(repr=False)
    optimum: float | None
    kind: str
    description: str = ""
    #: One point where the noise-free objective attains ``optimum`` (for tests and docs).
    optimiser: Point | None = field(default=None, repr=False)

    def evaluate(self, point: Point, rng: np.random.Generator) -> Evaluation:
        """Evaluate ``point``; ``rng`` draws observation noise for noisy problems."""
        return self.objective(point, rng)


def double(
    name: str, low: float, high: float, log: bool = False, step: float | None = None
) -> ParameterSpec:
    """A double parameter (log-uniform when ``log``)."""
    dist = Distribution.LOG_UNIFORM if log else Distribution.UNIFORM
    return ParameterSpec(
        name, ParameterType.DOUBLE, low=low, high=high, step=step, distribution=dist
    )


def integer(name: str, low: int, high: int, log: bool = False) -> ParameterSpec:
    """An int parameter (log-uniform when ``log``)."""
    dist = Distribution.LOG_UNIFORM if log else Distribution.UNIFORM
    return ParameterSpec(name, ParameterType.INT, low=low, high=high, distribution=dist)


def categorical(name: str, choices: tuple[str, ...]) -> ParameterSpec:
    """A categorical parameter."""
    return ParameterSpec(name, ParameterType.CATEGORICAL, choices=choices)


def discrete(name: str, values: tuple[float, ...]) -> ParameterSpec:
    """A discrete (ordered numeric list) parameter."""
    return ParameterSpec(name, ParameterType.DISCRETE, choices=tuple(f"{v:g}" for v in values))


def synthetic(fn: SyntheticFunction, dim: int, noise: float = 0.0) -> Problem:
    """A synthetic function as a problem; ``noise`` adds ``N(0, noise^2)`` to observations."""
    box = fn.box(dim)
    space = SearchSpace(tuple(double(f"x{i}", lo, hi) for i, (lo, hi) in enumerate(box)))
    names = space.names

    def objective(point: Point, rng: np.random.Generator) -> Evaluation:
        x = np.array([[float(point[n]) for n in names]])
        true = float(fn.fn(x)[0])
        observed = true + noise * float(rng.standard_normal()) if noise else true
        return Evaluation(observed, true)

    name = fn.name if not fn.scalable else f"{fn.name}-{dim}d"
    what = f"{fn.name} in {dim} dimensions"
    if noise:
        name, what = f"{name}-noisy", f"{what} with N(0, {noise:g}^2) observation noise"
    optimiser = dict(zip(names, fn.minimiser(dim), strict=True))
    return Problem(
        name,
        space,
        objective,
        optimum=fn.minimum(dim),
        kind="noisy" if noise else "synthetic",
        description=what,
        optimiser=optimiser,
    )


def _registry() -> dict[str, Callable[[], Problem]]:
    from katib.bench import mixed, tasks

    makers: dict[str, Callable[[], Problem]] = {}
    for fn in FUNCTIONS.values():
        dims = SCALABLE_DIMS if fn.scalable else (len(fn.bounds),)
        for dim in dims:
            problem_name = fn.name if not fn.scalable else f"{fn.name}-{dim}d"
            makers[problem_name] = _bind(synthetic, fn, dim)
    makers["branin-noisy"] = _bind(synthetic, FUNCTIONS["branin"], 2, 1.0)
    makers["hartmann6-noisy"] = _bind(synthetic, FUNCTIONS["hartmann6"], 6, 0.1)
    makers.update(mixed.PROBLEMS)
    makers.update(tasks.PROBLEMS)
    return makers


def _bind(maker: Callable[..., Problem], *args: Any) -> Callable[[], Problem]:
    return lambda: maker(*args)


def names() -> list[str]:
    """Every problem name, in suite order (synthetic, noisy, mixed, ML tasks)."""
    return list(_registry())


def get(name: str) -> Problem:
    """Build the problem called ``name``; ``KeyError`` listing the known names otherwise."""
    makers = _registry()
    if name not in makers:
        raise KeyError(f"unknown problem {name!r}; available: {', '.join(makers)}")
    return makers[name]()


@dataclass(frozen=True)
class Suite:
    """A named set of problems with default budget and seed count."""

    name: str
    problems: tuple[str, ...]
    budget: int
    seeds: int
    #: Peers run by default (when installed); ``None`` = every peer.
    peers: tuple[str, ...] | None = ()


#: Fast peers: everything but skopt:gp (about 0.5 s per suggestion at 100 trials).
FAST_PEERS = (
    "optuna:tpe",
    "optuna:tpe-mv",
    "optuna:random",
    "optuna:cmaes",
    "optuna:qmc",
    "hyperopt:tpe",
    "hyperopt:rand",
    "cma",
)

SUITES: dict[str, Suite] = {
    "smoke": Suite(
        "smoke",
        ("branin", "hartmann3", "mixed", "svc-digits"),
        budget=30,
        seeds=3,
        peers=("optuna:tpe", "hyperopt:tpe"),
    ),
    "standard": Suite(
        "standard",
        ("branin", "hartmann6", "levy-5d", "mixed", "hartmann6-noisy", "svc-breast-cancer"),
        budget=100,
        seeds=10,
        peers=FAST_PEERS,
    ),
    "full": Suite("full", (), budget=100, seeds=10, peers=None),  # () = every problem
}


def suite(name: str) -> Suite:
    """The suite called ``name`` with its problem list resolved."""
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; available: {', '.join(SUITES)}")
    chosen = SUITES[name]
    if not chosen.problems:
        return Suite(chosen.name, tuple(names()), chosen.budget, chosen.seeds, chosen.peers)
    return chosen
