"""Random Katib experiments: nothing surfaces as INTERNAL, and Validate OK implies Get OK."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from katib.api import api_pb2 as pb
from katib.suggestion import registry
from tests.suggestion.requests import assignments, experiment, request
from tests.suggestion.test_conformance import assert_in_space, settings_for

NUMBERS = [
    "",
    "0",
    "1",
    "-1",
    "0.5",
    "2.5",
    "3",
    "1e-17",
    "1e-300",
    "5e-324",
    "1e19",
    "1e308",
    "-1e308",
    "9007199254740993",
    "0.1234567890123451",
    "nan",
    "abc",
]
STEPS = ["", "", "1", "0.5", "0.001", "1e-17", "1e-300", "-1", "0"]
LISTS = [[], ["a"], ["1", "2"], ["1e-3", "0.001"], ["x", "y", "z"], ["1", "1.0"]]


@st.composite
def params(draw):
    out = []
    for j in range(draw(st.integers(1, 3))):
        ptype = draw(st.sampled_from([pb.DOUBLE, pb.INT, pb.DISCRETE, pb.CATEGORICAL, 0]))
        if ptype in (pb.DISCRETE, pb.CATEGORICAL):
            fs = {"list": draw(st.sampled_from(LISTS))}
        else:
            fs = {
                "min": draw(st.sampled_from(NUMBERS)),
                "max": draw(st.sampled_from(NUMBERS)),
                "step": draw(st.sampled_from(STEPS)),
                "distribution": draw(st.integers(0, 5)),
            }
        out.append((f"p{j}", ptype, fs))
    return out


@pytest.mark.parametrize("algorithm", registry.names(include_nas=False))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(space=params(), count=st.integers(1, 5))
def test_random_experiments_never_fail_internally(algorithm, space, count, suggestion_stub):
    exp = experiment(algorithm, space, settings_for(algorithm, space, "1"), max_trials=count)
    try:
        suggestion_stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(experiment=exp)
        )
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT, err.details()
        return
    got = assignments(suggestion_stub.GetSuggestions(request(exp, [], count)))
    assert 1 <= len(got) <= count
    assert_in_space(space, got, exp)
