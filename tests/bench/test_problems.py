"""Problem definitions: documented optima, mixed optimum by construction, noise and ML tasks."""

from __future__ import annotations

import numpy as np
import pytest

from katib.bench import problems
from katib.bench.synthetic import FUNCTIONS

SYNTHETIC = [n for n in problems.names() if problems.get(n).kind in ("synthetic", "noisy")]

# Published minimisers have 6 significant digits, so f(x*) matches f* to about 1e-5.
TOLERANCE = 1e-4


CASES = [
    (n, d)
    for n, f in FUNCTIONS.items()
    for d in (problems.SCALABLE_DIMS if f.scalable else (len(f.bounds),))
]


@pytest.mark.parametrize(("name", "dim"), CASES)
def test_function_value_at_documented_minimiser(name: str, dim: int) -> None:
    fn = FUNCTIONS[name]
    x = np.array([fn.minimiser(dim)])
    assert fn.fn(x)[0] == pytest.approx(fn.minimum(dim), abs=TOLERANCE)
    for (lo, hi), xi in zip(fn.box(dim), x[0], strict=True):
        assert lo <= xi <= hi


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("branin", 0.397887),
        ("hartmann3", -3.86278),
        ("hartmann6", -3.32237),
        ("rosenbrock-5d", 0.0),
        ("ackley-10d", 0.0),
        ("levy-2d", 0.0),
        ("styblinski-tang-5d", -39.16617 * 5),
    ],
)
def test_problem_optimum_matches_literature(name: str, expected: float) -> None:
    problem = problems.get(name)
    assert problem.optimum == pytest.approx(expected, abs=1e-4)
    assert problem.optimiser is not None
    value = problem.evaluate(problem.optimiser, np.random.default_rng(0)).true_value
    assert value == pytest.approx(problem.optimum, abs=TOLERANCE)


def test_branin_has_three_minimisers() -> None:
    x = np.array([[-np.pi, 12.275], [np.pi, 2.275], [9.42478, 2.475]])
    np.testing.assert_allclose(FUNCTIONS["branin"].fn(x), 0.397887, atol=1e-5)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_no_random_point_beats_the_optimum(name: str) -> None:
    problem = problems.get(name)
    rng = np.random.default_rng(1)
    values = [problem.evaluate(p, rng).true_value for p in problem.space.sample(rng, 500)]
    assert problem.optimum is not None
    assert min(values) >= problem.optimum - 1e-9


@pytest.mark.parametrize("name", ["mixed", "mixed-14"])
def test_mixed_optimum_by_construction(name: str) -> None:
    problem = problems.get(name)
    assert problem.optimum == 0.0 and problem.optimiser is not None
    # The optimiser is a feasible Katib assignment: it survives format -> parse unchanged.
    parsed = problem.space.parse(dict(problem.space.format(problem.optimiser)))
    rng = np.random.default_rng(0)
    assert problem.evaluate(parsed, rng).true_value == pytest.approx(0.0, abs=1e-12)
    values = [problem.evaluate(p, rng).true_value for p in problem.space.sample(rng, 2000)]
    assert min(values) > 0.0
    kinds = {p.type.value for p in problem.space.params}
    assert kinds == {"double", "int", "categorical", "discrete"}
    assert any(p.distribution.is_log for p in problem.space.params)


def test_mixed_categorical_changes_best_learning_rate() -> None:
    problem = problems.get("mixed")
    assert problem.optimiser is not None
    rng = np.random.default_rng(0)
    sgd = {**problem.optimiser, "optimizer": "sgd"}
    assert problem.evaluate({**sgd, "lr": 3e-2}, rng).value < problem.evaluate(sgd, rng).value


def test_noisy_problem_observes_noise_but_reports_true_value() -> None:
    noisy, clean = problems.get("branin-noisy"), problems.get("branin")
    point = noisy.space.sample(np.random.default_rng(0), 1)[0]
    a = noisy.evaluate(point, np.random.default_rng(5))
    b = noisy.evaluate(point, np.random.default_rng(5))
    assert a == b  # seeded noise
    assert a.true_value == clean.evaluate(point, np.random.default_rng(0)).value
    assert a.value != a.true_value


@pytest.mark.parametrize(
    "name", ["svc-digits", "svc-breast-cancer", "hgb-breast-cancer", "mlp-digits"]
)
def test_ml_task_is_deterministic_and_bounded(name: str) -> None:
    pytest.importorskip("sklearn")
    problem = problems.get(name)
    assert problem.kind == "ml" and problem.optimum is None
    point = problem.space.sample(np.random.default_rng(3), 1)[0]
    first = problem.evaluate(point, np.random.default_rng(0))
    second = problem.evaluate(point, np.random.default_rng(1))
    assert first == second
    assert 0.0 <= first.value <= 1.0


def test_suites_resolve_to_known_problems() -> None:
    known = set(problems.names())
    for name in problems.SUITES:
        suite = problems.suite(name)
        assert suite.problems and set(suite.problems) <= known
    assert set(problems.suite("full").problems) == known
    with pytest.raises(KeyError, match="available"):
        problems.get("nope")
