"""Protobuf <-> domain conversion of the experiment and the reply for the suggestion service.

Errors in the experiment name the offending field, e.g.
``experiment.spec.parameter_specs.parameters[1] ('lr'): min (2) must not exceed max (1)``.

Trials are read lazily and cached per experiment by :mod:`katib.suggestion.lazy`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from katib.api import api_pb2 as pb
from katib.api.cache import (
    STR_BYTES,
    estimate_bytes,
    shared,
)
from katib.api.errors import InvalidArgument
from katib.api.settings import format_state
from katib.api.trials import Direction
from katib.suggestion.base import ExperimentInfo, Suggestion, SuggestResult
from katib.suggestion.lazy import parse_trial
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace

logger = logging.getLogger(__name__)

#: The most parameters an experiment may have (INVALID_ARGUMENT beyond it). Far above any real
#: tuning problem; it bounds the work one request can cause, and keeps every algorithm inside
#: its own limits (scipy's Sobol engine, which TPE and ``sobol`` use, stops at 21 201).
MAX_PARAMETERS = 10_000

_TYPES = {
    pb.DOUBLE: ParameterType.DOUBLE,
    pb.INT: ParameterType.INT,
    pb.DISCRETE: ParameterType.DISCRETE,
    pb.CATEGORICAL: ParameterType.CATEGORICAL,
}
_DISTRIBUTIONS = {
    pb.DISTRIBUTION_UNSPECIFIED: Distribution.UNIFORM,
    pb.UNIFORM: Distribution.UNIFORM,
    pb.LOG_UNIFORM: Distribution.LOG_UNIFORM,
    pb.NORMAL: Distribution.NORMAL,
    pb.LOG_NORMAL: Distribution.LOG_NORMAL,
}
_TYPES_OUT = {kind: number for number, kind in _TYPES.items()}
_DISTRIBUTIONS_OUT = {
    Distribution.UNIFORM: pb.UNIFORM,
    Distribution.LOG_UNIFORM: pb.LOG_UNIFORM,
    Distribution.NORMAL: pb.NORMAL,
    Distribution.LOG_NORMAL: pb.LOG_NORMAL,
}


def space_from_proto(specs: Sequence[pb.ParameterSpec]) -> SearchSpace:
    """Build the search space, reporting every bad parameter at once."""
    where = "experiment.spec.parameter_specs.parameters"
    if not specs:
        raise InvalidArgument(f"{where}: the experiment has no parameters")
    if len(specs) > MAX_PARAMETERS:
        raise InvalidArgument(
            f"{where}: {len(specs)} parameters; this service accepts at most {MAX_PARAMETERS}"
        )
    params: list[ParameterSpec] = []
    problems: list[str] = []
    for i, spec in enumerate(specs):
        field = f"{where}[{i}] ({spec.name!r})"
        ptype = _TYPES.get(spec.parameter_type)
        if ptype is None:
            problems.append(
                f"{field}: parameter_type must be DOUBLE, INT, DISCRETE or CATEGORICAL"
            )
            continue
        fs = spec.feasible_space
        distribution = _DISTRIBUTIONS.get(fs.distribution)
        if distribution is None:
            problems.append(f"{field}: unknown distribution {fs.distribution}")
            continue
        try:
            params.append(
                ParameterSpec.from_strings(
                    spec.name,
                    ptype,
                    low=fs.min,
                    high=fs.max,
                    step=fs.step,
                    choices=list(fs.list),
                    distribution=distribution,
                )
            )
        except InvalidArgument as exc:
            problems.extend(f"{where}[{i}]: {p}" for p in exc.problems)
    if problems:
        raise InvalidArgument(problems)
    try:
        return SearchSpace(tuple(params))
    except InvalidArgument as exc:
        raise InvalidArgument([f"{where}: {p}" for p in exc.problems]) from None


def cached_space(specs: pb.ExperimentSpec.ParameterSpecs) -> SearchSpace:
    """:func:`space_from_proto`, remembered by the specs' bytes in the shared cache.

    Spaces are immutable, so requests of one experiment share one (and the per-space
    precomputation its parameters cache).
    """
    if len(specs.parameters) > MAX_PARAMETERS:
        return space_from_proto(specs.parameters)  # raises, naming the limit
    raw = specs.SerializeToString(deterministic=True)
    key = ("space", raw)
    store = shared()
    space: SearchSpace | None = store.get(key)
    if space is None:
        space = space_from_proto(specs.parameters)
        store.put(key, space, estimate_bytes(space) + len(raw) + STR_BYTES)
    return space


def parameter_to_proto(spec: ParameterSpec) -> pb.ParameterSpec:
    """One parameter as Katib's ``ParameterSpec`` (min/max/step strings, or the list).

    The inverse of :func:`space_from_proto` for one parameter, used by clients that build
    experiments from domain objects (the benchmark harness).
    """
    fs = pb.FeasibleSpace()
    if spec.is_numeric_range:
        assert spec.low is not None and spec.high is not None
        fs.distribution = _DISTRIBUTIONS_OUT[spec.distribution]
        fs.min, fs.max = spec.format(spec.low), spec.format(spec.high)
        if spec.step is not None:
            fs.step = str(int(spec.step)) if spec.type is ParameterType.INT else repr(spec.step)
    else:
        fs.list.extend(spec.choices)
    return pb.ParameterSpec(
        name=spec.name, parameter_type=_TYPES_OUT[spec.type], feasible_space=fs
    )


def algorithm_from_proto(experiment: pb.Experiment) -> tuple[str, list[tuple[str, str]]]:
    """The algorithm's name and its ``(name, value)`` setting pairs."""
    algorithm = experiment.spec.algorithm
    if not algorithm.algorithm_name:
        raise InvalidArgument("experiment.spec.algorithm.algorithm_name must not be empty")
    return algorithm.algorithm_name, [(s.name, s.value) for s in algorithm.algorithm_settings]


def experiment_from_proto(experiment: pb.Experiment) -> ExperimentInfo:
    """The experiment as a domain object (its search space decoded and validated).

    ``objective_metric`` is the experiment's ``objective_metric_name``, possibly empty: trials
    are then scored by the metric named in their own ``spec.objective``, as Katib's services
    do. An experiment with a ``nas_config`` and no parameters gets a
    :class:`~katib.nas.space.NasSpace` and its NAS config decoded.
    """
    spec = experiment.spec
    nas_config = None
    space: SearchSpace
    if spec.HasField("nas_config") and not spec.parameter_specs.parameters:
        from katib.nas.proto import nas_config_from_proto
        from katib.nas.space import NasSpace

        nas_config = nas_config_from_proto(spec.nas_config)
        space = NasSpace()
    else:
        space = cached_space(spec.parameter_specs)
    objective = spec.objective
    direction = Direction.MAXIMIZE if objective.type == pb.MAXIMIZE else Direction.MINIMIZE
    return ExperimentInfo(
        name=experiment.name,
        space=space,
        direction=direction,
        objective_metric=objective.objective_metric_name,
        max_trial_count=spec.max_trial_count or None,
        parallel_trial_count=spec.parallel_trial_count or None,
        nas_config=nas_config,
    )


def check_objective(experiment: pb.Experiment, trials: Sequence[bytes] = ()) -> None:
    """Model-based algorithms need a direction and a metric name.

    The metric name may come from the trials' ``spec.objective`` instead of the experiment's
    (Katib's services read each trial's own); it is then checked on the first trial.
    """
    objective = experiment.spec.objective
    problems = []
    if objective.type not in (pb.MINIMIZE, pb.MAXIMIZE):
        problems.append("experiment.spec.objective.type must be MINIMIZE or MAXIMIZE")
    if not objective.objective_metric_name and trials:
        first = parse_trial(pb.Trial, trials[0], 0)
        if not first.spec.objective.objective_metric_name:
            problems.append(
                "experiment.spec.objective.objective_metric_name is empty, and so is "
                f"trials[0].spec.objective.objective_metric_name (trial {first.name!r}): "
                "name the objective metric in one of them"
            )
    if problems:
        raise InvalidArgument(problems)


def reply_from_suggestions(
    space: SearchSpace, suggestions: Sequence[Suggestion]
) -> pb.GetSuggestionsReply:
    """Suggestions as Katib assignments, with their trial names and labels when set."""
    reply = pb.GetSuggestionsReply()
    for suggestion in suggestions:
        item = reply.parameter_assignments.add()
        for name, value in space.format(suggestion.point):
            item.assignments.add(name=name, value=value)
        if suggestion.name is not None:
            item.trial_name = suggestion.name
        for key, value in suggestion.labels.items():
            item.labels[key] = value
    return reply


def algorithm_with_state(spec: pb.AlgorithmSpec, result: SuggestResult) -> pb.AlgorithmSpec:
    """The request's algorithm spec with the result's state overlaid (Katib's merge by name).

    Without a state the spec is echoed unchanged, as Katib's own services do.
    """
    echoed = pb.AlgorithmSpec()
    echoed.CopyFrom(spec)
    if result.state is None:
        return echoed
    state = dict(format_state(result.state))
    for pair in echoed.algorithm_settings:
        if pair.name in state:
            pair.value = state.pop(pair.name)
    for name, value in state.items():
        echoed.algorithm_settings.add(name=name, value=value)
    return echoed
