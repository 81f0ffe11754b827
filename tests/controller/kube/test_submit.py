"""``katib submit`` and ``katib status|trials --cluster`` against the fake API server, through
the real ``kubernetes`` client and a kubeconfig file."""

from __future__ import annotations

import copy
import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from katib.api.errors import InvalidArgument
from katib.controller import cli
from katib.controller.kube import submit
from katib.controller.kube.api import KubeApi
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import CONFIGMAPS, EXPERIMENTS, TRIALS
from tests.controller.experiments import container, experiment
from tests.controller.kube import katib_examples
from tests.controller.kube.conftest import register_katib

NS = "kubeflow"


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    fake = FakeApiServer(namespaces=("default", NS))
    register_katib(fake)
    with fake:
        yield fake


@pytest.fixture
def kubeconfig(server: FakeApiServer, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    other = {"cluster": "fake", "user": "me", "namespace": NS}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
                "users": [{"name": "me", "user": {}}],
                "contexts": [
                    {"name": "fake", "context": {"cluster": "fake", "user": "me"}},
                    {"name": "team", "context": other},
                ],
                "current-context": "fake",
            }
        )
    )
    return str(path)


@pytest.fixture
def api(server: FakeApiServer) -> Iterator[KubeApi]:
    client = KubeApi(server.api_client())
    yield client
    client.close()


def write(tmp_path: Path, doc: dict[str, Any], name: str = "exp.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def katib(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_submit_creates_the_experiment(
    server: FakeApiServer, kubeconfig: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = experiment("train.py", name="sub-1")
    code, out = katib(capsys, "submit", write(tmp_path, doc), "--kubeconfig", kubeconfig)
    assert code == 0, out
    assert f"experiment {NS}/sub-1 created" in out
    stored = server.get(EXPERIMENTS, NS, "sub-1")
    assert stored is not None
    assert stored["spec"]["algorithm"] == doc["spec"]["algorithm"]
    assert stored["spec"]["trialTemplate"] == doc["spec"]["trialTemplate"]


def test_namespace_flag_wins(
    server: FakeApiServer, kubeconfig: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, experiment("train.py", name="sub-ns"))
    code, out = katib(capsys, "submit", path, "--kubeconfig", kubeconfig, "-n", "default")
    assert code == 0, out
    assert server.get(EXPERIMENTS, "default", "sub-ns") is not None
    assert server.get(EXPERIMENTS, NS, "sub-ns") is None


def test_resubmit_updates_counts_and_refuses_other_changes(
    server: FakeApiServer,
    api: KubeApi,
    kubeconfig: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = experiment("train.py", name="sub-2", max_trials=4)
    assert katib(capsys, "submit", write(tmp_path, doc), "--kubeconfig", kubeconfig)[0] == 0
    defaults = {  # what Katib's mutating webhook writes into a stored experiment
        "objective": {
            "metricStrategies": [
                {"name": "loss", "value": "min"},
                {"name": "accuracy", "value": "min"},
            ]
        },
        "trialTemplate": {
            "successCondition": 'status.conditions.#(type=="Complete")#|#(status=="True")#',
            "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
        },
        "resumePolicy": "Never",
    }
    api.patch(EXPERIMENTS, NS, "sub-2", {"spec": defaults})
    doc["spec"]["maxTrialCount"] = 9
    code, out = katib(capsys, "submit", write(tmp_path, doc), "--kubeconfig", kubeconfig)
    assert code == 0, out
    assert "updated" in out
    stored = server.get(EXPERIMENTS, NS, "sub-2")
    assert stored is not None and stored["spec"]["maxTrialCount"] == 9
    doc["spec"]["algorithm"]["algorithmName"] = "grid"
    code, out = katib(capsys, "submit", write(tmp_path, doc), "--kubeconfig", kubeconfig)
    assert code == 2
    assert "spec.algorithm: cannot change on an existing experiment" in out
    stored = server.get(EXPERIMENTS, NS, "sub-2")
    assert stored is not None and stored["spec"]["algorithm"]["algorithmName"] == "random"


@pytest.mark.parametrize(
    ("break_it", "field"),
    [
        (lambda d: d["spec"].pop("objective"), "spec.objective"),
        (lambda d: d["spec"].update(parallelTrialCount=-1), "spec.parallelTrialCount"),
        (
            lambda d: container(d).update(args=container(d).pop("command")),
            "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].command",
        ),
        (
            lambda d: d["spec"]["trialTemplate"].update(
                successCondition="status.{a,b}", failureCondition="status.failed"
            ),
            "spec.trialTemplate.successCondition",
        ),
        (
            lambda d: d["spec"].update(metricsCollectorSpec={"collector": {"kind": "Custom"}}),
            "spec.metricsCollectorSpec",
        ),
    ],
)
def test_invalid_experiments_exit_2_naming_the_field(
    server: FakeApiServer,
    kubeconfig: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    break_it: Any,
    field: str,
) -> None:
    doc = experiment("train.py", name="bad-1")
    break_it(doc)
    code, out = katib(capsys, "submit", write(tmp_path, doc), "--kubeconfig", kubeconfig)
    assert code == 2, out
    assert field in out
    assert server.objects(EXPERIMENTS) == []


def test_unreachable_cluster_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "nowhere"
    config.write_text("not: a kubeconfig\n")
    path = write(tmp_path, experiment("train.py", name="x"))
    code, out = katib(capsys, "submit", path, "--kubeconfig", str(config))
    assert code == 4
    assert "kubeconfig" in out


def set_status(api: KubeApi, res: Any, name: str, status: dict[str, Any]) -> None:
    def mutate(obj: dict[str, Any]) -> bool:
        obj["status"] = status
        return True

    api.update_status(res, NS, name, mutate)


def condition(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def add_trial(
    api: KubeApi, exp: dict[str, Any], name: str, x: str, cond: str, loss: str | None
) -> None:
    meta = exp["metadata"]
    api.create(
        TRIALS,
        NS,
        {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Trial",
            "metadata": {
                "name": name,
                "labels": {"katib.kubeflow.org/experiment": meta["name"]},
                "ownerReferences": [
                    {
                        "apiVersion": "kubeflow.org/v1beta1",
                        "kind": "Experiment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "parameterAssignments": [{"name": "x", "value": x}, {"name": "y", "value": "0"}]
            },
        },
    )
    conds = [condition("Created", "TrialCreated"), condition("Running", "TrialRunning")]
    status: dict[str, Any] = {"startTime": "2026-01-01T00:00:00Z", "conditions": conds}
    if cond != "Running":
        conds[1]["status"] = "False"
        conds.append(condition(cond, f"Trial{cond}", f"trial is {cond.lower()}"))
        status["completionTime"] = "2026-01-01T00:01:00Z"
    if loss is not None:
        status["observation"] = {
            "metrics": [{"name": "loss", "min": loss, "max": loss, "latest": loss}]
        }
    set_status(api, TRIALS, name, status)


def populate(api: KubeApi, name: str, outcome: str = "Succeeded") -> None:
    """What an operator would have written: three trials and the experiment's status."""
    exp = api.get(EXPERIMENTS, NS, name)
    assert exp is not None
    add_trial(api, exp, f"{name}-a", "0.1", "Succeeded", "0.5")
    add_trial(api, exp, f"{name}-b", "0.3", "Succeeded", "0.02")
    add_trial(api, exp, f"{name}-c", "0.9", "Failed", None)
    reason = "ExperimentMaxTrialsReached" if outcome == "Succeeded" else "ExperimentFailed"
    set_status(
        api,
        EXPERIMENTS,
        name,
        {
            "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:02:00Z",
            "conditions": [
                condition("Created", "ExperimentCreated"),
                condition("Running", "ExperimentRunning", status="False"),
                condition(outcome, reason, "done"),
            ],
            "currentOptimalTrial": {"bestTrialName": f"{name}-b"},
        },
    )


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
def test_follow_returns_when_the_experiment_ends(
    api: KubeApi,
    kubeconfig: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    outcome: str,
) -> None:
    path = write(tmp_path, experiment("train.py", name="fol-1"))

    def operator() -> None:  # plays the operator once the experiment exists
        deadline = time.monotonic() + 30
        while api.get(EXPERIMENTS, NS, "fol-1") is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        set_status(api, EXPERIMENTS, "fol-1", {"conditions": [condition("Running")]})
        time.sleep(0.3)
        populate(api, "fol-1", outcome)

    thread = threading.Thread(target=operator)
    thread.start()
    try:
        argv = ["submit", path, "--kubeconfig", kubeconfig, "--follow", "--poll-seconds", "0.05"]
        code, out = katib(capsys, *argv)
    finally:
        thread.join(timeout=60)
    assert code == (0 if outcome == "Succeeded" else 1), out
    assert f"fol-1: {outcome}" in out
    assert "best: fol-1-b loss=0.02" in out
    assert "fol-1-c failed: TrialFailed trial is failed" in out


def test_status_and_trials_read_the_cluster(
    api: KubeApi, kubeconfig: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, experiment("train.py", name="rd-1"))
    assert katib(capsys, "submit", path, "--kubeconfig", kubeconfig)[0] == 0
    populate(api, "rd-1")
    flags = ["--cluster", "--kubeconfig", kubeconfig, "-n", NS]
    code, out = katib(capsys, "status", "rd-1", *flags, "-o", "json")
    assert code == 0, out
    status = json.loads(out)
    assert status["condition"] == "Succeeded"
    assert status["reason"] == "ExperimentMaxTrialsReached"
    assert status["counts"]["succeeded"] == 2 and status["counts"]["failed"] == 1
    assert status["bestTrial"]["name"] == "rd-1-b"
    assert status["bestTrial"]["objectiveValue"] == "0.02"
    assert status["startTime"] == "2026-01-01T00:00:00Z"
    code, out = katib(capsys, "status", "rd-1", *flags)
    assert code == 0 and "rd-1: Succeeded (ExperimentMaxTrialsReached)" in out
    assert "best: rd-1-b loss=0.02" in out
    code, out = katib(capsys, "trials", "rd-1", *flags, "-o", "yaml")
    trials = yaml.safe_load(out)["trials"]
    assert [t["name"] for t in trials] == ["rd-1-a", "rd-1-b", "rd-1-c"]
    assert [t["condition"] for t in trials] == ["Succeeded", "Succeeded", "Failed"]
    assert trials[2]["reason"] == "TrialFailed"
    assert trials[0]["parameters"] == {"x": "0.1", "y": "0"}
    code, out = katib(capsys, "trials", "rd-1", *flags, "-o", "csv", "--best")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["rd-1-b", "rd-1-a", "rd-1-c"]
    assert rows[0]["observation.loss.min"] == "0.02"
    code, out = katib(capsys, "trials", "rd-1", *flags)
    assert code == 0 and "rd-1-b" in out and "rd-1-c failed: TrialFailed" in out


def test_namespace_from_the_kubeconfig_context(
    server: FakeApiServer, kubeconfig: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = experiment("train.py", name="ctx-1")
    del doc["metadata"]["namespace"]
    path = write(tmp_path, doc)
    code, out = katib(capsys, "submit", path, "--kubeconfig", kubeconfig, "--context", "team")
    assert code == 0, out
    assert server.get(EXPERIMENTS, NS, "ctx-1") is not None
    code, out = katib(capsys, "submit", path, "--kubeconfig", kubeconfig)
    assert code == 0, out
    assert server.get(EXPERIMENTS, "default", "ctx-1") is not None
    flags = ["--cluster", "--kubeconfig", kubeconfig, "-o", "json"]
    code, out = katib(capsys, "trials", "ctx-1", *flags, "--context", "team")
    assert code == 0 and json.loads(out)["experiment"] == "ctx-1"


def test_reading_a_missing_experiment_exits_2(
    server: FakeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = katib(capsys, "status", "nope", "--cluster", "--kubeconfig", kubeconfig)
    assert code == 2
    assert "experiment 'nope' not found in namespace 'default'" in out


def test_trials_of_another_experiment_with_the_same_name_are_left_out(
    api: KubeApi, kubeconfig: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, experiment("train.py", name="own-1"))
    assert katib(capsys, "submit", path, "--kubeconfig", kubeconfig)[0] == 0
    exp = api.get(EXPERIMENTS, NS, "own-1")
    assert exp is not None
    add_trial(api, exp, "own-1-a", "0.1", "Succeeded", "0.5")
    stale = dict(exp, metadata={**exp["metadata"], "uid": "an-older-experiment"})
    add_trial(api, stale, "own-1-old", "0.2", "Succeeded", "0.1")
    code, out = katib(
        capsys, "trials", "own-1", "--cluster", "--kubeconfig", kubeconfig, "-n", NS, "-o", "json"
    )
    assert code == 0, out
    assert [t["name"] for t in json.loads(out)["trials"]] == ["own-1-a"]


@pytest.mark.skipif(not katib_examples.available(), reason="Katib's examples are not present")
def test_katib_examples_pass_cluster_admission() -> None:
    """Every example Katib admits is admitted for a cluster run, but for those that need what
    the in-pod collector cannot do (each refused naming the field)."""
    refused = {
        "kubeflow-training-operator/tfjob-mnist-with-summaries.yaml": "spec.metricsCollectorSpec",
        "kubeflow-training-operator/xgboostjob-lightgbm.yaml": "spec.trialTemplate.trialSpec.spec",
        "metrics-collector/custom-metrics-collector.yaml": "spec.metricsCollectorSpec",
    }
    katib_rejects = ("hp-tuning/simple-pbt.yaml", "tekton/pipeline-run.yaml")
    admitted = 0
    for rel, doc in katib_examples.experiments():
        if rel in katib_rejects:
            continue
        try:
            submit.admit(doc)
        except InvalidArgument as exc:
            assert rel in refused, (rel, exc.problems)
            assert any(p.startswith(refused[rel]) for p in exc.problems), (rel, exc.problems)
            continue
        assert rel not in refused, rel
        admitted += 1
    assert admitted >= 25


def config_map_experiment(name: str, trial_spec: dict[str, Any], api: KubeApi) -> dict[str, Any]:
    """An experiment whose trial template is ``trial_spec`` in ConfigMap ``<name>-template``."""
    doc = experiment("train.py", name=name)
    template = doc["spec"]["trialTemplate"]
    del template["trialSpec"]
    template["configMap"] = {
        "configMapName": f"{name}-template",
        "configMapNamespace": NS,
        "templatePath": "trial.yaml",
    }
    api.create(
        CONFIGMAPS,
        NS,
        {
            "metadata": {"name": f"{name}-template"},
            "data": {"trial.yaml": yaml.safe_dump(trial_spec)},
        },
    )
    return doc


def test_a_configmap_template_is_rendered_before_submission(
    server: FakeApiServer,
    api: KubeApi,
    kubeconfig: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = experiment("train.py")["spec"]["trialTemplate"]["trialSpec"]
    doc = config_map_experiment("cm-good", good, api)
    code, out = katib(capsys, "submit", write(tmp_path, doc), "--kubeconfig", kubeconfig)
    assert code == 0, out
    stored = server.get(EXPERIMENTS, NS, "cm-good")
    assert stored is not None
    assert stored["spec"]["trialTemplate"] == doc["spec"]["trialTemplate"]  # still a reference

    bad = copy.deepcopy(good)
    primary = bad["spec"]["template"]["spec"]["containers"][0]
    primary["args"] = primary.pop("command")[1:]  # no command for the collector to wrap
    doc = config_map_experiment("cm-bad", bad, api)
    with pytest.raises(InvalidArgument, match=r"containers\[0\]\.command: the primary container"):
        submit.admit(doc, api)
    submit.admit(doc)  # without cluster access the ConfigMap is left to the operator
    code, out = katib(capsys, "submit", write(tmp_path, doc), "--kubeconfig", kubeconfig)
    assert code == 2, out
    assert "containers[0].command" in out
    assert server.get(EXPERIMENTS, NS, "cm-bad") is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda source: source.update(configMapName="absent"), "spec.trialTemplate.configMap:"),
        (lambda source: source.update(templatePath="nope"), "configMap.templatePath:"),
    ],
    ids=["no-configmap", "no-key"],
)
def test_an_unreadable_configmap_template_is_refused_naming_the_field(
    api: KubeApi, change: Any, field: str
) -> None:
    good = experiment("train.py")["spec"]["trialTemplate"]["trialSpec"]
    doc = config_map_experiment("cm-gone", good, api)
    change(doc["spec"]["trialTemplate"]["configMap"])
    with pytest.raises(InvalidArgument, match=field):
        submit.submit(api, doc)
    assert api.get(EXPERIMENTS, NS, "cm-gone") is None
