"""The CMA-ES study runs end to end on a tiny workload (so that it never rots)."""

from __future__ import annotations

import pytest

from katib.bench import cmaes_study


def test_study_prints_table_and_significance(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cma")
    cmaes_study.main(
        [
            "--seeds",
            "2",
            "--budgets",
            "8,16",
            "--problems",
            "ellipsoid-5d,mixed",
            "--contenders",
            "cmaes,cmaes-uniformcat,cma",
        ]
    )
    out = capsys.readouterr().out
    assert "| ellipsoid-5d | 16 |" in out and "| mixed | 8 |" in out
    assert "cmaes vs cma: better in" in out and "median seconds per ask" in out


def test_study_is_a_katib_bench_command(capsys: pytest.CaptureFixture[str]) -> None:
    from katib.bench.cli import main

    pytest.importorskip("cma")
    args = ["cmaes", "--seeds", "1", "--budgets", "6", "--problems", "rastrigin-5d"]
    assert main([*args, "--contenders", "cmaes-ipop,cma"]) == 0
    assert "| rastrigin-5d | 6 |" in capsys.readouterr().out


def test_study_problems_have_their_optimum_at_zero() -> None:
    import numpy as np

    for name in ("ellipsoid-5d", "ellipsoid-10d", "rastrigin-5d"):
        problem = cmaes_study.get_problem(name)
        rng = np.random.default_rng(0)
        values = [problem.evaluate(p, rng).value for p in problem.space.sample(rng, 50)]
        assert min(values) > 0
    rastrigin = cmaes_study.get_problem("rastrigin-5d")
    at_optimum = {n: 1.3 for n in rastrigin.space.names}
    assert rastrigin.evaluate(at_optimum, np.random.default_rng(0)).value == pytest.approx(0)
