"""The rules' numerics against hand-computed values and a naive re-implementation."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from katib.earlystopping import curves as cv
from katib.earlystopping.algorithms import (
    Asha,
    AshaSettings,
    MedianStop,
    MedianStopSettings,
    make_rules,
)
from katib.earlystopping.rules import Comparison, Rule, RuleEvaluator, Semantics, for_semantics

# Completed trials (losses). d was early-stopped after two steps.
A, B, C, D = [4, 2, 1, 1], [6, 4, 3, 2], [2, 2, 2, 2], [9, 7]
# Running means, by hand:  a 4 3 7/3 2 | b 6 5 13/3 3.75 | c 2 2 2 2 | d 9 8 8 8 (mean of all).
# Medians of four values (mean of the middle two):
HAND_MEDIANS = [(4 + 6) / 2, (3 + 5) / 2, (7 / 3 + 13 / 3) / 2, (2 + 3.75) / 2]


def arrays(*curves: list[float]) -> list[np.ndarray]:
    return [np.asarray(c, dtype=float) for c in curves]


def test_median_thresholds_match_hand_computed_medians_not_means():
    steps, medians = cv.median_thresholds(arrays(A, B, C, D), start_step=1)
    assert steps.tolist() == [1, 2, 3, 4]
    assert medians == pytest.approx(HAND_MEDIANS)
    # Katib's medianstop would use the mean: 3.9375 at step 4, not 2.875.
    assert np.mean([2, 3.75, 2, 8]) == pytest.approx(3.9375) != medians[-1]


def test_an_early_stopped_trial_counts_with_the_mean_of_what_it_reported():
    means = cv.running_means(arrays(D), last_step=4)
    assert means.tolist() == [[9.0, 8.0, 8.0, 8.0]]


def test_start_step_beyond_every_curve_gives_one_threshold_from_final_means():
    steps, medians = cv.median_thresholds(arrays([1, 2], [3, 4], [5, 6]), start_step=5)
    assert steps.tolist() == [5] and medians.tolist() == [3.5]


def test_median_stop_needs_min_trials_required_non_empty_curves():
    algo = MedianStop(MedianStopSettings(min_trials_required=3, start_step=2))
    two = {"a": np.array(A, float), "b": np.array(B, float), "e": np.empty(0)}
    steps, _ = algo.thresholds(two)
    assert steps.size == 0
    steps, limits = algo.thresholds(dict(zip("abcd", arrays(A, B, C, D), strict=True)))
    assert steps.tolist() == [2, 3, 4] and limits == pytest.approx(HAND_MEDIANS[1:])


def test_records_drop_thresholds_that_cannot_bind():
    steps, limits = cv.records(np.arange(1, 6), np.array([2.0, 3.0, 1.5, 1.5, np.inf]))
    assert steps.tolist() == [1, 3] and limits.tolist() == [2.0, 1.5]


def test_rung_thresholds_by_hand():
    curves = arrays([5, 4, 3, 2], [3, 3, 1, 1], [4, 2], [6])
    # eta 2: rung 1 holds 5 3 4 6 (n=4, top max(1, 5//2)=2 -> 4); rung 2 holds 4 3 2 (k=2 -> 3);
    # rung 4 holds 2 1 (k=max(1, 3//2)=1 -> 1).
    steps, limits = cv.asha_thresholds(curves, 1, 2, 2)
    assert steps.tolist() == [1, 2, 4] and limits.tolist() == [4.0, 3.0, 1.0]
    # eta 3: rungs 1 (k=max(1, 5//3)=1 -> 3) and 3 (values 3 1 -> 1).
    steps, limits = cv.asha_thresholds(curves, 1, 3, 2)
    assert steps.tolist() == [1, 3] and limits.tolist() == [3.0, 1.0]
    # min_trials 3: rung 4 (two trials) gives no threshold.
    steps, _ = cv.asha_thresholds(curves, 1, 2, 3)
    assert steps.tolist() == [1, 2]
    # min_resource 2: rungs 2 and 4.
    steps, _ = cv.asha_thresholds(curves, 2, 2, 2)
    assert steps.tolist() == [2, 4]


def test_a_tie_with_the_rung_threshold_is_promoted():
    assert cv.rung_threshold(np.array([1.0, 1.0, 2.0]), 2) == 1.0
    rule = Rule("loss", 1.0, Comparison.GREATER, 1)
    assert not rule.holds(1.0) and rule.holds(1.0000001)


def test_make_rules_in_the_objectives_direction():
    steps, limits = np.array([1, 2, 3]), np.array([-0.5, -0.7, -0.6])  # losses of accuracy
    rules = make_rules("accuracy", True, steps, limits)
    assert rules == [
        Rule("accuracy", 0.5, Comparison.LESS, 1),
        Rule("accuracy", 0.7, Comparison.LESS, 2),
    ]
    assert for_semantics(rules, Semantics.KATIB) == rules[:1]
    assert make_rules("loss", False, np.array([4]), np.array([0.0]))[0].comparison is (
        Comparison.GREATER
    )


def test_evaluator_stops_at_the_first_step_below_the_median():
    algo = MedianStop(MedianStopSettings(min_trials_required=1, start_step=1))
    done = dict(zip("abcd", arrays(A, B, C, D), strict=True))
    rules = make_rules("loss", False, *algo.thresholds(done))
    ev = RuleEvaluator(rules, "loss", maximize=False)
    # best so far 4.5 (<= 5), then still 4.5 (> 4): stops at step 2.
    assert [ev.add("loss", v) for v in (4.5, 4.6)] == [False, True]
    assert ev.stopped_by == rules[1]


def test_evaluator_counts_numeric_rows_of_the_metric_only():
    rules = [Rule("acc", 0.8, Comparison.LESS, 3)]
    ev = RuleEvaluator(rules, "acc", maximize=True)
    rows = [("acc", "0.5"), ("loss", "9"), ("acc", "unavailable"), ("acc", "nan"), ("acc", 0.9)]
    assert [ev.add(n, v) for n, v in rows] == [False] * 5  # 2 numeric reports; best 0.9
    ev.replace([Rule("acc", 0.95, Comparison.LESS, 3)])  # a refresh keeps counts and best
    assert ev.add("acc", 0.1) is True and ev.best == 0.9


def naive_median_stop_step(done: list[list[float]], new: list[float], start: int) -> int | None:
    """The Vizier rule written out directly: the first step the new trial is stopped."""
    for s in range(start, len(new) + 1):
        best = min(new[:s])
        averages = [statistics.fmean(c[: min(s, len(c))]) for c in done]
        if best > statistics.median(averages):
            return s
    return None


def naive_asha_stop_step(others: list[list[float]], new: list[float], r0: int, eta: int, m: int):
    step = r0
    while step <= len(new):
        at = [min(c[:step]) for c in others if len(c) >= step]
        if len(at) >= m:
            mine = min(new[:step])
            better = sum(v < mine for v in at)
            if better >= max(1, (len(at) + 1) // eta):
                return step
        step *= eta
    return None


def evaluator_stop_step(rules: list[Rule], new: list[float]) -> int | None:
    ev = RuleEvaluator(rules, "y", maximize=False)
    for s, v in enumerate(new, start=1):
        if ev.add("y", v):
            return s
    return None


@pytest.mark.parametrize("seed", range(40))
def test_rules_reproduce_the_online_rules_exactly(seed):
    rng = np.random.default_rng(seed)
    steps = int(rng.integers(3, 12))

    def curve(length: int) -> list[float]:
        level, rate = rng.uniform(0, 1), rng.uniform(0.05, 0.6)
        t = np.arange(1, length + 1)
        return list(np.round(level + np.exp(-rate * t) + rng.normal(0, 0.05, length), 3))

    done = [curve(int(rng.integers(1, steps + 1))) for _ in range(int(rng.integers(1, 8)))]
    new = curve(steps)
    start = int(rng.integers(1, 5))
    algo = MedianStop(MedianStopSettings(min_trials_required=1, start_step=start))
    losses = {str(i): np.asarray(c) for i, c in enumerate(done)}
    rules = make_rules("y", False, *algo.thresholds(losses))
    assert evaluator_stop_step(rules, new) == naive_median_stop_step(done, new, start)

    eta, r0 = int(rng.integers(2, 4)), int(rng.integers(1, 3))
    asha = Asha(AshaSettings(min_resource=r0, reduction_factor=eta, min_trials_required=1))
    rules = make_rules("y", False, *asha.thresholds(losses))
    assert evaluator_stop_step(rules, new) == naive_asha_stop_step(done, new, r0, eta, 1)


@pytest.mark.parametrize("seed", range(30))
def test_evaluator_equals_checking_every_rule(seed):
    rng = np.random.default_rng(seed)
    comparisons = list(Comparison)
    rules = [
        Rule(
            str(rng.choice(["y", "z"])),
            float(rng.integers(0, 10)),
            comparisons[int(rng.integers(0, 3))],
            int(rng.integers(0, 8)),
        )
        for _ in range(int(rng.integers(1, 12)))
    ]
    maximize = bool(rng.integers(0, 2))
    ev = RuleEvaluator(rules, "y", maximize)
    counts: dict[str, int] = {}
    best = None
    for _ in range(15):
        name, value = str(rng.choice(["y", "z"])), float(rng.integers(0, 10))
        if name == "y":
            best = value if best is None else (max if maximize else min)(best, value)
            value = best
        counts[name] = counts.get(name, 0) + 1
        expected = any(
            r.name == name and r.start_step <= counts[name] and r.holds(value) for r in rules
        )
        assert ev.add(name, value) is expected
        if expected:
            assert ev.stopped_by is not None and ev.stopped_by.holds(value)
            break
