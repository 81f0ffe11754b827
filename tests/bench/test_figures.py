"""The measurement subcommands run end to end on tiny workloads and print their figures.

Figures are not asserted (speed is measured by running the commands, not by tests); these keep
the commands from rotting as the code they measure changes, and pin the workloads that the
README's figures were measured on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.server import RunningServer, start
from katib.bench import load, tpe_latency, tpe_study
from katib.bench.cli import main
from katib.bench.synthetic import FUNCTIONS
from katib.suggestion.proto import space_from_proto
from katib.suggestion.server import services
from tests.suggestion.requests import MIXED, Param, experiment, request, trial
from tests.suggestion.requests import assignments as reply_assignments


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.fixture
def external() -> Iterator[RunningServer]:
    server = start(services(["random"]), host="127.0.0.1", port=0)
    yield server
    server.stop(grace=0)


@pytest.mark.parametrize("in_process", [False, True])
def test_service(capsys: pytest.CaptureFixture[str], in_process: bool) -> None:
    args = ["service", "--algorithms", "sobol", "--history", "30", "--repeats", "5"]
    out = run(capsys, *args, "--seconds", "0.3", *(["--in-process"] if in_process else []))
    assert re.search(r"^sobol\s+30\s+[\d.]+\s+[\d.]+\s+\d+$", out, re.M), out


def test_service_by_address(
    capsys: pytest.CaptureFixture[str], external: RunningServer, tmp_path: Path
) -> None:
    out = run(
        capsys,
        *("service", "--algorithms", "none", "--service", f"theirs=random@{external.address}"),
        *("--history", "20", "--repeats", "3", "--clients", "0", "--in-process"),
        *("--out", str(tmp_path)),
    )
    assert re.search(r"^theirs\s+20\s+[\d.]+\s+[\d.]+\s+-$", out, re.M), out
    data = json.loads((tmp_path / "service.json").read_text())
    assert [len(s["seconds"]) for s in data["samples"]] == [3]
    assert (tmp_path / "service.txt").read_text().strip() == out.strip()


def test_service_workload_is_the_documented_one() -> None:
    """The request is the one the README's figures were measured with (tests' builders)."""
    documented = experiment("random", MIXED, {"random_state": "0"})
    assert space_from_proto(documented.spec.parameter_specs.parameters) == load.SPACE
    server = start(services(["random", "sobol"]), host="127.0.0.1", port=0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = api_pb2_grpc.SuggestionStub(channel)
            reply = stub.GetSuggestions(request(documented, [], 40))
            expected = [
                trial(f"t{i}", a.items(), loss=(i * 7919) % 1000 / 1000)
                for i, a in enumerate(reply_assignments(reply))
            ]
            got = load.history_trials(stub, 40)
            assert got == expected
            mine = load._request(load._experiment("sobol", 1), got, 1)
            theirs = request(experiment("sobol", MIXED, {"random_state": "1"}), expected, 1)
            assert reply_assignments(stub.GetSuggestions(mine)) == reply_assignments(
                stub.GetSuggestions(theirs)
            )
    finally:
        server.stop(grace=0)


def test_tpe_latency(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "tpe", "latency", "--history", "40", "--repeats", "2")
    assert "history 40 trials, 10 parameters" in out
    for name in ("tpe", "multivariate-tpe"):
        assert re.search(rf"^{name} GetSuggestions x1\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M), out


def test_tpe_latency_workload_is_the_documented_one() -> None:
    documented: list[Param] = [
        *[(f"x{i}", pb.DOUBLE, {"min": "-5", "max": "5"}) for i in range(4)],
        ("lr", pb.DOUBLE, {"min": "0.0001", "max": "0.1", "distribution": pb.LOG_UNIFORM}),
        ("wd", pb.DOUBLE, {"min": "0.000001", "max": "0.01", "distribution": pb.LOG_UNIFORM}),
        ("momentum", pb.DOUBLE, {"min": "0.5", "max": "0.95", "step": "0.05"}),
        ("layers", pb.INT, {"min": "1", "max": "8"}),
        ("units", pb.INT, {"min": "16", "max": "1024", "distribution": pb.LOG_UNIFORM}),
        ("optimizer", pb.CATEGORICAL, {"list": ["sgd", "adam", "rmsprop", "adagrad"]}),
    ]
    specs = experiment("tpe", documented).spec.parameter_specs.parameters
    assert space_from_proto(specs) == tpe_latency.SPACE
    points, losses = tpe_latency.history(tpe_latency.SPACE, 3)
    u = tpe_latency.SPACE.encode(points)
    assert losses == [float(((row - 0.3) ** 2).sum()) for row in u]


def test_tpe_quality_uses_and_extends_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = tmp_path / "runs.json"
    args = ["tpe", "quality", "--seeds", "3", "--budget", "15", "--problems", "branin-2d"]
    first = run(capsys, *args, "--cache", str(cache), "--out", str(tmp_path))
    assert "median regret over seeds 0..2 (15 trials, sequential)" in first
    assert "Mann-Whitney" in first and re.search(r"^tpe: [\d.]+ s$", first, re.M), first
    stored = json.loads(cache.read_text())
    tests = json.loads((tmp_path / "tpe-quality.json").read_text())["tests"]
    assert [(t["ours"], t["rival"]) for t in tests] == [
        ("tpe", "optuna:tpe"),
        ("tpe", "random"),
        ("multivariate-tpe", "optuna:tpe-mv"),
        ("multivariate-tpe", "random"),
    ]
    for t in tests:
        assert t["cells"] == ["branin-2d@15"]
        assert all(0 < p <= 1 for p in t["p_rival_better"] + t["p_ours_better"])
    assert len(stored) == 5 * 3 and all(len(v) == 15 for v in stored.values())
    # A second run computes nothing and prints the same table.
    second = run(capsys, *args, "--cache", str(cache))
    assert not re.search(r"^tpe: ", second, re.M)
    assert second.strip() == "\n\n".join(first.strip().split("\n\n")[:2])
    # Regret is the best value so far minus the optimum.
    values = stored["branin-2d/tpe/0/15"]
    optimum = tpe_study.PROBLEMS["branin-2d"].optimum
    assert tpe_study.regrets(values, optimum, [15]) == [min(values) - optimum]


def test_tpe_quality_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tpe", "quality", "--problems", "branin"]) == 2
    assert "unknown 'branin'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("problem", "function"),
    [
        ("branin-2d", "branin"),
        ("hartmann-3d", "hartmann3"),
        ("hartmann-6d", "hartmann6"),
        ("rosenbrock-5d", "rosenbrock"),
        ("ackley-10d", "ackley"),
        ("levy-10d", "levy"),
        ("styblinski-10d", "styblinski-tang"),
    ],
)
def test_study_optima(problem: str, function: str) -> None:
    chosen = tpe_study.PROBLEMS[problem]
    x = FUNCTIONS[function].minimiser(chosen.space.dim)
    value = chosen.objective(dict(zip(chosen.space.names, x, strict=True)))
    assert value == pytest.approx(chosen.optimum, abs=1e-5)


def test_study_mixed_optimum() -> None:
    best = {"x": 1, "lr": 1e-2, "y": 0.35, "n": 7, "units": 128, "opt": "adam", "batch": 64.0}
    assert tpe_study.mixed(best) == pytest.approx(0.0, abs=1e-12)
    assert tpe_study.mixed({**best, "opt": "sgd", "lr": 10**-2.3}) == pytest.approx(0.6)


def test_holm_by_hand() -> None:
    # Sorted p-values against alpha / (m - k): 0.01 < 0.05/3, then 0.03 >= 0.05/2 stops.
    assert tpe_study.holm([0.04, 0.01, 0.03], 0.05) == 1
    assert tpe_study.holm([0.001, 0.01, 0.04], 0.05) == 3
    assert tpe_study.holm([0.03, 0.5], 0.05) == 0  # 0.03 >= 0.05/2


def test_db_sqlite_with_grpc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = run(
        capsys,
        *("db", "--backends", "sqlite", "--rows", "2000", "--singles", "50", "--grpc"),
        *("--out", str(tmp_path)),
    )
    assert re.search(r"^sqlite\s+[\d,]+\s+[\d,]+\s+[\d.]+\s+[\d.]+$", out, re.M), out
    assert re.search(r"^sqlite \(gRPC\)\s+[\d,]+\s+[\d,]+\s+[\d.]+\s+[\d.]+$", out, re.M), out
    results = json.loads((tmp_path / "db.json").read_text())["results"]
    assert [r["read_rows"] for r in results] == [2000, 2000]


def test_db_rejects_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "--backends", "oracle"]) == 2
    assert "--backends: unknown oracle" in capsys.readouterr().err


def test_controller(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "controller", "--trials", "8", "--parallel", "2", "--repeats", "1")
    assert "trials: 8, parallelTrialCount: 2, best of 1" in out
    assert re.search(r"controller overhead: -?[\d.]+ ms/trial", out), out


def test_service_errors_name_the_contender(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["service", "--algorithms", "nope"]) == 2
    assert "--algorithms: unknown nope" in capsys.readouterr().err
    argv = ["service", "--algorithms", "grid", "--history", "5", "--repeats", "2", "--in-process"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "grid at 127.0.0.1:" in err and "INVALID_ARGUMENT" in err
