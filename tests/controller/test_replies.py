"""Replies from an untrusted suggestion service: values against the space, trial names."""

from __future__ import annotations

import pytest

from katib.api import api_pb2 as pb
from katib.api.errors import FailedPrecondition
from katib.controller.replies import (
    check_reply,
    resource_parameter,
    trial_name_problem,
    value_problem,
)
from katib.controller.spec import Experiment, FeasibleSpace, Parameter, ParameterType
from katib.controller.validation import load_experiment
from tests.controller.experiments import experiment

T = ParameterType


def param(ptype: ParameterType, **space: object) -> Parameter:
    return Parameter("p", ptype, FeasibleSpace(**space))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("parameter", "value", "ok"),
    [
        (param(T.DOUBLE, min="0", max="1"), "0.5", True),
        (param(T.DOUBLE, min="0", max="1"), "1", True),
        (param(T.DOUBLE, min="0", max="1"), "1.0001", False),
        (param(T.DOUBLE, min="0", max="1"), "inf", False),
        (param(T.DOUBLE, min="0", max="1"), "abc", False),
        (param(T.DOUBLE, min="0.01", max="0.05", step="0.01"), "0.03", True),
        (param(T.DOUBLE, min="0.01", max="0.05", step="0.01"), "0.035", False),
        (param(T.INT, min="1", max="10"), "3", True),
        (param(T.INT, min="1", max="10"), "3.0", True),
        (param(T.INT, min="1", max="10"), "3.5", False),
        (param(T.INT, min="1", max="10"), "11", False),
        (param(T.INT, min="10", max="100", step="10"), "40", True),
        (param(T.INT, min="10", max="100", step="10"), "45", False),
        (param(T.DISCRETE, list=("1", "2.5")), "2.50", True),
        (param(T.DISCRETE, list=("1", "2.5")), "2", False),
        (param(T.CATEGORICAL, list=("adam", "sgd")), "sgd", True),
        (param(T.CATEGORICAL, list=("adam", "sgd")), "../sgd", False),
    ],
)
def test_values_are_checked_against_the_feasible_space(
    parameter: Parameter, value: str, ok: bool
) -> None:
    assert (value_problem(parameter, value) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("exp-abc12345", True),
        ("gen-1.parent-0", True),
        ("../../x", False),
        ("/etc/passwd", False),
        ("a/b", False),
        ("x..y", False),
        (".hidden", False),
        ("Upper", False),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
    ],
)
def test_trial_name_rules(name: str, ok: bool) -> None:
    assert (trial_name_problem(name) is None) is ok


def _reply(**values: str) -> pb.GetSuggestionsReply:
    reply = pb.GetSuggestionsReply()
    item = reply.parameter_assignments.add()
    for name, value in values.items():
        item.assignments.add(name=name, value=value)
    return reply


def _spec(algorithm: str, resource: str = "epochs") -> Experiment:
    doc = experiment("/t.py", max_trials=4)
    doc["spec"]["algorithm"] = {
        "algorithmName": algorithm,
        "algorithmSettings": [
            {"name": "resource_name", "value": resource},
            {"name": "r_l", "value": "9"},
        ],
    }
    doc["spec"]["parameters"].append(
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}}
    )
    return load_experiment(doc, check_algorithm=False)


def _names(avoid: set[str]) -> str:
    return f"t-{len(avoid)}"


@pytest.mark.parametrize("algorithm", ["hyperband", "asha", "bohb", "remote-hyperband"])
def test_the_scheduled_resource_may_leave_its_declared_range(algorithm: str) -> None:
    spec = _spec(algorithm)
    resource = resource_parameter(spec)
    assert resource == "epochs"
    ok = check_reply(spec, _reply(x="0.5", y="0.05", epochs="9"), (), _names, resource)
    assert dict(ok[0].assignments)["epochs"] == "9"
    for bad, why in (("0", "positive"), ("2.5", "integer"), ("nan", "finite"), ("-3", "positive")):
        with pytest.raises(FailedPrecondition, match=why):
            check_reply(spec, _reply(x="0.5", y="0.05", epochs=bad), (), _names, resource)
    # the other parameters keep their ranges
    with pytest.raises(FailedPrecondition, match=r"x='1.5' is outside \[0, 1\]"):
        check_reply(spec, _reply(x="1.5", y="0.05", epochs="9"), (), _names, resource)


def test_only_a_multi_fidelity_algorithm_owns_a_resource() -> None:
    assert resource_parameter(_spec("random")) is None  # built-in, not multi-fidelity
    assert resource_parameter(_spec("hyperband", resource="x")) == "x"
    assert resource_parameter(_spec("hyperband", resource="nope")) is None
    spec = _spec("random")
    with pytest.raises(FailedPrecondition, match=r"epochs='9' is outside \[1, 2\]"):
        check_reply(spec, _reply(x="0.5", y="0.05", epochs="9"), (), _names)
    # the reply's algorithm overlay is read too
    assert resource_parameter(_spec("tpe", resource=""), {"resource_name": "epochs"}) is None
    assert resource_parameter(_spec("sigopt"), {"resource_name": "x"}) == "x"
