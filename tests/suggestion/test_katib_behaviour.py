"""Where Katib's own services are lenient on purpose, ours answer as they do (issue 12).

(a) an experiment whose objective names no metric: each trial is scored by the metric in its
own ``spec.objective``; (b) ``ValidateAlgorithmSettings`` checks only the settings when the
experiment has no parameters (the admission webhook checks the rest).
"""

from __future__ import annotations

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.suggestion import registry
from katib.suggestion.lazy import history_from_proto
from katib.suggestion.proto import experiment_from_proto
from tests.suggestion.requests import FINITE, MIXED, assignments, experiment, request, trial

TPE = {"n_startup_trials": "2", "random_state": "5"}


def katib_trials(metric: str | None, count: int = 8) -> list[pb.Trial]:
    """Trials as Katib's controller sends them: the objective repeated in each trial's spec,
    with the objective metric and another one observed."""
    trials = []
    for i in range(count):
        lr = 0.0001 + 0.01 * i
        t = trial(f"t{i}", [("lr", repr(lr)), ("momentum", "0.7"), ("dropout", "0.2"),
                            ("layers", "3"), ("units", "64"), ("batch", "32"),
                            ("optimizer", "adam")])  # fmt: skip
        if metric is not None:
            t.spec.objective.CopyFrom(
                pb.ObjectiveSpec(type=pb.MAXIMIZE, objective_metric_name=metric)
            )
        t.status.observation.metrics.add(name="metric-1", value="123")
        t.status.observation.metrics.add(name="metric-2", value=repr(-((lr - 0.03) ** 2)))
        trials.append(t)
    return trials


def no_metric_name(algorithm: str, name: str) -> pb.Experiment:
    exp = experiment(algorithm, MIXED, TPE, name=name, maximize=True)
    exp.spec.objective.objective_metric_name = ""
    return exp


def test_trials_are_scored_by_the_metric_their_spec_names() -> None:
    exp = no_metric_name("tpe", "katib-a")
    history = history_from_proto(katib_trials("metric-2"), experiment_from_proto(exp))
    assert [t.value for t in history.completed] == [
        -((0.0001 + 0.01 * i - 0.03) ** 2) for i in range(8)
    ]


def test_objective_metric_from_the_trials_over_the_wire(suggestion_stub) -> None:
    """Katib's test_optuna_service: no metric name in the experiment, trials carry it. The
    answer equals the one for an experiment that names the metric itself."""
    fallback = no_metric_name("tpe", "katib-a")
    named = experiment("tpe", MIXED, TPE, name="katib-a", maximize=True)
    named.spec.objective.objective_metric_name = "metric-2"
    got = suggestion_stub.GetSuggestions(request(fallback, katib_trials("metric-2"), 2))
    assert len(got.parameter_assignments) == 2
    expected = suggestion_stub.GetSuggestions(request(named, katib_trials("metric-2"), 2))
    assert assignments(got) == assignments(expected)
    unvalued = suggestion_stub.GetSuggestions(request(fallback, katib_trials("metric-9"), 2))
    assert assignments(unvalued) != assignments(got)  # the values really were read


def test_no_metric_name_anywhere_is_invalid_argument(suggestion_stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        suggestion_stub.GetSuggestions(request(no_metric_name("tpe", "x"), katib_trials(None)))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "objective_metric_name" in err.value.details()
    assert "trials[0].spec.objective" in err.value.details()
    first = suggestion_stub.GetSuggestions(request(no_metric_name("tpe", "x"), [], 2))
    assert len(first.parameter_assignments) == 2  # nothing to score yet: nothing to name


def validate(stub: api_pb2_grpc.SuggestionStub, spec: pb.ExperimentSpec) -> grpc.StatusCode:
    try:
        stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(
                experiment=pb.Experiment(name="validation-test", spec=spec)
            )
        )
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("algorithm", registry.names())
def test_settings_alone_validate_without_parameters(algorithm, suggestion_stub) -> None:
    """Katib's test_validate_algorithm_settings: valid settings, no parameters (and no
    objective) is OK; bad settings are still INVALID_ARGUMENT."""
    good = pb.ExperimentSpec(
        max_trial_count=100,
        algorithm=pb.AlgorithmSpec(
            algorithm_name=algorithm,
            algorithm_settings=[pb.AlgorithmSetting(name="random_state", value="1")],
        ),
    )
    if "random_state" not in registry.get(algorithm).settings_class.__dataclass_fields__:
        del good.algorithm.algorithm_settings[:]
    assert validate(suggestion_stub, good) is grpc.StatusCode.OK
    bad = pb.ExperimentSpec()
    bad.CopyFrom(good)
    bad.algorithm.algorithm_settings.add(name="invalid", value="5")
    assert validate(suggestion_stub, bad) is grpc.StatusCode.INVALID_ARGUMENT


def test_parameters_are_still_required_to_suggest(suggestion_stub) -> None:
    spec = pb.ExperimentSpec(
        objective=pb.ObjectiveSpec(type=pb.MINIMIZE, objective_metric_name="loss"),
        algorithm=pb.AlgorithmSpec(algorithm_name="random"),
    )
    with pytest.raises(grpc.RpcError) as err:
        suggestion_stub.GetSuggestions(
            pb.GetSuggestionsRequest(
                experiment=pb.Experiment(name="e", spec=spec), current_request_number=1
            )
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "no parameters" in err.value.details()


def test_fractional_int_step_is_still_rejected(suggestion_stub) -> None:
    params = [*FINITE, ("k", pb.INT, {"min": "1", "max": "5", "step": "0.5"})]
    spec = experiment("random", params).spec
    assert validate(suggestion_stub, spec) is grpc.StatusCode.INVALID_ARGUMENT
