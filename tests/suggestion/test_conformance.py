"""Conformance suite every registered suggestion algorithm must pass, over real gRPC.

New algorithms join automatically: the suite is parametrised over ``registry.names()``.
Algorithms whose ``check`` rejects a continuous space (grid) run on the finite space.
Algorithms that need a resource parameter (a ``resource_name`` setting: multi-fidelity) get
one, the first int parameter, with ``r_l = 81``; those that declare ``reruns_configs`` are held
to the search ending on a finite space instead of to one trial per point.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import KatibError
from katib.api.server import start
from katib.suggestion import registry
from katib.suggestion.proto import space_from_proto
from katib.suggestion.server import services
from katib.suggestion.service import SuggestionServicer
from tests.suggestion.requests import (
    FINITE,
    MIXED,
    TINY,
    Param,
    assignments,
    experiment,
    request,
    trial,
)

ALGORITHMS = registry.names()
SEED = {"random_state": "7"}


def settings_for(algorithm: str, params: list[Param], seed: str = "7") -> dict[str, str]:
    """The seed, plus a resource parameter for algorithms that need one."""
    fields = {f.name for f in dataclasses.fields(registry.get(algorithm).settings_class)}
    out = {"random_state": seed}
    if "resource_name" in fields:
        kinds = [pb.INT, pb.DOUBLE]
        ranked = sorted(params, key=lambda p: kinds.index(p[1]) if p[1] in kinds else 2)
        out |= {"resource_name": ranked[0][0], "r_l": "81"}
    return out


def params_for(algorithm: str) -> list[Param]:
    """The mixed space when the algorithm accepts it, else the finite one."""
    try:
        SuggestionServicer().prepare(experiment(algorithm, MIXED, settings_for(algorithm, MIXED)))
    except KatibError:
        return FINITE
    return MIXED


def seeded(algorithm: str, params: list[Param], seed: str = "7", **kw: Any) -> pb.Experiment:
    """An experiment for ``algorithm`` with its settings (see :func:`settings_for`)."""
    return experiment(algorithm, params, settings_for(algorithm, params, seed), **kw)


def history(
    algorithm: str,
    stub: api_pb2_grpc.SuggestionStub,
    rounds: int = 3,
    params: list[Param] | None = None,
) -> list[pb.Trial]:
    """Trials produced by the algorithm itself, in every state, evaluated on a toy loss."""
    exp = seeded(algorithm, params or params_for(algorithm))
    space = SuggestionServicer().prepare(exp)[1].space
    trials: list[pb.Trial] = []
    conditions = [
        pb.TrialStatus.SUCCEEDED,
        pb.TrialStatus.SUCCEEDED,
        pb.TrialStatus.FAILED,
        pb.TrialStatus.RUNNING,
        pb.TrialStatus.METRICSUNAVAILABLE,
        pb.TrialStatus.EARLYSTOPPED,
    ]
    for r in range(rounds):
        reply = stub.GetSuggestions(request(exp, trials, 4))
        for a, item in zip(assignments(reply), reply.parameter_assignments, strict=True):
            i = len(trials)
            condition = conditions[i % len(conditions)]
            point = space.encode([space.parse(a)])[0]
            loss = (
                float(((point - 0.3) ** 2).sum())
                if condition in (pb.TrialStatus.SUCCEEDED, pb.TrialStatus.EARLYSTOPPED)
                else None
            )
            trials.append(trial(item.trial_name or f"t{r}-{i}", a.items(), condition, loss))
            trials[-1].spec.labels.update(item.labels)  # as our controller sends them back
    return trials


def assert_in_space(
    params: list[Param], suggested: list[dict[str, str]], exp: pb.Experiment | None = None
) -> None:
    """Every assignment is a canonical point of the space (``exp``'s algorithm's, if given)."""
    space = space_from_proto(experiment("random", params).spec.parameter_specs.parameters)
    if exp is not None:  # multi-fidelity algorithms widen their resource parameter
        space = SuggestionServicer().prepare(exp)[1].space
    for a in suggested:
        assert set(a) == set(space.names)
        point = space.parse(a)  # raises if a list value or an int is off
        for spec in space.params:
            value = point[spec.name]
            if spec.is_numeric_range:
                assert spec.low <= value <= spec.high, (spec.name, value)
                if spec.step is not None:
                    k = (value - spec.low) / spec.step
                    assert abs(k - round(k)) < 1e-6, (spec.name, value)
            assert spec.format(value) == a[spec.name], "values must print canonically"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
class TestConformance:
    def test_suggestions_lie_in_the_space(self, algorithm, suggestion_stub):
        params = params_for(algorithm)
        trials = history(algorithm, suggestion_stub)
        exp = seeded(algorithm, params)
        reply = suggestion_stub.GetSuggestions(request(exp, trials, 6))
        assert_in_space(params, assignments(reply), exp)

    @pytest.mark.parametrize("count", [1, 4, 9])
    def test_requested_count_is_honoured(self, algorithm, count, suggestion_stub):
        exp = seeded(algorithm, params_for(algorithm))
        assert (
            len(suggestion_stub.GetSuggestions(request(exp, [], count)).parameter_assignments)
            == count
        )

    def test_same_seed_same_suggestions(self, algorithm, suggestion_stub):
        trials = history(algorithm, suggestion_stub)
        req = request(seeded(algorithm, params_for(algorithm)), trials, 5)
        first = assignments(suggestion_stub.GetSuggestions(req))
        assert first == assignments(suggestion_stub.GetSuggestions(req))

    def test_different_seed_different_suggestions(self, algorithm, suggestion_stub):
        params = params_for(algorithm)
        trials = history(algorithm, suggestion_stub)
        one = seeded(algorithm, params, "1")
        two = seeded(algorithm, params, "2")
        a = assignments(suggestion_stub.GetSuggestions(request(one, trials, 5)))
        b = assignments(suggestion_stub.GetSuggestions(request(two, trials, 5)))
        if algorithm == "grid":  # an unseeded grid is lexicographic; seeds shuffle it
            a = assignments(suggestion_stub.GetSuggestions(request(one, [], 5)))
            b = assignments(suggestion_stub.GetSuggestions(request(two, [], 5)))
        assert a != b

    def test_no_duplicates_in_a_batch(self, algorithm, suggestion_stub):
        exp = seeded(algorithm, FINITE)
        trials = history(algorithm, suggestion_stub, rounds=2, params=FINITE)
        count = 40
        if registry.get(algorithm).reruns_configs:
            # The resource parameter (x, 4 values) is not free: 180 / 4 = 45 configurations,
            # each started once at the bottom rung; every trial so far is one of them.
            count = min(count, 45 - len(trials))
        got = assignments(suggestion_stub.GetSuggestions(request(exp, trials, count)))
        keys = [tuple(sorted(a.items())) for a in got]
        assert len(keys) == count and len(set(keys)) == count

    def test_exhausted_space_returns_fewer(self, algorithm, suggestion_stub):
        exp = seeded(algorithm, TINY)
        if registry.get(algorithm).reruns_configs:
            assert_search_ends(exp, suggestion_stub)
            return
        got = assignments(suggestion_stub.GetSuggestions(request(exp, [], 10)))
        assert len(got) == 4 and len({tuple(sorted(a.items())) for a in got}) == 4
        done = [trial(f"t{i}", a.items(), loss=float(i)) for i, a in enumerate(got)]
        assert assignments(suggestion_stub.GetSuggestions(request(exp, done, 3))) == []

    def test_restarted_service_answers_identically(self, algorithm, suggestion_stub):
        trials = history(algorithm, suggestion_stub)
        req = request(seeded(algorithm, params_for(algorithm)), trials, 4)
        before = assignments(suggestion_stub.GetSuggestions(req))
        fresh = start(services([algorithm]), port=0)
        try:
            with grpc.insecure_channel(fresh.address) as channel:
                after = assignments(api_pb2_grpc.SuggestionStub(channel).GetSuggestions(req))
        finally:
            fresh.stop(grace=0)
        assert before == after

    def test_maximise_and_mixed_trial_states(self, algorithm, suggestion_stub):
        params = params_for(algorithm)
        trials = history(algorithm, suggestion_stub)
        trials.append(trial("foreign", [("nope", "1")], loss=0.0))  # does not fit the space
        exp = seeded(algorithm, params, maximize=True)
        assert_in_space(
            params, assignments(suggestion_stub.GetSuggestions(request(exp, trials, 3))), exp
        )

    def test_unknown_setting_is_invalid_argument(self, algorithm, suggestion_stub):
        exp = experiment(algorithm, params_for(algorithm), {"no_such_setting": "1"})
        for call in (
            lambda: suggestion_stub.ValidateAlgorithmSettings(
                pb.ValidateAlgorithmSettingsRequest(experiment=exp)
            ),
            lambda: suggestion_stub.GetSuggestions(request(exp)),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "no_such_setting" in err.value.details()

    def test_bad_space_is_invalid_argument(self, algorithm, suggestion_stub):
        params = [("x", pb.INT, {"min": "5", "max": "1"}), ("y", pb.CATEGORICAL, {"list": []})]
        with pytest.raises(grpc.RpcError) as err:
            suggestion_stub.ValidateAlgorithmSettings(
                pb.ValidateAlgorithmSettingsRequest(experiment=experiment(algorithm, params))
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "'x'" in err.value.details() and "'y'" in err.value.details()

    def test_valid_experiment_validates(self, algorithm, suggestion_stub):
        exp = seeded(algorithm, params_for(algorithm))
        suggestion_stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(experiment=exp)
        )


def assert_search_ends(
    exp: pb.Experiment, stub: api_pb2_grpc.SuggestionStub, limit: int = 500
) -> None:
    """Drive a finite-space search, finishing every trial: it ends, with no repeat in a batch.

    Across batches a point may recur: two brackets can run the same configuration at the same
    resource, one as a promotion, when the space has fewer configurations than a bracket.
    """
    trials: list[pb.Trial] = []
    while len(trials) <= limit:
        seen: set[tuple[tuple[str, str], ...]] = set()
        reply = stub.GetSuggestions(request(exp, trials, 3))
        running = [t for t in trials if t.status.condition == pb.TrialStatus.RUNNING]
        for t in running:
            t.status.condition = pb.TrialStatus.SUCCEEDED
            t.status.observation.metrics.add(name="loss", value=str(len(t.name) % 7))
        if not reply.parameter_assignments and not running:
            return
        for item in reply.parameter_assignments:
            key = tuple(sorted((a.name, a.value) for a in item.assignments))
            assert key not in seen, f"{key} suggested twice"
            seen.add(key)
            t = trial(item.trial_name or f"t{len(trials)}", key, pb.TrialStatus.RUNNING)
            t.spec.labels.update(item.labels)
            trials.append(t)
    raise AssertionError(f"the search did not end within {limit} trials")
