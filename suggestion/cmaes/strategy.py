"""The (mu/mu_w, lambda)-CMA-ES on numpy: one immutable state, ``sample`` and ``tell``.

Equation numbers refer to N. Hansen, "The CMA Evolution Strategy: A Tutorial",
arXiv:1604.00772 (Appendix A, "Algorithm summary" and Table 1). Integer and stepped dimensions
use the margin of Hamano, Saito, Nomura and Shirakawa, "CMA-ES with Margin" (GECCO 2022);
categorical parameters use a categorical distribution updated with the same ranking, as in
CatCMA (Hamano et al., GECCO 2024), with a probability floor playing the margin's role.

Arrays (``n`` numeric dimensions, ``lam`` = lambda):

* ``mean`` ``(n,)`` in the encoded unit cube, ``sigma`` a float, ``cov`` ``(n, n)``;
* ``p_sigma``, ``p_c`` ``(n,)`` evolution paths; ``eig_b`` ``(n, n)`` eigenvectors and
  ``eig_d`` ``(n,)`` square roots of the eigenvalues of ``cov`` (``C = B D^2 B^T``);
* ``x`` ``(lam, n)`` samples as the CMA sees them (``m + sigma * y``), ``scale`` ``(n,)`` the
  margin's per-dimension widening of the *evaluated* samples (1 for continuous dimensions);
* ``probs`` one ``(k_j,)`` probability vector per categorical parameter; ``cats`` ``(lam, n_cat)``
  sampled category indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import ndtr, ndtri

#: Condition number of ``C`` beyond which it is regularised (and a restart is due).
MAX_CONDITION = 1e14
#: TolX in the unit cube: every coordinate's standard deviation and ``sigma p_c`` below this
#: (1e-4 of a parameter's encoded range: finer than any hyperparameter needs).
TOL_X = 1e-4
#: TolFun: the range of recent best values and of the current generation below this.
TOL_FUN = 1e-12


@dataclass(frozen=True)
class Params:
    """Strategy parameters for dimension ``n`` and population ``lam`` (Table 1, eq. 48-58)."""

    n: int
    lam: int
    mu: int
    weights: np.ndarray  # (lam,): positive for the best mu, negative (active CMA) for the rest
    mu_eff: float
    c_sigma: float
    d_sigma: float
    c_c: float
    c_1: float
    c_mu: float
    chi_n: float  # E||N(0, I)||

    @classmethod
    def build(cls, n: int, lam: int) -> Params:
        """Default parameters of the tutorial for ``n`` dimensions and ``lam`` samples."""
        mu = lam // 2
        raw = math.log((lam + 1) / 2) - np.log(np.arange(1, lam + 1))  # eq. (49)
        pos, neg = raw[raw >= 0], raw[raw < 0]
        mu_eff = float(pos.sum() ** 2 / (pos**2).sum())
        mu_eff_neg = float(neg.sum() ** 2 / (neg**2).sum()) if neg.size else 0.0
        alpha_cov = 2.0
        c_1 = alpha_cov / ((n + 1.3) ** 2 + mu_eff)  # eq. (57)
        c_mu = min(  # eq. (58); pycma adds 1/4 to the numerator, which measured worse here
            1 - c_1,
            alpha_cov * (mu_eff - 2 + 1 / mu_eff) / ((n + 2) ** 2 + alpha_cov * mu_eff / 2),
        )
        alpha_mu_neg = 1 + c_1 / c_mu  # eq. (50)
        alpha_mu_eff_neg = 1 + 2 * mu_eff_neg / (mu_eff + 2)  # eq. (51)
        alpha_posdef_neg = (1 - c_1 - c_mu) / (n * c_mu)  # eq. (52)
        neg_scale = min(alpha_mu_neg, alpha_mu_eff_neg, alpha_posdef_neg)
        weights = np.where(  # eq. (53)
            raw >= 0,
            raw / pos.sum(),
            neg_scale * raw / (-neg.sum() if neg.size else 1.0),
        )
        c_sigma = (mu_eff + 2) / (n + mu_eff + 5)  # eq. (55)
        d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma  # eq. (55)
        c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)  # eq. (56)
        chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))  # below eq. (44)
        return cls(n, lam, mu, weights, mu_eff, c_sigma, d_sigma, c_c, c_1, c_mu, chi_n)


def default_population(n: int) -> int:
    """``4 + floor(3 ln n)`` (eq. 48)."""
    return 4 + int(3 * math.log(n))


@dataclass(frozen=True)
class State:
    """One CMA-ES distribution; :func:`tell` returns the next one, never mutates."""

    params: Params
    mean: np.ndarray
    sigma: float
    cov: np.ndarray
    p_sigma: np.ndarray
    p_c: np.ndarray
    eig_b: np.ndarray
    eig_d: np.ndarray
    generation: int = 0
    probs: tuple[np.ndarray, ...] = ()
    #: Best loss of each of the last generations (for TolFun), newest last.
    best_history: tuple[float, ...] = ()

    @classmethod
    def initial(
        cls, params: Params, mean: np.ndarray, sigma: float, arities: tuple[int, ...] = ()
    ) -> State:
        """The start of a run: ``C = I``, zero paths, uniform categorical probabilities."""
        n = params.n
        return cls(
            params,
            np.asarray(mean, dtype=float).copy(),
            float(sigma),
            np.eye(n),
            np.zeros(n),
            np.zeros(n),
            np.eye(n),
            np.ones(n),
            probs=tuple(np.full(k, 1.0 / k) for k in arities),
        )

    def nbytes(self) -> int:
        """Memory held by the arrays (for byte-bounded caches)."""
        arrays = (self.mean, self.cov, self.p_sigma, self.p_c, self.eig_b, self.eig_d)
        return sum(a.nbytes for a in arrays) + sum(p.nbytes for p in self.probs) + 512

    def candidates(self, z: np.ndarray) -> np.ndarray:
        """``x = m + sigma * B D z`` for standard normal ``z`` ``(k, n)`` (eq. 38-40)."""
        y = (z * self.eig_d) @ self.eig_b.T
        return self.mean + self.sigma * y

    def marginal_std(self) -> np.ndarray:
        """``sigma * sqrt(diag C)``, shape ``(n,)``."""
        return self.sigma * np.sqrt(np.diag(self.cov))


def tell(
    state: State,
    x: np.ndarray,
    losses: np.ndarray,
    cats: np.ndarray | None = None,
    injected: np.ndarray | None = None,
) -> State:
    """The distribution after one generation: ``x`` ``(lam, n)``, ``losses`` ``(lam,)``.

    ``injected`` ``(lam,)`` marks solutions that were not sampled from this distribution (trials
    the replay could not match to a draw); their steps are shortened to a Mahalanobis length of
    at most ``sqrt(n) + 2n / (n + 2)`` (Hansen 2011, "Injecting external solutions into CMA-ES").
    Ties in ``losses`` keep the given order (a stable sort), so results are reproducible.
    """
    p = state.params
    n = p.n
    order = np.argsort(losses, kind="stable")
    y = (x[order] - state.mean) / state.sigma  # y_{i:lambda}
    b, d = state.eig_b, state.eig_d
    inv_sqrt = (b / d) @ b.T  # C^{-1/2}
    if injected is not None and injected.any():
        limit = math.sqrt(n) + 2 * n / (n + 2)
        norms = np.linalg.norm(y @ inv_sqrt.T, axis=1)
        shrink = np.where(injected[order], np.minimum(1.0, limit / np.maximum(norms, 1e-300)), 1)
        y = y * shrink[:, None]
    w = p.weights
    y_w = w[: p.mu] @ y[: p.mu]  # <y>_w, positive weights only
    mean = state.mean + state.sigma * y_w  # eq. (41), c_m = 1

    # Step-size control: cumulative step-size adaptation.
    p_sigma = (1 - p.c_sigma) * state.p_sigma + math.sqrt(
        p.c_sigma * (2 - p.c_sigma) * p.mu_eff
    ) * (inv_sqrt @ y_w)  # eq. (43)
    norm_ps = float(np.linalg.norm(p_sigma))
    sigma = state.sigma * math.exp(
        min(1.0, (p.c_sigma / p.d_sigma) * (norm_ps / p.chi_n - 1))
    )  # eq. (44), the exponent capped at 1 as in pycma

    # Covariance matrix adaptation: rank-one and rank-mu updates.
    g = state.generation + 1
    h_sigma = float(
        norm_ps / math.sqrt(1 - (1 - p.c_sigma) ** (2 * g)) < (1.4 + 2 / (n + 1)) * p.chi_n
    )  # Heaviside function below eq. (45)
    p_c = (1 - p.c_c) * state.p_c + h_sigma * math.sqrt(
        p.c_c * (2 - p.c_c) * p.mu_eff
    ) * y_w  # eq. (45)
    mahal_sq = np.sum((y @ inv_sqrt.T) ** 2, axis=1)
    w_circ = np.where(w >= 0, w, w * n / np.maximum(mahal_sq, 1e-300))  # eq. (46)
    delta_h = (1 - h_sigma) * p.c_c * (2 - p.c_c)  # delta(h_sigma) below eq. (47)
    rank_one = np.outer(p_c, p_c)
    rank_mu = (y.T * w_circ) @ y
    cov = (
        (1 + p.c_1 * delta_h - p.c_1 - p.c_mu * w.sum()) * state.cov
        + p.c_1 * rank_one
        + p.c_mu * rank_mu
    )  # eq. (47)
    cov = (cov + cov.T) / 2
    eig_b, eig_d, cov = _decompose(cov)

    probs = state.probs
    if probs and cats is not None:
        probs = _update_categorical(probs, cats[order], p)
    best = (*state.best_history, float(losses[order[0]]))[-_history_length(p) :]
    return State(p, mean, sigma, cov, p_sigma, p_c, eig_b, eig_d, g, probs, best_history=best)


def _decompose(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-decomposition ``C = B D^2 B^T``; ``C`` is regularised when ill-conditioned."""
    values, vectors = np.linalg.eigh(cov)
    top = max(float(values.max()), 1e-300)
    floor = top / MAX_CONDITION
    if values.min() < floor:
        values = np.maximum(values, floor)
        cov = (vectors * values) @ vectors.T
    return vectors, np.sqrt(values), cov


def _update_categorical(
    probs: tuple[np.ndarray, ...], cats: np.ndarray, p: Params
) -> tuple[np.ndarray, ...]:
    """Natural-gradient step of each categorical distribution towards the weighted winners.

    ``q <- q + eta * sum_{i <= mu} w_i (onehot(c_{i:lambda}) - q)`` with the positive weights
    (which sum to 1), then the floor of :func:`category_floor` (the categorical margin).
    """
    eta = categorical_rate(p, len(probs))
    w = p.weights[: p.mu]
    updated = []
    for j, q in enumerate(probs):
        hits = np.bincount(cats[: p.mu, j], weights=w, minlength=q.size)
        new = q + eta * (hits - q)
        updated.append(apply_floor(new, category_floor(q.size, p, len(probs))))
    return tuple(updated)


def categorical_rate(p: Params, n_cat: int) -> float:
    """Learning rate of the categorical distributions: ``mu_eff / (mu_eff + n_cat + 2)``."""
    return p.mu_eff / (p.mu_eff + n_cat + 2)


def category_floor(k: int, p: Params, n_cat: int) -> float:
    """Smallest probability of a category: ``min(1 / (2k), 1 / (lam (k - 1) n_cat))``."""
    if k <= 1:
        return 0.0
    return min(1 / (2 * k), 1 / (p.lam * (k - 1) * max(n_cat, 1)))


def apply_floor(q: np.ndarray, floor: float) -> np.ndarray:
    """``q`` raised to at least ``floor`` per entry, renormalised from the entries above it."""
    q = np.maximum(q, floor)
    excess = q - floor
    room = 1 - floor * q.size
    total = excess.sum()
    if total <= 0:
        return np.full(q.size, 1.0 / q.size)
    return floor + excess * (room / total)


def _history_length(p: Params) -> int:
    """Generations TolFun looks back: ``10 + ceil(30 n / lambda)``."""
    return 10 + math.ceil(30 * p.n / p.lam)


# -- margin (integer and stepped dimensions) ---------------------------------------------------


def margin_alpha(p: Params) -> float:
    """The margin ``alpha = 1 / (n lambda)`` (Hamano et al. 2022, section 4)."""
    return 1.0 / (p.n * p.lam)


def apply_margin(
    state: State, thresholds: tuple[np.ndarray | None, ...]
) -> tuple[State, np.ndarray]:
    """Keep every discretised dimension alive; return the state and the sampling ``scale``.

    ``thresholds[j]`` holds the sorted cell boundaries of dimension ``j`` in the unit cube
    (``None`` for continuous dimensions). With ``s = sigma sqrt(C_jj)`` the marginal standard
    deviation and ``alpha`` the margin:

    * in an edge cell (one neighbouring value), the mean moves towards the inner boundary until
      the probability of crossing it is ``alpha`` (the paper's mean correction);
    * in an inner cell, the evaluated samples of that dimension are widened by
      ``scale_j >= 1`` until each neighbour has probability ``alpha / 2`` at least (the paper's
      diagonal matrix ``A``, recomputed from the distribution so that it needs no state).

    The CMA itself is told the unwidened samples, as in the paper.
    """
    p = state.params
    alpha = margin_alpha(p)
    z_edge = float(ndtri(1 - alpha))
    z_side = float(ndtri(1 - alpha / 2))
    std = state.marginal_std()
    mean = state.mean.copy()
    scale = np.ones(p.n)
    for j, cuts in enumerate(thresholds):
        if cuts is None or cuts.size == 0:
            continue
        cell = int(np.searchsorted(cuts, mean[j]))
        if cell == 0:
            mean[j] = max(mean[j], cuts[0] - std[j] * z_edge)
        elif cell == cuts.size:
            mean[j] = min(mean[j], cuts[-1] + std[j] * z_edge)
        else:
            reach = max(mean[j] - cuts[cell - 1], cuts[cell] - mean[j])
            scale[j] = max(1.0, reach / (z_side * max(std[j], 1e-300)))
    return replace(state, mean=mean), scale


def crossing_probability(state: State, scale: np.ndarray, cuts: np.ndarray, j: int) -> float:
    """Probability that dimension ``j`` of an evaluated sample leaves the mean's cell."""
    m = float(state.mean[j])
    s = float(state.marginal_std()[j] * scale[j])
    cell = int(np.searchsorted(cuts, m))
    low = ndtr((cuts[cell - 1] - m) / s) if cell > 0 else 0.0
    high = ndtr((m - cuts[cell]) / s) if cell < cuts.size else 0.0
    return float(low + high)


# -- termination (for restarts) ----------------------------------------------------------------


def should_stop(state: State, sigma0: float, losses: np.ndarray) -> str | None:
    """The first termination criterion met after a generation with ``losses``, or ``None``.

    TolFun, TolX, NoEffectAxis, NoEffectCoord, ConditionCov and TolUpSigma, as in Hansen's
    restart strategies (and the cmaes package), with TolX absolute in the unit cube.
    """
    p = state.params
    history = state.best_history
    if len(history) >= _history_length(p):
        spread = max(*history, *losses) - min(*history, *losses)
        if spread < TOL_FUN:
            return "tolfun"
    std = state.marginal_std()
    if np.all(std < TOL_X) and np.all(state.sigma * np.abs(state.p_c) < TOL_X):
        return "tolx"
    axis = state.generation % p.n
    if np.all(
        state.mean == state.mean + 0.1 * state.sigma * state.eig_d[axis] * state.eig_b[:, axis]
    ):
        return "noeffectaxis"
    if np.any(state.mean == state.mean + 0.2 * std):
        return "noeffectcoord"
    if (state.eig_d.max() / state.eig_d.min()) ** 2 >= MAX_CONDITION:
        return "conditioncov"
    if state.sigma * state.eig_d.max() > 1e4 * sigma0:
        return "tolupsigma"
    return None
