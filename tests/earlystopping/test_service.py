"""The EarlyStopping service over the wire, reading curves from a real DB service.

The first tests are our equivalents of Katib's ``test/unit/v1beta1/earlystopping/
test_medianstop_service.py`` (same inputs, same status codes and messages).
"""

from __future__ import annotations

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api.server import start
from katib.db.testing import free_port
from katib.earlystopping.rules import SEMANTICS_KEY
from katib.earlystopping.server import services
from tests.earlystopping.conftest import experiment, rules_of, trial

GREATER, LESS = pb.GREATER, pb.LESS
SUCCEEDED, EARLYSTOPPED = pb.TrialStatus.SUCCEEDED, pb.TrialStatus.EARLYSTOPPED
RUNNING, FAILED = pb.TrialStatus.RUNNING, pb.TrialStatus.FAILED


def validate(stub, algorithm: str, *settings: tuple[str, str]) -> tuple[grpc.StatusCode, str]:
    spec = pb.EarlyStoppingSpec(algorithm_name=algorithm)
    for name, value in settings:
        spec.algorithm_settings.add(name=name, value=value)
    try:
        stub.ValidateEarlyStoppingSettings(
            pb.ValidateEarlyStoppingSettingsRequest(early_stopping=spec), timeout=10
        )
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# --- Katib's unit tests, driven over the wire -------------------------------------------------


def test_katib_validate_cases(es_stub):
    ok = validate(es_stub, "medianstop", ("min_trials_required", "2"), ("start_step", "5"))
    assert ok == (grpc.StatusCode.OK, "")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert validate(es_stub, "unknown") == (bad, "unknown algorithm name unknown")
    assert validate(es_stub, "medianstop", ("unknown_conf", "100")) == (
        bad,
        "unknown setting unknown_conf for algorithm medianstop",
    )
    assert validate(es_stub, "medianstop", ("min_trials_required", "0")) == (
        bad,
        "min_trials_required must be greater than zero (>0)",
    )
    assert validate(es_stub, "medianstop", ("start_step", "0")) == (
        bad,
        "start_step must be greater or equal than one (>=1)",
    )


def test_katib_get_rules_with_condition_less_trials_needs_no_db(es_stub):
    request = pb.GetEarlyStoppingRulesRequest(
        experiment=pb.Experiment(name="test"),
        trials=[pb.Trial(name="test-asfjh"), pb.Trial(name="test-234hs")],
        db_manager_address="katib-db-manager.kubeflow:6789",  # unreachable here: never dialled
    )
    reply = es_stub.GetEarlyStoppingRules(request, timeout=10)
    assert list(reply.early_stopping_rules) == []


# --- settings --------------------------------------------------------------------------------


def test_every_settings_problem_is_reported_at_once(es_stub):
    code, details = validate(
        es_stub, "medianstop", ("start_step", "zero"), ("min_trials_required", "-1"), ("x", "1")
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    problems = details.split("; ")
    assert problems[0].startswith("failed to validate start_step(zero): ")
    assert "expected an integer" in problems[0]
    assert problems[1:] == [
        "min_trials_required must be greater than zero (>0)",
        "unknown setting x for algorithm medianstop",
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (("reduction_factor", "1"), "reduction_factor must be greater or equal than two (>=2)"),
        (("min_resource", "0"), "min_resource must be greater or equal than one (>=1)"),
        (("min_trials_required", "0"), "min_trials_required must be greater than zero (>0)"),
        (("eta", "3"), "unknown setting eta for algorithm asha"),
    ],
)
def test_asha_settings_messages_name_the_setting(es_stub, setting, message):
    assert validate(es_stub, "asha", setting) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_asha_and_none_validate(es_stub):
    assert validate(es_stub, "asha", ("reduction_factor", "4"), ("min_resource", "2"))[0] is (
        grpc.StatusCode.OK
    )
    assert validate(es_stub, "none")[0] is grpc.StatusCode.OK
    assert validate(es_stub, "none", ("start_step", "1")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown setting start_step for algorithm none",
    )


# --- the median rule over the wire ------------------------------------------------------------


def test_median_rules_from_the_db_match_hand_computed_medians(es_stub, db_server, report):
    a = report("loss", [4, 2, 1, 1])
    b = report("loss", [6, 4, 3, 2])
    c = report("loss", [2, 2, 2, 2])
    d = report("loss", [9, 7])  # early-stopped: its history counts
    running = report("loss", [0, 0, 0, 0, 0])  # not completed: ignored by the median rule
    trials = [
        trial(a),
        trial(b),
        trial(c),
        trial(d, EARLYSTOPPED),
        trial(running, RUNNING),
        trial("failed", FAILED),
    ]
    exp = experiment(settings=[("min_trials_required", "4"), ("start_step", "2")])
    rules = rules_of(es_stub, exp, trials, db_server.address)
    assert rules == [
        ("loss", pytest.approx(4.0), GREATER, 2),
        ("loss", pytest.approx(10 / 3), GREATER, 3),
        ("loss", pytest.approx(2.875), GREATER, 4),
    ]
    # Katib's collector gets one rule only: the median at start_step.
    assert rules_of(es_stub, exp, trials, db_server.address, semantics=None) == rules[:1]
    assert rules_of(es_stub, exp, trials, db_server.address, semantics="katib") == rules[:1]
    # Without the early-stopped trial there are too few completed trials.
    assert rules_of(es_stub, exp, trials[:3], db_server.address) == []


def test_maximised_objective_gets_less_rules_and_skips_unavailable(es_stub, db_server, report):
    names = [
        report("accuracy", ["0.2", "unavailable", "0.6"]),
        report("accuracy", ["0.4", "0.8"]),
        report("accuracy", ["0.9", "0.9"]),
    ]
    exp = experiment(settings=[("start_step", "1")], metric="accuracy", objective=pb.MAXIMIZE)
    rules = rules_of(es_stub, exp, [trial(n) for n in names], db_server.address)
    # running means: (0.2, 0.4) (0.4, 0.6) (0.9, 0.9): medians 0.4 then 0.6
    assert rules == [
        ("accuracy", pytest.approx(0.4), LESS, 1),
        ("accuracy", pytest.approx(0.6), LESS, 2),
    ]


def test_rule_values_are_exact_decimals(es_stub, db_server, report):
    names = [report("loss", [v]) for v in (0.1, 0.2, 0.30000000000000004)]
    exp = experiment(settings=[("start_step", "1")])
    request = pb.GetEarlyStoppingRulesRequest(
        experiment=exp, trials=[trial(n) for n in names], db_manager_address=db_server.address
    )
    reply = es_stub.GetEarlyStoppingRules(request, timeout=10)
    assert [r.value for r in reply.early_stopping_rules] == ["0.2"]


def test_asha_rules_over_the_wire(es_stub, db_server, report):
    a = report("loss", [5, 4, 3, 2])
    b = report("loss", [3, 3, 1, 1])
    c = report("loss", [4, 2])  # still running: counts at the rungs it reached
    d = report("loss", [6])
    trials = [trial(a), trial(b), trial(c, RUNNING), trial(d, EARLYSTOPPED)]
    settings = [("min_resource", "1"), ("reduction_factor", "2"), ("min_trials_required", "2")]
    rules = rules_of(es_stub, experiment("asha", settings), trials, db_server.address)
    assert rules == [
        ("loss", 4.0, GREATER, 1),
        ("loss", 3.0, GREATER, 2),
        ("loss", 1.0, GREATER, 4),
    ]
    assert rules_of(es_stub, experiment("none"), trials, db_server.address) == []


# --- bad input --------------------------------------------------------------------------------


def call(stub, request, metadata=None):
    try:
        stub.GetEarlyStoppingRules(request, timeout=10, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def test_bad_requests_are_invalid_argument_and_the_server_keeps_serving(es_stub, db_server):
    good = pb.GetEarlyStoppingRulesRequest(
        experiment=experiment(), trials=[trial("x")], db_manager_address=db_server.address
    )
    bad_address = pb.GetEarlyStoppingRulesRequest()
    bad_address.CopyFrom(good)
    bad_address.db_manager_address = "no-port"
    no_objective = pb.GetEarlyStoppingRulesRequest()
    no_objective.CopyFrom(good)
    no_objective.experiment.spec.objective.Clear()
    twice = pb.GetEarlyStoppingRulesRequest()
    twice.CopyFrom(good)
    twice.trials.append(trial("x"))
    bad_setting = pb.GetEarlyStoppingRulesRequest()
    bad_setting.CopyFrom(good)
    bad_setting.experiment.spec.early_stopping.algorithm_settings.add(name="start_step", value="0")
    cases = [
        (bad_address, None, "db_manager_address must be host:port, got 'no-port'"),
        (no_objective, None, "objective_metric_name is empty"),
        (twice, None, "trials[1].name 'x' appears twice"),
        (bad_setting, None, "start_step must be greater or equal than one (>=1)"),
        (good, [(SEMANTICS_KEY, "all")], "katib-rule-semantics must be one of katib, any"),
    ]
    for request, metadata, message in cases:
        code, details = call(es_stub, request, metadata)
        assert code is grpc.StatusCode.INVALID_ARGUMENT and message in details, (code, details)
    assert call(es_stub, good) == (grpc.StatusCode.OK, "")


def test_an_unreachable_db_is_unavailable(es_stub):
    request = pb.GetEarlyStoppingRulesRequest(
        experiment=experiment(), trials=[trial("x")], db_manager_address=f"127.0.0.1:{free_port()}"
    )
    code, details = call(es_stub, request)
    assert code is grpc.StatusCode.UNAVAILABLE, details


def test_db_address_from_the_server_when_the_request_has_none(db_server, report):
    names = [report("loss", [1.0]), report("loss", [3.0]), report("loss", [2.0])]
    server = start(services(db_server.address), host="127.0.0.1", port=0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            from katib.api import api_pb2_grpc

            stub = api_pb2_grpc.EarlyStoppingStub(channel)
            exp = experiment(settings=[("start_step", "1")])
            assert rules_of(stub, exp, [trial(n) for n in names], "") == [
                ("loss", 2.0, GREATER, 1)
            ]
    finally:
        server.stop(grace=1)


def test_set_trial_status(es_stub):
    assert es_stub.SetTrialStatus(pb.SetTrialStatusRequest(trial_name="t-1"), timeout=10) == (
        pb.SetTrialStatusReply()
    )
    with pytest.raises(grpc.RpcError) as err:
        es_stub.SetTrialStatus(pb.SetTrialStatusRequest(), timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_completed_trials_without_numeric_logs_are_ignored(es_stub, db_server, report):
    # Katib's medianstop divides by zero on the first and fails to parse the second.
    names = ["never-reported", report("loss", ["unavailable"]), report("loss", [1.0])]
    exp = experiment(settings=[("min_trials_required", "1"), ("start_step", "1")])
    rules = rules_of(es_stub, exp, [trial(n) for n in names], db_server.address)
    assert rules == [("loss", 1.0, GREATER, 1)]
    exp = experiment(settings=[("min_trials_required", "2")])
    assert rules_of(es_stub, exp, [trial(n) for n in names], db_server.address) == []
