"""Learning-curve numerics behind the stopping rules; no protobuf, no gRPC.

A *curve* is a trial's objective values in report order, as a float64 array of shape ``(L,)``
already turned into *losses* (negated for a maximised objective, by the caller, in one place:
:func:`as_losses`). Step ``s`` (1-based) is the ``s``-th reported value. Every threshold below is
a loss: a trial is stopped at step ``s`` when its best loss so far is *strictly greater* than the
threshold that applies at ``s``.

Median stopping rule (Golovin et al. 2017, "Google Vizier", section 3.2.2): stop a trial at step
``s`` if its best objective by step ``s`` is strictly worse than the median, over completed
trials ``j``, of the running average ``ō_j(s) = mean(y_j[1..min(s, L_j)])`` — a completed trial
shorter than ``s`` (an early-stopped one) contributes the average of everything it reported.

Successive halving, asynchronous (ASHA; Li et al. 2020, Algorithm 2): rungs at steps
``r_k = min_resource * eta**k``; a trial continues past rung ``r`` only if its value at ``r`` (its
best loss by step ``r``) is among the top ``max(1, floor((n + 1) / eta))`` of the ``n`` trials
already at ``r`` plus itself.

Both rules produce ``(steps, thresholds)``: arrays of shape ``(m,)`` with increasing steps.
:func:`records` drops the thresholds that cannot bind (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_losses(values: Sequence[float] | np.ndarray, maximize: bool) -> np.ndarray:
    """``values`` as a float64 loss curve: negated for a maximised objective, NaNs dropped."""
    curve = np.asarray(values, dtype=np.float64).reshape(-1)
    curve = curve[~np.isnan(curve)]
    return -curve if maximize else curve


def best_so_far(curve: np.ndarray) -> np.ndarray:
    """Best (lowest) loss by each step, shape ``(L,)``."""
    return np.minimum.accumulate(curve) if curve.size else curve


def running_means(curves: Sequence[np.ndarray], last_step: int) -> np.ndarray:
    """``ō_j(s)`` for ``s = 1..last_step``: shape ``(n, last_step)``; a curve shorter than ``s``
    holds the mean of all its values. Every curve must be non-empty."""
    out = np.empty((len(curves), last_step), dtype=np.float64)
    for j, curve in enumerate(curves):
        length = min(curve.size, last_step)
        with np.errstate(invalid="ignore"):  # inf - inf in a diverging curve gives nan: kept
            means = np.cumsum(curve[:length]) / np.arange(1, length + 1)
        out[j, :length] = means
        out[j, length:] = np.mean(curve)  # mean over all of a shorter curve
    return out


def median_thresholds(
    completed: Sequence[np.ndarray], start_step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Median-rule thresholds for steps ``start_step .. max(start_step, longest curve)``.

    Past the longest completed curve every running average is frozen, so the last threshold
    holds for every later step. Empty curves are ignored; with none left the result is empty.
    """
    curves = [c for c in completed if c.size]
    if not curves:
        return np.empty(0, dtype=np.int64), np.empty(0)
    last = max(start_step, max(c.size for c in curves))
    means = running_means(curves, last)  # (n, last)
    medians = np.median(means[:, start_step - 1 :], axis=0)  # (last - start_step + 1,)
    steps = np.arange(start_step, last + 1, dtype=np.int64)
    return steps, medians


def rung_steps(min_resource: int, reduction_factor: int, last_step: int) -> np.ndarray:
    """Rung steps ``min_resource * reduction_factor**k`` up to ``last_step``, shape ``(m,)``."""
    steps = []
    step = min_resource
    while step <= last_step:
        steps.append(step)
        step *= reduction_factor
    return np.asarray(steps, dtype=np.int64)


def rung_threshold(at_rung: np.ndarray, reduction_factor: int) -> float:
    """The promotion threshold of a rung holding the values ``at_rung`` (shape ``(n,)``, n ≥ 1).

    A newcomer is promoted if it is among the best ``k = max(1, floor((n + 1) / eta))`` of the
    ``n + 1`` values, i.e. unless ``k`` others are strictly better: it is stopped when its value
    is strictly greater than the ``k``-th smallest of ``at_rung``.
    """
    k = max(1, (at_rung.size + 1) // reduction_factor)
    return float(np.partition(at_rung, k - 1)[k - 1])


def asha_thresholds(
    curves: Sequence[np.ndarray], min_resource: int, reduction_factor: int, min_trials: int
) -> tuple[np.ndarray, np.ndarray]:
    """ASHA thresholds at each rung that at least ``min_trials`` curves have reached."""
    longest = max((c.size for c in curves), default=0)
    steps, thresholds = [], []
    for step in rung_steps(min_resource, reduction_factor, longest):
        at_rung = np.asarray([np.min(c[:step]) for c in curves if c.size >= step])
        if at_rung.size >= min_trials:
            steps.append(int(step))
            thresholds.append(rung_threshold(at_rung, reduction_factor))
    return np.asarray(steps, dtype=np.int64), np.asarray(thresholds, dtype=np.float64)


def records(steps: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep only thresholds strictly below every earlier one (and finite).

    A controller that checks every rule with ``start_step <= s`` at each step ``s`` (any rule
    holding stops the trial) stops a trial at ``s`` iff ``best(s) > min(thresholds[:s])``. A
    threshold not below an earlier one therefore never decides anything, and dropping it changes
    no outcome. Without a refresh of the rules this evaluation stops a trial at the first step
    where ``best(s) > threshold(s)``: an earlier rule ``k`` holding at ``s`` would have held at
    ``k`` already, because ``best`` never increases.
    """
    keep = np.zeros(steps.size, dtype=bool)
    lowest = np.inf
    for i, value in enumerate(thresholds):
        if np.isfinite(value) and value < lowest:
            keep[i] = True
            lowest = value
    return steps[keep], thresholds[keep]
