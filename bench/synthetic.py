"""Synthetic test functions with known minima (Surjanovic & Bingham's Virtual Library).

Every function takes ``x``, an ``(n, d)`` float64 array of points in the function's native box,
and returns ``f``, an ``(n,)`` array. :data:`FUNCTIONS` records, for each function, its box, its
global minimum ``f*`` and one minimiser ``x*`` (the tests evaluate ``f(x*)`` and compare with
``f*``).

Ackley's usual box ``[-32.768, 32.768]^d`` puts the optimum at the centre, which rewards any
optimiser that starts at the centre of the space (CMA-ES, Optuna's CmaEsSampler); we use the
shifted box ``[-15, 30]^d`` instead. The other boxes are the usual ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_HARTMANN3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_HARTMANN3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_HARTMANN6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_HARTMANN6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def branin(x: np.ndarray) -> np.ndarray:
    """Branin-Hoo on ``[-5, 10] x [0, 15]``; three minimisers with ``f* = 0.397887``."""
    x1, x2 = x[:, 0], x[:, 1]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s


def _hartmann(x: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    inner = np.sum(a[None, :, :] * (x[:, None, :] - p[None, :, :]) ** 2, axis=2)  # (n, 4)
    return -np.sum(_HARTMANN_ALPHA[None, :] * np.exp(-inner), axis=1)


def hartmann3(x: np.ndarray) -> np.ndarray:
    """Hartmann-3 on ``[0, 1]^3``; ``f* = -3.86278``."""
    return _hartmann(x, _HARTMANN3_A, _HARTMANN3_P)


def hartmann6(x: np.ndarray) -> np.ndarray:
    """Hartmann-6 on ``[0, 1]^6``; ``f* = -3.32237``."""
    return _hartmann(x, _HARTMANN6_A, _HARTMANN6_P)


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """Rosenbrock on ``[-5, 10]^d``; ``f* = 0`` at ``(1, ..., 1)``."""
    return np.sum(100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (x[:, :-1] - 1) ** 2, axis=1)


def ackley(x: np.ndarray) -> np.ndarray:
    """Ackley (a=20, b=0.2, c=2 pi) on the shifted box ``[-15, 30]^d``; ``f* = 0`` at 0."""
    d = x.shape[1]
    term1 = -20.0 * np.exp(-0.2 * np.sqrt(np.sum(x**2, axis=1) / d))
    term2 = -np.exp(np.sum(np.cos(2 * math.pi * x), axis=1) / d)
    return term1 + term2 + 20.0 + math.e


def levy(x: np.ndarray) -> np.ndarray:
    """Levy on ``[-10, 10]^d``; ``f* = 0`` at ``(1, ..., 1)``."""
    w = 1 + (x - 1) / 4
    head = np.sin(math.pi * w[:, 0]) ** 2
    mid = np.sum((w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:, :-1] + 1) ** 2), axis=1)
    tail = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * math.pi * w[:, -1]) ** 2)
    return head + mid + tail


def styblinski_tang(x: np.ndarray) -> np.ndarray:
    """Styblinski-Tang on ``[-5, 5]^d``; ``f* = -39.16617 d`` at ``x_i = -2.903534``."""
    return 0.5 * np.sum(x**4 - 16 * x**2 + 5 * x, axis=1)


#: Styblinski-Tang's one-dimensional minimiser (root of 4x^3 - 32x + 5 = 0 in [-5, 0]).
_ST_X = -2.9035340276126953


@dataclass(frozen=True)
class SyntheticFunction:
    """A test function with its box, global minimum and one minimiser.

    ``dims=None`` means the dimension is fixed by ``bounds``; otherwise ``bounds`` holds one
    ``(low, high)`` pair repeated for any dimension.
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    bounds: tuple[tuple[float, float], ...]
    minimum: Callable[[int], float]
    minimiser: Callable[[int], tuple[float, ...]]
    scalable: bool = False

    def box(self, dim: int) -> list[tuple[float, float]]:
        """The ``(low, high)`` pair of every coordinate in ``dim`` dimensions."""
        if self.scalable:
            return [self.bounds[0]] * dim
        if dim != len(self.bounds):
            raise ValueError(f"{self.name} is {len(self.bounds)}-dimensional, not {dim}")
        return list(self.bounds)


FUNCTIONS: dict[str, SyntheticFunction] = {
    f.name: f
    for f in (
        SyntheticFunction(
            "branin",
            branin,
            ((-5.0, 10.0), (0.0, 15.0)),
            minimum=lambda d: 0.39788735772973816,
            minimiser=lambda d: (math.pi, 2.275),
        ),
        SyntheticFunction(
            "hartmann3",
            hartmann3,
            ((0.0, 1.0),) * 3,
            minimum=lambda d: -3.8627797869493365,
            minimiser=lambda d: (0.114614, 0.555649, 0.852547),
        ),
        SyntheticFunction(
            "hartmann6",
            hartmann6,
            ((0.0, 1.0),) * 6,
            minimum=lambda d: -3.3223680114155147,
            minimiser=lambda d: (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573),
        ),
        SyntheticFunction(
            "rosenbrock",
            rosenbrock,
            ((-5.0, 10.0),),
            scalable=True,
            minimum=lambda d: 0.0,
            minimiser=lambda d: (1.0,) * d,
        ),
        SyntheticFunction(
            "ackley",
            ackley,
            ((-15.0, 30.0),),
            scalable=True,
            minimum=lambda d: 0.0,
            minimiser=lambda d: (0.0,) * d,
        ),
        SyntheticFunction(
            "levy",
            levy,
            ((-10.0, 10.0),),
            scalable=True,
            minimum=lambda d: 0.0,
            minimiser=lambda d: (1.0,) * d,
        ),
        SyntheticFunction(
            "styblinski-tang",
            styblinski_tang,
            ((-5.0, 5.0),),
            scalable=True,
            minimum=lambda d: float(styblinski_tang(np.full((1, d), _ST_X))[0]),
            minimiser=lambda d: (_ST_X,) * d,
        ),
    )
}
