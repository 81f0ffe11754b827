"""Maximising an acquisition function over the encoded space, categorical columns included.

1. **Candidates** (``(c, d)`` in ``U``, every row snapped to a feasible point with
   :meth:`SearchSpace.snap`): a scrambled Sobol set, plus Gaussian perturbations of the best
   observed points (ordered columns ``+ N(0, 0.05^2)``, each categorical column redrawn with
   probability ``1 / d``), which finds the basin of the incumbent far more often than uniform
   points do in ten dimensions. A space of at most :data:`ENUMERATE_LIMIT` points is enumerated
   instead, so a finite space gets the exact maximiser.
2. **Local search** from the best few candidates: L-BFGS-B (analytic gradients from
   :meth:`Posterior.predict_grad` and :func:`acquisition.value_and_grads`) on the continuous
   columns with the others fixed, then a coordinate sweep over each rounding column (ints,
   stepped doubles, discrete and categorical lists): every value when it has at most
   :data:`SWEEP_VALUES`, else a window around the current value plus an even spread. Two rounds.
   Rounding columns are never relaxed to continuous values, so the model is always asked about
   the point it will return (Optuna's GPSampler also searches categorical columns exhaustively;
   Garrido-Merchán & Hernández-Lobato 2020 show why relaxing and rounding misleads the model).
3. Rows in ``taken`` (already tried, pending or chosen, compared after snapping) are never
   returned; for finite spaces this is what makes a batch free of duplicates. A new point also
   keeps :data:`MIN_SEPARATION` from pending and same-batch points, so a batch stays spread
   when the kriging believer alone would not spread it (a converged, nearly noise-free model).

``acq_optimizer = sampling`` (the default for the tree ensembles, which have no gradients and
predict slowly) stops after step 1, with four times as many candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from scipy import optimize
from scipy.stats import qmc

from katib.suggestion.base import enumerate_space
from katib.suggestion.bayesopt import acquisition
from katib.suggestion.bayesopt.acquisition import Acquisition
from katib.suggestion.space import SearchSpace

ENUMERATE_LIMIT = 2048
SWEEP_VALUES = 64
N_CANDIDATES = 1024
N_LOCAL = 256
N_STARTS = 3
#: Smallest distance in ``U`` between a new point and a pending or same-batch point: a model
#: sure of its optimum would otherwise refine one spot k times within 1e-5 of itself.
MIN_SEPARATION = 0.01
_LOCAL_SIGMA = 0.05
_LBFGS_MAXITER = 40


class Surrogate(Protocol):
    """What the optimiser needs from a model: predictions, and gradients when it has them."""

    def predict(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance ``(m,)`` at ``z`` ``(m, d)``."""
        ...


Score = Callable[[np.ndarray], np.ndarray]


def row_keys(u: np.ndarray) -> list[bytes]:
    """Hashable identities of snapped rows (equal up to 1e-9)."""
    return [row.tobytes() for row in np.round(u, 9) + 0.0]


def candidates(
    space: SearchSpace,
    rng: np.random.Generator,
    incumbents: np.ndarray,
    n_sobol: int = N_CANDIDATES,
    n_local: int = N_LOCAL,
) -> np.ndarray:
    """Snapped candidate rows ``(c, d)``: every point of a small space, else Sobol + local."""
    card = space.cardinality
    if card is not None and card <= ENUMERATE_LIMIT:
        return space.encode(enumerate_space(space))
    d = space.dim
    sobol = qmc.Sobol(d, scramble=True, seed=rng).random(n_sobol)
    parts = [sobol]
    if len(incumbents) and n_local:
        base = incumbents[rng.integers(len(incumbents), size=n_local)]
        local = base + rng.normal(0.0, _LOCAL_SIGMA, base.shape)
        cat = space.view.categorical
        if cat.any():
            redraw = (rng.random(base.shape) < 1.0 / d) & cat
            local[redraw] = rng.random(int(redraw.sum()))
        parts.append(local)
    return space.snap(np.vstack(parts))


def _sweep_values(space: SearchSpace, j: int, current: float) -> np.ndarray:
    """Encoded values to try in rounding column ``j`` around ``current``."""
    spec = space.params[j]
    grid = spec.snapped_grid(SWEEP_VALUES)
    if grid is not None:
        return grid
    near = current + np.linspace(-0.05, 0.05, 21)
    spread = np.linspace(0.0, 1.0, SWEEP_VALUES - 21)
    return np.unique(spec.snap(np.concatenate([near, spread])))


def local_search(
    space: SearchSpace,
    score: Score,
    start: np.ndarray,
    gradient: Callable[[np.ndarray], tuple[float, np.ndarray]] | None,
) -> tuple[np.ndarray, float]:
    """Improve one snapped row ``start`` ``(d,)``; returns the row and its score."""
    view = space.view
    cont = np.flatnonzero(view.continuous)
    x = start.copy()
    best = float(score(x[None, :])[0])
    rounds = 2 if len(view.discrete) else 1
    for _ in range(rounds):
        if gradient is not None and len(cont):
            x, best = _lbfgs(x, cont, gradient, best)
        for j in view.discrete:
            values = _sweep_values(space, int(j), float(x[j]))
            trial = np.repeat(x[None, :], len(values), axis=0)
            trial[:, j] = values
            scores = score(trial)
            i = int(np.argmax(scores))
            if scores[i] > best:
                x, best = trial[i], float(scores[i])
    return x, best


def _lbfgs(
    x: np.ndarray,
    cont: np.ndarray,
    gradient: Callable[[np.ndarray], tuple[float, np.ndarray]],
    best: float,
) -> tuple[np.ndarray, float]:
    def negative(v: np.ndarray) -> tuple[float, np.ndarray]:
        row = x.copy()
        row[cont] = v
        value, grad = gradient(row)
        return -value, -grad

    result = optimize.minimize(
        negative,
        x[cont],
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * len(cont),
        options={"maxiter": _LBFGS_MAXITER},
    )
    if np.isfinite(result.fun) and -result.fun > best:
        x = x.copy()
        x[cont] = np.clip(result.x, 0.0, 1.0)
        return x, float(-result.fun)
    return x, best


def maximise(
    space: SearchSpace,
    model: Surrogate,
    acq: Acquisition,
    cands: np.ndarray,
    taken: set[bytes],
    local: bool,
    predicted: tuple[np.ndarray, np.ndarray] | None = None,
    portfolio: tuple[Acquisition, ...] = (),
    avoid: np.ndarray | None = None,
) -> tuple[np.ndarray, float] | None:
    """The best untaken row ``(d,)`` for ``acq`` and its value, or ``None`` if all are taken.

    ``predicted`` is the model's mean and variance at ``cands`` when the caller has them. Each
    acquisition of ``portfolio`` adds its best candidate as one more local-search start. Rows
    closer than :data:`MIN_SEPARATION` to a row of ``avoid`` (pending and already chosen
    points) are not returned either.
    """
    keys = row_keys(cands)
    free = np.array([k not in taken for k in keys], dtype=bool) & _apart(cands, avoid)
    if not free.any():
        return None
    pool = cands[free]

    def score(z: np.ndarray) -> np.ndarray:
        mean, var = model.predict(z)
        return acquisition.values(acq, mean, var)

    gradient = _gradient(space, model, acq)
    if predicted is None:
        scores = score(pool)
    else:
        scores = acquisition.values(acq, predicted[0][free], predicted[1][free])
    if space.cardinality is not None and space.cardinality <= ENUMERATE_LIMIT:
        i = int(np.argmax(scores))
        return pool[i], float(scores[i])
    order = np.argsort(-scores, kind="stable")
    best_row, best_value = pool[order[0]], float(scores[order[0]])
    if not local:
        return best_row, best_value
    starts = [pool[i] for i in order[:N_STARTS]]
    if portfolio:
        mean, var = predicted if predicted is not None else model.predict(cands)
        for other in portfolio:
            starts.append(pool[int(np.argmax(acquisition.values(other, mean[free], var[free])))])
    for start in starts:
        row, value = local_search(space, score, start, gradient)
        if (
            value > best_value
            and row_keys(row[None, :])[0] not in taken
            and _apart(row[None, :], avoid)[0]
        ):
            best_row, best_value = row, value
    return best_row, best_value


def _apart(rows: np.ndarray, avoid: np.ndarray | None) -> np.ndarray:
    """``(m,)`` whether each row is at least :data:`MIN_SEPARATION` from every ``avoid`` row."""
    if avoid is None or not len(avoid):
        return np.ones(len(rows), dtype=bool)
    d2 = ((rows[:, None, :] - avoid[None, :, :]) ** 2).sum(axis=-1)
    return np.asarray(d2.min(axis=1) >= MIN_SEPARATION**2)


def _gradient(
    space: SearchSpace, model: Surrogate, acq: Acquisition
) -> Callable[[np.ndarray], tuple[float, np.ndarray]] | None:
    predict_grad = getattr(model, "predict_grad", None)
    cont = np.flatnonzero(space.view.continuous)
    if predict_grad is None or not len(cont):
        return None

    def gradient(row: np.ndarray) -> tuple[float, np.ndarray]:
        mean, var, dmean, dvar = predict_grad(row[None, :], cont)
        value, d_mean, d_var = acquisition.value_and_grads(acq, mean, var)
        return float(value[0]), d_mean[0] * dmean[0] + d_var[0] * dvar[0]

    return gradient
