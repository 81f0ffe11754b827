"""Gaussian-process regression: MAP fit of the kernel hyper-parameters and the posterior.

The model of the standardised loss ``y`` ``(n,)`` at points ``x`` ``(n, d)`` of ``U`` is a
zero-mean GP with the kernel of :mod:`katib.suggestion.bayesopt.kernel` plus Gaussian noise:

    K = k(x, x) + noise I,   L L^T = K,   alpha = K^{-1} y
    log p(y | theta) = -y^T alpha / 2 - sum log L_ii - n log(2 pi) / 2       (R&W eq. 2.30)
    d log p / d theta_p = tr((alpha alpha^T - K^{-1}) dK/dtheta_p) / 2         (R&W eq. 5.9)
    mean(z) = k(z, x) alpha,   var(z) = s - k(z, x) K^{-1} k(x, z)              (R&W eq. 2.25-26)

:func:`fit` maximises ``log p(y | theta) + log prior(theta)`` (:mod:`.priors`) with L-BFGS-B from
the better of two deterministic starts (the prior means, and short lengthscales); if that run
fails numerically it retries from the other, and when both fail the prior means are used
(logged), so a request never fails because of a fit. Nothing here draws random numbers: the
same data always give the same hyper-parameters, which is what makes the per-experiment cache in
:mod:`.algorithm` a pure speed-up.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
from scipy import linalg, optimize

from katib.suggestion.bayesopt import kernel, priors

logger = logging.getLogger(__name__)

_JITTERS = (1e-9, 1e-7, 1e-5, 1e-3)
_FIT_MAXITER = 80
#: Relative tolerance on the objective: hyper-parameters beyond this precision move nothing.
_FIT_FTOL = 1e-6


class Params(NamedTuple):
    """Kernel hyper-parameters: ``weights`` ``(d,)`` = ``1 / l^2``, ``scale`` s, ``noise``."""

    weights: np.ndarray
    scale: float
    noise: float

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> Params:
        """From ``theta = (log l, log s, log noise)``."""
        d = theta.size - 2
        return cls(np.exp(-2.0 * theta[:d]), float(np.exp(theta[d])), float(np.exp(theta[d + 1])))

    def theta(self) -> np.ndarray:
        """Back to ``theta``."""
        return np.concatenate(
            [-0.5 * np.log(self.weights), [math.log(self.scale), math.log(self.noise)]]
        )


def _cholesky(k: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``k``, adding diagonal jitter until it succeeds."""
    scale = max(float(np.mean(np.diag(k))), 1e-12)
    for jitter in _JITTERS:
        try:
            shifted = k + jitter * scale * np.eye(len(k))
            return np.asarray(linalg.cholesky(shifted, lower=True, check_finite=False))
        except linalg.LinAlgError:
            continue
    raise linalg.LinAlgError("kernel matrix is not positive definite even with jitter")


def neg_log_posterior(
    theta: np.ndarray, sq: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """``-(log p(y | theta) + log prior(theta))`` and its gradient, for ``sq`` ``(d, n, n)``."""
    d, n = sq.shape[0], y.size
    p = Params.from_theta(theta)
    dist2 = kernel.r2(sq, p.weights)
    kf, dk = kernel.matern52_and_derivative(dist2, p.scale)
    chol = _cholesky(kf + p.noise * np.eye(n))
    alpha = linalg.cho_solve((chol, True), y, check_finite=False)
    nll = (
        0.5 * float(y @ alpha)
        + float(np.sum(np.log(np.diag(chol))))
        + 0.5 * n * math.log(2 * math.pi)
    )
    kinv = linalg.cho_solve((chol, True), np.eye(n), check_finite=False)
    a = np.outer(alpha, alpha) - kinv
    g = a * dk
    grad = np.empty(d + 2)
    # dK/dlog l_j = dk/dr^2 * (-2 w_j sq_j); the factor -1/2 of eq. 5.9 and the sign cancel.
    grad[:d] = p.weights * np.tensordot(sq, g, axes=([1, 2], [0, 1]))
    grad[d] = -0.5 * float(np.sum(a * kf))  # dK/dlog s = k
    grad[d + 1] = -0.5 * p.noise * float(np.trace(a))  # dK/dlog noise = noise I
    lp, dlp = priors.log_prior(theta)
    return nll - lp, grad - dlp


def fit(x: np.ndarray, y: np.ndarray, categorical: np.ndarray) -> Params:
    """MAP hyper-parameters for points ``x`` ``(n, d)`` and standardised losses ``y`` ``(n,)``."""
    d = x.shape[1]
    sq = kernel.sq_diffs(x, x, categorical)
    starts = [
        priors.prior_means(d),
        np.concatenate([np.full(d, math.log(0.3)), [0.0, math.log(1e-3)]]),
    ]
    # Start from whichever start point the data favour; the other is the fall-back.
    ranked = sorted(starts, key=lambda t: _safe_objective(t, sq, y))
    best: tuple[float, np.ndarray] | None = None
    for start in ranked:
        try:
            result = optimize.minimize(
                neg_log_posterior,
                start,
                args=(sq, y),
                jac=True,
                method="L-BFGS-B",
                bounds=priors.bounds(d),
                options={"maxiter": _FIT_MAXITER, "ftol": _FIT_FTOL},
            )
        except (linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            logger.info("GP fit from one start failed: %s", exc)
            continue
        if np.isfinite(result.fun):
            best = (float(result.fun), np.asarray(result.x))
            break
    if best is None:
        logger.warning("every GP fit failed; using the prior means of the hyper-parameters")
        return Params.from_theta(priors.prior_means(d))
    return Params.from_theta(best[1])


def _safe_objective(theta: np.ndarray, sq: np.ndarray, y: np.ndarray) -> float:
    try:
        value = neg_log_posterior(theta, sq, y)[0]
    except (linalg.LinAlgError, ValueError, FloatingPointError):
        return math.inf
    return value if math.isfinite(value) else math.inf


class Posterior:
    """The GP conditioned on ``x`` ``(n, d)``, ``y`` ``(n,)`` with fixed hyper-parameters."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, params: Params, categorical: np.ndarray
    ) -> None:
        self.x, self.y, self.params, self.categorical = x, y, params, categorical
        k = kernel.matern52(x, x, params.weights, params.scale, categorical)
        self.chol = _cholesky(k + params.noise * np.eye(len(x)))
        self.alpha = linalg.cho_solve((self.chol, True), y, check_finite=False)

    def with_points(self, z: np.ndarray, values: np.ndarray) -> Posterior:
        """This posterior with extra observations ``values`` ``(m,)`` at ``z`` ``(m, d)``."""
        return Posterior(
            np.vstack([self.x, z]), np.concatenate([self.y, values]), self.params, self.categorical
        )

    def predict(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance ``(m,)`` of the latent function at ``z`` ``(m, d)``."""
        p = self.params
        kz = kernel.matern52(z, self.x, p.weights, p.scale, self.categorical)
        mean = kz @ self.alpha
        v = linalg.solve_triangular(self.chol, kz.T, lower=True, check_finite=False)
        var = np.maximum(p.scale - np.sum(v * v, axis=0), 1e-12 * p.scale)
        return mean, var

    def predict_grad(
        self, z: np.ndarray, columns: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean, variance ``(m,)`` and their gradients ``(m, c)`` along ordered ``columns``."""
        p = self.params
        sq = kernel.sq_diffs(z, self.x, self.categorical)
        kz, dk = kernel.matern52_and_derivative(kernel.r2(sq, p.weights), p.scale)  # (m, n)
        kinv_kz = linalg.cho_solve((self.chol, True), kz.T, check_finite=False)  # (n, m)
        mean = kz @ self.alpha
        var = np.maximum(p.scale - np.sum(kz.T * kinv_kz, axis=0), 1e-12 * p.scale)
        # dk(z, x_i)/dz_j = dk/dr^2 * 2 w_j (z_j - x_ij)
        diff = z[:, None, columns] - self.x[None, :, columns]  # (m, n, c)
        dkdz = 2.0 * dk[:, :, None] * diff * p.weights[columns]
        dmean = np.einsum("mnc,n->mc", dkdz, self.alpha)
        dvar = -2.0 * np.einsum("mnc,nm->mc", dkdz, kinv_kz)
        return mean, var, dmean, dvar
