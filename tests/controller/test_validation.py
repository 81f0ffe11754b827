"""Every webhook rule rejects a bad Experiment with the field named; defaults are Katib's."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from katib.api.errors import InvalidArgument
from katib.controller import checks
from katib.controller.local import LOCAL_CAPABILITIES
from katib.controller.spec import CollectorKind, Distribution, FileFormat, ResumePolicy, Strategy
from katib.controller.validation import load_experiment
from tests.controller.experiments import container, experiment

ALGORITHMS = ["random", "grid", "sobol"]
Mutation = Callable[[dict[str, Any]], None]


def base() -> dict[str, Any]:
    return experiment("/bin/trial.py")


def spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]


def param(i: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda doc: doc["spec"]["parameters"][i]


def problems_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        load_experiment(doc, ALGORITHMS)
    return info.value.problems


def set_in(getter: Callable[[dict[str, Any]], dict[str, Any]], **values: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        getter(doc).update(values)

    return mutate


def drop(getter: Callable[[dict[str, Any]], dict[str, Any]], key: str) -> Mutation:
    return lambda doc: getter(doc).pop(key)


def template(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["trialTemplate"]


def objective(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["objective"]


def collector(kind: str, **source: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["spec"]["metricsCollectorSpec"] = {"collector": {"kind": kind}, "source": source}

    return mutate


CASES: list[tuple[str, Mutation, str]] = [
    ("api version", lambda d: d.update(apiVersion="kubeflow.org/v1"), "apiVersion"),
    ("kind", lambda d: d.update(kind="Job"), "kind"),
    ("name missing", drop(lambda d: d["metadata"], "name"), "metadata.name"),
    ("name regex anchored", set_in(lambda d: d["metadata"], name="abc_DEF"), "metadata.name"),
    ("name trailing dash", set_in(lambda d: d["metadata"], name="abc-"), "metadata.name"),
    ("name too long", set_in(lambda d: d["metadata"], name="a" * 41), "metadata.name"),
    ("unknown spec field", set_in(spec, maxTrialCounts=3), "spec.maxTrialCounts"),
    ("maxFailed negative", set_in(spec, maxFailedTrialCount=-1), "spec.maxFailedTrialCount"),
    ("maxTrial zero", set_in(spec, maxTrialCount=0), "spec.maxTrialCount"),
    ("parallel zero", set_in(spec, parallelTrialCount=0), "spec.parallelTrialCount"),
    ("maxFailed > max", set_in(spec, maxFailedTrialCount=9), "spec.maxFailedTrialCount"),
    ("parallel > max", set_in(spec, parallelTrialCount=9), "spec.parallelTrialCount"),
    ("count not int", set_in(spec, maxTrialCount="ten"), "spec.maxTrialCount"),
    ("objective missing", drop(spec, "objective"), "spec.objective"),
    ("objective type", set_in(objective, type="lowest"), "spec.objective.type"),
    (
        "objective metric",
        set_in(objective, objectiveMetricName=""),
        "spec.objective.objectiveMetricName",
    ),
    (
        "additional has objective",
        set_in(objective, additionalMetricNames=["loss"]),
        "spec.objective.additionalMetricNames",
    ),
    ("goal not number", set_in(objective, goal="low"), "spec.objective.goal"),
    (
        "strategy value",
        set_in(objective, metricStrategies=[{"name": "loss", "value": "avg"}]),
        "spec.objective.metricStrategies[0].value",
    ),
    (
        "strategy unknown metric",
        set_in(objective, metricStrategies=[{"name": "f1", "value": "max"}]),
        "spec.objective.metricStrategies[0].name",
    ),
    ("algorithm missing", drop(spec, "algorithm"), "spec.algorithm"),
    (
        "algorithm empty",
        set_in(lambda d: d["spec"]["algorithm"], algorithmName=""),
        "spec.algorithm.algorithmName",
    ),
    (
        "algorithm unknown",
        set_in(lambda d: d["spec"]["algorithm"], algorithmName="bogus"),
        "spec.algorithm.algorithmName",
    ),
    (
        "early stopping not built in",
        set_in(spec, earlyStopping={"algorithmName": "curve-fit"}),
        "spec.earlyStopping.algorithmName",
    ),
    ("resume policy", set_in(spec, resumePolicy="Sometimes"), "spec.resumePolicy"),
    ("no parameters", set_in(spec, parameters=[]), "spec.parameters"),
    (
        "params and nas",
        set_in(spec, nasConfig={"graphConfig": {"numLayers": 1}}),
        "spec.parameters",
    ),
    ("param type", set_in(param(0), parameterType="float"), "spec.parameters[0].parameterType"),
    ("param name empty", set_in(param(0), name=""), "spec.parameters[0].name"),
    ("duplicate param", set_in(param(1), name="x"), "spec.parameters[1].name"),
    (
        "feasible space missing",
        drop(param(0), "feasibleSpace"),
        "spec.parameters[0].feasibleSpace",
    ),
    (
        "feasible space empty",
        set_in(param(0), feasibleSpace={}),
        "spec.parameters[0].feasibleSpace",
    ),
    (
        "min missing",
        drop(lambda d: d["spec"]["parameters"][1]["feasibleSpace"], "min"),
        "spec.parameters[1].feasibleSpace.min",
    ),
    (
        "min not number",
        set_in(lambda d: d["spec"]["parameters"][1]["feasibleSpace"], min="a"),
        "spec.parameters[1].feasibleSpace.min",
    ),
    (
        "min >= max",
        set_in(lambda d: d["spec"]["parameters"][1]["feasibleSpace"], min="5"),
        "spec.parameters[1].feasibleSpace.min",
    ),
    (
        "step <= 0",
        set_in(lambda d: d["spec"]["parameters"][1]["feasibleSpace"], step="0"),
        "spec.parameters[1].feasibleSpace.step",
    ),
    (
        "int not integer",
        set_in(param(1), parameterType="int"),
        "spec.parameters[1].feasibleSpace.max",
    ),
    (
        "list on double",
        set_in(lambda d: d["spec"]["parameters"][0]["feasibleSpace"], list=["1"]),
        "spec.parameters[0].feasibleSpace.list",
    ),
    (
        "distribution",
        set_in(lambda d: d["spec"]["parameters"][0]["feasibleSpace"], distribution="gaussian"),
        "spec.parameters[0].feasibleSpace.distribution",
    ),
    (
        "log min <= 0",
        set_in(lambda d: d["spec"]["parameters"][0]["feasibleSpace"], distribution="logUniform"),
        "spec.parameters[0].feasibleSpace.min",
    ),
    (
        "categorical empty list",
        set_in(param(0), parameterType="categorical", feasibleSpace={"list": []}),
        "spec.parameters[0].feasibleSpace",
    ),
    (
        "categorical with min",
        set_in(param(0), parameterType="categorical", feasibleSpace={"list": ["a"], "min": "1"}),
        "spec.parameters[0].feasibleSpace.min",
    ),
    (
        "discrete not numeric",
        set_in(param(0), parameterType="discrete", feasibleSpace={"list": ["1", "b"]}),
        "spec.parameters[0].feasibleSpace.list[1]",
    ),
    ("collector kind", collector("Stdout"), "spec.metricsCollectorSpec.collector.kind"),
    (
        "collector unsupported locally",
        collector("TensorFlowEvent"),
        "spec.metricsCollectorSpec.collector.kind",
    ),
    (
        "file path relative",
        collector("File", fileSystemPath={"path": "m.log", "kind": "File"}),
        "spec.metricsCollectorSpec.source.fileSystemPath.path",
    ),
    (
        "file kind",
        collector("File", fileSystemPath={"path": "/m", "kind": "Directory"}),
        "spec.metricsCollectorSpec.source.fileSystemPath.kind",
    ),
    (
        "file format",
        collector("File", fileSystemPath={"path": "/m", "format": "CSV"}),
        "spec.metricsCollectorSpec.source.fileSystemPath.format",
    ),
    (
        "json with filter",
        collector(
            "File",
            fileSystemPath={"path": "/m", "format": "JSON"},
            filter={"metricsFormat": ["(\\w+)=(\\d+)"]},
        ),
        "spec.metricsCollectorSpec.source.filter",
    ),
    (
        "filter bad regex",
        collector("StdOut", filter={"metricsFormat": ["(a"]}),
        "spec.metricsCollectorSpec.source.filter.metricsFormat[0]",
    ),
    (
        "filter one group",
        collector("StdOut", filter={"metricsFormat": ["loss=(\\d+)"]}),
        "spec.metricsCollectorSpec.source.filter.metricsFormat[0]",
    ),
    ("template missing", drop(spec, "trialTemplate"), "spec.trialTemplate"),
    (
        "primary container missing",
        drop(template, "primaryContainerName"),
        "spec.trialTemplate.primaryContainerName",
    ),
    (
        "primary container unknown",
        set_in(template, primaryContainerName="main"),
        "spec.trialTemplate.primaryContainerName",
    ),
    (
        "trial parameters missing",
        drop(template, "trialParameters"),
        "spec.trialTemplate.trialParameters",
    ),
    (
        "both spec and configmap",
        set_in(template, configMap={"configMapName": "t"}),
        "spec.trialTemplate",
    ),
    (
        "configmap locally",
        lambda d: (
            template(d).pop("trialSpec"),
            template(d).update(
                configMap={"configMapName": "t", "configMapNamespace": "n", "templatePath": "p"}
            ),
        ),
        "spec.trialTemplate.configMap",
    ),
    (
        "trial param name braces",
        lambda d: template(d)["trialParameters"][0].update(name="x}"),
        "spec.trialTemplate.trialParameters[0].name",
    ),
    (
        "trial param duplicate name",
        lambda d: template(d)["trialParameters"][1].update(name="x"),
        "spec.trialTemplate.trialParameters[1].name",
    ),
    (
        "trial param empty reference",
        lambda d: template(d)["trialParameters"][0].update(reference=""),
        "spec.trialTemplate.trialParameters[0].reference",
    ),
    (
        "trial param duplicate reference",
        lambda d: template(d)["trialParameters"][1].update(reference="x"),
        "spec.trialTemplate.trialParameters[1].reference",
    ),
    (
        "trial param unknown reference",
        lambda d: template(d)["trialParameters"][0].update(reference="lr"),
        "spec.trialTemplate.trialParameters[0].reference",
    ),
    (
        "trial param unknown meta",
        lambda d: template(d)["trialParameters"].append(
            {"name": "meta", "reference": "${trialSpec.Uid}"}
        ),
        "spec.trialTemplate.trialParameters[2]",
    ),
    (
        "trial param unused",
        lambda d: template(d)["trialParameters"].append(
            {"name": "unused", "reference": "${trialSpec.Name}"}
        ),
        "spec.trialTemplate.trialParameters[2].name",
    ),
    (
        "placeholder undeclared",
        lambda d: container(d)["command"].append("${trialParameters.z}"),
        "spec.trialTemplate.trialParameters",
    ),
    (
        "template metadata name",
        lambda d: template(d)["trialSpec"].update(metadata={"name": "fixed"}),
        "spec.trialTemplate.trialSpec.metadata.name",
    ),
    (
        "template kind missing",
        lambda d: template(d)["trialSpec"].pop("kind"),
        "spec.trialTemplate.trialSpec.kind",
    ),
    (
        "conditions for unknown kind",
        lambda d: template(d)["trialSpec"].update(kind="Pod"),
        "spec.trialTemplate.successCondition",
    ),
    (
        "no command",
        lambda d: container(d).update(args=container(d).pop("command")),
        "spec.trialTemplate.primaryContainerName",
    ),
]


#: Katib admits these; a local run cannot carry them out (checks.runnable reports them).
LOCAL_ONLY = {
    "early stopping not built in": "spec.earlyStopping",
    "collector unsupported locally": "spec.metricsCollectorSpec.collector.kind",
    "primary container unknown": "spec.trialTemplate.primaryContainerName",
    "configmap locally": "spec.trialTemplate.configMap",
    "no command": "spec.trialTemplate.primaryContainerName",
}
ADMISSION = [c for c in CASES if c[0] not in LOCAL_ONLY]
LOCAL = [c for c in CASES if c[0] in LOCAL_ONLY]


@pytest.mark.parametrize(
    ("mutate", "field"), [c[1:] for c in ADMISSION], ids=[c[0] for c in ADMISSION]
)
def test_rule_rejects_with_field_path(mutate: Mutation, field: str) -> None:
    doc = base()
    mutate(doc)
    problems = problems_of(doc)
    assert any(p.startswith(field) for p in problems), problems


@pytest.mark.parametrize("case", LOCAL, ids=[c[0] for c in LOCAL])
def test_local_capability_is_not_admission(case: tuple[str, Mutation, str]) -> None:
    """Katib accepts these; the local backend (or the absence of a service) is what refuses."""
    name, mutate, _ = case
    doc = base()
    mutate(doc)
    admitted = load_experiment(doc, ALGORITHMS)
    report = checks.runnable(admitted, LOCAL_CAPABILITIES)
    assert any(p.startswith(LOCAL_ONLY[name]) for p in report.problems), report.problems


def test_every_problem_is_reported_at_once() -> None:
    doc = base()
    doc["metadata"]["name"] = "Bad_Name"
    doc["spec"]["parallelTrialCount"] = 0
    doc["spec"]["parameters"][0]["feasibleSpace"]["min"] = "2"
    doc["spec"]["algorithm"]["algorithmName"] = "nope"
    problems = problems_of(doc)
    fields = [p.split(":")[0] for p in problems]
    assert {
        "metadata.name",
        "spec.parallelTrialCount",
        "spec.parameters[0].feasibleSpace.min",
        "spec.algorithm.algorithmName",
    } <= set(fields)


def test_messages_say_what_to_do() -> None:
    doc = base()
    doc["spec"]["parameters"][1]["feasibleSpace"]["min"] = "5"
    (problem,) = problems_of(doc)
    assert problem == ("spec.parameters[1].feasibleSpace.min: min (5) must be less than max (0.1)")


def test_katib_defaults() -> None:
    doc = base()
    for key in ("parallelTrialCount", "maxFailedTrialCount"):
        doc["spec"].pop(key)
    exp = load_experiment(doc, ALGORITHMS)
    assert exp.parallel_trial_count == 3
    assert exp.max_failed_trial_count is None
    assert exp.resume_policy is ResumePolicy.NEVER
    assert exp.metrics_collector.kind is CollectorKind.STDOUT
    assert exp.metrics_collector.file_system_path is not None
    assert exp.metrics_collector.file_system_path.format is FileFormat.TEXT
    assert exp.parameters[0].feasible_space.distribution is Distribution.UNIFORM
    # Katib: additional metrics get the objective-type default strategy, not `latest`.
    assert exp.objective.strategy("loss") is Strategy.MIN
    assert exp.objective.strategy("accuracy") is Strategy.MIN
    assert exp.trial_template.success_condition == (
        'status.conditions.#(type=="Complete")#|#(status=="True")#'
    )
    assert exp.trial_template.failure_condition.startswith('status.conditions.#(type=="Failed")')


def test_numbers_in_feasible_space_are_accepted_as_strings() -> None:
    doc = base()
    doc["spec"]["parameters"][0]["feasibleSpace"] = {"min": 0.5, "max": 2, "step": 0.5}
    exp = load_experiment(doc, ALGORITHMS)
    assert (exp.parameters[0].feasible_space.min, exp.parameters[0].feasible_space.step) == (
        "0.5",
        "0.5",
    )


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"min": 1.0, "max": "8.0", "step": 2.0}, ("1", "8", "2")),
        ({"min": "1", "max": 8}, ("1", "8", "")),
        ({"min": "-2.0", "max": "0"}, ("-2", "0", "")),
    ],
)
def test_int_bounds_accept_integral_floats(
    space: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    doc = base()
    doc["spec"]["parameters"][0] = {"name": "x", "parameterType": "int", "feasibleSpace": space}
    got = load_experiment(doc, ALGORITHMS).parameters[0].feasible_space
    assert (got.min, got.max, got.step) == expected


@pytest.mark.parametrize(
    ("space", "problem"),
    [
        (
            {"min": "1", "max": "8", "step": "0.8"},
            "spec.parameters[0].feasibleSpace.step: an int parameter needs a whole-number step, "
            "got '0.8'; use a double parameter for fractional steps",
        ),
        (
            {"min": "1.5", "max": "8"},
            "spec.parameters[0].feasibleSpace.min: must be an integer, got '1.5'",
        ),
    ],
)
def test_int_rejects_fractions(space: dict[str, Any], problem: str) -> None:
    doc = base()
    doc["spec"]["parameters"][0] = {"name": "x", "parameterType": "int", "feasibleSpace": space}
    assert problems_of(doc) == [problem]


def test_meta_references_are_valid() -> None:
    doc = base()
    doc["spec"]["trialTemplate"]["trialParameters"].append(
        {"name": "trialName", "reference": "${trialSpec.Name}"}
    )
    container(doc)["command"].append("--name=${trialParameters.trialName}")
    exp = load_experiment(doc, ALGORITHMS)
    assert exp.trial_template.trial_parameters[2].reference == "${trialSpec.Name}"


def test_examples_are_valid() -> None:
    from pathlib import Path

    from katib.controller.validation import load_file

    root = Path(__file__).resolve().parents[2] / "examples"
    for name in ("random", "sobol", "grid"):
        assert load_file(root / f"{name}.yaml").algorithm.algorithm_name == name
    for name in ("tpe", "multivariate-tpe"):
        assert load_file(root / f"{name}.yaml", [name]).algorithm.algorithm_name == name


NAS = {
    "graphConfig": {"numLayers": 2, "inputSizes": [32, 32, 3], "outputSizes": [10]},
    "operations": [
        {
            "operationType": "convolution",
            "parameters": [
                {
                    "name": "filter_size",
                    "parameterType": "categorical",
                    "feasibleSpace": {"list": ["3", "5"]},
                }
            ],
        }
    ],
}


def nas(**config: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["spec"].pop("parameters")
        doc["spec"]["nasConfig"] = {**copy.deepcopy(NAS), **config}

    return mutate


def nas_op(**op: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        nas()(doc)
        doc["spec"]["nasConfig"]["operations"][0].update(op)

    return mutate


def meta_list(doc: dict[str, Any]) -> None:
    template(doc)["trialSpec"]["metadata"] = ["team-a"]
    template(doc)["trialParameters"].append(
        {"name": "team", "reference": "${trialSpec.Labels[x]}"}
    )
    container(doc)["command"].append("${trialParameters.team}")


SHAPES = [
    ("metadata.labels", lambda d: d["metadata"].update(labels=["team-a"])),
    ("metadata.labels", lambda d: d["metadata"].update(labels="team-a")),
    ("spec.trialTemplate.primaryPodLabels", set_in(template, primaryPodLabels=["a"])),
    ("spec.trialTemplate.primaryPodLabels", set_in(template, primaryPodLabels="role=master")),
    ("spec.trialTemplate.retain", set_in(template, retain="false")),
    ("spec.trialTemplate.trialSpec.metadata", meta_list),
    (
        "spec.trialTemplate.trialSpec.metadata.labels",
        lambda d: template(d)["trialSpec"].update(metadata={"labels": ["x"]}),
    ),
    (
        "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].command",
        lambda d: container(d).update(command="python train.py ${trialParameters.x}"),
    ),
    (
        "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].command",
        lambda d: container(d)["command"].append({"a": 1}),
    ),
    (
        "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].args",
        lambda d: container(d).update(args="--lr=0.1"),
    ),
    (
        "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].args",
        lambda d: container(d).update(args=[["--lr", "0.1"]]),
    ),
    (
        "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].env",
        lambda d: container(d).update(env="A=1"),
    ),
    (
        "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].env[0]",
        lambda d: container(d).update(env=["A=1"]),
    ),
    ("spec.nasConfig", lambda d: (d["spec"].pop("parameters"), d["spec"].update(nasConfig=[1]))),
    ("spec.nasConfig.graphConfig", nas(graphConfig="two layers")),
    ("spec.nasConfig.graphConfig", nas(graphConfig=None)),
    ("spec.nasConfig.graphConfig.numLayers", nas(graphConfig={"numLayers": "two"})),
    ("spec.nasConfig.graphConfig.numLayers", nas(graphConfig={"numLayers": 0})),
    ("spec.nasConfig.graphConfig.numLayers", nas(graphConfig={"inputSizes": [1]})),
    ("spec.nasConfig.graphConfig.inputSizes", nas(graphConfig={"numLayers": 1, "inputSizes": 3})),
    (
        "spec.nasConfig.graphConfig.outputSizes[0]",
        nas(graphConfig={"numLayers": 1, "outputSizes": ["ten"]}),
    ),
    ("spec.nasConfig.operations", nas(operations="convolution")),
    ("spec.nasConfig.operations", nas(operations=[])),
    ("spec.nasConfig.operations[0]", nas(operations=["convolution"])),
    ("spec.nasConfig.operations[0].operationType", nas_op(operationType=None)),
    ("spec.nasConfig.operations[0].operationType", nas_op(operationType=["conv"])),
    ("spec.nasConfig.operations[0].parameters", nas_op(parameters="filter_size")),
    ("spec.nasConfig.operations[0].parameters[0]", nas_op(parameters=["filter_size"])),
    (
        "spec.nasConfig.operations[0].parameters[0].feasibleSpace.min",
        nas_op(
            parameters=[
                {"name": "n", "parameterType": "int", "feasibleSpace": {"min": "x", "max": "3"}}
            ]
        ),
    ),
]


@pytest.mark.parametrize(("field", "mutate"), SHAPES)
def test_malformed_shapes_are_problems_not_tracebacks(field: str, mutate: Mutation) -> None:
    doc = base()
    mutate(doc)
    problems = problems_of(doc)  # InvalidArgument, never another exception
    assert any(p.startswith(f"{field}:") for p in problems), problems


def test_valid_nas_config() -> None:
    doc = base()
    nas()(doc)
    assert load_experiment(doc, ALGORITHMS).nas_config == NAS
