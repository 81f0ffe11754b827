"""Protobuf <-> domain conversion for the suggestion service (the only module that does it).

Errors in the experiment name the offending field, e.g.
``experiment.spec.parameter_specs.parameters[1] ('lr'): min (2) must not exceed max (1)``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from katib.api import api_pb2 as pb
from katib.api.errors import InvalidArgument
from katib.suggestion.base import ExperimentInfo, Suggestion, SuggestResult
from katib.suggestion.history import Direction, History, Trial, TrialState, parse_objective
from katib.suggestion.settings import format_state
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, Point, SearchSpace

if TYPE_CHECKING:
    from katib.nas.config import NasConfig

logger = logging.getLogger(__name__)

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
_CONDITIONS = {
    pb.TrialStatus.CREATED: TrialState.PENDING,
    pb.TrialStatus.RUNNING: TrialState.PENDING,
    pb.TrialStatus.SUCCEEDED: TrialState.SUCCEEDED,
    pb.TrialStatus.EARLYSTOPPED: TrialState.EARLY_STOPPED,
    pb.TrialStatus.METRICSUNAVAILABLE: TrialState.METRICS_UNAVAILABLE,
    pb.TrialStatus.FAILED: TrialState.FAILED,
    pb.TrialStatus.KILLED: TrialState.FAILED,
    pb.TrialStatus.UNKNOWN: TrialState.FAILED,
}


def space_from_proto(specs: Sequence[pb.ParameterSpec]) -> SearchSpace:
    """Build the search space, reporting every bad parameter at once."""
    where = "experiment.spec.parameter_specs.parameters"
    if not specs:
        raise InvalidArgument(f"{where}: the experiment has no parameters")
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


def experiment_from_proto(
    experiment: pb.Experiment,
) -> tuple[ExperimentInfo, str, list[tuple[str, str]]]:
    """The experiment as domain objects, plus the algorithm name and its setting pairs."""
    spec = experiment.spec
    algorithm = spec.algorithm.algorithm_name
    if not algorithm:
        raise InvalidArgument("experiment.spec.algorithm.algorithm_name must not be empty")
    settings = [(s.name, s.value) for s in spec.algorithm.algorithm_settings]
    nas_config = None
    if spec.HasField("nas_config") and not spec.parameter_specs.parameters:
        from katib.nas.space import NasSpace

        nas_config = nas_config_from_proto(spec.nas_config)
        space: SearchSpace = NasSpace()
    else:
        space = space_from_proto(spec.parameter_specs.parameters)
    objective = spec.objective
    direction = Direction.MAXIMIZE if objective.type == pb.MAXIMIZE else Direction.MINIMIZE
    info = ExperimentInfo(
        name=experiment.name,
        space=space,
        direction=direction,
        objective_metric=objective.objective_metric_name,
        max_trial_count=spec.max_trial_count or None,
        parallel_trial_count=spec.parallel_trial_count or None,
        nas_config=nas_config,
    )
    return info, algorithm, settings


_OP_PARAM_TYPES = {
    pb.CATEGORICAL: "categorical",
    pb.DISCRETE: "discrete",
    pb.INT: "int",
    pb.DOUBLE: "double",
}


def nas_config_from_proto(config: pb.NasConfig) -> NasConfig:
    """``NasConfig`` as domain objects; checking is left to the NAS algorithm."""
    from katib.nas.config import NasConfig, Operation, OpParameter

    graph = config.graph_config
    operations = tuple(
        Operation(
            type=op.operation_type,
            parameters=tuple(
                OpParameter(
                    name=p.name,
                    type=_OP_PARAM_TYPES.get(p.parameter_type, ""),
                    choices=tuple(p.feasible_space.list),
                    low=p.feasible_space.min,
                    high=p.feasible_space.max,
                    step=p.feasible_space.step,
                )
                for p in op.parameter_specs.parameters
            ),
        )
        for op in config.operations.operation
    )
    return NasConfig(
        num_layers=graph.num_layers,
        input_sizes=tuple(graph.input_sizes),
        output_sizes=tuple(graph.output_sizes),
        operations=operations,
    )


def check_objective(experiment: pb.Experiment) -> None:
    """Model-based algorithms need a direction and a metric name."""
    objective = experiment.spec.objective
    problems = []
    if objective.type not in (pb.MINIMIZE, pb.MAXIMIZE):
        problems.append("experiment.spec.objective.type must be MINIMIZE or MAXIMIZE")
    if not objective.objective_metric_name:
        problems.append("experiment.spec.objective.objective_metric_name must not be empty")
    if problems:
        raise InvalidArgument(problems)


#: Decoded trials of recent experiments, keyed by experiment fingerprint, then by the trial's
#: serialised bytes: a speed-up only. Identical bytes decode identically, so a cache hit cannot
#: change an answer, and each request replaces its experiment's entry with exactly its trials.
_DECODED: OrderedDict[bytes, dict[bytes, Trial]] = OrderedDict()
_DECODED_EXPERIMENTS = 64
_DECODED_LOCK = threading.Lock()


def history_from_proto(
    trials: Sequence[pb.Trial], info: ExperimentInfo, fingerprint: bytes = b""
) -> History:
    """The request's trials as a :class:`History`, decoded only when an algorithm reads them.

    Assignments that don't fit the space are kept (for counting) with ``point=None``. With a
    ``fingerprint`` (see :func:`experiment_fingerprint`), trials already decoded for the same
    experiment in this process are reused.
    """

    def load() -> list[Trial]:
        if not fingerprint:
            return [_trial_from_proto(t, info) for t in trials]
        with _DECODED_LOCK:
            previous = _DECODED.get(fingerprint, {})
        current: dict[bytes, Trial] = {}
        decoded = []
        for t in trials:
            raw = t.SerializeToString(deterministic=True)
            hit = previous.get(raw) or current.get(raw)
            if hit is None:
                hit = _trial_from_proto(t, info)
            current[raw] = hit
            decoded.append(hit)
        with _DECODED_LOCK:
            _DECODED[fingerprint] = current
            _DECODED.move_to_end(fingerprint)
            while len(_DECODED) > _DECODED_EXPERIMENTS:
                _DECODED.popitem(last=False)
        return decoded

    return History(info.direction, loader=load, names=[t.name for t in trials])


def experiment_fingerprint(experiment: pb.Experiment) -> bytes:
    """What decoding a trial depends on: the experiment's name, parameters and objective."""
    spec = experiment.spec
    return b"\0".join(
        (
            experiment.name.encode(),
            spec.parameter_specs.SerializeToString(deterministic=True),
            spec.objective.SerializeToString(deterministic=True),
        )
    )


def _trial_from_proto(trial: pb.Trial, info: ExperimentInfo) -> Trial:
    assignments = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
    point: Point | None
    try:
        point = info.space.parse(assignments)
    except ValueError as exc:
        logger.warning("trial %s ignored for modelling: %s", trial.name, exc)
        point = None
    metrics = {m.name: m.value for m in trial.status.observation.metrics}
    return Trial(
        name=trial.name,
        point=point,
        state=_CONDITIONS.get(trial.status.condition, TrialState.FAILED),
        value=parse_objective(metrics.get(info.objective_metric, "")),
        metrics=metrics,
        labels=dict(trial.spec.labels),
        key=None if point is None else info.space.key(point),
        start_time=parse_time(trial.status.start_time),
        completion_time=parse_time(trial.status.completion_time),
    )


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 timestamp as an aware UTC datetime; ``None`` when empty or unreadable."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        logger.warning("ignoring unreadable trial timestamp %r", text[:64])
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


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
