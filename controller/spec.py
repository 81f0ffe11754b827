"""Typed, immutable view of a Katib ``kubeflow.org/v1beta1`` ``Experiment``.

The dataclasses mirror the CRD's field names (snake_case) after Katib's defaulting webhook has
run: strategies for every metric, a metrics-collector source per kind, success and failure
conditions per trial kind. :mod:`katib.controller.validation` builds them from YAML and reports
every problem at once; nothing here validates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "kubeflow.org/v1beta1"
KIND = "Experiment"
DEFAULT_PARALLEL_TRIAL_COUNT = 3
DEFAULT_METRICS_PATH = "/var/log/katib/metrics.log"
DEFAULT_TFEVENT_DIR = "/var/log/katib/tfevent/"
#: Katib's default StdOut/File TEXT filter: ``name=value`` pairs.
DEFAULT_METRICS_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"


class ObjectiveType(enum.StrEnum):
    """Direction of the objective."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class Strategy(enum.StrEnum):
    """Which observed value represents a metric of a trial."""

    MIN = "min"
    MAX = "max"
    LATEST = "latest"


class ParameterType(enum.StrEnum):
    """Katib parameter types as written in YAML."""

    DOUBLE = "double"
    INT = "int"
    DISCRETE = "discrete"
    CATEGORICAL = "categorical"


class Distribution(enum.StrEnum):
    """Prior of an int/double parameter."""

    UNIFORM = "uniform"
    LOG_UNIFORM = "logUniform"
    NORMAL = "normal"
    LOG_NORMAL = "logNormal"


class ResumePolicy(enum.StrEnum):
    """What may happen to a completed experiment."""

    NEVER = "Never"
    LONG_RUNNING = "LongRunning"
    FROM_VOLUME = "FromVolume"


class CollectorKind(enum.StrEnum):
    """Metrics-collector kinds Katib knows."""

    STDOUT = "StdOut"
    FILE = "File"
    TENSORFLOW_EVENT = "TensorFlowEvent"
    PROMETHEUS = "PrometheusMetric"
    CUSTOM = "Custom"
    PUSH = "Push"
    NONE = "None"


class FileFormat(enum.StrEnum):
    """Format of a File collector's metrics file."""

    TEXT = "TEXT"
    JSON = "JSON"


@dataclass(frozen=True)
class MetricStrategy:
    """``objective.metricStrategies[]`` entry."""

    name: str
    value: Strategy


@dataclass(frozen=True)
class Objective:
    """``spec.objective`` after defaulting (a strategy for every metric)."""

    type: ObjectiveType
    objective_metric_name: str
    goal: float | None = None
    additional_metric_names: tuple[str, ...] = ()
    metric_strategies: tuple[MetricStrategy, ...] = ()

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The objective metric first, then the additional ones."""
        return (self.objective_metric_name, *self.additional_metric_names)

    def strategy(self, metric: str) -> Strategy | None:
        """The strategy for ``metric``; None if it has none."""
        for item in self.metric_strategies:
            if item.name == metric:
                return item.value
        return None


@dataclass(frozen=True)
class Setting:
    """One ``{name, value}`` algorithm or early-stopping setting."""

    name: str
    value: str


@dataclass(frozen=True)
class AlgorithmSpec:
    """``spec.algorithm`` or ``spec.earlyStopping``."""

    algorithm_name: str
    algorithm_settings: tuple[Setting, ...] = ()


@dataclass(frozen=True)
class FeasibleSpace:
    """``parameters[].feasibleSpace``; bounds and steps stay strings, as on the wire."""

    min: str = ""
    max: str = ""
    step: str = ""
    list: tuple[str, ...] = ()
    distribution: Distribution | None = None


@dataclass(frozen=True)
class Parameter:
    """``spec.parameters[]``."""

    name: str
    parameter_type: ParameterType
    feasible_space: FeasibleSpace


@dataclass(frozen=True)
class FileSystemPath:
    """``metricsCollectorSpec.source.fileSystemPath``."""

    path: str
    kind: str = "File"
    format: FileFormat | None = FileFormat.TEXT


@dataclass(frozen=True)
class MetricsCollectorSpec:
    """``spec.metricsCollectorSpec`` after per-kind defaulting."""

    kind: CollectorKind = CollectorKind.STDOUT
    file_system_path: FileSystemPath | None = None
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrialParameter:
    """``trialTemplate.trialParameters[]``: a ``${trialParameters.<name>}`` placeholder."""

    name: str
    reference: str
    description: str = ""


@dataclass(frozen=True)
class TrialTemplate:
    """``spec.trialTemplate``: an inline ``trialSpec`` (a Kubernetes object as a dict) or a
    ``configMap`` source."""

    trial_spec: dict[str, Any]
    trial_parameters: tuple[TrialParameter, ...]
    primary_container_name: str
    success_condition: str
    failure_condition: str
    retain: bool = False
    primary_pod_labels: dict[str, str] = field(default_factory=dict)
    #: ``configMap`` source (configMapName, configMapNamespace, templatePath) when the template
    #: is read from a ConfigMap; ``trial_spec`` is then empty.
    config_map: dict[str, str] | None = None


@dataclass(frozen=True)
class Experiment:
    """A validated, defaulted Experiment."""

    name: str
    namespace: str
    objective: Objective
    algorithm: AlgorithmSpec
    parameters: tuple[Parameter, ...]
    trial_template: TrialTemplate
    parallel_trial_count: int = DEFAULT_PARALLEL_TRIAL_COUNT
    max_trial_count: int | None = None
    max_failed_trial_count: int | None = None
    resume_policy: ResumePolicy = ResumePolicy.NEVER
    metrics_collector: MetricsCollectorSpec = field(default_factory=MetricsCollectorSpec)
    early_stopping: AlgorithmSpec | None = None
    nas_config: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def with_counts(
        self,
        parallel_trial_count: int,
        max_trial_count: int | None,
        max_failed_trial_count: int | None,
    ) -> Experiment:
        """A copy with the three fields Katib lets a user change on a live experiment."""
        from dataclasses import replace

        return replace(
            self,
            parallel_trial_count=parallel_trial_count,
            max_trial_count=max_trial_count,
            max_failed_trial_count=max_failed_trial_count,
        )


def default_strategy(objective_type: ObjectiveType) -> Strategy:
    """Katib's webhook default for a metric without an explicit strategy (reference 4)."""
    return Strategy.MIN if objective_type is ObjectiveType.MINIMIZE else Strategy.MAX
