"""The multi-fidelity benchmark runs end to end on a tiny workload and prints its table."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest

from katib.bench import mf_problems, mf_sklearn, multifidelity, multifidelity_peers
from katib.bench.cli import main


def test_every_method_prints_a_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["multifidelity", "--seeds", "2", "--budget", "10"]) == 0
    out = capsys.readouterr().out
    for name in ("hyperband", "bohb", "asha", "random", "tpe", *multifidelity_peers.PEERS):
        assert re.search(rf"^\| {name} \| [\d.e-]+ \[", out, re.M), out


def test_cost_is_counted_in_resource_units() -> None:
    curve = multifidelity.run("hyperband", seed=0, budget=3 * multifidelity.R, batch=4)
    spent = [s for s, _ in curve]
    assert spent == sorted(spent) and spent[0] == 4  # the first batch: 4 trials at 1 epoch
    assert all(math.isfinite(r) and r >= 0 for _, r in curve)
    assert mf_problems.final_loss({"x0": (math.pi + 5) / 15, "x1": 2.275 / 15, "x2": 0.7}) == (
        pytest.approx(0, abs=1e-5)
    )


@pytest.mark.parametrize("name", multifidelity_peers.PEERS)
def test_optuna_pruner_peer_pays_for_the_epochs_it_ran(name: str) -> None:
    pytest.importorskip("optuna")
    from optuna.trial import TrialState as OptunaState

    R = multifidelity.R
    study = multifidelity_peers.make_study(name, seed=0, batch=4, max_resource=R)
    curve = multifidelity_peers.drive(study, seed=0, budget=8 * R, batch=4)
    spent = [s for s, _ in curve]
    assert spent == list(range(1, 8 * R + 1))  # one epoch of one worker at a time
    ran = {t.number: max(t.intermediate_values) for t in study.trials if t.intermediate_values}
    assert sum(ran.values()) == spent[-1]  # every epoch of every trial, pruned ones included
    pruned = [t for t in study.trials if t.state is OptunaState.PRUNED]
    done = [t for t in study.trials if t.state is OptunaState.COMPLETE]
    assert pruned and all(ran[t.number] < R for t in pruned)
    assert all(ran[t.number] == R for t in done)
    if name == "optuna:sha":  # pruned only at a rung: 1, 3 or 9 epochs
        assert {ran[t.number] for t in pruned} <= {1, 3, 9}
    assert sum(1 for t in study.trials if t.state is OptunaState.RUNNING) == 4
    regrets = [r for _, r in curve if math.isfinite(r)]
    assert regrets and all(r >= 0 for r in regrets)


def test_peers_and_ours_are_plotted_on_the_same_axis(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("matplotlib")
    out = tmp_path / "anytime.png"
    argv = ["multifidelity", "--seeds", "2", "--budget", "10", "--out", str(out)]
    for method in ("hyperband", "optuna:hyperband", "optuna:sha"):
        argv += ["--method", method]
    assert main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.pyplot as plt

    height, width = plt.imread(out).shape[:2]
    assert width > 400 and height > 300


def test_grid_holds_the_incumbent_and_nan_before_the_first_result() -> None:
    grid = np.array([1.0, 4.0, 5.0, 9.0])
    values = multifidelity.on_grid([(4.0, math.inf), (5.0, 0.3), (8.0, 0.1)], grid)
    assert np.isnan(values[:2]).all() and values[2:].tolist() == [0.3, 0.1]


def test_unknown_method_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["multifidelity", "--seeds", "1", "--method", "optuna:nope"]) != 0
    assert "--method" in capsys.readouterr().err


def test_resume_promoted_charges_only_the_epochs_beyond_the_parent() -> None:
    R = multifidelity.R
    full = multifidelity.run("hyperband", seed=0, budget=30 * R, batch=4)
    resumed = multifidelity.run("hyperband", seed=0, budget=30 * R, batch=4, resume=True)
    # the same schedule, but promotions are cheaper, so more batches fit in the budget
    assert len(resumed) > len(full)
    assert all(b[0] <= a[0] for a, b in zip(full, resumed, strict=False))
    assert any(b[0] < a[0] for a, b in zip(full, resumed, strict=False))


def test_a_sampler_suffix_sets_the_sampler_and_compare_prints_p_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("optuna")
    argv = ["multifidelity", "--seeds", "3", "--budget", "10", "--compare"]
    argv += ["--method", "asha+random", "--method", "optuna:sha"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\| asha\+random \| [\d.e-]+ \[", out, re.M), out
    assert re.search(r"^\| asha\+random \| optuna:sha \| [\d.e-]+ / [\d.e-]+ \|$", out, re.M), out
    built = multifidelity.build("hyperband+random", seed=0)
    assert built.settings.sampler == "random"
    assert multifidelity.build("hyperband", seed=0).settings.sampler == "multivariate-tpe"
    assert multifidelity.build("bohb+all-rungs", seed=0).settings.model == "all-rungs"
    assert multifidelity.build("bohb", seed=0).settings.model == "largest-rung"


@pytest.mark.parametrize("method", ["asha+bogus", "bohb+random", "random+tpe", "asha+all-rungs"])
def test_a_bad_sampler_suffix_is_an_error(method: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["multifidelity", "--seeds", "1", "--method", method]) != 0
    assert "--method" in capsys.readouterr().err


def test_versus_adds_one_of_ours_to_the_peers(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["multifidelity", "--seeds", "3", "--budget", "10", "--compare"]
    argv += ["--method", "bohb", "--method", "hyperband+random", "--versus", "hyperband+random"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\| bohb \| hyperband\+random \| [\d.e-]+ / [\d.e-]+ \|$", out, re.M), out
    assert not re.search(r"^\| hyperband\+random \| hyperband\+random \|", out, re.M), out
    argv = ["multifidelity", "--seeds", "1", "--method", "bohb", "--compare", "--versus", "asha"]
    assert main(argv) != 0
    assert "--versus 'asha' is not one of the methods run" in capsys.readouterr().err


# -- problems ------------------------------------------------------------------------------------

#: A 2 x 2 corner of mlp-grid's grid, so tests train 4 small models of 9 epochs, not 256 of 27.
SMALL_GRID = {
    "activation": ("relu",),
    "layers": (1,),
    "units": (16, 64),
    "learning_rate_init": (1e-3, 1e-2),
    "batch_size": (128,),
    "alpha": (1e-5,),
}


@pytest.fixture
def small_problems(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The scikit-learn problems at ``R = 9`` with a 4-configuration table and a 4-configuration
    reference sample, cached under ``tmp_path`` (the real ones train for a minute or two)."""
    pytest.importorskip("sklearn")
    monkeypatch.setenv("KATIB_BENCH_CACHE", str(tmp_path))
    monkeypatch.setitem(
        mf_problems.PROBLEMS, "mlp-digits", lambda: mf_sklearn.mlp_digits(4, max_resource=9)
    )
    monkeypatch.setitem(
        mf_problems.PROBLEMS, "mlp-grid", lambda: mf_sklearn.mlp_grid(SMALL_GRID, max_resource=9)
    )
    return tmp_path


@pytest.mark.parametrize("name", mf_problems.names())
def test_a_problems_curve_is_deterministic_and_its_best_has_zero_regret(
    name: str, small_problems: Path
) -> None:
    problem = mf_problems.get(name)
    R = problem.max_resource
    assert problem.space.names[-1] == "epochs" and R in (9, 27)
    assert problem.best is not None
    best = problem.best()
    assert problem.regret(best) == pytest.approx(0, abs=1e-7)  # branin's minimum is rounded
    curve = [problem.curve(best, e) for e in range(1, R + 1)]
    assert curve[-1] < curve[0]  # training helps
    assert curve[-1] <= min(curve[: R // 3]) + 1e-12
    again = mf_problems.get(name)  # a fresh build: retrained (mlp-digits) or read from the cache
    assert [again.curve(best, e) for e in range(1, R + 1)] == curve
    assert again.regret(best) == problem.regret(best)
    if name != "mlp-digits":  # whose reference is the best of a sample, which others may beat
        sampled = problem.config_space.sample(np.random.default_rng(1), 5)
        assert all(problem.regret(p) >= 0 for p in sampled)


def test_the_synthetic_problem_is_the_curve_of_the_docstring() -> None:
    problem = mf_problems.get("synthetic")
    point = {"x0": 0.2, "x1": 0.4, "x2": 0.5, "x3": 0.9}
    assert problem.curve(point, 3) == mf_problems.learning_curve(point, 3)
    assert problem.regret(point) == mf_problems.final_loss(point)
    assert problem.loss(point, 3, 0.25) == mf_problems.learning_curve(point, 3) + 0.25
    noise = [problem.draw_noise(np.random.default_rng(5)) for _ in range(2)]
    assert noise[0] == noise[1] == float(np.random.default_rng(5).normal(0, 0.005))


def test_the_grid_table_is_every_configuration_and_regret_is_exact(small_problems: Path) -> None:
    problem = mf_problems.get("mlp-grid")
    assert problem.config_space.cardinality == 4
    points = [
        {"activation": "relu", "layers": 1, "units": u, "learning_rate_init": lr}
        | {"batch_size": 128, "alpha": 1e-5}
        for u in (16, 64)
        for lr in (1e-3, 1e-2)
    ]
    finals = [problem.curve(p, 9) for p in points]
    assert sorted(problem.regret(p) for p in points) == sorted(f - min(finals) for f in finals)
    assert len({round(f, 6) for f in finals}) > 1  # the configurations differ
    with pytest.raises(ValueError, match="not a configuration"):
        problem.curve(points[0] | {"units": 32}, 3)
    with pytest.raises(ValueError, match="epochs"):
        problem.curve(points[0], 10)
    assert [p.name for p in small_problems.iterdir()] == [
        next(small_problems.glob("mlp-grid-R9-*.npz")).name
    ]


def test_a_memoised_curve_is_the_same_however_it_was_trained() -> None:
    pytest.importorskip("sklearn")
    config = {"learning_rate_init": 3e-3, "alpha": 1e-4, "units": 16, "batch_size": 64}
    straight = mf_sklearn.CurveMemo(mf_sklearn.digits(), 9).errors(("k",), config, 9)
    kept = mf_sklearn.CurveMemo(mf_sklearn.digits(), 9)
    evicted = mf_sklearn.CurveMemo(mf_sklearn.digits(), 9, keep=0)
    for memo in (kept, evicted):
        assert memo.errors(("k",), config, 1) == straight[:1]
        assert memo.errors(("k",), config, 3) == straight[:3]  # continued, or trained again
        assert memo.errors(("k",), config, 9) == straight
    assert len(kept._models) == 0  # a finished curve drops its model
    assert all(0 <= e <= 1 for e in straight) and straight[-1] < straight[0]


def test_optuna_distributions_mirror_our_space(small_problems: Path) -> None:
    pytest.importorskip("optuna")
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    dists = multifidelity_peers.distributions(mf_problems.get("synthetic").space)
    assert dists == {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(4)}
    dists = multifidelity_peers.distributions(mf_problems.get("mlp-digits").space)
    assert dists["learning_rate_init"] == FloatDistribution(1e-4, 0.3, log=True)
    assert dists["units"] == IntDistribution(8, 128, log=True)
    assert "epochs" not in dists
    dists = multifidelity_peers.distributions(mf_problems.get("mlp-grid").space)
    assert dists["activation"] == CategoricalDistribution(("relu",))
    assert dists["units"] == CategoricalDistribution((16.0, 64.0))


def test_the_problem_reaches_the_peers(
    small_problems: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("optuna")
    seen: list[dict[str, object]] = []
    grid = mf_problems.PROBLEMS["mlp-grid"]()

    def spy(point: dict[str, object], epochs: float) -> float:
        seen.append(dict(point))
        return grid.curve(point, epochs)

    spied = dataclasses.replace(grid, curve=spy)
    monkeypatch.setitem(mf_problems.PROBLEMS, "mlp-grid", lambda: spied)
    argv = ["multifidelity", "--problem", "mlp-grid", "--seeds", "1", "--budget", "10"]
    assert main([*argv, "--method", "optuna:hyperband", "--method", "optuna:sha"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mlp-grid: median regret") and "(R = 9 epochs" in out, out
    assert re.search(r"^\| optuna:sha \| [\d.e-]+ \[", out, re.M), out
    assert seen and {p["units"] for p in seen} <= {16.0, 64.0}  # the grid's space, not x0..x3


def test_an_unknown_problem_is_an_error_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["multifidelity", "--seeds", "1", "--problem", "nope"]) != 0
    err = capsys.readouterr().err
    assert "--problem" in err and "'nope'" in err and "synthetic, mlp-digits, mlp-grid" in err


@pytest.mark.parametrize("peers", [False, True], ids=["ours", "with-optuna"])
@pytest.mark.parametrize("name", mf_problems.names())
def test_a_tiny_run_of_every_problem(
    name: str, peers: bool, small_problems: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    methods = ["hyperband", "asha", "bohb", "random", "tpe"]
    if peers:
        pytest.importorskip("optuna")
        methods += list(multifidelity_peers.PEERS)
    argv = ["multifidelity", "--problem", name, "--seeds", "1", "--budget", "2", "--batch", "2"]
    argv += ["--resume-promoted", "--compare"] + [a for m in methods for a in ("--method", m)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for method in methods:
        assert re.search(rf"^\| {method} \| [\d.e-]+ \[", out, re.M), out
    assert ("p(ours better)" in out) == peers


def test_a_corrupt_cache_is_an_error_that_says_what_to_delete(small_problems: Path) -> None:
    digits = mf_problems.get("mlp-digits")
    assert digits.best is not None
    digits.best()  # writes the reference; building mlp-grid wrote the table
    mf_problems.get("mlp-grid")
    assert len(list(small_problems.iterdir())) == 2
    for cached in small_problems.iterdir():
        cached.write_text("{not json")
    with pytest.raises(ValueError, match=r"mlp-grid-R9-.*delete it"):
        mf_problems.get("mlp-grid")
    digits = mf_problems.get("mlp-digits")
    assert digits.best is not None
    with pytest.raises(ValueError, match=r"mlp-digits-R9-.*delete it"):
        digits.best()
