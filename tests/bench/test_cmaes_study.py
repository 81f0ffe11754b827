"""The CMA-ES study runs end to end on a tiny workload (so that it never rots)."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_seed_ranges_extend_a_cache_and_report_only_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, exported = tmp_path / "runs.json", tmp_path / "runs.csv"
    common = ["--budgets", "6,12", "--problems", "ellipsoid-5d", "--cache", str(cache)]
    common += ["--contenders", "cmaes,cmaes-ipop"]
    cmaes_study.main([*common, "--seeds", "2"])
    cmaes_study.main([*common, "--seeds", "1", "--seed-start", "2"])
    assert sorted(json.loads(cache.read_text())) == sorted(
        f"ellipsoid-5d|{n}|{s}" for n in ("cmaes", "cmaes-ipop") for s in range(3)
    )
    capsys.readouterr()
    # Four seeds asked for, three cached: --report-only runs nothing and reports the three.
    cmaes_study.main([*common, "--seeds", "4", "--report-only", "--export", str(exported)])
    from_json = capsys.readouterr().out
    assert "| ellipsoid-5d | 12 | " in from_json and " (3) |" in from_json
    assert "| ellipsoid-5d@6 |" in from_json and "# ellipsoid-5d done" not in from_json
    assert len(json.loads(cache.read_text())) == 6
    rows = exported.read_text().splitlines()
    assert rows[0] == "problem,contender,seed,ask_ms,regret@6,regret@12" and len(rows) == 7
    # The exported CSV alone reports the same table and p-values.
    from_csv_args = [*common[:-3], str(exported), "--contenders", "cmaes,cmaes-ipop"]
    cmaes_study.main([*from_csv_args, "--seeds", "3", "--report-only"])
    from_csv = capsys.readouterr().out
    assert _table(from_csv) == _table(from_json)
    with pytest.raises(SystemExit, match="only be read"):
        cmaes_study.main([*from_csv_args, "--seeds", "3"])
    with pytest.raises(SystemExit, match="needs an existing --cache"):
        cmaes_study.main(["--report-only", "--cache", str(tmp_path / "absent.json")])


def _table(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("|")]
