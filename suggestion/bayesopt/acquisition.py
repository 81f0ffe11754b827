"""Acquisition functions on the GP posterior of a loss to minimise, in log form where it matters.

With posterior mean ``mu``, standard deviation ``sigma`` and incumbent ``best`` (the lowest
standardised loss observed), ``z = (best - mu) / sigma``:

* ``EI``: ``log EI = log sigma + log h(z)``, ``h(z) = phi(z) + z Phi(z)`` (Jones et al. 1998,
  eq. 15). ``h`` underflows for ``z < -38`` and loses every digit to cancellation well before
  that; :func:`log_h` follows Ament et al. (2023, "Unexpected improvements to expected
  improvement", eq. 9): for ``z <= -1`` it uses ``Phi(z) / phi(z) = sqrt(pi / 2) erfcx(-z /
  sqrt(2))`` so ``log h(z) = log phi(z) + log1p(z sqrt(pi / 2) erfcx(-z / sqrt(2)))``, and the
  asymptote ``log phi(z) - 2 log|z|`` beyond ``|z| > 1e3``. Candidates far from the incumbent
  therefore keep a usable, ordered acquisition value and gradient;
* ``PI``: ``log Phi(z)`` (Kushner 1964), via ``scipy.special.log_ndtr``;
* ``LCB``: ``-(mu - kappa sigma)``, ``kappa = 1.96`` (scikit-optimize's default, which Katib's
  users got);
* ``EIps`` / ``PIps`` (accepted by Katib's validation, but its service crashed on them): EI and
  PI, because Katib's trials carry no per-trial cost model worth fitting.

Every function returns the value to *maximise* and its derivatives with respect to ``mu`` and
``var`` (``(m,)`` arrays), which :mod:`katib.suggestion.bayesopt.optimize` chains with the GP's
gradients.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import erfcx, log_ndtr

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_HALF_PI = math.sqrt(math.pi / 2)
#: Beyond this ``|z|`` the asymptote of ``log h`` is exact to double precision.
_ASYMPTOTE = 1e3
LCB_KAPPA = 1.96
KINDS = ("EI", "PI", "LCB")


class Acquisition(NamedTuple):
    """Which acquisition, and the incumbent (standardised loss) it improves on."""

    kind: str
    best: float
    kappa: float = LCB_KAPPA


def log_phi(z: np.ndarray) -> np.ndarray:
    """Log density of the standard normal."""
    return -0.5 * z * z - _LOG_SQRT_2PI


def log_h(z: np.ndarray) -> np.ndarray:
    """``log(phi(z) + z Phi(z))``, accurate for every finite ``z``."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = np.log(np.exp(log_phi(zu)) + zu * np.exp(log_ndtr(zu)))
    middle = (~upper) & (z >= -_ASYMPTOTE)
    zm = z[middle]
    out[middle] = log_phi(zm) + np.log1p(zm * _SQRT_HALF_PI * erfcx(-zm / math.sqrt(2.0)))
    far = z < -_ASYMPTOTE
    zf = z[far]
    out[far] = log_phi(zf) - 2.0 * np.log(-zf)
    return out


def value_and_grads(
    acq: Acquisition, mean: np.ndarray, var: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Acquisition values ``(m,)`` to maximise and their derivatives by ``mean`` and ``var``."""
    sigma = np.sqrt(var)
    if acq.kind == "LCB":
        return -mean + acq.kappa * sigma, -np.ones_like(mean), acq.kappa / (2.0 * sigma)
    z = (acq.best - mean) / sigma
    if acq.kind == "PI":
        value = log_ndtr(z)
        dz = np.exp(log_phi(z) - value)  # d log Phi / dz
        return value, -dz / sigma, dz * (-z / sigma) / (2.0 * sigma)
    lh = log_h(z)
    value = np.log(sigma) + lh
    d_mean = -np.exp(log_ndtr(z) - lh) / sigma  # -Phi(z) / (sigma h(z))
    d_sigma = np.exp(log_phi(z) - lh) / sigma  # phi(z) / (sigma h(z))
    return value, d_mean, d_sigma / (2.0 * sigma)


def values(acq: Acquisition, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Acquisition values ``(m,)`` only."""
    sigma = np.sqrt(var)
    if acq.kind == "LCB":
        return -mean + acq.kappa * sigma
    z = (acq.best - mean) / sigma
    if acq.kind == "PI":
        return np.asarray(log_ndtr(z))
    return np.log(sigma) + log_h(z)


def hedge_probabilities(rewards: np.ndarray, eta: float = 1.0) -> np.ndarray:
    """GP-Hedge's choice probabilities ``softmax(eta * rewards)`` (Hoffman et al. 2011, alg. 2)."""
    logits = eta * (rewards - rewards.max())
    p = np.exp(logits)
    return p / p.sum()


def normalise_kind(kind: str) -> str:
    """Katib's per-second variants map to their plain counterparts (see the module doc)."""
    return {"EIps": "EI", "PIps": "PI"}.get(kind, kind)
