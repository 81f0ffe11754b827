"""Mixed-type problems whose optimum is known by construction.

Each block imitates a training configuration with seven parameters of every Katib kind:

========== ============================= =========================== ==========================
parameter  type                          term of the objective       optimum
========== ============================= =========================== ==========================
lr         double, log [1e-5, 1e-1]      ``(log10 lr - log10 c)^2``  ``c`` depends on optimizer
momentum   double [0, 1]                 ``4 (m - 0.9)^2``           0.9
layers     int [1, 8]                    ``((l - 3) / 2)^2``         3
units      int, log [8, 1024]            ``(log2 u - 7)^2 / 4``      128
optimizer  categorical (4 choices)       offset (0 for ``adam``)     adam
batch      discrete {16, ..., 512}       ``(log2 b - 6)^2 / 8``      64
dropout    double [0, 0.5], step 0.05    ``10 (d - 0.2)^2``          0.2
========== ============================= =========================== ==========================

The best learning rate depends on the optimizer (``adam`` 3e-3, ``rmsprop`` 1e-3, ``sgd`` 3e-2,
``adagrad`` 1e-2), so the categorical and the log-scaled double interact. Every term is
non-negative and zero at the optimum, so the minimum of a block is exactly 0; ``mixed-14`` sums two
blocks whose optima differ, so its minimum is 0 too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from katib.bench.problems import (
    Evaluation,
    Problem,
    categorical,
    discrete,
    double,
    integer,
)
from katib.suggestion.space import ParameterSpec, Point, SearchSpace

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adagrad")
_OFFSET = {"adam": 0.0, "rmsprop": 0.3, "sgd": 0.6, "adagrad": 1.0}
_BEST_LR = {"adam": 3e-3, "rmsprop": 1e-3, "sgd": 3e-2, "adagrad": 1e-2}
BATCHES = (16, 32, 64, 128, 256, 512)


def _block_params(suffix: str) -> list[ParameterSpec]:
    return [
        double(f"lr{suffix}", 1e-5, 1e-1, log=True),
        double(f"momentum{suffix}", 0.0, 1.0),
        integer(f"layers{suffix}", 1, 8),
        integer(f"units{suffix}", 8, 1024, log=True),
        categorical(f"optimizer{suffix}", OPTIMIZERS),
        discrete(f"batch{suffix}", BATCHES),
        double(f"dropout{suffix}", 0.0, 0.5, step=0.05),
    ]


def _block_value(point: Point, suffix: str, shift: float) -> float:
    """One block's objective; ``shift`` moves the continuous optima so blocks differ."""
    opt = str(point[f"optimizer{suffix}"])
    lr = float(point[f"lr{suffix}"])
    value = (math.log10(lr) - math.log10(_BEST_LR[opt])) ** 2 + _OFFSET[opt]
    value += 4 * (float(point[f"momentum{suffix}"]) - (0.9 - shift)) ** 2
    value += ((int(point[f"layers{suffix}"]) - 3) / 2) ** 2
    value += (math.log2(int(point[f"units{suffix}"])) - 7) ** 2 / 4
    value += (math.log2(float(point[f"batch{suffix}"])) - 6) ** 2 / 8
    value += 10 * (float(point[f"dropout{suffix}"]) - 0.2) ** 2
    return value


def _block_optimiser(suffix: str, shift: float) -> Point:
    return {
        f"lr{suffix}": 3e-3,
        f"momentum{suffix}": 0.9 - shift,
        f"layers{suffix}": 3,
        f"units{suffix}": 128,
        f"optimizer{suffix}": "adam",
        f"batch{suffix}": 64.0,
        f"dropout{suffix}": 0.2,
    }


def mixed_problem(blocks: int) -> Problem:
    """``blocks`` seven-parameter blocks (suffixes ``""``, ``"_1"``, ...), minimum exactly 0."""
    suffixes = ["" if i == 0 else f"_{i}" for i in range(blocks)]
    shifts = [0.3 * i for i in range(blocks)]
    space = SearchSpace(tuple(p for s in suffixes for p in _block_params(s)))

    def objective(point: Point, rng: np.random.Generator) -> Evaluation:
        value = sum(_block_value(point, s, h) for s, h in zip(suffixes, shifts, strict=True))
        return Evaluation(value, value)

    optimiser: Point = {}
    for s, h in zip(suffixes, shifts, strict=True):
        optimiser.update(_block_optimiser(s, h))
    name = "mixed" if blocks == 1 else f"mixed-{7 * blocks}"
    return Problem(
        name,
        space,
        objective,
        optimum=0.0,
        kind="mixed",
        description=f"{7 * blocks} mixed-type parameters (log doubles, ints, categorical, "
        "discrete, stepped double) with an optimum of 0 by construction",
        optimiser=optimiser,
    )


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "mixed": lambda: mixed_problem(1),
    "mixed-14": lambda: mixed_problem(2),
}
