"""Our CRDs accept every Experiment Katib accepts and refuse broken ones, naming the field.

Inputs: every Experiment under Katib's ``examples/v1beta1`` and ``test/e2e/v1beta1/testdata``
(read from a bare kubeflow/katib clone at ``KATIB_MIRROR``, by default the mirror on the
development machines, or from a plain copy of ``examples/v1beta1`` at ``KATIB_EXAMPLES`` as in
``tests/controller/test_hardening.py``), and always our own ``examples/*.yaml`` and
``examples/kubernetes/*.yaml``.
Katib's ``invalid-experiment.yaml`` is invalid only against ``katib-config`` (an unknown
algorithm), which a schema cannot know, so it must pass here too.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.openapi import crd_schema, structural_problems, validation_errors

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "manifests" / "base" / "crds"
MIRROR = Path(os.environ.get("KATIB_MIRROR", "/work/.mirror/kubeflow+katib/repo"))
KATIB_DIRS = ("examples/v1beta1", "test/e2e/v1beta1/testdata")
EXAMPLES = Path(os.environ.get("KATIB_EXAMPLES", "/tmp/katib-ex/examples/v1beta1"))
NO_KATIB = f"no kubeflow/katib clone at {MIRROR} (KATIB_MIRROR) nor examples at {EXAMPLES}"


def load_crd(plural: str) -> dict[str, Any]:
    return yaml.safe_load((CRD_DIR / f"{plural}.yaml").read_text())


SCHEMAS = {
    plural: crd_schema(load_crd(plural)) for plural in ("experiments", "trials", "suggestions")
}


def experiments_in(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc and doc.get("kind") == "Experiment"]


def katib_files() -> list[str]:
    """Names of Katib's YAML files that hold an Experiment; empty without a copy of Katib."""
    if not MIRROR.is_dir() or shutil.which("git") is None:
        if EXAMPLES.is_dir():
            files = sorted(EXAMPLES.rglob("*.y*ml"))
            return [str(p) for p in files if "kind: Experiment" in p.read_text()]
        return []
    listing = subprocess.run(
        ["git", f"--git-dir={MIRROR}", "ls-tree", "-r", "--name-only", "HEAD", "--", *KATIB_DIRS],
        capture_output=True,
        text=True,
        check=False,
    )
    names = [n for n in listing.stdout.splitlines() if n.endswith((".yaml", ".yml"))]
    return [n for n in names if "kind: Experiment" in katib_text(n)]


def katib_text(name: str) -> str:
    if Path(name).is_absolute():
        return Path(name).read_text()
    shown = subprocess.run(
        ["git", f"--git-dir={MIRROR}", "show", f"HEAD:{name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout


KATIB_FILES = katib_files()
OUR_FILES = sorted(
    str(p.relative_to(ROOT))
    for p in [*ROOT.glob("examples/*.yaml"), *ROOT.glob("examples/kubernetes/*.yaml")]
    if experiments_in(p.read_text())
)


def test_crds_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location("crdgen", ROOT / "manifests" / "crdgen.py")
    assert spec is not None and spec.loader is not None
    crdgen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crdgen)
    for filename, definition in crdgen.definitions().items():
        committed = (CRD_DIR / filename).read_text()
        assert committed == crdgen.render(definition), (
            f"run python manifests/crdgen.py ({filename})"
        )


@pytest.mark.parametrize("plural", sorted(SCHEMAS))
def test_crd_schema_is_structural(plural: str) -> None:
    assert structural_problems(SCHEMAS[plural]) == []


@pytest.mark.parametrize("plural", sorted(SCHEMAS))
def test_crd_names_and_subresources(plural: str) -> None:
    crd = load_crd(plural)
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{plural}.kubeflow.org"
    assert (spec["group"], spec["scope"], spec["names"]["plural"]) == (
        "kubeflow.org",
        "Namespaced",
        plural,
    )
    assert [v["name"] for v in spec["versions"]] == ["v1beta1"]
    version = spec["versions"][0]
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert "katib" in spec["names"]["categories"]


# Short names already taken by built-in kinds and by CRDs often installed next to Katib
# (Argo Rollouts' Experiment is "exp", Tekton's TaskRun is "tr").
TAKEN_SHORT_NAMES = {
    "cm", "cs", "csr", "ds", "deploy", "ep", "ev", "hpa", "ing", "limits", "netpol", "no", "ns",
    "pc", "pdb", "po", "psp", "pv", "pvc", "quota", "rc", "rs", "sa", "sc", "sts", "svc", "crd",
    "crds", "exp", "tr", "pr", "wf", "cwf", "wftmpl", "ro", "ar", "at", "ksvc", "job", "cj",
}  # fmt: skip


def test_short_names_are_unique_and_free() -> None:
    names = [n for p in SCHEMAS for n in load_crd(p)["spec"]["names"]["shortNames"]]
    assert len(names) == len(set(names)) == 3
    assert not set(names) & TAKEN_SHORT_NAMES


def schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema node a printer column's ``.a.b[0].c`` path reads, or None if it leaves it."""
    node: dict[str, Any] | None = schema
    for part in json_path.strip(".").split("."):
        name, _, index = part.partition("[")
        node = (node or {}).get("properties", {}).get(name)
        if node is None:
            return None
        if index:
            node = node.get("items")
    return node


@pytest.mark.parametrize("plural", sorted(SCHEMAS))
def test_printer_columns_read_fields_that_exist(plural: str) -> None:
    columns = load_crd(plural)["spec"]["versions"][0]["additionalPrinterColumns"]
    names = [c["name"] for c in columns]
    assert names[:2] == ["Type", "Status"] and names[-1] == "Age"
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = schema_at(SCHEMAS[plural], column["jsonPath"])
        assert node is not None, column
        assert node["type"] == column["type"], column


def test_experiment_columns_show_the_best_objective_value() -> None:
    columns = load_crd("experiments")["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = {c["jsonPath"] for c in columns if not c.get("priority")}
    assert ".status.currentOptimalTrial.bestTrialName" in shown
    assert any(p.startswith(".status.currentOptimalTrial.observation.metrics[0].") for p in shown)


def test_katib_mirror_inputs_found() -> None:
    if not KATIB_FILES:
        pytest.skip(NO_KATIB)
    assert len(KATIB_FILES) >= 25  # hp-tuning, early stopping, collectors, NAS, operators


@pytest.mark.parametrize("name", KATIB_FILES or ["<no mirror>"])
def test_every_katib_experiment_validates(name: str) -> None:
    if not KATIB_FILES:
        pytest.skip(NO_KATIB)
    experiments = experiments_in(katib_text(name))
    assert experiments
    for experiment in experiments:
        assert validation_errors(SCHEMAS["experiments"], experiment) == [], name


@pytest.mark.parametrize("name", OUR_FILES)
def test_our_examples_validate(name: str) -> None:
    for experiment in experiments_in((ROOT / name).read_text()):
        assert validation_errors(SCHEMAS["experiments"], experiment) == [], name


def test_our_examples_include_kubernetes_ones() -> None:
    assert any(name.startswith("examples/kubernetes/") for name in OUR_FILES)


BASE = yaml.safe_load((ROOT / "examples" / "random.yaml").read_text())


def mutated(path: str, value: Any) -> dict[str, Any]:
    """``BASE`` with the field at dotted ``path`` (``[i]`` for list items) set to ``value``;
    ``value`` DELETE removes it."""
    doc = copy.deepcopy(BASE)
    parts = path.replace("[", ".[").split(".")
    node: Any = doc
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return doc


DELETE = object()

HOSTILE = [
    ("spec.parameters[0].parameterType", "float", "spec.parameters[0].parameterType"),
    ("spec.parameters[0].feasibleSpace.min", 0.1, "spec.parameters[0].feasibleSpace.min"),
    ("spec.parameters[0].feasibleSpace.distribution", "cauchy", "feasibleSpace.distribution"),
    ("spec.parameters[1].feasibleSpace.lst", ["a"], "spec.parameters[1].feasibleSpace"),
    ("spec.objective.type", "minimise", "spec.objective.type"),
    ("spec.objective.goal", "high", "spec.objective.goal"),
    ("spec.objective.objectiveMetricName", DELETE, "spec.objective"),
    ("spec.objective.metricStrategies[0].value", "median", "metricStrategies[0].value"),
    ("spec.objective", DELETE, "spec"),
    ("spec.algorithm.algorithmName", "", "spec.algorithm.algorithmName"),
    ("spec.algorithm.algorithmSettings[0].value", 42, "algorithmSettings[0].value"),
    ("spec.parallelTrialCount", 0, "spec.parallelTrialCount"),
    ("spec.maxTrialCount", "12", "spec.maxTrialCount"),
    ("spec.maxTrialCount", 2**31, "spec.maxTrialCount"),
    ("spec.maxFailedTrialCount", -1, "spec.maxFailedTrialCount"),
    ("spec.resumePolicy", "Always", "spec.resumePolicy"),
    ("spec.parralelTrialCount", 3, "spec"),
    ("spec.trialTemplate.primaryContainerName", DELETE, "spec.trialTemplate"),
    ("spec.trialTemplate.trialSpec.kind", DELETE, "spec.trialTemplate.trialSpec"),
    ("spec.trialTemplate.trialParameters[0].reference", DELETE, "trialParameters[0]"),
    ("spec.trialTemplate.retain", "yes", "spec.trialTemplate.retain"),
    ("spec.trialTemplate.primaryPodLabels", {"role": 1}, "primaryPodLabels.role"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "Stdout"}}, "collector.kind"),
    (
        "spec.metricsCollectorSpec",
        {"source": {"httpGet": {"port": 8.5}}},
        "spec.metricsCollectorSpec.source.httpGet.port",
    ),
    ("spec.nasConfig", {"graphConfig": {"numLayers": "8"}}, "graphConfig.numLayers"),
]


@pytest.mark.parametrize(("path", "value", "named"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_invalid_experiments_fail_naming_the_field(path: str, value: Any, named: str) -> None:
    assert validation_errors(SCHEMAS["experiments"], BASE) == []
    errors = validation_errors(SCHEMAS["experiments"], mutated(path, value))
    assert errors, f"{path}={value!r} was accepted"
    assert any(named in error for error in errors), errors


def test_int_or_string_port_takes_both() -> None:
    for port in (8080, "metrics"):
        doc = mutated("spec.metricsCollectorSpec", {"source": {"httpGet": {"port": port}}})
        assert validation_errors(SCHEMAS["experiments"], doc) == []


CONDITION = {
    "type": "Running",
    "status": "True",
    "reason": "ExperimentRunning",
    "message": "Experiment is running",
    "lastUpdateTime": "2026-12-03T06:00:00Z",
    "lastTransitionTime": "2026-12-03T06:00:00Z",
}
OBSERVATION = {"metrics": [{"name": "accuracy", "min": "0.9", "max": "0.97", "latest": "0.97"}]}
ASSIGNMENTS = [{"name": "C", "value": "3.1"}, {"name": "gamma", "value": "0.001"}]


def test_experiment_status_as_the_controller_writes_it() -> None:
    doc = copy.deepcopy(BASE)
    doc["status"] = {
        "startTime": "2026-12-03T06:00:00Z",
        "completionTime": None,
        "conditions": [dict(CONDITION)],
        "currentOptimalTrial": {
            "bestTrialName": "random-svm-abc",
            "parameterAssignments": ASSIGNMENTS,
            "observation": OBSERVATION,
        },
        "runningTrialList": ["random-svm-def"],
        "succeededTrialList": ["random-svm-abc"],
        "trials": 2,
        "trialsRunning": 1,
        "trialsSucceeded": 1,
    }
    assert validation_errors(SCHEMAS["experiments"], doc) == []
    doc["status"]["conditions"][0]["type"] = "Done"
    doc["status"]["trials"] = -1
    doc["status"]["startTime"] = "yesterday"
    errors = "\n".join(validation_errors(SCHEMAS["experiments"], doc))
    for field in ("status.conditions[0].type", "status.trials", "status.startTime"):
        assert field in errors


def test_trial_as_the_controller_creates_it() -> None:
    trial: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {"name": "random-svm-abc", "namespace": "default"},
        "spec": {
            "objective": BASE["spec"]["objective"],
            "parameterAssignments": ASSIGNMENTS,
            "earlyStoppingRules": [
                {"name": "accuracy", "value": "0.5", "comparison": "less", "startStep": 4}
            ],
            "runSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {}}},
            "metricsCollector": {"collector": {"kind": "StdOut"}},
            "primaryContainerName": "training",
            "successCondition": 'status.conditions.#(type=="Complete")#|#(status=="True")#',
            "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
            "labels": {"katib.kubeflow.org/experiment": "random-svm"},
        },
        "status": {
            "startTime": "2026-12-03T06:00:00Z",
            "conditions": [dict(CONDITION, reason="TrialRunning")],
            "observation": OBSERVATION,
        },
    }
    assert validation_errors(SCHEMAS["trials"], trial) == []
    trial["spec"]["earlyStoppingRules"][0]["comparison"] = "lessThan"
    trial["spec"]["runSpec"] = {"kind": "Job"}
    errors = "\n".join(validation_errors(SCHEMAS["trials"], trial))
    assert "spec.earlyStoppingRules[0].comparison" in errors and "spec.runSpec" in errors


def test_suggestion_as_the_controller_keeps_it() -> None:
    suggestion: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Suggestion",
        "metadata": {"name": "random-svm", "namespace": "default"},
        "spec": {"algorithm": BASE["spec"]["algorithm"], "requests": 3, "resumePolicy": "Never"},
        "status": {
            "algorithmSettings": [{"name": "state", "value": "e30="}],
            "suggestionCount": 1,
            "suggestions": [
                {"name": "random-svm-abc", "parameterAssignments": ASSIGNMENTS, "labels": {}}
            ],
            "conditions": [dict(CONDITION, type="Created", reason="SuggestionCreated")],
        },
    }
    assert validation_errors(SCHEMAS["suggestions"], suggestion) == []
    suggestion["spec"]["requests"] = -2
    suggestion["status"]["suggestions"][0]["parameterAssignments"] = {"C": "1"}
    errors = "\n".join(validation_errors(SCHEMAS["suggestions"], suggestion))
    assert "spec.requests" in errors and "status.suggestions[0].parameterAssignments" in errors
