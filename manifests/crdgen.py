"""Generate the CustomResourceDefinitions in ``manifests/base/crds/`` from one set of schemas.

Katib's ``kubeflow.org/v1beta1`` kinds share sub-structures (the objective, an algorithm, the
metrics collector, parameter assignments, observations, conditions); writing each once here keeps
the three CRDs from drifting apart. The schemas follow Katib's Go types field for field, so every
Experiment Katib accepts applies unchanged, while a typo or a value of the wrong type is refused
by the API server with the field's path instead of being accepted and failing later:

- every string, integer and enum is typed as in the Go structs (``int32`` counts, ``float64``
  goal, the string enums Katib's webhook checks);
- the user's Kubernetes objects (``trialTemplate.trialSpec``, ``Trial.spec.runSpec``, a custom
  collector's container) are kept whole (``x-kubernetes-preserve-unknown-fields``);
- ``metricsCollectorSpec.source.httpGet.port`` is an int-or-string, as in ``HTTPGetAction``;
- the fields Katib's webhook requires (objective, algorithm, trial template, the counts' bounds)
  are required here too, so ``kubectl apply`` names the missing field.

Run ``python manifests/crdgen.py`` after changing a schema; ``tests/kube/test_crd_schemas.py``
fails when the committed YAML differs from what this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

GROUP = "kubeflow.org"
VERSION = "v1beta1"
CRD_DIR = Path(__file__).resolve().parent / "base" / "crds"

Schema = dict[str, Any]


# ---------------------------------------------------------------- schema builders


def string(description: str, *, enum: list[str] | None = None, **extra: Any) -> Schema:
    """A string field, optionally limited to ``enum``."""
    schema: Schema = {"type": "string", "description": description}
    if enum is not None:
        schema["enum"] = enum
    schema.update(extra)
    return schema


def int32(description: str, *, minimum: int | None = None) -> Schema:
    """A Go ``int32`` field."""
    schema: Schema = {"type": "integer", "format": "int32", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def timestamp(description: str) -> Schema:
    """A ``metav1.Time``; nullable because Go writes a zero non-pointer time as ``null``."""
    return {"type": "string", "format": "date-time", "nullable": True, "description": description}


def array(items: Schema, description: str) -> Schema:
    """A list of ``items``."""
    return {"type": "array", "description": description, "items": items}


def strings(description: str) -> Schema:
    """A list of strings."""
    return array({"type": "string"}, description)


def string_map(description: str) -> Schema:
    """A ``map[string]string`` (labels and the like)."""
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }


def obj(
    description: str, properties: dict[str, Schema], required: list[str] | None = None
) -> Schema:
    """An object with exactly ``properties`` (unknown fields are pruned or refused)."""
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = required
    return schema


def opaque(description: str, required: list[str] | None = None) -> Schema:
    """A whole Kubernetes object or container kept as written."""
    schema: Schema = {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }
    if required:
        schema["properties"] = {key: {"type": "string"} for key in required}
        schema["required"] = required
    return schema


# ---------------------------------------------------------------- shared structures


def name_value(description: str) -> Schema:
    """``{name, value}``: an algorithm setting or a parameter assignment."""
    return obj(
        description,
        {"name": string("Name."), "value": string("Value, always a string.")},
    )


def algorithm(description: str) -> Schema:
    """``AlgorithmSpec`` / ``EarlyStoppingSpec``."""
    return obj(
        description,
        {
            "algorithmName": string("Name the service is registered under.", minLength=1),
            "algorithmSettings": array(
                name_value("One setting passed to the algorithm."),
                "Settings passed to the algorithm as name/value strings.",
            ),
        },
        required=["algorithmName"],
    )


def objective() -> Schema:
    """``ObjectiveSpec``."""
    return obj(
        "What the experiment optimises.",
        {
            "type": string("Direction of the objective.", enum=["minimize", "maximize"]),
            "goal": {
                "type": "number",
                "format": "double",
                "description": "Stop the experiment once the best objective value reaches this.",
            },
            "objectiveMetricName": string("Metric to optimise.", minLength=1),
            "additionalMetricNames": strings("Other metrics to collect and record."),
            "metricStrategies": array(
                obj(
                    "Which reported value of a metric stands for the trial.",
                    {
                        "name": string("Metric name."),
                        "value": string(
                            "Minimum, maximum or latest reported value.",
                            enum=["min", "max", "latest"],
                        ),
                    },
                ),
                "Per-metric choice of the value that represents a trial.",
            ),
        },
        required=["type", "objectiveMetricName"],
    )


def metrics_collector(description: str) -> Schema:
    """``MetricsCollectorSpec``."""
    http_get = obj(
        "HTTP endpoint the collector scrapes (core/v1 HTTPGetAction).",
        {
            "path": string("URL path."),
            "port": {
                "x-kubernetes-int-or-string": True,
                "description": "Port number or name.",
            },
            "host": string("Host name; the pod IP when empty."),
            "scheme": string("HTTP or HTTPS.", enum=["HTTP", "HTTPS"]),
            "httpHeaders": array(
                obj(
                    "One request header.",
                    {"name": string("Header name."), "value": string("Header value.")},
                    required=["name", "value"],
                ),
                "Extra request headers.",
            ),
        },
        required=["port"],
    )
    source = obj(
        "Where metrics are read from.",
        {
            "httpGet": http_get,
            "fileSystemPath": obj(
                "File or directory the trial writes metrics to.",
                {
                    "path": string("Absolute path in the trial container."),
                    "kind": string("A single file or a directory.", enum=["File", "Directory"]),
                    "format": string("Format of a metrics file.", enum=["TEXT", "JSON"]),
                },
            ),
            "filter": obj(
                "How metric lines are recognised.",
                {
                    "metricsFormat": strings(
                        "Regular expressions with two groups: metric name and value."
                    )
                },
            ),
        },
    )
    collector = obj(
        "How metrics are collected.",
        {
            "kind": string(
                "Collector kind.",
                enum=[
                    "StdOut",
                    "File",
                    "TensorFlowEvent",
                    "PrometheusMetric",
                    "Custom",
                    "Push",
                    "None",
                ],
            ),
            "customCollector": opaque("Container (core/v1 Container) of a Custom collector."),
        },
    )
    return obj(description, {"source": source, "collector": collector})


def parameter_spec(description: str) -> Schema:
    """``ParameterSpec``."""
    return obj(
        description,
        {
            "name": string("Parameter name.", minLength=1),
            "parameterType": string(
                "Type of the values.",
                enum=["double", "int", "discrete", "categorical", "unknown"],
            ),
            "feasibleSpace": obj(
                "Values the parameter may take. Bounds and steps are strings, as in Katib.",
                {
                    "min": string("Lower bound (double and int)."),
                    "max": string("Upper bound (double and int)."),
                    "step": string("Grid step (double and int)."),
                    "list": strings("Allowed values (discrete and categorical)."),
                    "distribution": string(
                        "Prior over the range.",
                        enum=["uniform", "logUniform", "normal", "logNormal", "unknown"],
                    ),
                },
            ),
        },
        required=["name", "parameterType", "feasibleSpace"],
    )


def early_stopping_rule() -> Schema:
    """``EarlyStoppingRule``."""
    return obj(
        "Stop the trial when a metric compares so with a value.",
        {
            "name": string("Metric name."),
            "value": string("Threshold."),
            "comparison": string("Comparison.", enum=["equal", "less", "greater"]),
            "startStep": {
                "type": "integer",
                "description": "Apply the rule from this reported step on.",
            },
        },
    )


def observation(description: str) -> Schema:
    """``Observation``."""
    return obj(
        description,
        {
            "metrics": array(
                obj(
                    "Folded values of one metric.",
                    {
                        "name": string("Metric name."),
                        "min": string("Smallest value reported."),
                        "max": string("Largest value reported."),
                        "latest": string("Value reported last."),
                    },
                ),
                "One entry per metric; the objective metric first.",
            )
        },
    )


def conditions(kinds: list[str]) -> Schema:
    """The ``conditions`` list of a status."""
    return array(
        obj(
            "One condition; the last one in the list is the current state.",
            {
                "type": string("Condition type.", enum=kinds),
                "status": string("Condition status.", enum=["True", "False", "Unknown"]),
                "reason": string("Machine-readable reason."),
                "message": string("Human-readable message."),
                "lastUpdateTime": timestamp("When the condition was last written."),
                "lastTransitionTime": timestamp("When the status last changed."),
            },
            required=["type", "status"],
        ),
        "Conditions in the order they were first set.",
    )


def assignments(description: str) -> Schema:
    """A list of ``ParameterAssignment``."""
    return array(name_value("One parameter's value."), description)


def times() -> dict[str, Schema]:
    """The three timestamps every status carries."""
    return {
        "startTime": timestamp("When the controller first acted on the object."),
        "completionTime": timestamp("When the object completed."),
        "lastReconcileTime": timestamp("When the controller last reconciled the object."),
    }


# ---------------------------------------------------------------- the three kinds


def experiment_spec() -> Schema:
    """``ExperimentSpec``."""
    template = obj(
        "How a trial's Kubernetes object is made.",
        {
            "retain": {"type": "boolean", "description": "Keep trial objects after completion."},
            "trialSpec": opaque(
                "Kubernetes object to run per trial, with ${trialParameters.<name>} placeholders.",
                required=["apiVersion", "kind"],
            ),
            "configMap": obj(
                "ConfigMap holding the trial template instead of trialSpec.",
                {
                    "configMapName": string("ConfigMap name."),
                    "configMapNamespace": string("ConfigMap namespace."),
                    "templatePath": string("Key of the template in the ConfigMap."),
                },
            ),
            "trialParameters": array(
                obj(
                    "A placeholder in the template.",
                    {
                        "name": string("Placeholder name.", minLength=1),
                        "description": string("What the value means."),
                        "reference": string(
                            "Parameter name, or ${trialSpec.<field>} for trial metadata.",
                            minLength=1,
                        ),
                    },
                    required=["name", "reference"],
                ),
                "Placeholders substituted into the template.",
            ),
            "primaryPodLabels": string_map("Labels that select the trial's primary pod."),
            "primaryContainerName": string("Container whose metrics are collected.", minLength=1),
            "successCondition": string("GJSON query on the trial object that means success."),
            "failureCondition": string("GJSON query on the trial object that means failure."),
        },
        required=["primaryContainerName"],
    )
    nas = obj(
        "Neural architecture search space (instead of parameters).",
        {
            "graphConfig": obj(
                "Shape of the network.",
                {
                    "numLayers": int32("Number of layers.", minimum=1),
                    "inputSizes": array({"type": "integer", "format": "int32"}, "Input shape."),
                    "outputSizes": array({"type": "integer", "format": "int32"}, "Output shape."),
                },
            ),
            "operations": array(
                obj(
                    "One candidate operation.",
                    {
                        "operationType": string("Operation name.", minLength=1),
                        "parameters": array(
                            parameter_spec("One parameter of the operation."),
                            "Parameters of the operation.",
                        ),
                    },
                    required=["operationType"],
                ),
                "Candidate operations.",
            ),
        },
    )
    return obj(
        "What to search and how.",
        {
            "parameters": array(parameter_spec("One tuned parameter."), "The search space."),
            "objective": objective(),
            "algorithm": algorithm("Search algorithm."),
            "earlyStopping": algorithm("Early-stopping algorithm."),
            "trialTemplate": template,
            "parallelTrialCount": int32("Trials run at once (default 3).", minimum=1),
            "maxTrialCount": int32("Trials to run in total (unset: no limit).", minimum=1),
            "maxFailedTrialCount": int32("Failed trials that fail the experiment.", minimum=0),
            "metricsCollectorSpec": metrics_collector("How trial metrics are collected."),
            "nasConfig": nas,
            "resumePolicy": string(
                "What happens to a completed experiment's suggestion service.",
                enum=["", "Never", "LongRunning", "FromVolume"],
            ),
        },
        required=["objective", "algorithm", "trialTemplate"],
    )


def experiment_status() -> Schema:
    """``ExperimentStatus``."""
    lists = {
        f"{state}TrialList": strings(f"Names of the {label} trials.")
        for state, label in [
            ("running", "running"),
            ("pending", "pending"),
            ("failed", "failed"),
            ("succeeded", "succeeded"),
            ("killed", "killed"),
            ("earlyStopped", "early-stopped"),
            ("metricsUnavailable", "metrics-unavailable"),
        ]
    }
    counts = {
        name: int32(f"Number of {label} trials.", minimum=0)
        for name, label in [
            ("trials", "all"),
            ("trialsSucceeded", "succeeded"),
            ("trialsFailed", "failed"),
            ("trialsKilled", "killed"),
            ("trialsPending", "pending"),
            ("trialsRunning", "running"),
            ("trialsEarlyStopped", "early-stopped"),
            ("trialMetricsUnavailable", "metrics-unavailable"),
        ]
    }
    optimal = obj(
        "The best trial so far.",
        {
            "bestTrialName": string("Trial name."),
            "parameterAssignments": assignments("Its parameter values."),
            "observation": observation("Its metrics."),
        },
    )
    return obj(
        "Progress of the experiment.",
        {
            **times(),
            "conditions": conditions(["Created", "Running", "Restarting", "Succeeded", "Failed"]),
            "currentOptimalTrial": optimal,
            **lists,
            **counts,
        },
    )


def trial_spec() -> Schema:
    """``TrialSpec``."""
    return obj(
        "One trial: parameter values and the object that runs them.",
        {
            "objective": objective(),
            "parameterAssignments": assignments("Values of the experiment's parameters."),
            "earlyStoppingRules": array(early_stopping_rule(), "Rules that stop the trial early."),
            "runSpec": opaque(
                "Kubernetes object that runs the trial.", required=["apiVersion", "kind"]
            ),
            "retainRun": {
                "type": "boolean",
                "description": "Keep the run object after completion.",
            },
            "metricsCollector": metrics_collector("How the trial's metrics are collected."),
            "primaryPodLabels": string_map("Labels that select the trial's primary pod."),
            "primaryContainerName": string("Container whose metrics are collected."),
            "successCondition": string("GJSON query on the run object that means success."),
            "failureCondition": string("GJSON query on the run object that means failure."),
            "labels": string_map("Labels the suggestion service attached to the trial."),
        },
    )


def trial_status() -> Schema:
    """``TrialStatus``."""
    return obj(
        "Progress and result of the trial.",
        {
            **times(),
            "conditions": conditions(
                [
                    "Created",
                    "Running",
                    "Succeeded",
                    "Killed",
                    "Failed",
                    "MetricsUnavailable",
                    "EarlyStopped",
                ]
            ),
            "observation": observation("Metrics the trial reported, folded per strategy."),
        },
    )


def suggestion_spec() -> Schema:
    """``SuggestionSpec``."""
    return obj(
        "What the suggestion service is asked for.",
        {
            "algorithm": algorithm("Search algorithm."),
            "earlyStopping": algorithm("Early-stopping algorithm."),
            "requests": int32("Number of assignments wanted in total.", minimum=0),
            "resumePolicy": string(
                "Copied from the experiment.", enum=["", "Never", "LongRunning", "FromVolume"]
            ),
        },
    )


def suggestion_status() -> Schema:
    """``SuggestionStatus``."""
    assignment = obj(
        "One trial's assignment as the service returned it.",
        {
            "name": string("Trial name."),
            "parameterAssignments": assignments("Parameter values."),
            "earlyStoppingRules": array(early_stopping_rule(), "Early-stopping rules."),
            "labels": string_map("Labels for the trial."),
        },
    )
    return obj(
        "Assignments received so far.",
        {
            "algorithmSettings": array(
                name_value("One setting."),
                "Algorithm settings as the service last returned them (its state).",
            ),
            "suggestionCount": int32("Number of assignments received.", minimum=0),
            "suggestions": array(assignment, "Every assignment received, oldest first."),
            **times(),
            "conditions": conditions(
                ["Created", "DeploymentReady", "Running", "Succeeded", "Failed"]
            ),
        },
    )


# ---------------------------------------------------------------- CRDs


def column(name: str, path: str, kind: str = "string", priority: int = 0, **extra: Any) -> Schema:
    """One ``additionalPrinterColumns`` entry."""
    entry: Schema = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        entry["priority"] = priority
    entry.update(extra)
    return entry


LAST_TYPE = column("Type", ".status.conditions[-1:].type", description="Current condition.")
LAST_STATUS = column("Status", ".status.conditions[-1:].status")
AGE = column("Age", ".metadata.creationTimestamp", "date")


def crd(
    plural: str,
    kind: str,
    short_names: list[str],
    spec: Schema,
    status: Schema,
    columns: list[Schema],
) -> Schema:
    """A namespaced ``kubeflow.org/v1beta1`` CRD with a status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "katib-py"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "singular": kind.lower(),
                "plural": plural,
                "shortNames": short_names,
                "categories": ["all", "kubeflow", "katib"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": obj(
                            f"A Katib {kind}.",
                            {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        )
                    },
                }
            ],
        },
    }


def definitions() -> dict[str, Schema]:
    """File name -> CRD, for the three kinds."""
    best = ".status.currentOptimalTrial"
    metric = f"{best}.observation.metrics[0]"
    return {
        "experiments.yaml": crd(
            "experiments",
            "Experiment",
            ["kexp"],
            experiment_spec(),
            experiment_status(),
            [
                LAST_TYPE,
                LAST_STATUS,
                column("Best-Trial", f"{best}.bestTrialName"),
                column("Objective", f"{metric}.name", priority=1),
                column("Min", f"{metric}.min", description="Best trial's smallest objective."),
                column("Max", f"{metric}.max", description="Best trial's largest objective."),
                column("Latest", f"{metric}.latest", priority=1),
                column("Trials", ".status.trials", "integer", priority=1),
                column("Succeeded", ".status.trialsSucceeded", "integer", priority=1),
                column("Failed", ".status.trialsFailed", "integer", priority=1),
                AGE,
            ],
        ),
        "trials.yaml": crd(
            "trials",
            "Trial",
            ["ktrial"],
            trial_spec(),
            trial_status(),
            [
                LAST_TYPE,
                LAST_STATUS,
                column("Objective", ".status.observation.metrics[0].name", priority=1),
                column("Min", ".status.observation.metrics[0].min"),
                column("Max", ".status.observation.metrics[0].max"),
                column("Latest", ".status.observation.metrics[0].latest", priority=1),
                AGE,
            ],
        ),
        "suggestions.yaml": crd(
            "suggestions",
            "Suggestion",
            ["ksugg"],
            suggestion_spec(),
            suggestion_status(),
            [
                LAST_TYPE,
                LAST_STATUS,
                column("Requested", ".spec.requests", "integer"),
                column("Assigned", ".status.suggestionCount", "integer"),
                AGE,
            ],
        ),
    }


HEADER = "# Generated by manifests/crdgen.py; edit that script, then run it.\n"


def render(definition: Schema) -> str:
    """The YAML text of one CRD file."""
    return HEADER + yaml.safe_dump(definition, sort_keys=False, width=99)


def main() -> int:
    """Write the CRD files; with ``--check``, only report whether they are current."""
    check = "--check" in sys.argv[1:]
    stale = []
    for filename, definition in definitions().items():
        path = CRD_DIR / filename
        text = render(definition)
        if path.exists() and path.read_text() == text:
            continue
        stale.append(filename)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if check and stale:
        print("stale: " + ", ".join(stale) + " (run python manifests/crdgen.py)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
