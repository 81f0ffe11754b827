"""The multi-fidelity benchmark runs end to end on a tiny workload and prints its table."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from katib.bench import multifidelity, multifidelity_peers
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
    assert multifidelity.final_loss({"x0": (math.pi + 5) / 15, "x1": 2.275 / 15, "x2": 0.7}) == (
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
