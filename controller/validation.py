"""Build an :class:`~katib.controller.spec.Experiment` from YAML, or report every problem.

Implements Katib's defaulting and admission webhook (reference 6.1-6.3, section 4) with the
fixes of 9.7/9.8: an anchored name regex, min <= max (min < max for doubles), step > 0,
non-empty lists and unique parameter names. Each problem names its field path and says what to
do, e.g. ``spec.parameters[1].feasibleSpace.min: min (5) must be less than max (1)``.

Admission only: what Katib itself accepts, whatever will run it. Whether a backend can run an
accepted experiment (its trial kind, its collector) and whether the services it needs are at
hand are separate checks (:mod:`katib.controller.checks`).

>>> experiment = load_experiment(yaml.safe_load(text))               # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from katib.api.errors import InvalidArgument
from katib.controller import fields, template
from katib.controller.fields import Problems
from katib.controller.parameters import parse_collector, parse_parameters
from katib.controller.spec import (
    API_VERSION,
    DEFAULT_PARALLEL_TRIAL_COUNT,
    KIND,
    AlgorithmSpec,
    Experiment,
    MetricStrategy,
    Objective,
    ObjectiveType,
    ResumePolicy,
    Setting,
    Strategy,
    TrialParameter,
    TrialTemplate,
    default_strategy,
)
from katib.db.records import check_name

NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 40
#: The algorithm names of Katib's default suggestion configuration: admission accepts them
#: (and this project's own) whether or not a service that runs them is at hand; which service
#: runs an experiment is checked when it runs (:mod:`katib.controller.checks`).
KATIB_ALGORITHMS = (
    "random",
    "tpe",
    "multivariate-tpe",
    "cmaes",
    "grid",
    "hyperband",
    "bayesianoptimization",
    "sobol",
    "pbt",
    "enas",
    "darts",
)

_SPEC_FIELDS = (
    "parameters",
    "nasConfig",
    "objective",
    "algorithm",
    "earlyStopping",
    "parallelTrialCount",
    "maxTrialCount",
    "maxFailedTrialCount",
    "metricsCollectorSpec",
    "resumePolicy",
    "trialTemplate",
)


def load_file(path: str | Path, algorithms: Collection[str] | None = None) -> Experiment:
    """Read and validate an Experiment YAML file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: cannot read the experiment: {exc}") from None
    return load_experiment(data, algorithms)


def load_experiment(
    data: Any, algorithms: Collection[str] | None = None, *, check_algorithm: bool = True
) -> Experiment:
    """Validate and default one Experiment object; ``InvalidArgument`` lists every problem.

    ``algorithms`` are the valid algorithm names (default: :data:`KATIB_ALGORITHMS` and the
    suggestion registry's). With ``check_algorithm=False`` any name is accepted: a remote
    suggestion service checks it (``ValidateAlgorithmSettings``).
    """
    problems = Problems()
    if not isinstance(data, Mapping):
        raise InvalidArgument("the document must be a Kubernetes object (a YAML mapping)")
    if data.get("apiVersion") != API_VERSION:
        problems.add("apiVersion", f"must be {API_VERSION}, got {data.get('apiVersion')!r}")
    if data.get("kind") != KIND:
        problems.add("kind", f"must be {KIND}, got {data.get('kind')!r}")
    metadata = fields.mapping(problems, data, "metadata", "metadata", required=True) or {}
    name = _name(problems, metadata)
    labels = fields.mapping(problems, metadata, "labels", "metadata.labels") or {}
    namespace = fields.string(problems, metadata, "namespace", "metadata.namespace") or "default"
    spec = fields.mapping(problems, data, "spec", "spec", required=True) or {}
    fields.unknown_keys(problems, spec, _SPEC_FIELDS, "spec")
    objective = _objective(problems, spec)
    algorithm = _algorithm(problems, spec, "algorithm", required=True)
    if algorithm is not None and algorithm.algorithm_name and check_algorithm:
        known = _algorithm_names() if algorithms is None else sorted(algorithms)
        if algorithm.algorithm_name not in known:
            problems.add(
                "spec.algorithm.algorithmName",
                f"unknown algorithm {algorithm.algorithm_name!r}; available: {', '.join(known)}",
            )
    early = _algorithm(problems, spec, "earlyStopping", required=False)
    counts = _counts(problems, spec)
    policy_text = fields.string(problems, spec, "resumePolicy", "spec.resumePolicy") or "Never"
    try:
        policy = ResumePolicy(policy_text)
    except ValueError:
        problems.add(
            "spec.resumePolicy", f"{policy_text!r} is not one of Never, LongRunning, FromVolume"
        )
        policy = ResumePolicy.NEVER
    raw_params = fields.sequence(problems, spec, "parameters", "spec.parameters")
    nas = _nas_config(problems, spec, "spec.nasConfig")
    if bool(raw_params) == bool(nas):
        problems.add("spec.parameters", "give exactly one of spec.parameters or spec.nasConfig")
    parameters = parse_parameters(problems, raw_params, "spec.parameters")
    collector = parse_collector(problems, spec, "spec.metricsCollectorSpec")
    trial_template = _trial_template(problems, spec, {p.name for p in parameters})
    if problems or objective is None or algorithm is None or trial_template is None:
        raise InvalidArgument(problems.items or ["the experiment is invalid"])
    return Experiment(
        name=name,
        namespace=namespace,
        objective=objective,
        algorithm=algorithm,
        parameters=parameters,
        trial_template=trial_template,
        parallel_trial_count=counts[0],
        max_trial_count=counts[1],
        max_failed_trial_count=counts[2],
        resume_policy=policy,
        metrics_collector=collector,
        early_stopping=early,
        nas_config=nas,
        labels={str(k): str(v) for k, v in labels.items()},
    )


def load_objective(raw: Any, at: str = "spec.objective") -> Objective:
    """Validate and default one ``objective`` mapping (a Trial's copy, say); ``InvalidArgument``
    lists every problem, under ``at`` instead of ``spec.objective``."""
    problems = Problems()
    objective = _objective(problems, {"objective": raw})
    if problems or objective is None:
        items = problems.items or ["spec.objective: is invalid"]
        raise InvalidArgument([at + item.removeprefix("spec.objective") for item in items])
    return objective


def _algorithm_names() -> list[str]:
    from katib.suggestion import registry

    return sorted({*KATIB_ALGORITHMS, *registry.names()})


def _name(problems: Problems, metadata: Mapping[str, Any]) -> str:
    name = fields.string(problems, metadata, "name", "metadata.name", required=True)
    if name and not NAME_PATTERN.match(name):
        problems.add(
            "metadata.name",
            f"{name!r} must consist of lower-case letters, digits and "
            "'-', start with a letter and end with a letter or digit",
        )
    if len(name) > MAX_NAME_LENGTH:
        problems.add(
            "metadata.name", f"must be at most {MAX_NAME_LENGTH} characters, got {len(name)}"
        )
    return name


def _objective(problems: Problems, spec: Mapping[str, Any]) -> Objective | None:
    at = "spec.objective"
    raw = fields.mapping(problems, spec, "objective", at, required=True)
    if raw is None:
        return None
    fields.unknown_keys(
        problems,
        raw,
        ("type", "goal", "objectiveMetricName", "additionalMetricNames", "metricStrategies"),
        at,
    )
    type_text = fields.string(problems, raw, "type", f"{at}.type", required=True)
    metric = fields.string(
        problems, raw, "objectiveMetricName", f"{at}.objectiveMetricName", required=True
    )
    goal = raw.get("goal")
    if goal is not None and (isinstance(goal, bool) or fields.number(goal) is None):
        problems.add(f"{at}.goal", f"must be a number, got {goal!r}")
        goal = None
    additional = [
        fields.string(problems, {"v": v}, "v", f"{at}.additionalMetricNames[{i}]", required=True)
        for i, v in enumerate(
            fields.sequence(problems, raw, "additionalMetricNames", f"{at}.additionalMetricNames")
        )
    ]
    for field, name in [(f"{at}.objectiveMetricName", metric)] + [
        (f"{at}.additionalMetricNames[{i}]", name) for i, name in enumerate(additional)
    ]:
        problem = check_name("the metric name", name) if name else None
        if problem is not None:  # the observation DB could not store its rows
            problems.add(field, problem)
    if metric and metric in additional:
        problems.add(
            f"{at}.additionalMetricNames", f"must not contain the objective metric {metric!r}"
        )
    if len(set(additional)) != len(additional):
        problems.add(f"{at}.additionalMetricNames", "must not repeat a metric")
    try:
        otype = ObjectiveType(type_text)
    except ValueError:
        if type_text:
            problems.add(f"{at}.type", f"must be minimize or maximize, got {type_text!r}")
        return None
    strategies = _strategies(problems, raw, otype, [metric, *additional], f"{at}.metricStrategies")
    return Objective(
        type=otype,
        objective_metric_name=metric,
        goal=None if goal is None else float(goal),
        additional_metric_names=tuple(additional),
        metric_strategies=strategies,
    )


def _strategies(
    problems: Problems, raw: Mapping[str, Any], otype: ObjectiveType, metrics: list[str], at: str
) -> tuple[MetricStrategy, ...]:
    explicit: dict[str, Strategy] = {}
    for i, item in enumerate(fields.sequence(problems, raw, "metricStrategies", at)):
        path = f"{at}[{i}]"
        if not isinstance(item, Mapping):
            problems.add(path, "must be a mapping with name and value")
            continue
        name = fields.string(problems, item, "name", f"{path}.name", required=True)
        value = fields.string(problems, item, "value", f"{path}.value", required=True)
        if name and name not in metrics:
            problems.add(
                f"{path}.name",
                f"{name!r} is neither the objective metric nor an additional metric",
            )
        elif name in explicit:
            problems.add(f"{path}.name", f"duplicate strategy for {name!r}")
        try:
            explicit[name] = Strategy(value)
        except ValueError:
            if value:
                problems.add(f"{path}.value", f"must be min, max or latest, got {value!r}")
    fallback = default_strategy(otype)
    return tuple(MetricStrategy(m, explicit.get(m, fallback)) for m in metrics if m)


def _algorithm(
    problems: Problems, spec: Mapping[str, Any], key: str, required: bool
) -> AlgorithmSpec | None:
    at = f"spec.{key}"
    raw = fields.mapping(problems, spec, key, at, required=required)
    if raw is None:
        return None
    fields.unknown_keys(problems, raw, ("algorithmName", "algorithmSettings"), at)
    name = fields.string(problems, raw, "algorithmName", f"{at}.algorithmName", required=True)
    settings: list[Setting] = []
    first: dict[str, int] = {}
    for i, item in enumerate(
        fields.sequence(problems, raw, "algorithmSettings", f"{at}.algorithmSettings")
    ):
        path = f"{at}.algorithmSettings[{i}]"
        if not isinstance(item, Mapping):
            problems.add(path, "must be a mapping with name and value")
            continue
        setting = Setting(
            fields.string(problems, item, "name", f"{path}.name", required=True),
            fields.string(problems, item, "value", f"{path}.value", scalar=True),
        )
        if setting.name in first:  # one value per name; Katib's services keep only the last
            earlier = settings[first[setting.name]]
            if earlier.value != setting.value:
                problems.add(
                    f"{path}.value",
                    f"setting {setting.name!r} is given twice with different values "
                    f"({earlier.value!r} and {setting.value!r}); keep one",
                )
            continue
        first[setting.name] = len(settings)
        settings.append(setting)
    return AlgorithmSpec(algorithm_name=name, algorithm_settings=tuple(settings))


def _counts(problems: Problems, spec: Mapping[str, Any]) -> tuple[int, int | None, int | None]:
    parallel = fields.integer(problems, spec, "parallelTrialCount", "spec.parallelTrialCount")
    max_trials = fields.integer(problems, spec, "maxTrialCount", "spec.maxTrialCount")
    max_failed = fields.integer(problems, spec, "maxFailedTrialCount", "spec.maxFailedTrialCount")
    parallel = DEFAULT_PARALLEL_TRIAL_COUNT if parallel is None else parallel
    if parallel <= 0:
        problems.add("spec.parallelTrialCount", f"must be greater than 0, got {parallel}")
    if max_trials is not None and max_trials <= 0:
        problems.add("spec.maxTrialCount", f"must be greater than 0, got {max_trials}")
    if max_failed is not None and max_failed < 0:
        problems.add("spec.maxFailedTrialCount", f"must be 0 or more, got {max_failed}")
    if max_trials is not None and max_trials > 0:
        if max_failed is not None and max_failed > max_trials:
            problems.add(
                "spec.maxFailedTrialCount",
                f"({max_failed}) must not exceed spec.maxTrialCount ({max_trials})",
            )
        if parallel > max_trials:
            problems.add(
                "spec.parallelTrialCount",
                f"({parallel}) must not exceed spec.maxTrialCount ({max_trials})",
            )
    return parallel, max_trials, max_failed


def _trial_template(
    problems: Problems, spec: Mapping[str, Any], parameter_names: set[str]
) -> TrialTemplate | None:
    at = "spec.trialTemplate"
    raw = fields.mapping(problems, spec, "trialTemplate", at, required=True)
    if raw is None:
        return None
    fields.unknown_keys(
        problems,
        raw,
        (
            "retain",
            "trialSpec",
            "configMap",
            "trialParameters",
            "primaryPodLabels",
            "primaryContainerName",
            "successCondition",
            "failureCondition",
        ),
        at,
    )
    primary = fields.string(
        problems, raw, "primaryContainerName", f"{at}.primaryContainerName", required=True
    )
    params = []
    raw_params = fields.sequence(problems, raw, "trialParameters", f"{at}.trialParameters")
    if not raw_params:
        problems.add(
            f"{at}.trialParameters",
            "is required: map each ${trialParameters.NAME} "
            "in the template to a parameter (reference)",
        )
    for i, item in enumerate(raw_params):
        path = f"{at}.trialParameters[{i}]"
        if not isinstance(item, Mapping):
            problems.add(path, "must be a mapping with name and reference")
            continue
        params.append(
            TrialParameter(
                name=fields.string(problems, item, "name", f"{path}.name"),
                reference=fields.string(problems, item, "reference", f"{path}.reference"),
                description=fields.string(problems, item, "description", f"{path}.description"),
            )
        )
    config_map = _config_map(problems, raw, at)
    trial_spec = {} if config_map is not None else _trial_spec(problems, raw, at)
    if trial_spec is None:
        return None
    if config_map is not None:  # the template is not at hand: only its own fields are checked
        return TrialTemplate(
            trial_spec={},
            trial_parameters=tuple(params),
            primary_container_name=primary,
            success_condition=fields.string(
                problems, raw, "successCondition", f"{at}.successCondition"
            ),
            failure_condition=fields.string(
                problems, raw, "failureCondition", f"{at}.failureCondition"
            ),
            retain=bool(fields.boolean(problems, raw, "retain", f"{at}.retain")),
            config_map=config_map,
        )
    problems.items += template.check_trial_parameters(
        tuple(params), trial_spec, parameter_names, f"{at}.trialParameters"
    )
    kind = str(trial_spec.get("kind", ""))
    success = fields.string(problems, raw, "successCondition", f"{at}.successCondition")
    failure = fields.string(problems, raw, "failureCondition", f"{at}.failureCondition")
    defaults = template.default_conditions(kind)
    if not success and not failure and defaults is not None:
        success, failure = defaults
    for key, value in (("successCondition", success), ("failureCondition", failure)):
        if not value:
            problems.add(f"{at}.{key}", f"is required for a trial of kind {kind!r}")
    labels = fields.mapping(problems, raw, "primaryPodLabels", f"{at}.primaryPodLabels")
    labels = labels or template.default_primary_pod_labels(kind)
    result = TrialTemplate(
        trial_spec=trial_spec,
        trial_parameters=tuple(params),
        primary_container_name=primary,
        success_condition=success,
        failure_condition=failure,
        retain=bool(fields.boolean(problems, raw, "retain", f"{at}.retain")),
        primary_pod_labels={str(k): str(v) for k, v in labels.items()},
    )
    if primary:
        try:
            template.container_command(result)
        except template.TemplateError as exc:  # malformed: Kubernetes would reject it too
            problems.add(f"{at}.trialSpec{exc.path}", exc.message)
        except ValueError:
            pass  # no such container: what a backend can run is checked separately
    return result


def _config_map(problems: Problems, raw: Mapping[str, Any], at: str) -> dict[str, str] | None:
    """``configMap`` if the template comes from one (its three fields are required)."""
    has_spec, has_map = raw.get("trialSpec") is not None, raw.get("configMap") is not None
    if has_spec == has_map:
        problems.add(at, "give exactly one of trialSpec or configMap")
        return None
    if not has_map:
        return None
    config = fields.mapping(problems, raw, "configMap", f"{at}.configMap") or {}
    return {
        key: fields.string(problems, config, key, f"{at}.configMap.{key}", required=True)
        for key in ("configMapName", "configMapNamespace", "templatePath")
    }


def _trial_spec(problems: Problems, raw: Mapping[str, Any], at: str) -> dict[str, Any] | None:
    if raw.get("trialSpec") is None:
        return None
    trial_spec = fields.mapping(problems, raw, "trialSpec", f"{at}.trialSpec")
    if trial_spec is None:
        return None
    for key in ("apiVersion", "kind"):
        if not trial_spec.get(key):
            problems.add(f"{at}.trialSpec.{key}", "is required")
    metadata = fields.mapping(problems, trial_spec, "metadata", f"{at}.trialSpec.metadata")
    if metadata is None and trial_spec.get("metadata") is not None:
        return None  # a broken metadata would break the meta references too
    metadata = metadata or {}
    for key in ("name", "namespace"):
        if metadata.get(key):
            problems.add(
                f"{at}.trialSpec.metadata.{key}",
                "must not be set; the controller names each trial",
            )
    bad = False
    for key in ("labels", "annotations"):
        if metadata.get(key) is not None:
            where = f"{at}.trialSpec.metadata.{key}"
            bad |= fields.mapping(problems, metadata, key, where) is None
    return None if bad else trial_spec


def _nas_config(problems: Problems, spec: Mapping[str, Any], at: str) -> dict[str, Any] | None:
    """``spec.nasConfig``: a graph (numLayers >= 1, integer sizes) and operations to choose from.

    Katib's webhook checks none of this; its NAS services fail at the first call instead.
    """
    raw = fields.mapping(problems, spec, "nasConfig", at)
    if raw is None:
        return None
    fields.unknown_keys(problems, raw, ("graphConfig", "operations"), at)
    graph = fields.mapping(problems, raw, "graphConfig", f"{at}.graphConfig", required=True)
    if graph is not None:
        fields.unknown_keys(
            problems, graph, ("numLayers", "inputSizes", "outputSizes"), f"{at}.graphConfig"
        )
        path = f"{at}.graphConfig.numLayers"
        layers = fields.integer(problems, graph, "numLayers", path)
        if layers is None and graph.get("numLayers") is None:
            problems.add(path, "is required")
        elif layers is not None and layers < 1:
            problems.add(path, f"must be at least 1, got {layers}")
        for key in ("inputSizes", "outputSizes"):
            path = f"{at}.graphConfig.{key}"
            for j, value in enumerate(fields.sequence(problems, graph, key, path)):
                fields.integer(problems, {"v": value}, "v", f"{path}[{j}]")
    operations = fields.sequence(problems, raw, "operations", f"{at}.operations")
    if not operations and isinstance(raw.get("operations", []), list):
        problems.add(f"{at}.operations", "needs at least one operation")
    for i, op in enumerate(operations):
        path = f"{at}.operations[{i}]"
        if not isinstance(op, Mapping):
            problems.add(path, "must be a mapping with operationType and parameters")
            continue
        fields.unknown_keys(problems, op, ("operationType", "parameters"), path)
        fields.string(problems, op, "operationType", f"{path}.operationType", required=True)
        # An operation may have no parameters (DARTS's skip_connection); Katib's webhook does
        # not look inside nasConfig, and the NAS services check what they need.
        params = fields.sequence(problems, op, "parameters", f"{path}.parameters")
        parse_parameters(problems, params, f"{path}.parameters")
    return raw
