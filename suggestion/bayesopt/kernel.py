"""Matérn-5/2 ARD kernel over the encoded space, with categorical columns as categories.

Points live in ``U`` (:mod:`katib.suggestion.space`): ordered columns (doubles, ints, stepped
doubles, discrete lists) as positions in ``[0, 1]``, categorical columns as the centre of their
value's cell. The kernel sees the two kinds differently:

    r^2(x, x') = sum_{j ordered} w_j (x_j - x'_j)^2  +  sum_{j categorical} w_j [x_j != x'_j]
    k(x, x')   = s (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)                (Rasmussen &
                                                                            Williams eq. 4.17)

with ``w_j = 1 / l_j^2`` (automatic relevance determination) and signal variance ``s``. Two
different categories are always at the same distance whatever their order in the list (a
Hamming distance, as in Optuna's GPSampler and CoCaBO's overlap kernel), so the model never
reads meaning into the order in which a user wrote the list.

Arrays: ``x`` ``(n, d)`` and ``z`` ``(m, d)`` points; ``weights`` ``(d,)`` the ``w_j``;
``sq`` ``(d, n, m)`` per-column squared differences (0/1 for categorical columns);
:func:`matern52` returns ``(n, m)``. The derivative ``dk / d(r^2)`` is what every gradient in
:mod:`katib.suggestion.bayesopt.gp` is built from:

    dk/d(r^2) = -(5 s / 6) (1 + sqrt(5) r) exp(-sqrt(5) r)

which is finite at ``r = 0``, so gradients need no special case for coinciding points.
"""

from __future__ import annotations

import math

import numpy as np

SQRT5 = math.sqrt(5.0)


def sq_diffs(x: np.ndarray, z: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Per-column squared differences ``(d, n, m)``; categorical columns give ``0`` or ``1``."""
    diff = x.T[:, :, None] - z.T[:, None, :]
    sq = diff * diff
    if categorical.any():
        sq[categorical] = (np.abs(diff[categorical]) > 1e-9).astype(float)
    return sq


def r2(sq: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted squared distance ``(n, m)`` from per-column squared differences."""
    return np.tensordot(weights, sq, axes=1)


def matern52_r2(dist2: np.ndarray, scale: float) -> np.ndarray:
    """Matérn-5/2 covariance for squared distances ``dist2``."""
    r = np.sqrt(np.maximum(dist2, 0.0))
    return scale * (1.0 + SQRT5 * r + (5.0 / 3.0) * dist2) * np.exp(-SQRT5 * r)


def dmatern52_dr2(dist2: np.ndarray, scale: float) -> np.ndarray:
    """``dk / d(r^2)`` of the Matérn-5/2 covariance, elementwise."""
    r = np.sqrt(np.maximum(dist2, 0.0))
    return -(5.0 / 6.0) * scale * (1.0 + SQRT5 * r) * np.exp(-SQRT5 * r)


def r2_pairs(
    x: np.ndarray, z: np.ndarray, weights: np.ndarray, categorical: np.ndarray
) -> np.ndarray:
    """Weighted squared distance ``(n, m)`` without the ``(d, n, m)`` tensor.

    Ordered columns use ``|a|^2 + |b|^2 - 2 a.b`` on coordinates scaled by ``sqrt(w)`` (one
    matrix product), categorical ones an equality test per column; the same values as
    ``r2(sq_diffs(...))`` up to rounding, several times faster for many candidates.
    """
    ordered = ~categorical
    root = np.sqrt(weights[ordered])
    a, b = x[:, ordered] * root, z[:, ordered] * root
    dist2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    np.maximum(dist2, 0.0, out=dist2)
    for j in np.flatnonzero(categorical):
        dist2 += weights[j] * (np.abs(x[:, j][:, None] - z[:, j][None, :]) > 1e-9)
    return dist2


def matern52_and_derivative(dist2: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Matérn-5/2 covariance and ``dk / d(r^2)`` together (one ``sqrt`` and one ``exp``)."""
    r = np.sqrt(np.maximum(dist2, 0.0))
    e = scale * np.exp(-SQRT5 * r)
    s5r = SQRT5 * r
    return (1.0 + s5r + (5.0 / 3.0) * dist2) * e, -(5.0 / 6.0) * (1.0 + s5r) * e


def matern52(
    x: np.ndarray, z: np.ndarray, weights: np.ndarray, scale: float, categorical: np.ndarray
) -> np.ndarray:
    """Covariance matrix ``(n, m)`` between the rows of ``x`` and ``z``."""
    return matern52_r2(r2_pairs(x, z, weights, categorical), scale)
