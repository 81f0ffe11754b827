"""The problems of the TPE study (``katib-bench tpe quality``): nine objectives and their optima.

These are deliberately not the harness's :mod:`katib.bench.problems`: the study's figures in the
README were measured on these boxes (Ackley on the usual ``[-32.768, 32.768]^10``, where the
harness shifts it) and on its own mixed-type toy, so they stay fixed. The synthetic objectives
are the functions of :mod:`katib.bench.synthetic` evaluated on one point at a time; every
problem is deterministic (no observation noise).

    >>> problem = PROBLEMS["branin-2d"]
    >>> round(problem.objective({"x0": 3.141592653589793, "x1": 2.275}) - problem.optimum, 9)
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from katib.bench.synthetic import FUNCTIONS
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace

D, INT = ParameterType.DOUBLE, ParameterType.INT
Objective = Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class StudyProblem:
    """A search space, a deterministic objective to minimise and its known minimum."""

    space: SearchSpace
    objective: Objective
    optimum: float


def _synthetic(function: str, box: list[tuple[float, float]], optimum: float) -> StudyProblem:
    """``FUNCTIONS[function]`` over ``box`` (parameters ``x0 .. x{d-1}``)."""
    space = SearchSpace(
        tuple(ParameterSpec(f"x{i}", D, low=lo, high=hi) for i, (lo, hi) in enumerate(box))
    )
    fn = FUNCTIONS[function].fn
    names = space.names

    def objective(point: dict[str, Any]) -> float:
        return float(fn(np.array([[point[n] for n in names]], dtype=float))[0])

    return StudyProblem(space, objective, optimum)


MIXED_SPACE = SearchSpace(
    (
        ParameterSpec("x", D, low=-5, high=5),
        ParameterSpec("lr", D, low=1e-4, high=1.0, distribution=Distribution.LOG_UNIFORM),
        ParameterSpec("y", D, low=0, high=1, step=0.05),
        ParameterSpec("n", INT, low=1, high=32),
        ParameterSpec("units", INT, low=8, high=1024, distribution=Distribution.LOG_UNIFORM),
        ParameterSpec(
            "opt", ParameterType.CATEGORICAL, choices=("sgd", "adam", "rmsprop", "adagrad")
        ),
        ParameterSpec("batch", ParameterType.DISCRETE, choices=("16", "32", "64", "128", "256")),
    )
)
_OPT_OFFSET = {"sgd": 0.6, "adam": 0.0, "rmsprop": 0.3, "adagrad": 1.0}


def mixed(p: dict[str, Any]) -> float:
    """A mixed-type toy with interactions; minimum 0 at x=1, lr=1e-2, y=.35, n=7, units=128,
    opt=adam, batch=64 (the best learning rate is 10^-2.3 with sgd)."""
    lr_term = (math.log10(p["lr"]) + 2 + 0.3 * (p["opt"] == "sgd")) ** 2
    return (
        0.2 * (p["x"] - 1) ** 2
        + lr_term
        + 4 * (p["y"] - 0.35) ** 2
        + ((p["n"] - 7) / 8) ** 2
        + (math.log2(p["units"]) - 7) ** 2 / 4
        + _OPT_OFFSET[p["opt"]]
        + 0.1 * abs(math.log2(float(p["batch"]) / 64))
    )


#: name -> problem, in table order.
PROBLEMS: dict[str, StudyProblem] = {
    "branin-2d": _synthetic("branin", [(-5, 10), (0, 15)], 0.397887357729739),
    "hartmann-3d": _synthetic("hartmann3", [(0, 1)] * 3, -3.86278214782076),
    "hartmann-6d": _synthetic("hartmann6", [(0, 1)] * 6, -3.32236801141551),
    "rosenbrock-5d": _synthetic("rosenbrock", [(-5, 10)] * 5, 0.0),
    "ackley-10d": _synthetic("ackley", [(-32.768, 32.768)] * 10, 0.0),
    "levy-5d": _synthetic("levy", [(-10, 10)] * 5, 0.0),
    "levy-10d": _synthetic("levy", [(-10, 10)] * 10, 0.0),
    "styblinski-10d": _synthetic("styblinski-tang", [(-5, 5)] * 10, -39.16616570377142 * 10),
    "mixed-7d": StudyProblem(MIXED_SPACE, mixed, 0.0),
}
