"""Behaviour specific to random, sobol and grid (the conformance suite covers the rest)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from katib.api.errors import InvalidArgument
from katib.api.trials import Direction, Trial, TrialState
from katib.suggestion.base import ExperimentInfo
from katib.suggestion.grid import GridSearch, GridSettings
from katib.suggestion.history import History
from katib.suggestion.random_search import RandomSearch, RandomSettings
from katib.suggestion.sobol import SobolSearch, SobolSettings
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace

D, I, CAT = ParameterType.DOUBLE, ParameterType.INT, ParameterType.CATEGORICAL


def info(*params: ParameterSpec, max_trials: int | None = None) -> ExperimentInfo:
    return ExperimentInfo("exp", SearchSpace(params), max_trial_count=max_trials)


def hist(points, state=TrialState.SUCCEEDED) -> History:
    return History(
        Direction.MINIMIZE,
        tuple(Trial(f"t{i}", p, state, 0.0) for i, p in enumerate(points)),
    )


def test_grid_order_is_lexicographic_and_skips_history():
    exp = info(ParameterSpec("a", I, low=0, high=1), ParameterSpec("b", CAT, choices=("x", "y")))
    grid = GridSearch(exp, GridSettings())
    assert grid.suggest(History(Direction.MINIMIZE), 10) == [
        {"a": 0, "b": "x"},
        {"a": 0, "b": "y"},
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
    ]
    taken = [{"a": 0, "b": "y"}]
    for state in (TrialState.SUCCEEDED, TrialState.PENDING, TrialState.FAILED):
        assert {"a": 0, "b": "y"} not in grid.suggest(hist(taken, state), 10)
        assert len(grid.suggest(hist(taken, state), 10)) == 3


def test_seeded_grid_is_a_permutation():
    exp = info(ParameterSpec("a", I, low=0, high=9), ParameterSpec("b", I, low=0, high=6))
    points = GridSearch(exp, GridSettings(random_state=3)).suggest(History(Direction.MINIMIZE), 70)
    assert len({(p["a"], p["b"]) for p in points}) == 70
    assert points[:5] != GridSearch(exp, GridSettings()).suggest(History(Direction.MINIMIZE), 5)


def test_grid_validation():
    with pytest.raises(InvalidArgument, match=r"'lr': grid search needs feasibleSpace\.step"):
        GridSearch.check(info(ParameterSpec("lr", D, low=0, high=1)), GridSettings())
    with pytest.raises(InvalidArgument, match=r"maxTrialCount \(12\) exceeds the 9 points"):
        GridSearch.check(info(ParameterSpec("n", I, low=1, high=9), max_trials=12), GridSettings())
    GridSearch.check(info(ParameterSpec("n", I, low=1, high=9), max_trials=9), GridSettings())


def test_grid_katib_example_has_45_points():
    exp = info(
        ParameterSpec.from_strings("lr", D, low="0.01", high="0.05", step="0.005"),
        ParameterSpec.from_strings("momentum", D, low="0.5", high="0.9", step="0.1"),
    )
    assert exp.space.cardinality == 45
    points = GridSearch(exp, GridSettings()).suggest(History(Direction.MINIMIZE), 100)
    assert len(points) == 45 and {"lr": 0.02, "momentum": 0.7} in points


def test_grid_handles_huge_grids_lazily():
    exp = info(*(ParameterSpec(f"p{i}", I, low=0, high=99) for i in range(6)))  # 10^12 points
    assert (
        len(GridSearch(exp, GridSettings(random_state=1)).suggest(History(Direction.MINIMIZE), 50))
        == 50
    )


def test_random_samples_log_uniform_prior():
    exp = info(ParameterSpec("lr", D, low=1e-5, high=1.0, distribution=Distribution.LOG_UNIFORM))
    algo = RandomSearch(exp, RandomSettings(random_state=0))
    x = [p["lr"] for p in algo.suggest(History(Direction.MINIMIZE), 4000)]
    assert stats.kstest(x, stats.loguniform(1e-5, 1.0).cdf).pvalue > 1e-4


def test_random_fills_a_nearly_exhausted_finite_space():
    exp = info(ParameterSpec("a", I, low=0, high=99))
    taken = [{"a": i} for i in range(95)]
    got = RandomSearch(exp, RandomSettings(random_state=0)).suggest(hist(taken), 10)
    assert sorted(p["a"] for p in got) == [95, 96, 97, 98, 99]


def test_unseeded_random_differs_between_calls():
    exp = info(ParameterSpec("x", D, low=0, high=1))
    algo = RandomSearch(exp, RandomSettings())
    assert algo.suggest(History(Direction.MINIMIZE), 3) != algo.suggest(
        History(Direction.MINIMIZE), 3
    )


def test_sobol_continues_one_sequence_across_calls():
    exp = info(ParameterSpec("x", D, low=0, high=1), ParameterSpec("y", D, low=0, high=1))
    algo = SobolSearch(exp, SobolSettings(random_state=5))
    whole = algo.suggest(History(Direction.MINIMIZE), 8)
    first = algo.suggest(History(Direction.MINIMIZE), 4)
    rest = algo.suggest(hist(first, TrialState.PENDING), 4)
    assert first + rest == whole
    # 8 scrambled Sobol points in 2-D put exactly 2 points in each quarter of the x axis
    xs = np.array([p["x"] for p in whole])
    assert np.bincount((xs * 4).astype(int), minlength=4).tolist() == [2, 2, 2, 2]


def test_sobol_without_seed_is_stable_per_experiment():
    space = (ParameterSpec("x", D, low=0, high=1),)
    a = SobolSearch(info(*space), SobolSettings()).suggest(History(Direction.MINIMIZE), 3)
    b = SobolSearch(info(*space), SobolSettings()).suggest(History(Direction.MINIMIZE), 3)
    other = ExperimentInfo("another", SearchSpace(space))
    c = SobolSearch(other, SobolSettings()).suggest(History(Direction.MINIMIZE), 3)
    assert a == b and a != c


def test_sobol_never_repeats_a_remaining_trial_when_one_is_dropped():
    exp = info(ParameterSpec("x", D, low=0, high=1), ParameterSpec("y", D, low=0, high=1))
    algo = SobolSearch(exp, SobolSettings(random_state=3))
    first = algo.suggest(History(Direction.MINIMIZE), 4)
    kept = [p for i, p in enumerate(first) if i != 1]  # Katib stops sending a trial
    again = algo.suggest(hist(kept, TrialState.PENDING), 2)
    assert not [p for p in again if p in kept]


def test_unseeded_sobol_near_exhaustion_is_deterministic():
    exp = info(ParameterSpec("a", I, low=0, high=999))
    taken = [{"a": i} for i in range(1000) if i not in (17, 150, 199, 500, 733)]
    answers = {
        tuple(p["a"] for p in SobolSearch(exp, SobolSettings()).suggest(hist(taken), 2))
        for _ in range(4)
    }
    assert len(answers) == 1


def test_grid_beyond_two_to_the_63_points():
    exp = info(*(ParameterSpec(f"p{i}", D, low=0.0001, high=1, step=0.0001) for i in range(5)))
    assert exp.space.cardinality == 10_000**5
    got = GridSearch(exp, GridSettings(random_state=1)).suggest(History(Direction.MINIMIZE), 3)
    assert len(got) == 3 and all(0.0001 <= v <= 1 for p in got for v in p.values())


def test_grid_with_ten_million_values_does_not_enumerate():
    exp = info(ParameterSpec("n", I, low=0, high=9_999_999))
    got = GridSearch(exp, GridSettings()).suggest(hist([{"n": 0}, {"n": 1}]), 3)
    assert got == [{"n": 2}, {"n": 3}, {"n": 4}]


def test_values_never_exceed_max_on_huge_integer_ranges():
    spec = ParameterSpec.from_strings("seed", I, low="0", high="4294967295")
    assert spec.cardinality == 2**32 and spec.decode(np.array([1.0])) == [4294967295]


def test_history_values_snap_to_the_grid_or_are_rejected():
    spec = ParameterSpec.from_strings("lr", D, low="0.01", high="0.05", step="0.005")
    assert spec.parse("0.019999999999999997") == 0.02  # Katib's own grid artefact
    with pytest.raises(ValueError, match="outside"):
        spec.parse("0.5")
