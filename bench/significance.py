"""Significance tests shared by the quality studies (``tpe``, ``gp-study``, ``cmaes``).

Each study compares two contenders per (problem, budget) cell with one-sided Mann-Whitney U
tests over seeds, in both directions, and counts the cells that stay significant after Holm's
step-down correction for the number of cells (about ``alpha * m`` of ``m`` cells are expected
to pass without it when the two are equal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def one_sided(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float]:
    """``(p that a is smaller, p that b is smaller)``: one-sided Mann-Whitney U p-values.

    Two samples with the same values (e.g. both at the optimum every time) give ``(1.0, 1.0)``:
    nothing to tell apart, where scipy would report a meaningless 0.5.
    """
    from scipy.stats import mannwhitneyu

    if np.array_equal(np.sort(a), np.sort(b)):
        return 1.0, 1.0
    return (
        float(mannwhitneyu(a, b, alternative="less").pvalue),
        float(mannwhitneyu(a, b, alternative="greater").pvalue),
    )


def holm_rejects(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise ``alpha``.

    The ``k``-th smallest p-value (from 0) is compared with ``alpha / (m - k)``; the first that
    is not below it stops the procedure, and it and every larger one are kept.
    """
    rejected = [False] * len(p_values)
    for k, index in enumerate(np.argsort(p_values, kind="stable")):
        if p_values[index] >= alpha / (len(p_values) - k):
            break
        rejected[int(index)] = True
    return rejected


def holm(p_values: Sequence[float], alpha: float = 0.05) -> int:
    """How many hypotheses Holm's step-down procedure rejects at family-wise ``alpha``."""
    return sum(holm_rejects(p_values, alpha))


def mark(p: float, survives_holm: bool, alpha: float = 0.05) -> str:
    """``p`` for a table: ``*`` when below ``alpha``, ``**`` when it also survives Holm."""
    return f"{p:.3g}" + ("**" if survives_holm else "*" if p < alpha else "")
