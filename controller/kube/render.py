"""Trial objects for a cluster: the Trial CR, and the object a Trial runs as (a Job, a
PyTorchJob, any kind) with the metrics collector wrapped around its primary container.

Three steps, each a pure function of its inputs:

* :func:`trial_run_spec` - ``trialTemplate.trialSpec`` with ``${trialParameters.x}`` and
  ``${trialSpec.*}`` substituted (Katib's rules, :mod:`katib.controller.template`), named after
  the trial, in the experiment's namespace. Substitution happens in each string leaf of the
  parsed template, never in its serialised text, so a value cannot change its structure.
  In the strings Kubernetes expands ``$(VAR)`` in (a container's ``command``, ``args`` and
  ``env[].value``) each ``$`` of a value is written ``$$``: the pod sees the value verbatim.
* :func:`trial_object` - the whole ``kubeflow.org/v1beta1`` Trial, as Katib's experiment
  controller makes it: labels of the experiment plus ``katib.kubeflow.org/experiment``, the
  assignment's own labels, a controller owner reference to the Experiment, and the defaulted
  objective, metrics collector, primary pod labels, container name and conditions.
* :func:`run_object` - the object created for a Trial: the run spec with an owner reference to
  the Trial, the labels ``katib.kubeflow.org/experiment`` and ``katib.kubeflow.org/trial`` on
  it and on each pod template, env ``KATIB_TRIAL_NAME``, ``KATIB_DB_MANAGER_ADDRESS`` and
  ``KATIB_NAMESPACE`` in every container, and - for StdOut and File collectors - the primary
  container's ``command + args`` moved behind ``katib-metrics-collector ... --``
  (:mod:`katib.controller.kube.collect`), which runs it, parses its output the way local runs
  do, reports rows to the DB service and enforces early-stopping rules. A Push or None
  collector gets the env only. Katib's sidecar would fall back on the image's entrypoint when
  the primary container has no ``command``; the wrapper cannot know it, so such a template is
  refused with the field to fill in.

The primary container is the container named ``primaryContainerName`` in the primary pod: for
distributed kinds the replica whose role matches a ``primaryPodLabels`` value (``Master`` for
``training.kubeflow.org/job-role: master``, ``Launcher`` for an MPIJob's launcher), else the
pod template whose own labels match them, else the first pod template that has the container.
A TrainJob's is ``spec.trainer``, which every node runs: the collector sees the pod's labels
through downward-API env vars and reports only where they match ``primaryPodLabels`` (node 0).
An Argo Workflow's is the ``container`` of the template whose labels match
``primaryPodLabels`` (Argo runs it as ``main``). Only that container is wrapped, so one
process reports the trial's metrics.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from katib.controller import template as tpl
from katib.controller.kube import podspec
from katib.controller.spec import (
    API_VERSION,
    CollectorKind,
    Experiment,
    FileFormat,
    MetricsCollectorSpec,
    Objective,
)
from katib.earlystopping.rules import Comparison, Rule, RuleSet, Semantics

TRIAL_KIND = "Trial"
EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
TRIAL_LABEL = "katib.kubeflow.org/trial"
TRIAL_NAME_ENV = "KATIB_TRIAL_NAME"
DB_ADDRESS_ENV = "KATIB_DB_MANAGER_ADDRESS"
NAMESPACE_ENV = "KATIB_NAMESPACE"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
#: What the collector writes to the termination message file when its rules stopped the trial.
EARLY_STOPPED_MESSAGE = "EarlyStopped"
#: TrainJob nodes all run ``spec.trainer``; the collector reports only in the pod whose labels
#: match ``primaryPodLabels`` (node 0), seen through env vars of this prefix (downward API).
PRIMARY_LABEL_ENV = "KATIB_PRIMARY_POD_LABEL_"
_WRAPPED = (CollectorKind.STDOUT, CollectorKind.FILE)
_ENV_ONLY = (CollectorKind.PUSH, CollectorKind.NONE)


class RenderError(ValueError):
    """A trial that cannot be rendered; ``field`` names the Experiment or Trial field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- the run spec -------------------------------------------------------------------------


def trial_run_spec(
    spec: Experiment,
    experiment: Mapping[str, Any],
    trial_name: str,
    assignments: Sequence[tuple[str, str]],
    *,
    trial_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``Trial.spec.runSpec`` for one trial (see the module docstring).

    ``trial_spec`` is the template read from the ConfigMap when ``trialTemplate.configMap``
    is used (the caller reads it; rendering does no I/O).
    """
    namespace = _namespace(spec, experiment)
    template = spec.trial_template
    source = trial_spec if trial_spec is not None else template.trial_spec
    if not source:
        raise RenderError(
            "spec.trialTemplate.trialSpec",
            "is empty; a configMap template must be read and passed as trial_spec",
        )
    if trial_spec is not None:
        template = dataclasses.replace(template, trial_spec=dict(trial_spec))
    known = dict(assignments)
    for param in template.trial_parameters:
        if not tpl.is_meta(param.reference) and param.reference not in known:
            raise RenderError(
                f"spec.trialTemplate.trialParameters[{param.name}]",
                f"the trial has no assignment for parameter {param.reference!r}",
            )
    try:
        values = tpl.parameter_values(template, known, trial_name, namespace)
    except KeyError as exc:
        raise RenderError("spec.trialTemplate.trialParameters", str(exc.args[0])) from None
    rendered = _fill(source, values, {k: v.replace("$", "$$") for k, v in values.items()})
    if not isinstance(rendered, dict):
        raise RenderError("spec.trialTemplate.trialSpec", "must be a Kubernetes object")
    metadata = rendered.get("metadata")
    rendered["metadata"] = dict(metadata) if isinstance(metadata, Mapping) else {}
    rendered["metadata"]["name"] = trial_name
    rendered["metadata"]["namespace"] = namespace
    return rendered


def _fill(obj: Any, values: Mapping[str, str], escaped: Mapping[str, str]) -> Any:
    """Substitute placeholders in every string leaf; Kubernetes-expanded container fields get
    ``escaped`` values (each ``$`` doubled)."""
    if isinstance(obj, str):
        return tpl.substitute(obj, values)
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if key in podspec.CONTAINER_LISTS and isinstance(value, list):
                out[key] = [_fill_container(c, values, escaped) for c in value]
            elif key in ("trainer", "container") and isinstance(value, Mapping):
                # TrainJob's spec.trainer; an Argo Workflow template's container
                out[key] = _fill_container(value, values, escaped)
            else:
                out[key] = _fill(value, values, escaped)
        return out
    if isinstance(obj, list | tuple):
        return [_fill(value, values, escaped) for value in obj]
    return copy.copy(obj)


def _fill_container(obj: Any, values: Mapping[str, str], escaped: Mapping[str, str]) -> Any:
    if not isinstance(obj, Mapping):
        return _fill(obj, values, escaped)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("command", "args"):
            out[key] = _fill(value, escaped, escaped)
        elif key == "env" and isinstance(value, list):
            out[key] = [
                {
                    k: _fill(v, escaped if k == "value" else values, escaped)
                    for k, v in item.items()
                }
                if isinstance(item, Mapping)
                else _fill(item, values, escaped)
                for item in value
            ]
        else:
            out[key] = _fill(value, values, escaped)
    return out


def _namespace(spec: Experiment, experiment: Mapping[str, Any]) -> str:
    metadata = experiment.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("namespace"), str):
        return str(metadata["namespace"])
    return spec.namespace


# -- the Trial CR -------------------------------------------------------------------------


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference to ``owner`` (its uid must be known: created already)."""
    metadata = owner.get("metadata") or {}
    uid = metadata.get("uid")
    if not uid:
        raise RenderError(
            f"{owner.get('kind', 'owner')}.metadata.uid",
            "is missing; an owner must be read back from the API server before it owns objects",
        )
    return {
        "apiVersion": owner.get("apiVersion"),
        "kind": owner.get("kind"),
        "name": metadata.get("name"),
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def objective_dict(objective: Objective) -> dict[str, Any]:
    """``spec.objective`` as the API writes it (defaulted strategies included)."""
    out: dict[str, Any] = {
        "type": objective.type.value,
        "objectiveMetricName": objective.objective_metric_name,
    }
    if objective.goal is not None:
        out["goal"] = objective.goal
    if objective.additional_metric_names:
        out["additionalMetricNames"] = list(objective.additional_metric_names)
    out["metricStrategies"] = [
        {"name": s.name, "value": s.value.value} for s in objective.metric_strategies
    ]
    return out


def collector_dict(collector: MetricsCollectorSpec) -> dict[str, Any]:
    """``metricsCollectorSpec`` as the API writes it."""
    out: dict[str, Any] = {"collector": {"kind": collector.kind.value}}
    source: dict[str, Any] = {}
    path = collector.file_system_path
    if path is not None:
        fs: dict[str, Any] = {"path": path.path, "kind": path.kind}
        if path.format is not None:
            fs["format"] = path.format.value
        source["fileSystemPath"] = fs
    if collector.filters:
        source["filter"] = {"metricsFormat": list(collector.filters)}
    if source:
        out["source"] = source
    return out


def trial_labels(experiment: Mapping[str, Any], extra: Mapping[str, str] = {}) -> dict[str, str]:
    """Katib's Trial labels: the experiment's labels, ``katib.kubeflow.org/experiment``, then
    the labels the suggestion service gave the assignment."""
    metadata = experiment.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
    labels[EXPERIMENT_LABEL] = str(metadata.get("name", ""))
    labels.update(extra)
    return labels


def trial_object(
    spec: Experiment,
    experiment: Mapping[str, Any],
    trial_name: str,
    assignments: Sequence[tuple[str, str]],
    labels: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    *,
    rules: RuleSet | None = None,
    trial_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``kubeflow.org/v1beta1`` Trial CR for one assignment (see the module docstring).

    ``rules``: the early-stopping rules to attach (``spec.earlyStoppingRules``), when the
    experiment has ``spec.earlyStopping``; their semantics go in an annotation.
    """
    template = spec.trial_template
    kind = str((trial_spec or template.trial_spec).get("kind", ""))
    extra = dict(labels.items()) if isinstance(labels, Mapping) else dict(labels)
    trial_spec_out: dict[str, Any] = {
        "objective": objective_dict(spec.objective),
        "parameterAssignments": [{"name": n, "value": v} for n, v in assignments],
        "runSpec": trial_run_spec(
            spec, experiment, trial_name, assignments, trial_spec=trial_spec
        ),
        "metricsCollector": collector_dict(spec.metrics_collector),
        "primaryContainerName": template.primary_container_name,
        "retainRun": template.retain,
    }
    pod_labels = template.primary_pod_labels or tpl.default_primary_pod_labels(kind)
    if pod_labels:
        trial_spec_out["primaryPodLabels"] = dict(pod_labels)
    success, failure = template.success_condition, template.failure_condition
    if not (success and failure):
        defaults = tpl.default_conditions(kind)
        if defaults is None:
            raise RenderError(
                "spec.trialTemplate.successCondition",
                f"kind {kind!r} has no default conditions; set successCondition and "
                "failureCondition",
            )
        success, failure = defaults
    trial_spec_out["successCondition"] = success
    trial_spec_out["failureCondition"] = failure
    metadata: dict[str, Any] = {
        "name": trial_name,
        "namespace": _namespace(spec, experiment),
        "labels": trial_labels(experiment, extra),
        "ownerReferences": [owner_reference(experiment)],
    }
    if rules is not None and spec.early_stopping is not None:
        trial_spec_out["earlyStoppingRules"] = [rule_dict(r) for r in rules.rules]
        metadata["annotations"] = {SEMANTICS_ANNOTATION: rules.semantics.value}
    return {
        "apiVersion": API_VERSION,
        "kind": TRIAL_KIND,
        "metadata": metadata,
        "spec": trial_spec_out,
    }


#: Trial annotation naming how its ``earlyStoppingRules`` are evaluated (our extension).
SEMANTICS_ANNOTATION = "katib.kubeflow.org/early-stopping-semantics"


def rule_dict(rule: Rule) -> dict[str, Any]:
    """One ``EarlyStoppingRule`` as the Trial CR writes it (``value`` is a string)."""
    return {
        "name": rule.name,
        "value": repr(rule.value),
        "comparison": rule.comparison.name.lower(),  # the CRD enum: equal, less, greater
        "startStep": rule.start_step,
    }


def rules_from_trial(trial: Mapping[str, Any]) -> RuleSet:
    """The rules a Trial CR carries (``spec.earlyStoppingRules`` + the semantics annotation)."""
    spec = trial.get("spec") or {}
    annotations = (trial.get("metadata") or {}).get("annotations") or {}
    return parse_rules(
        spec.get("earlyStoppingRules") or [],
        annotations.get(SEMANTICS_ANNOTATION, Semantics.KATIB.value),
        "spec.earlyStoppingRules",
        f"metadata.annotations[{SEMANTICS_ANNOTATION}]",
    )


def parse_rules(items: Any, semantics: Any, where: str, semantics_where: str) -> RuleSet:
    """Rules written as :func:`rule_dict` does; :class:`RenderError` naming the bad field."""
    if not isinstance(items, list):
        raise RenderError(where, "must be a list of rules")
    rules = []
    for i, item in enumerate(items):
        try:
            rules.append(
                Rule(
                    str(item["name"]),
                    float(item["value"]),
                    Comparison[str(item["comparison"]).upper()],
                    int(item.get("startStep") or 0),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RenderError(f"{where}[{i}]", f"is not a valid rule ({exc!r})") from None
    try:
        return RuleSet(tuple(rules), Semantics(semantics))
    except ValueError:
        raise RenderError(semantics_where, "must be 'katib' or 'any'") from None


# -- the run object -----------------------------------------------------------------------


def run_object(
    trial: Mapping[str, Any],
    *,
    db_address: str,
    collector_command: Sequence[str] = ("katib-metrics-collector",),
    rules: RuleSet | Sequence[Rule] | None = None,
) -> dict[str, Any]:
    """The object to create for ``trial`` (a Trial CR as read from the API server).

    ``rules`` default to the Trial's own ``spec.earlyStoppingRules``.
    """
    spec = trial.get("spec") or {}
    metadata = trial.get("metadata") or {}
    trial_name = str(metadata.get("name", ""))
    namespace = str(metadata.get("namespace", ""))
    run = spec.get("runSpec")
    if not isinstance(run, Mapping) or not run.get("kind"):
        raise RenderError("Trial.spec.runSpec", "must be a Kubernetes object with a kind")
    obj = copy.deepcopy(dict(run))
    kind = str(obj["kind"])
    labels = {
        EXPERIMENT_LABEL: str((metadata.get("labels") or {}).get(EXPERIMENT_LABEL, "")),
        TRIAL_LABEL: trial_name,
    }
    meta = obj.setdefault("metadata", {})
    meta["name"] = trial_name
    meta["namespace"] = namespace
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["ownerReferences"] = [owner_reference(trial)]
    for template_meta in podspec.pod_template_metadata(obj):
        template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    for _, template, _ in podspec.workflow_containers(obj):
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    env = [
        {"name": TRIAL_NAME_ENV, "value": _escape(trial_name)},
        {"name": DB_ADDRESS_ENV, "value": _escape(db_address)},
        {"name": NAMESPACE_ENV, "value": _escape(namespace)},
    ]
    for container in podspec.containers(obj):
        own = [e for e in container.get("env") or [] if e.get("name") not in _OUR_ENV]
        container["env"] = [dict(e) for e in env] + own
    kind_name = _collector_kind(spec)
    if kind_name in _ENV_ONLY:
        return obj
    if kind_name not in _WRAPPED:
        raise RenderError(
            "spec.metricsCollectorSpec.collector.kind",
            f"{kind_name} collectors are not supported on Kubernetes; use StdOut, File or Push",
        )
    primary_name = str(spec.get("primaryContainerName") or "")
    found = podspec.primary_container(obj, primary_name, spec.get("primaryPodLabels") or {})
    if found is None:
        raise RenderError(
            "spec.trialTemplate.primaryContainerName",
            f"no container named {primary_name!r} in the {kind} template",
        )
    path, container, gated = found
    primary_env: list[tuple[str, str]] = []
    if gated:  # every node runs this container: only the primary pod's collector reports
        for i, (key, value) in enumerate(sorted((spec.get("primaryPodLabels") or {}).items())):
            var = f"{PRIMARY_LABEL_ENV}{i}"
            field_path = f"metadata.labels['{key}']"
            container["env"].append(
                {"name": var, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}
            )
            primary_env.append((var, str(value)))
    command = container.get("command")
    args = container.get("args") or []
    if not command:
        raise RenderError(
            f"spec.trialTemplate.trialSpec{path}.command",
            "the primary container needs an explicit command for the "
            f"{kind_name} metrics collector to wrap (it cannot know the image's entrypoint)",
        )
    if not isinstance(command, list) or not isinstance(args, list):
        raise RenderError(
            f"spec.trialTemplate.trialSpec{path}.command", "command and args must be lists"
        )
    ruleset = _ruleset(trial, rules)
    options = collector_args(
        trial_name,
        db_address,
        spec,
        ruleset,
        termination_log=str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_LOG),
        primary_env=primary_env,
    )
    container["command"] = [*(_escape(c) for c in collector_command), *options, "--", *command]
    container["args"] = [str(a) for a in args]
    if not container["args"]:
        del container["args"]
    return obj


_OUR_ENV = (TRIAL_NAME_ENV, DB_ADDRESS_ENV, NAMESPACE_ENV)


def _escape(text: str) -> str:
    """``text`` written so Kubernetes' ``$(VAR)`` expansion leaves it as it is."""
    return text.replace("$", "$$")


def _collector_kind(spec: Mapping[str, Any]) -> CollectorKind:
    raw = ((spec.get("metricsCollector") or {}).get("collector") or {}).get("kind", "StdOut")
    try:
        return CollectorKind(raw)
    except ValueError:
        raise RenderError(
            "spec.metricsCollectorSpec.collector.kind", f"unknown collector kind {raw!r}"
        ) from None


def _ruleset(trial: Mapping[str, Any], rules: RuleSet | Sequence[Rule] | None) -> RuleSet:
    if rules is None:
        return rules_from_trial(trial)
    if isinstance(rules, RuleSet):
        return rules
    return RuleSet(tuple(rules))


def collector_args(
    trial_name: str,
    db_address: str,
    trial_spec: Mapping[str, Any],
    rules: RuleSet,
    *,
    termination_log: str = DEFAULT_TERMINATION_LOG,
    primary_env: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The collector's options (before ``--``) for a Trial's spec, ``$`` escaped."""
    objective = trial_spec.get("objective") or {}
    metric_names = [objective.get("objectiveMetricName", "")]
    metric_names += list(objective.get("additionalMetricNames") or [])
    collector = trial_spec.get("metricsCollector") or {}
    kind = _collector_kind(trial_spec)
    source = collector.get("source") or {}
    out = [
        "--trial-name",
        trial_name,
        "--db-manager-address",
        db_address,
        "--metric-names",
        ",".join(str(m) for m in metric_names),
        "--objective-type",
        str(objective.get("type", "minimize")),
        "--kind",
        kind.value,
        "--termination-log",
        termination_log,
    ]
    fs = source.get("fileSystemPath") or {}
    if kind is CollectorKind.FILE:
        if not fs.get("path"):
            raise RenderError(
                "spec.metricsCollectorSpec.source.fileSystemPath.path",
                "a File collector needs the metrics file's path",
            )
        out += ["--file-path", str(fs["path"]), "--format", str(fs.get("format") or "TEXT")]
        if str(fs.get("format") or "TEXT") not in (f.value for f in FileFormat):
            raise RenderError(
                "spec.metricsCollectorSpec.source.fileSystemPath.format", "must be TEXT or JSON"
            )
    for pattern in (source.get("filter") or {}).get("metricsFormat") or []:
        out += ["--filter", str(pattern)]
    if rules.rules:
        out += ["--stop-rules", rules_json(rules)]
    for name, value in primary_env:
        out += ["--primary-env", f"{name}={value}"]
    return [_escape(a) for a in out]


def rules_json(rules: RuleSet) -> str:
    """The ``--stop-rules`` value: ``{"semantics": ..., "rules": [EarlyStoppingRule, ...]}``."""
    return json.dumps(
        {"semantics": rules.semantics.value, "rules": [rule_dict(r) for r in rules.rules]},
        separators=(",", ":"),
    )
