"""nasConfig decoding, op-id expansion, validation and Katib's quoting."""

from __future__ import annotations

import pytest

from katib.nas.config import NasConfig, Operation, OpParameter, quote, unquote, validate_operations
from katib.nas.proto import nas_config_from_proto
from tests.nas.requests import nas_experiment


def test_operations_expand_like_katib_first_parameter_slowest() -> None:
    config = nas_config_from_proto(nas_experiment("enas").spec.nas_config)
    choices = config.op_choices()
    assert [(c.id, c.type, c.params) for c in choices] == [
        (0, "convolution", {"filter_size": "3", "num_filter": "8"}),
        (1, "convolution", {"filter_size": "3", "num_filter": "16"}),
        (2, "reduction", {"reduction_type": "max_pooling", "pool_size": 2}),
        (3, "reduction", {"reduction_type": "max_pooling", "pool_size": 3}),
    ]
    assert choices[2].as_dict() == {
        "opt_id": 2,
        "opt_type": "reduction",
        "opt_params": {"reduction_type": "max_pooling", "pool_size": 2},
    }


def test_double_ranges_are_exact_and_never_pass_max() -> None:
    p = OpParameter("rate", "double", low="0.1", high="0.35", step="0.1")
    assert p.values() == [0.1, 0.2, 0.3]  # Katib's arange trimming path crashes here


def test_darts_primitives_use_the_first_parameter_and_keep_skip_connection() -> None:
    config = NasConfig(
        1,
        (),
        (),
        (
            Operation(
                "separable_convolution", (OpParameter("filter_size", "categorical", ("3", "5")),)
            ),
            Operation("skip_connection", ()),
        ),
    )
    assert config.darts_primitives() == [
        "separable_convolution_3x3",
        "separable_convolution_5x5",
        "skip_connection",
    ]
    assert [c.type for c in config.op_choices()] == ["separable_convolution"] * 2 + [
        "skip_connection"
    ]


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (OpParameter("", "categorical", ("1",)), "missing parameter name"),
        (OpParameter("k", "", ("1",)), "parameter type"),
        (OpParameter("k", "categorical"), "list must not be empty"),
        (OpParameter("k", "int", low="", high=""), "both min and max"),
        (OpParameter("k", "double", low="0", high="1"), "step is required"),
        (OpParameter("k", "int", low="3", high="1", step="1"), "must not exceed max"),
        (OpParameter("k", "int", low="1", high="3", step="0"), "step must be > 0"),
    ],
)
def test_invalid_parameters_are_named(param: OpParameter, message: str) -> None:
    problems = validate_operations((Operation("conv", (param,)),), "ops")
    assert len(problems) == 1 and message in problems[0] and problems[0].startswith("ops[0]")


def test_missing_operation_type_and_no_operations() -> None:
    assert "operation_type" in validate_operations((Operation("", ()),), "ops")[0]
    assert "at least one operation" in validate_operations((), "ops")[0]


def test_quote_round_trips_and_accepts_katib_cli_quoting() -> None:
    value = {"embedding": {"0": {"opt_params": {"k": "3"}}}, "sizes": [8, 8, 1]}
    text = quote(value)
    assert '"' not in text
    assert unquote(text) == value
    assert unquote(f'"{text}"') == value  # the quotes Katib's YAML puts around the argument
