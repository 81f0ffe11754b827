"""Experiment and trial records as Katib v1beta1 messages (reference 1.2-1.3).

The only module of the controller that builds protobuf. Fields Katib does not send
(maxFailedTrialCount, metricStrategies, resumePolicy, the trial template) are not sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from katib.api import api_pb2 as pb
from katib.controller.fields import Problems
from katib.controller.parameters import parse_parameters
from katib.controller.spec import (
    Distribution,
    Experiment,
    ObjectiveType,
    Parameter,
    ParameterType,
    Setting,
)
from katib.controller.trials import TrialCondition, TrialRecord

_TYPES = {
    ParameterType.DOUBLE: pb.DOUBLE,
    ParameterType.INT: pb.INT,
    ParameterType.DISCRETE: pb.DISCRETE,
    ParameterType.CATEGORICAL: pb.CATEGORICAL,
}
_DISTRIBUTIONS = {
    Distribution.UNIFORM: pb.UNIFORM,
    Distribution.LOG_UNIFORM: pb.LOG_UNIFORM,
    Distribution.NORMAL: pb.NORMAL,
    Distribution.LOG_NORMAL: pb.LOG_NORMAL,
}
_CONDITIONS = {
    TrialCondition.CREATED: pb.TrialStatus.CREATED,
    TrialCondition.RUNNING: pb.TrialStatus.RUNNING,
    TrialCondition.SUCCEEDED: pb.TrialStatus.SUCCEEDED,
    TrialCondition.KILLED: pb.TrialStatus.KILLED,
    TrialCondition.FAILED: pb.TrialStatus.FAILED,
    TrialCondition.METRICS_UNAVAILABLE: pb.TrialStatus.METRICSUNAVAILABLE,
    TrialCondition.EARLY_STOPPED: pb.TrialStatus.EARLYSTOPPED,
}


def merge_settings(base: Iterable[Setting], overlay: Mapping[str, str]) -> list[Setting]:
    """Katib's overlay: same name -> value replaced, new names appended (reference 1.3)."""
    merged = {s.name: s.value for s in base}
    merged.update(overlay)
    return [Setting(name, value) for name, value in merged.items()]


def parameter_spec(param: Parameter) -> pb.ParameterSpec:
    """One ``spec.parameters`` entry as a ``ParameterSpec``."""
    space = param.feasible_space
    return pb.ParameterSpec(
        name=param.name,
        parameter_type=_TYPES[param.parameter_type],
        feasible_space=pb.FeasibleSpace(
            min=space.min,
            max=space.max,
            step=space.step,
            list=list(space.list),
            distribution=_DISTRIBUTIONS.get(space.distribution, pb.DISTRIBUTION_UNSPECIFIED)
            if space.distribution
            else pb.DISTRIBUTION_UNSPECIFIED,
        ),
    )


def objective_spec(spec: Experiment) -> pb.ObjectiveSpec:
    """``spec.objective`` (goal only if set)."""
    objective = spec.objective
    message = pb.ObjectiveSpec(
        type=pb.MAXIMIZE if objective.type is ObjectiveType.MAXIMIZE else pb.MINIMIZE,
        objective_metric_name=objective.objective_metric_name,
        additional_metric_names=list(objective.additional_metric_names),
    )
    if objective.goal is not None:
        message.goal = objective.goal
    return message


def experiment(spec: Experiment, overlay: Mapping[str, str] | None = None) -> pb.Experiment:
    """The Experiment message a suggestion service receives."""
    settings = merge_settings(spec.algorithm.algorithm_settings, overlay or {})
    message = pb.Experiment(
        name=spec.name,
        spec=pb.ExperimentSpec(
            parameter_specs=pb.ExperimentSpec.ParameterSpecs(
                parameters=[parameter_spec(p) for p in spec.parameters]
            ),
            objective=objective_spec(spec),
            algorithm=pb.AlgorithmSpec(
                algorithm_name=spec.algorithm.algorithm_name,
                algorithm_settings=[
                    pb.AlgorithmSetting(name=s.name, value=s.value) for s in settings
                ],
            ),
            parallel_trial_count=spec.parallel_trial_count,
            max_trial_count=spec.max_trial_count or 0,
        ),
    )
    if spec.early_stopping is not None:
        message.spec.early_stopping.algorithm_name = spec.early_stopping.algorithm_name
        for s in spec.early_stopping.algorithm_settings:
            message.spec.early_stopping.algorithm_settings.add(name=s.name, value=s.value)
    if spec.nas_config:
        message.spec.nas_config.CopyFrom(nas_config(spec.nas_config))
    return message


def nas_config(raw: Mapping[str, Any]) -> pb.NasConfig:
    """``spec.nasConfig`` as a ``NasConfig`` message."""
    graph = raw.get("graphConfig") or {}
    config = pb.NasConfig(
        graph_config=pb.GraphConfig(
            num_layers=int(graph.get("numLayers") or 0),
            input_sizes=[int(x) for x in graph.get("inputSizes") or []],
            output_sizes=[int(x) for x in graph.get("outputSizes") or []],
        )
    )
    for op in raw.get("operations") or []:
        params = parse_parameters(Problems(), list(op.get("parameters") or []), "")
        config.operations.operation.add(
            operation_type=str(op.get("operationType", "")),
            parameter_specs=pb.Operation.ParameterSpecs(
                parameters=[parameter_spec(p) for p in params]
            ),
        )
    return config


def katib_time(moment: datetime | None) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, or '' (reference 1.3)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def trial(spec: Experiment, record: TrialRecord) -> pb.Trial:
    """One trial as sent in GetSuggestions: observation values chosen by metricStrategies."""
    message = pb.Trial(
        name=record.name,
        spec=pb.TrialSpec(
            objective=objective_spec(spec),
            parameter_assignments=pb.TrialSpec.ParameterAssignments(
                assignments=[
                    pb.ParameterAssignment(name=k, value=v) for k, v in record.assignments
                ]
            ),
            labels=dict(record.labels),
        ),
        status=pb.TrialStatus(
            start_time=katib_time(record.start_time),
            completion_time=katib_time(record.completion_time),
            condition=_CONDITIONS[record.condition],
        ),
    )
    for metric in record.observation:
        strategy = spec.objective.strategy(metric.name)
        value = metric.value(strategy) if strategy else ""
        message.status.observation.metrics.add(name=metric.name, value=value)
    return message


def trials(spec: Experiment, records: Sequence[TrialRecord]) -> list[pb.Trial]:
    """The ``trials`` of a GetSuggestions request (see :func:`sent_trials`)."""
    return [trial(spec, record) for record in sent_trials(spec, records)]


def sent_trials(spec: Experiment, records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Every trial in any state, with its condition.

    Katib leaves out MetricsUnavailable trials; we send them (with their condition) so a
    service can avoid re-suggesting them. EarlyStopped trials without an objective value are
    left out as in Katib.
    """
    result: list[TrialRecord] = []
    for record in records:
        if (
            record.condition is TrialCondition.EARLY_STOPPED
            and record.objective_value(spec.objective) is None
        ):
            continue
        result.append(record)
    return result
