"""Parzen estimators over the unit hypercube, the density models of TPE.

TPE (Bergstra et al. 2011, "Algorithms for hyper-parameter optimization", section 4; Watanabe
2023, "Tree-structured Parzen estimator: understanding its algorithm components", section 2)
models the good observations with a mixture ``l(x)`` and the others with ``g(x)``:

    p(x) = sum_i w_i k_i(x) + w_prior k_prior(x),   sum of weights = 1          (Watanabe eq. 4)

Everything here works on the encoded space ``U`` of :mod:`katib.suggestion.space`, where each
numeric parameter is already warped (log) and mapped through its prior CDF onto ``[0, 1]``:

* a numeric column uses truncated Gaussian kernels on ``[0, 1]``; continuous columns have the
  density ``phi((u - mu) / sigma) / (sigma Z)``, ``Z = Phi((1 - mu) / sigma) - Phi(-mu / sigma)``;
  stepped columns (ints, stepped doubles) use the kernel's mass over the value's cell,
  ``(Phi((hi - mu) / sigma) - Phi((lo - mu) / sigma)) / Z`` (the cells tile ``[0, 1]``);
* a list column (discrete, categorical) uses Aitchison-Aitken-like kernels over indices: the
  observed index gets ``1 + prior_weight / m`` and every index ``prior_weight / m``, renormalised;
* the prior component is ``N(0.5, 1)`` truncated to ``[0, 1]`` (nearly the uniform prior) and
  the uniform distribution over list indices.

Arrays and shapes (``n`` observations, ``m = n + 1`` kernels with the prior last, ``c``
candidates, ``d`` columns, ``dn`` numeric columns, ``k_j`` values of list column ``j``):

* ``obs`` ``(n, d)``: observations in ``U``; ``obs_weights`` ``(n,)``: their raw weights;
* ``log_weights`` ``(m,)``: log mixture weights;
* ``mus``, ``sigmas``, ``log_z`` ``(m, dn)``: kernel centres, bandwidths and log truncation mass;
* ``cat_log_probs[j]`` ``(m, k_j)``: log probabilities of the list kernels;
* ``u`` ``(c, d)``: candidates; ``lo``, ``hi`` ``(c, dn)``: their cells (stepped columns);
* :func:`log_pdf` returns ``(c,)`` for the joint density (multivariate TPE) or ``(c, d)`` for
  the per-column marginals (independent TPE).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

from katib.suggestion.space import SearchSpace

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: Optuna's magic clip: bandwidths are at least ``1 / min(100, n + 2)`` of the range.
_MAGIC_CLIP_CAP = 100.0
#: Bandwidth and centre of the prior kernel, as fractions of ``[0, 1]``.
_PRIOR_MU, _PRIOR_SIGMA = 0.5, 1.0


class Layout(NamedTuple):
    """Which columns of ``U`` are numeric, stepped or lists (built once per search space)."""

    numeric: np.ndarray  # (dn,) column indices of double/int parameters
    stepped: np.ndarray  # (dn,) bool: the numeric column has a step (int or stepped double)
    lists: np.ndarray  # (dl,) column indices of discrete/categorical parameters
    n_choices: np.ndarray  # (dl,) number of values of each list column

    @classmethod
    def of(cls, space: SearchSpace) -> Layout:
        """The layout of ``space``."""
        numeric = [j for j, p in enumerate(space.params) if p.is_numeric_range]
        lists = [j for j, p in enumerate(space.params) if not p.is_numeric_range]
        return cls(
            numeric=np.array(numeric, dtype=int),
            stepped=np.array([space.params[j].step is not None for j in numeric], dtype=bool),
            lists=np.array(lists, dtype=int),
            n_choices=np.array([len(space.params[j].choices) for j in lists], dtype=int),
        )


class Cells(NamedTuple):
    """Candidates snapped to feasible values, with the cells of their stepped columns."""

    u: np.ndarray  # (c, d) representative points: decode(u) is the candidate
    lo: np.ndarray  # (c, dn) lower cell edges (stepped columns; 0 elsewhere)
    hi: np.ndarray  # (c, dn) upper cell edges (stepped columns; 1 elsewhere)


class ParzenEstimator(NamedTuple):
    """A mixture of product kernels over ``U`` (Watanabe 2023, eq. 4)."""

    log_weights: np.ndarray  # (m,)
    mus: np.ndarray  # (m, dn)
    sigmas: np.ndarray  # (m, dn)
    log_z: np.ndarray  # (m, dn)
    cat_log_probs: tuple[np.ndarray, ...]  # (m, k_j) per list column


def default_weights(n: int) -> np.ndarray:
    """Optuna's observation weights, oldest first: the oldest ``n - 25`` ramp up from ``1 / n``.

    Observations beyond the newest 25 are linearly forgotten (Watanabe 2023, section 3.3).
    """
    if n < 25:
        return np.ones(n)
    return np.concatenate([np.linspace(1.0 / n, 1.0, num=n - 25), np.ones(25)])


def log_gauss_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, accurate in both tails and in the centre.

    Intervals right of zero are reflected to the left tail, where ``Phi`` keeps its relative
    precision; the few masses that underflow there are redone in log space.
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    flip = a > 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    mass = ndtr(hi) - ndtr(lo)
    with np.errstate(divide="ignore"):
        out = np.log(mass)
    tiny = mass < 1e-250
    if tiny.any():
        lo_t, hi_t = log_ndtr(lo[tiny]), log_ndtr(hi[tiny])
        with np.errstate(divide="ignore"):
            out[tiny] = hi_t + np.log1p(-np.exp(lo_t - hi_t))
    return out


def bandwidths(obs: np.ndarray) -> np.ndarray:
    """Per-observation bandwidths ``(n, dn)``: the larger gap to a sorted neighbour.

    The neighbour rule of hyperopt and Optuna (Bergstra et al. 2011, section 4.1), with the
    bounds ``0`` and ``1`` as outer neighbours except for the outermost observations, then
    Optuna's "magic clip" to ``[1 / min(100, n + 2), 1]`` (Watanabe 2023, section 3.4).
    """
    n, dn = obs.shape
    if n == 0:
        return np.empty((0, dn))
    order = np.argsort(obs, axis=0, kind="stable")
    padded = np.vstack([np.zeros((1, dn)), np.take_along_axis(obs, order, 0), np.ones((1, dn))])
    gaps = np.diff(padded, axis=0)  # (n + 1, dn)
    sorted_sigmas = np.maximum(gaps[:-1], gaps[1:])
    if n >= 2:  # endpoints ignored for the outermost observations
        sorted_sigmas[0] = gaps[1]
        sorted_sigmas[-1] = gaps[-2]
    sigmas = np.empty_like(sorted_sigmas)
    np.put_along_axis(sigmas, order, sorted_sigmas, axis=0)
    return np.clip(sigmas, 1.0 / min(_MAGIC_CLIP_CAP, n + 2.0), 1.0)


def fit(
    layout: Layout, obs: np.ndarray, obs_weights: np.ndarray, prior_weight: float
) -> ParzenEstimator:
    """The Parzen estimator of ``obs`` ``(n, d)`` with raw weights ``obs_weights`` ``(n,)``."""
    n = obs.shape[0]
    weights = np.append(obs_weights, prior_weight) if n else np.ones(1)
    x = obs[:, layout.numeric]
    mus = np.vstack([x, np.full((1, x.shape[1]), _PRIOR_MU)])
    sigmas = np.vstack([bandwidths(x), np.full((1, x.shape[1]), _PRIOR_SIGMA)])
    cat_log_probs = []
    for col, k in zip(layout.lists, layout.n_choices, strict=True):
        probs = np.full((n + 1, k), prior_weight / (n + 1))
        probs[np.arange(n), _index(obs[:, col], k)] += 1.0
        cat_log_probs.append(np.log(probs / probs.sum(axis=1, keepdims=True)))
    return ParzenEstimator(
        log_weights=np.log(weights / weights.sum()),
        mus=mus,
        sigmas=sigmas,
        log_z=log_gauss_mass(-mus / sigmas, (1.0 - mus) / sigmas),
        cat_log_probs=tuple(cat_log_probs),
    )


def sample(
    est: ParzenEstimator, layout: Layout, rng: np.random.Generator, size: int, joint: bool
) -> np.ndarray:
    """``size`` draws ``(size, d)`` from the mixture (Bergstra et al. 2011, section 4.2).

    ``joint`` picks one kernel per draw for all columns (multivariate TPE); otherwise every
    column picks its own kernel, i.e. draws from the product of the marginals.
    """
    dn, dl = len(layout.numeric), len(layout.lists)
    cdf = np.cumsum(np.exp(est.log_weights))
    shape = (size, 1) if joint else (size, dn + dl)
    comp = np.searchsorted(cdf, rng.random(shape) * cdf[-1], side="right")
    comp = np.broadcast_to(np.minimum(comp, len(cdf) - 1), (size, dn + dl))
    u = np.empty((size, dn + dl))
    if dn:
        cols = np.arange(dn)
        mu, sigma = est.mus[comp[:, :dn], cols], est.sigmas[comp[:, :dn], cols]
        a, b = ndtr(-mu / sigma), ndtr((1.0 - mu) / sigma)
        z = ndtri(a + rng.random((size, dn)) * (b - a))
        u[:, layout.numeric] = np.clip(mu + sigma * z, 0.0, 1.0)
    for j, (col, k) in enumerate(zip(layout.lists, layout.n_choices, strict=True)):
        cum = np.cumsum(np.exp(est.cat_log_probs[j][comp[:, dn + j]]), axis=1)
        idx = (cum < rng.random((size, 1)) * cum[:, -1:]).sum(axis=1)
        u[:, col] = (np.minimum(idx, k - 1) + 0.5) / k
    return u


def log_pdf(est: ParzenEstimator, layout: Layout, cells: Cells, joint: bool) -> np.ndarray:
    """Log density of the candidates: ``(c,)`` if ``joint`` else per-column ``(c, d)``.

    Kernels are laid out ``(c, d, m)`` so that the mixture sums run over contiguous memory.
    """
    c = cells.u.shape[0]
    dn = len(layout.numeric)
    per_kernel = np.empty((c, dn + len(layout.lists), len(est.log_weights)))  # (c, d, m)
    if dn:
        per_kernel[:, layout.numeric, :] = _numeric_log_kernels(est, layout, cells)
    for j, col in enumerate(layout.lists):
        idx = _index(cells.u[:, col], layout.n_choices[j])
        per_kernel[:, col, :] = est.cat_log_probs[j][:, idx].T
    if joint:
        return _logsumexp(per_kernel.sum(axis=1) + est.log_weights, axis=-1)
    per_kernel += est.log_weights
    return _logsumexp(per_kernel, axis=-1)


def _numeric_log_kernels(est: ParzenEstimator, layout: Layout, cells: Cells) -> np.ndarray:
    """Log kernel densities ``(c, dn, m)`` of the numeric columns."""
    mus, sigmas, log_z = est.mus.T, est.sigmas.T, est.log_z.T  # (dn, m)
    z = (cells.u[:, layout.numeric][:, :, None] - mus) / sigmas
    out = -0.5 * z**2 - (_HALF_LOG_2PI + np.log(sigmas) + log_z)
    for i in np.flatnonzero(layout.stepped):
        # Stepped columns have few distinct (mu, sigma) pairs (observations sit on the grid,
        # many share the clipped bandwidth) and few distinct cells: compute each mass once.
        pairs, inverse = np.unique(
            np.column_stack([mus[i], sigmas[i]]), axis=0, return_inverse=True
        )
        edges, rows = np.unique(
            np.column_stack([cells.lo[:, i], cells.hi[:, i]]), axis=0, return_inverse=True
        )
        mu, sigma = pairs[:, 0], pairs[:, 1]
        mass = log_gauss_mass((edges[:, :1] - mu) / sigma, (edges[:, 1:] - mu) / sigma)
        out[:, i, :] = mass[np.ix_(rows.ravel(), inverse.ravel())] - log_z[i]
    return out


def snap(space: SearchSpace, layout: Layout, u: np.ndarray) -> Cells:
    """Round candidates ``(c, d)`` to feasible values and find their cells in ``U``."""
    u = np.clip(u, 0.0, 1.0).copy()
    c = u.shape[0]
    lo, hi = np.zeros((c, len(layout.numeric))), np.ones((c, len(layout.numeric)))
    for i in np.flatnonzero(layout.stepped):
        spec = space.params[layout.numeric[i]]
        assert spec.step is not None
        values = np.asarray(spec.decode(u[:, layout.numeric[i]]), dtype=float)
        u[:, layout.numeric[i]] = spec.encode(values)
        lo[:, i] = spec.encode(values - spec.step / 2)
        hi[:, i] = spec.encode(values + spec.step / 2)
    for col, k in zip(layout.lists, layout.n_choices, strict=True):
        u[:, col] = (_index(u[:, col], k) + 0.5) / k
    return Cells(u, lo, hi)


def _index(u: np.ndarray, k: int) -> np.ndarray:
    """List index of the encoded values ``u`` of a column with ``k`` values."""
    return np.minimum(np.floor(u * k), k - 1).astype(int)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak, axis)
