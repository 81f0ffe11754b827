"""Priors and bounds of the kernel hyper-parameters, in log space.

The hyper-parameters are ``theta = (log l_1 .. log l_d, log s, log noise)`` (lengthscales in units
of ``U``, signal variance and noise variance of the *standardised* objective). MAP estimation
(:func:`katib.suggestion.bayesopt.gp.fit`) adds :func:`log_prior` to the log marginal
likelihood:

* lengthscales: ``log l_j ~ N(sqrt(2) + ln(d) / 2, 3)``, the dimension-scaled prior of Hvarfner,
  Hellsten & Nardi (2024, "Vanilla Bayesian optimization performs great in high dimensions",
  section 4): the prior median grows like ``sqrt(d)``, so in ten dimensions the model does not
  start from a function that wiggles in every direction, which is what makes plain GP-EI fail in
  higher dimensions;
* signal variance: ``log s ~ N(0, 1.5^2)`` (the outputs are standardised, so ``s`` near 1);
* noise variance: ``log noise ~ N(-4, 1)`` (Hvarfner et al.: small, but learnable), bounded
  below by ``MIN_NOISE`` so the Cholesky factor of a deterministic objective stays well
  conditioned.

Bounds keep L-BFGS-B away from degenerate fits (lengthscales of a thousandth of the range or a
thousand ranges).
"""

from __future__ import annotations

import math

import numpy as np

#: Smallest noise variance (standardised units).
MIN_NOISE = 1e-6
_LOG_L_BOUNDS = (math.log(1e-3), math.log(1e3))
_LOG_S_BOUNDS = (math.log(1e-3), math.log(1e3))
_LOG_NOISE_BOUNDS = (math.log(MIN_NOISE), math.log(2.0))
_LOG_L_SIGMA = math.sqrt(3.0)
_LOG_S_MU, _LOG_S_SIGMA = 0.0, 1.5
_LOG_NOISE_MU, _LOG_NOISE_SIGMA = -4.0, 1.0


def lengthscale_mu(dim: int) -> float:
    """Prior mean of ``log l`` in ``dim`` dimensions (Hvarfner et al. 2024)."""
    return math.sqrt(2.0) + 0.5 * math.log(max(dim, 1))


def prior_means(dim: int) -> np.ndarray:
    """``theta`` ``(dim + 2,)`` at the prior means."""
    return np.concatenate([np.full(dim, lengthscale_mu(dim)), [_LOG_S_MU, _LOG_NOISE_MU]])


def bounds(dim: int) -> list[tuple[float, float]]:
    """L-BFGS-B bounds for ``theta``."""
    return [_LOG_L_BOUNDS] * dim + [_LOG_S_BOUNDS, _LOG_NOISE_BOUNDS]


def log_prior(theta: np.ndarray) -> tuple[float, np.ndarray]:
    """Log prior density of ``theta`` ``(d + 2,)`` (up to a constant) and its gradient."""
    dim = theta.size - 2
    mu = prior_means(dim)
    sigma = np.concatenate([np.full(dim, _LOG_L_SIGMA), [_LOG_S_SIGMA, _LOG_NOISE_SIGMA]])
    z = (theta - mu) / sigma
    return float(-0.5 * np.sum(z * z)), -z / sigma
