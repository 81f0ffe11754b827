"""Search space: validation messages, grids, priors, and encode/decode properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from katib.api.errors import InvalidArgument
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace

D, I, DISC, CAT = (
    ParameterType.DOUBLE,
    ParameterType.INT,
    ParameterType.DISCRETE,
    ParameterType.CATEGORICAL,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": D, "low": 2.0, "high": 1.0}, "min (2) must not exceed max (1)"),
        ({"type": D, "low": 0.0, "high": 1.0, "step": -0.1}, "step (-0.1) must be a positive"),
        (
            {"type": D, "low": 0.0, "high": 1.0, "distribution": Distribution.LOG_UNIFORM},
            "must be positive for distribution logUniform",
        ),
        ({"type": I, "low": 0.5, "high": 3.0}, "min (0.5) must be an integer"),
        ({"type": D, "low": None, "high": 1.0}, "min and max are required"),
        ({"type": CAT, "choices": ()}, "list must not be empty"),
        ({"type": CAT, "choices": ("a", "a")}, "duplicate"),
        ({"type": DISC, "choices": ("1", "x")}, "must be numbers"),
        ({"type": DISC, "choices": ("1", "1.0")}, "duplicate"),
        ({"type": CAT, "choices": ("a",), "low": 1.0}, "takes a list"),
    ],
)
def test_invalid_specs_name_parameter_and_problem(kwargs, message):
    with pytest.raises(InvalidArgument) as err:
        ParameterSpec("p", **kwargs)
    assert "'p'" in str(err.value) and message in str(err.value)


def test_from_strings_reports_every_bad_number():
    with pytest.raises(InvalidArgument) as err:
        ParameterSpec.from_strings("lr", D, low="abc", high="inf", step="0.1")
    assert len(err.value.problems) == 2
    assert "min 'abc'" in str(err.value) and "max 'inf'" in str(err.value)


def test_duplicate_names_rejected():
    p = ParameterSpec("x", I, low=0, high=1)
    with pytest.raises(InvalidArgument, match="repeated: x"):
        SearchSpace((p, p))


def test_stepped_double_grid_has_no_float_artefacts():
    spec = ParameterSpec.from_strings("lr", D, low="0.01", high="0.05", step="0.005")
    assert spec.grid() == [0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05]
    assert [spec.format(v) for v in spec.grid()][2] == "0.02"


def test_int_grid_stops_at_max_and_discrete_sorted():
    assert ParameterSpec("n", I, low=1, high=10, step=4).grid() == [1, 5, 9]
    spec = ParameterSpec("d", DISC, choices=("10", "1", "2.5"))
    assert spec.grid() == [1.0, 2.5, 10.0] and spec.format(2.5) == "2.5"


def test_uniform_int_gives_every_value_a_fair_share():
    spec = ParameterSpec("n", I, low=1, high=5)
    u = np.random.default_rng(0).random(50_000)
    counts = np.bincount(spec.decode(u), minlength=6)[1:]
    # chi-square goodness of fit; false-failure rate 1e-4
    assert stats.chisquare(counts).pvalue > 1e-4


def test_log_uniform_prior_matches_scipy_loguniform():
    spec = ParameterSpec("lr", D, low=1e-4, high=1e-1, distribution=Distribution.LOG_UNIFORM)
    x = np.array(spec.decode(np.random.default_rng(1).random(20_000)))
    assert stats.kstest(x, stats.loguniform(1e-4, 1e-1).cdf).pvalue > 1e-4


def test_normal_prior_is_truncated_normal_inside_bounds():
    spec = ParameterSpec("w", D, low=0.0, high=6.0, distribution=Distribution.NORMAL)
    x = np.array(spec.decode(np.random.default_rng(2).random(20_000)))
    assert x.min() >= 0.0 and x.max() <= 6.0
    oracle = stats.truncnorm(-3, 3, loc=3.0, scale=1.0)
    assert stats.kstest(x, oracle.cdf).pvalue > 1e-4


def test_log_normal_int_stays_in_bounds():
    spec = ParameterSpec("b", I, low=32, high=64, distribution=Distribution.LOG_NORMAL)
    x = np.array(spec.decode(np.random.default_rng(3).random(5_000)))
    assert x.min() >= 32 and x.max() <= 64 and abs(np.median(x) - np.sqrt(32 * 64)) < 2


def test_constant_parameter():
    spec = ParameterSpec("epochs", I, low=3, high=3)
    assert spec.decode(np.array([0.0, 0.5, 1.0])) == [3, 3, 3] and spec.cardinality == 1


# -- properties ---------------------------------------------------------------------------


@st.composite
def specs(draw):
    kind = draw(st.sampled_from(["double", "stepped", "int", "discrete", "categorical"]))
    dist = draw(st.sampled_from(list(Distribution)))
    if dist.is_log:
        low = draw(st.floats(1e-6, 1e6))
    else:
        low = draw(st.floats(-1e6, 1e6))
    width = draw(st.one_of(st.just(0.0), st.floats(1e-6, 1e6)))
    if kind == "double":
        return ParameterSpec("p", D, low=low, high=low + width, distribution=dist)
    if kind == "stepped":
        step = draw(st.floats(1e-6, 1e3))
        return ParameterSpec("p", D, low=low, high=low + width, step=step, distribution=dist)
    if kind == "int":
        lo = draw(st.integers(1, 10**6)) if dist.is_log else draw(st.integers(-(10**9), 10**9))
        return ParameterSpec(
            "p",
            I,
            low=lo,
            high=lo + draw(st.integers(0, 10**7)),
            step=draw(st.integers(1, 10**4)),
            distribution=dist,
        )
    values = draw(st.lists(st.integers(-1000, 1000), min_size=1, max_size=12, unique=True))
    if kind == "discrete":
        return ParameterSpec("p", DISC, choices=tuple(str(v / 4) for v in values))
    return ParameterSpec("p", CAT, choices=tuple(f"c{v}" for v in values))


@settings(max_examples=300, deadline=None)
@given(specs(), st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_any_u_decodes_to_a_feasible_value_that_round_trips(spec, us):
    values = spec.decode(np.array(us))
    for v in values:
        assert spec.parse(spec.format(v)) == pytest.approx(v) or spec.parse(spec.format(v)) == v
        if spec.is_numeric_range:
            assert spec.low <= v <= spec.high
    # encode then decode is the identity on feasible values (to rounding for continuous ones)
    again = spec.decode(spec.encode(values))
    if spec.cardinality is None:
        np.testing.assert_allclose(again, values, rtol=1e-9, atol=1e-6 * (spec.high - spec.low))
    else:
        assert again == values
    encoded = spec.encode(values)
    assert np.all((encoded >= 0) & (encoded <= 1))


@settings(max_examples=100, deadline=None)
@given(specs())
def test_grid_values_are_distinct_and_round_trip(spec):
    if spec.cardinality is None:
        return
    grid = [spec.value_at(k) for k in range(min(spec.cardinality, 500))]
    grid += [spec.value_at(k) for k in range(max(spec.cardinality - 500, 500), spec.cardinality)]
    assert len({spec.format(v) for v in grid}) == len(grid)
    assert spec.decode(spec.encode(grid)) == grid
    if spec.type is not CAT:
        assert grid == sorted(grid)
    if spec.is_numeric_range:
        assert spec.low <= grid[0] and grid[-1] <= spec.high


@settings(max_examples=100, deadline=None)
@given(specs())
def test_proto_round_trip(spec):
    from katib.suggestion.proto import parameter_to_proto, space_from_proto

    (back,) = space_from_proto([parameter_to_proto(spec)]).params
    assert back == spec and back.cardinality == spec.cardinality
