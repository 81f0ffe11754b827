"""The console script, and a Katib-compatible service plugged in by address."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.server import RunningServer, ServiceSpec, start
from katib.bench.cli import main
from katib.suggestion.service import SuggestionServicer

pytest.importorskip("matplotlib")


class RecordingServicer(SuggestionServicer):
    """Our servicer, recording the trial conditions and counts of every request it gets."""

    def __init__(self) -> None:
        super().__init__(["random"])
        self.requests: list[tuple[int, dict[int, int]]] = []

    def GetSuggestions(
        self, request: pb.GetSuggestionsRequest, context: grpc.ServicerContext
    ) -> pb.GetSuggestionsReply:
        conditions: dict[int, int] = {}
        for trial in request.trials:
            conditions[trial.status.condition] = conditions.get(trial.status.condition, 0) + 1
        self.requests.append((request.current_request_number, conditions))
        return super().GetSuggestions(request, context)


@pytest.fixture
def external() -> Iterator[tuple[RunningServer, RecordingServicer]]:
    """A suggestion server started on its own, as a researcher's service would be."""
    servicer = RecordingServicer()
    spec = ServiceSpec(
        api_pb2_grpc.add_SuggestionServicer_to_server, servicer, ("api.v1.beta1.Suggestion",)
    )
    server = start([spec], host="127.0.0.1", port=0)
    yield server, servicer
    server.stop(grace=0)


def rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in (
        "branin",
        "hartmann6",
        "mixed",
        "svc-digits",
        "random",
        "sobol",
        "optuna:tpe",
        "smoke",
    ):
        assert word in out


def test_external_service_by_address_matches_in_process(
    tmp_path: Path,
    external: tuple[RunningServer, RecordingServicer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, servicer = external
    args = [
        "run",
        "--problems",
        "branin,mixed",
        "--budget",
        "9",
        "--seeds",
        "2",
        "--batch",
        "3",
        "--mode",
        "async",
        "--peers",
        "none",
        "--quiet",
    ]
    assert (
        main(
            [
                *args,
                "--algorithms",
                "none",
                "--out",
                str(tmp_path / "ext"),
                "--service",
                f"myrandom=random@{server.address}",
            ]
        )
        == 0
    )
    assert "myrandom" in capsys.readouterr().out
    assert main([*args, "--algorithms", "random", "--out", str(tmp_path / "own")]) == 0

    ext, own = rows(tmp_path / "ext" / "runs.csv"), rows(tmp_path / "own" / "runs.csv")
    assert len(ext) == len(own) == 2 * 2 * 9
    assert {r["algorithm"] for r in ext} == {"myrandom"}
    assert {r["kind"] for r in ext} == {"service"}
    assert [(r["params"], r["value"]) for r in ext] == [(r["params"], r["value"]) for r in own]

    # Async mode as Katib's controller: 3 first, then one per finished trial, with the others
    # still RUNNING in the request; every finished trial SUCCEEDED.
    first, *rest = servicer.requests[: 9 - 2]
    assert first == (3, {})
    running, succeeded = pb.TrialStatus.RUNNING, pb.TrialStatus.SUCCEEDED
    for i, (count, conditions) in enumerate(rest, start=1):
        assert count == 1
        assert conditions == {running: 2, succeeded: i}


def test_unknown_problem_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--problems", "nope", "--algorithms", "random", "--peers", "none"]) == 2
    assert "unknown problem" in capsys.readouterr().err
