"""End to end through real gRPC: outputs, reproducibility, exhaustion and batch/async modes."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from katib.bench import harness
from katib.bench.optimizer import RunSettings
from katib.bench.problems import Evaluation, Problem, integer
from katib.bench.report import CSV_COLUMNS
from katib.bench.runner import run_one
from katib.bench.service import Services, parse_target
from katib.suggestion.space import SearchSpace

pytest.importorskip("matplotlib")

PROBLEMS = ["branin", "mixed"]
PNG = b"\x89PNG\r\n\x1a\n"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("batch", [1, 3])
def test_tiny_run_writes_every_output(tmp_path: Path, batch: int) -> None:
    report = harness.compare(
        algorithms=["random", "sobol"],
        problems=PROBLEMS,
        budget=10,
        seeds=2,
        batch=batch,
        out=tmp_path,
    )
    assert not report.notes
    for path in report.files.values():
        assert path.exists() and path.stat().st_size > 0
    assert report.files["convergence"].read_bytes().startswith(PNG)
    assert report.files["latency"].read_bytes().startswith(PNG)

    rows = read_csv(report.files["csv"])
    assert len(rows) == len(PROBLEMS) * 2 * 2 * 10
    assert tuple(rows[0]) == CSV_COLUMNS
    runs: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in rows:
        runs.setdefault((row["problem"], row["algorithm"], row["seed"]), []).append(row)
    assert len(runs) == 8
    for trials in runs.values():
        assert [int(t["trial"]) for t in trials] == list(range(10))
        regret = [float(t["regret"]) for t in trials]
        assert all(r >= 0 for r in regret)
        assert all(b <= a for a, b in itertools.pairwise(regret))
        assert {int(t["batch"]) for t in trials} == {batch}
        # Trials of one call share its history size: 0, k, 2k, ...
        assert [int(t["history"]) for t in trials] == [i - i % batch for i in range(10)]
        json.loads(trials[0]["params"])

    document = json.loads(report.files["json"].read_text())
    assert len(document["runs"]) == 8
    assert all(len(r["trials"]) == 10 and r["error"] is None for r in document["runs"])
    assert document["meta"]["batch"] == batch
    table = report.files["table"].read_text()
    for word in (*PROBLEMS, "random", "sobol", "average rank", "@10"):
        assert word in table
    assert report.files["markdown"].read_text().count("| random |") == len(PROBLEMS) + 1


def values_only(path: Path) -> list[tuple[str, ...]]:
    """Every CSV column except the measured latency."""
    return [tuple(v for k, v in row.items() if k != "latency_s") for row in read_csv(path)]


def test_same_seed_reproduces_values(tmp_path: Path) -> None:
    kwargs = {
        "algorithms": ["random", "sobol"],
        "problems": ["branin-noisy", "mixed"],
        "budget": 8,
        "seeds": [3],
        "batch": 2,
    }
    first = harness.compare(out=tmp_path / "a", **kwargs)  # type: ignore[arg-type]
    second = harness.compare(out=tmp_path / "b", **kwargs)  # type: ignore[arg-type]
    assert values_only(first.files["csv"]) == values_only(second.files["csv"])
    third = harness.compare(out=tmp_path / "c", **{**kwargs, "seeds": [4]})  # type: ignore[arg-type]
    assert values_only(third.files["csv"]) != values_only(first.files["csv"])


def tiny_problem() -> Problem:
    space = SearchSpace((integer("k", 0, 2),))

    def objective(point: dict, rng: np.random.Generator) -> Evaluation:
        return Evaluation(float(point["k"]), float(point["k"]))

    return Problem("tiny", space, objective, optimum=0.0, kind="synthetic")


@pytest.mark.parametrize("algorithm", ["random", "sobol"])
def test_exhausted_service_ends_the_run(algorithm: str) -> None:
    with Services([algorithm]) as services:
        (contender,) = services.contenders
        result = run_one(tiny_problem(), contender, RunSettings(seed=0, budget=10, batch=2))
    assert result.error is None
    assert result.exhausted
    assert sorted(t.params["k"] for t in result.trials) == [0, 1, 2]
    assert result.trials[-1].best == 0.0


def test_rejected_experiment_is_a_note_not_a_crash() -> None:
    report = harness.compare(algorithms=["grid", "random"], problems=["branin"], budget=4, seeds=2)
    assert {r.algorithm for r in report.results if r.trials} == {"random"}
    assert len([r for r in report.results if r.algorithm == "grid"]) == 1  # not retried
    assert any("grid on branin" in n and "INVALID_ARGUMENT" in n for n in report.notes)


def test_parse_target() -> None:
    plain = parse_target("random=127.0.0.1:6789")
    assert (plain.label, plain.algorithm, plain.address) == ("random", "random", "127.0.0.1:6789")
    named = parse_target("mine=multivariate-tpe@[::1]:6789")
    assert (named.label, named.algorithm, named.address) == (
        "mine",
        "multivariate-tpe",
        "[::1]:6789",
    )
    for bad in ("random", "x=", "=host:1", "x=@host:1", "x=host"):
        with pytest.raises(ValueError, match="NAME=HOST:PORT"):
            parse_target(bad)


def test_latency_mode(tmp_path: Path) -> None:
    samples, table = harness.latency(
        algorithms=["random", "sobol"], sizes=[10, 30], repeats=2, out=tmp_path
    )
    assert [(s.algorithm, s.history) for s in samples] == [
        ("random", 10),
        ("sobol", 10),
        ("random", 30),
        ("sobol", 30),
    ]
    assert all(len(s.seconds) == 2 and s.error is None and s.median > 0 for s in samples)
    assert "n=30 (ms)" in table
    assert (tmp_path / "latency.png").read_bytes().startswith(PNG)
    rows = read_csv(tmp_path / "latency.csv")
    assert len(rows) == 8
