"""The significance helpers the quality studies share, checked by hand and against scipy."""

from __future__ import annotations

import pytest

from katib.bench.significance import holm, holm_rejects, mark, one_sided


def test_holm_steps_down_from_the_smallest_p() -> None:
    # 0.001 < 0.05/3, then 0.03 >= 0.05/2 stops: only the first is rejected.
    assert holm_rejects([0.04, 0.001, 0.03]) == [False, True, False]
    assert holm([0.001, 0.01, 0.04]) == 3  # 0.001 < 0.05/3, 0.01 < 0.05/2, 0.04 < 0.05/1
    assert holm([0.03, 0.5]) == 0  # 0.03 >= 0.05/2
    assert holm([0.025, 0.5], alpha=0.1) == 1
    assert holm_rejects([]) == []


def test_one_sided_tests_both_directions() -> None:
    scipy = pytest.importorskip("scipy.stats")
    small, large = [0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9, 1.0]
    p_small, p_large = one_sided(small, large)
    assert p_small == pytest.approx(scipy.mannwhitneyu(small, large, alternative="less").pvalue)
    assert p_small < 0.01 < 0.99 < p_large
    assert one_sided(large, small) == (p_large, p_small)


def test_identical_samples_are_not_told_apart() -> None:
    assert one_sided([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]) == (1.0, 1.0)


def test_mark_flags_significance_and_holm() -> None:
    assert mark(0.2, False) == "0.2"
    assert mark(0.04, False) == "0.04*"
    assert mark(0.001, True) == "0.001**"
