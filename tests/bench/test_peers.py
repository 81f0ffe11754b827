"""Peer adapters: feasible points, seeded reproducibility, failures, and skipping when absent."""

from __future__ import annotations

import numpy as np
import pytest

from katib.bench import harness, peers, problems
from katib.bench.optimizer import RunSettings
from katib.bench.runner import run_one


def test_optuna_peer_runs_side_by_side_with_our_service() -> None:
    pytest.importorskip("optuna")
    report = harness.compare(
        algorithms=["random"],
        peers=["optuna:tpe", "optuna:tpe-mv"],
        problems=["mixed"],
        budget=12,
        seeds=[0],
        batch=3,
    )
    assert not report.notes
    by_name = {r.algorithm: r for r in report.results}
    assert set(by_name) == {"random", "optuna:tpe", "optuna:tpe-mv"}
    space = problems.get("mixed").space
    for result in by_name.values():
        assert result.error is None and len(result.trials) == 12
        for trial in result.trials:
            # Feasible Katib assignment: survives format -> parse unchanged.
            assert space.parse(dict(space.format(trial.params))) == trial.params
    assert by_name["optuna:tpe"].kind == "peer"
    assert "optuna:tpe" in report.table


def test_optuna_peer_is_reproducible_from_the_seed() -> None:
    pytest.importorskip("optuna")
    contenders, _ = peers.peer_contenders(["optuna:tpe"])
    problem = problems.get("branin")

    def params(seed: int) -> list[dict]:
        run = run_one(problem, contenders[0], RunSettings(seed=seed, budget=15, batch=1))
        return [t.params for t in run.trials]

    assert params(1) == params(1)
    assert params(1) != params(2)


def test_optuna_tpe_is_univariate_and_tpe_mv_multivariate() -> None:
    """Optuna 5 made ``multivariate`` the default; the two peers must still differ."""
    pytest.importorskip("optuna")
    contenders, _ = peers.peer_contenders(["optuna:tpe", "optuna:tpe-mv"])
    problem = problems.get("hartmann3")
    runs = [run_one(problem, c, RunSettings(seed=0, budget=16, batch=1)) for c in contenders]
    uni, multi = ([t.params for t in r.trials] for r in runs)
    assert uni[:10] == multi[:10]  # the same seeded random start-up trials
    assert uni[10:] != multi[10:]


@pytest.mark.parametrize("name", [n for n in peers.PEERS if n.split(":")[0] != "optuna"])
def test_other_installed_peers(name: str) -> None:
    if peers.missing(name):
        pytest.skip(f"{name} needs {', '.join(peers.missing(name))}")
    contenders, _ = peers.peer_contenders([name])
    problem = problems.get("mixed")
    run = run_one(problem, contenders[0], RunSettings(seed=0, budget=8, batch=2))
    assert run.error is None and len(run.trials) == 8
    for trial in run.trials:
        assert problem.space.parse(dict(problem.space.format(trial.params))) == trial.params


def test_failed_evaluations_are_told_as_failures() -> None:
    pytest.importorskip("optuna")
    base = problems.get("branin")
    calls = iter(range(100))

    def flaky(point: dict, rng: np.random.Generator) -> problems.Evaluation:
        if next(calls) % 3 == 0:
            return problems.Evaluation(float("nan"), float("nan"))
        return base.evaluate(point, rng)

    problem = problems.Problem("flaky", base.space, flaky, base.optimum, "synthetic")
    contenders, _ = peers.peer_contenders(["optuna:tpe"])
    run = run_one(problem, contenders[0], RunSettings(seed=0, budget=9, batch=1))
    assert run.error is None
    assert [t.value is None for t in run.trials] == [True, False, False] * 3
    assert run.trials[0].best is None and run.trials[-1].best is not None


def test_missing_peer_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "missing", lambda name: ["torch"] if name == "optuna:gp" else [])
    contenders, notes = peers.peer_contenders(["optuna:gp", "cma"])
    assert [c.name for c in contenders] == ["cma"]
    assert notes == ["peer optuna:gp skipped: torch not installed"]
    with pytest.raises(KeyError, match="unknown peer"):
        peers.peer_contenders(["nope"])
