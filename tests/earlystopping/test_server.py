"""``katib-earlystopping`` as users run it: a real process, real clients, Katib's own stubs."""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import AbstractContextManager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.earlystopping.rules import SEMANTICS_KEY
from tests.earlystopping.conftest import experiment, trial
from tests.katib_stubs import run_with_katib_stubs
from tests.processes import service_process


def server_process(*args: str) -> AbstractContextManager[tuple[subprocess.Popen[str], str]]:
    """Run ``katib.earlystopping.server`` on a free port; yield the process and its address."""
    return service_process("katib.earlystopping.server", *args)


def test_health_names_and_a_clean_sigterm():
    with server_process() as (proc, address):
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "api.v1.beta1.EarlyStopping", "manager.v1beta1.EarlyStopping"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None
        assert "received SIGTERM, stopping" in proc.stderr.read()


def test_bad_db_address_flag_exits_non_zero():
    result = subprocess.run(
        [sys.executable, "-m", "katib.earlystopping.server", "--db-address", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--db-address: db_manager_address must be host:port" in result.stderr


def test_a_restarted_process_answers_the_same(db_server, report):
    names = [report("loss", [5 - i, 4 - i, 3.5 - i, 3 - i, 2.9 - i]) for i in range(4)]
    names.append(report("loss", [9, 8]))
    trials = [trial(n) for n in names[:4]] + [trial(names[4], pb.TrialStatus.EARLYSTOPPED)]
    request = pb.GetEarlyStoppingRulesRequest(
        experiment=experiment(settings=[("start_step", "2")]),
        trials=trials,
        db_manager_address=db_server.address,
    )
    replies = []
    for _ in range(2):
        with server_process() as (proc, address):
            with grpc.insecure_channel(address) as channel:
                stub = api_pb2_grpc.EarlyStoppingStub(channel)
                metadata = [(SEMANTICS_KEY, "any")]
                first = stub.GetEarlyStoppingRules(request, timeout=30, metadata=metadata)
                again = stub.GetEarlyStoppingRules(request, timeout=30, metadata=metadata)
                assert again == first  # cached curves give the same answer
                replies.append(first.SerializeToString(deterministic=True))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
    assert replies[0] == replies[1]
    assert len(pb.GetEarlyStoppingRulesReply.FromString(replies[0]).early_stopping_rules) == 4


_KATIB_CLIENT = """
import sys
import grpc
from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as rpc

channel = grpc.insecure_channel(sys.argv[1])
stub = rpc.EarlyStoppingStub(channel)
def validate(name, **settings):
    spec = pb.EarlyStoppingSpec(algorithm_name=name, algorithm_settings=[
        pb.EarlyStoppingSetting(name=k, value=v) for k, v in settings.items()])
    try:
        stub.ValidateEarlyStoppingSettings(
            pb.ValidateEarlyStoppingSettingsRequest(early_stopping=spec), timeout=10)
        print("OK")
    except grpc.RpcError as exc:
        print(exc.code().name, exc.details())
validate("medianstop", min_trials_required="1", start_step="2")
validate("unknown")
validate("medianstop", start_step="0")
experiment = pb.Experiment(name="median-stop", spec=pb.ExperimentSpec(
    objective=pb.ObjectiveSpec(type=pb.MINIMIZE, objective_metric_name="loss"),
    early_stopping=pb.EarlyStoppingSpec(algorithm_name="medianstop", algorithm_settings=[
        pb.EarlyStoppingSetting(name="min_trials_required", value="1"),
        pb.EarlyStoppingSetting(name="start_step", value="2")])))
trials = [pb.Trial(name=n, status=pb.TrialStatus(condition=pb.TrialStatus.SUCCEEDED,
          completion_time="2026-01-01T00:00:00Z")) for n in sys.argv[3:]]
reply = stub.GetEarlyStoppingRules(pb.GetEarlyStoppingRulesRequest(
    experiment=experiment, trials=trials, db_manager_address=sys.argv[2]), timeout=30)
for rule in reply.early_stopping_rules:
    print("rule", rule.name, rule.value, pb.ComparisonType.Name(rule.comparison), rule.start_step)
"""


def test_katib_stubs_client(db_server, report):
    names = [report("loss", [1.0, 0.5]), report("loss", [3.0, 2.0]), report("loss", [2.0, 1.0])]
    with server_process() as (_, address):
        out = run_with_katib_stubs(_KATIB_CLIENT, address, db_server.address, *names)
    assert out.splitlines() == [
        "OK",
        "INVALID_ARGUMENT unknown algorithm name unknown",
        "INVALID_ARGUMENT start_step must be greater or equal than one (>=1)",
        # Katib's collector gets one rule: the median of the running means (0.75, 2.5, 1.5).
        "rule loss 1.5 GREATER 2",
    ]
