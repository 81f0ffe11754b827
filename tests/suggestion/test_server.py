"""The suggestion server as users run it: a real process, real clients, Katib's own stubs."""

from __future__ import annotations

import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from tests.katib_stubs import run_with_katib_stubs
from tests.processes import service_process
from tests.suggestion.requests import FINITE, MIXED, assignments, experiment, request, trial


def server_process(*args: str) -> AbstractContextManager[tuple[subprocess.Popen[str], str]]:
    """Run ``katib.suggestion.server`` on a free port; yield the process and its address."""
    return service_process("katib.suggestion.server", *args)


def test_process_serves_health_and_stops_cleanly_on_sigterm():
    with server_process("--algorithm", "random") as (proc, address):
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "api.v1.beta1.Suggestion", "manager.v1beta1.Suggestion"):
                status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
                assert status == health_pb2.HealthCheckResponse.SERVING
            stub = api_pb2_grpc.SuggestionStub(channel)
            assert (
                len(
                    stub.GetSuggestions(request(experiment("random"), [], 2)).parameter_assignments
                )
                == 2
            )
            with pytest.raises(grpc.RpcError) as err:  # a service hosts only what it was asked to
                stub.GetSuggestions(request(experiment("grid", FINITE)))
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "serves: random" in err.value.details()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_restarted_process_continues_identically():
    exp = experiment("sobol", MIXED, {"random_state": "11"})
    answers = []
    for _ in range(2):
        with server_process("--algorithm", "sobol") as (proc, address):
            with grpc.insecure_channel(address) as channel:
                stub = api_pb2_grpc.SuggestionStub(channel)
                first = assignments(stub.GetSuggestions(request(exp, [], 3)))
                trials = [trial(f"t{i}", a.items(), loss=i) for i, a in enumerate(first)]
                answers.append((first, assignments(stub.GetSuggestions(request(exp, trials, 3)))))
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)  # generous: CI machines may be loaded
    assert answers[0] == answers[1]


def test_unknown_algorithm_on_the_command_line_fails():
    result = subprocess.run(
        [sys.executable, "-m", "katib.suggestion.server", "--algorithm", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "unknown algorithm name 'nosuch'" in result.stderr


_KATIB_CLIENT = r"""
import sys, grpc
from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as rpc

stub = rpc.SuggestionStub(grpc.insecure_channel(sys.argv[1]))

def experiment(algorithm, settings=()):
    spec = pb.ExperimentSpec(
        objective=pb.ObjectiveSpec(type=pb.MINIMIZE, objective_metric_name="loss", goal=0.001),
        algorithm=pb.AlgorithmSpec(algorithm_name=algorithm, algorithm_settings=[
            pb.AlgorithmSetting(name=k, value=v) for k, v in settings]),
        parallel_trial_count=3, max_trial_count=12)
    spec.parameter_specs.parameters.add(name="lr", parameter_type=pb.DOUBLE,
        feasible_space=pb.FeasibleSpace(min="0.01", max="0.05", step="0.005"))
    spec.parameter_specs.parameters.add(name="momentum", parameter_type=pb.DOUBLE,
        feasible_space=pb.FeasibleSpace(min="0.5", max="0.9", step="0.1"))
    return pb.Experiment(name="random-example", spec=spec)

for algorithm in ("random", "sobol", "grid"):
    exp = experiment(algorithm, [("random_state", "3")])
    stub.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=exp))
    reply = stub.GetSuggestions(pb.GetSuggestionsRequest(
        experiment=exp, current_request_number=3, total_request_number=3))
    trials = []
    for i, pa in enumerate(reply.parameter_assignments):
        t = pb.Trial(name=f"random-example-{i}")
        t.spec.parameter_assignments.assignments.extend(pa.assignments)
        t.status.condition = pb.TrialStatus.SUCCEEDED
        t.status.observation.metrics.add(name="loss", value=str(0.1 * i))
        trials.append(t)
    again = stub.GetSuggestions(pb.GetSuggestionsRequest(
        experiment=exp, trials=trials, current_request_number=3, total_request_number=6))
    for pa in list(reply.parameter_assignments) + list(again.parameter_assignments):
        print(algorithm, ",".join(f"{a.name}={a.value}" for a in pa.assignments))

for settings in ([("random_state", "-5")], [("no_such", "1")]):
    try:
        stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(experiment=experiment("random", settings)))
        print("accepted", settings)
    except grpc.RpcError as e:
        print("rejected", e.code().name, e.details())
"""


def test_katib_published_stubs_get_valid_suggestions(suggestion_server):
    out = run_with_katib_stubs(_KATIB_CLIENT, suggestion_server.address).splitlines()
    lr_grid = {f"{0.01 + 0.005 * k:.3f}".rstrip("0") for k in range(9)}
    for algorithm in ("random", "sobol", "grid"):
        rows = [line.split(" ", 1)[1] for line in out if line.startswith(algorithm + " ")]
        assert len(rows) == 6 and len(set(rows)) == 6, rows
        for row in rows:
            values = dict(kv.split("=") for kv in row.split(","))
            assert values["lr"] in lr_grid and values["momentum"] in {
                "0.5",
                "0.6",
                "0.7",
                "0.8",
                "0.9",
            }
    rejected = [line for line in out if line.startswith("rejected INVALID_ARGUMENT")]
    assert len(rejected) == 2
    assert "random_state" in rejected[0] and "no_such" in rejected[1]


def test_bad_requests_do_not_stop_the_server(suggestion_stub):
    bad = [
        request(experiment("random", [("x", pb.DOUBLE, {"min": "1", "max": "0"})])),
        request(experiment("nosuch")),
        request(experiment("random"), count=-1),
        request(experiment("grid", MIXED)),
    ]
    for req in bad:
        with pytest.raises(grpc.RpcError) as err:
            suggestion_stub.GetSuggestions(req)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert (
        len(
            suggestion_stub.GetSuggestions(
                request(experiment("random"), [], 1)
            ).parameter_assignments
        )
        == 1
    )


def test_many_experiments_concurrently(suggestion_stub):
    def run(i: int) -> int:
        exp = experiment(
            ["random", "sobol", "grid"][i % 3], FINITE, {"random_state": str(i)}, name=f"exp-{i}"
        )
        trials: list[pb.Trial] = []
        for _ in range(5):
            for a in assignments(suggestion_stub.GetSuggestions(request(exp, trials, 3))):
                trials.append(trial(f"{i}-{len(trials)}", a.items(), loss=len(trials)))
        return len(
            {
                tuple(sorted(t.spec.parameter_assignments.assignments[j].value for j in range(4)))
                for t in trials
            }
        )

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(run, range(16))) == [15] * 16


def test_ten_thousand_trial_history(suggestion_stub):
    exp = experiment("random", MIXED, {"random_state": "0"})
    first = assignments(suggestion_stub.GetSuggestions(request(exp, [], 1)))[0]
    trials = [trial(f"t{i}", first.items(), loss=i) for i in range(10_000)]
    assert len(suggestion_stub.GetSuggestions(request(exp, trials, 5)).parameter_assignments) == 5
