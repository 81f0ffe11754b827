"""Replies from an untrusted suggestion service: values against the space, trial names."""

from __future__ import annotations

import pytest

from katib.controller.replies import trial_name_problem, value_problem
from katib.controller.spec import FeasibleSpace, Parameter, ParameterType

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
