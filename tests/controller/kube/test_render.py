"""Rendering Trials and their run objects: Job and every Kubeflow kind, env, labels, owner
references, the collector wrapped around the primary container, hostile values."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import pytest

from katib.controller.kube import podspec, render
from katib.controller.template import expand_k8s_vars
from katib.controller.validation import load_experiment
from katib.earlystopping.rules import Comparison, Rule, RuleSet, Semantics
from tests.controller.kube import katib_examples

NS = "team-a"


def container(name: str = "training", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "python:3.12",
        "command": ["python3", "train.py"],
        "args": ["--lr=${trialParameters.lr}", "--opt=${trialParameters.opt}"],
        **extra,
    }


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": list(containers), "restartPolicy": "Never"}}


def replicas(key: str, **roles: dict[str, Any]) -> dict[str, Any]:
    return {key: {role: {"replicas": 1, "template": t} for role, t in roles.items()}}


TEMPLATES: dict[str, dict[str, Any]] = {
    "Job": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": pod(container())}},
    "PyTorchJob": {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": replicas(
            "pytorchReplicaSpecs",
            Master=pod(container("pytorch")),
            Worker=pod(container("pytorch")),
        ),
    },
    "TFJob": {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "spec": replicas(
            "tfReplicaSpecs",
            Worker=pod(container("tensorflow")),
            Chief=pod(container("tensorflow")),
        ),
    },
    "XGBoostJob": {
        "apiVersion": "kubeflow.org/v1",
        "kind": "XGBoostJob",
        "spec": replicas(
            "xgbReplicaSpecs", Worker=pod(container("xgboost")), Master=pod(container("xgboost"))
        ),
    },
    "MPIJob": {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "spec": replicas(
            "mpiReplicaSpecs",
            Launcher=pod(container("launcher")),
            Worker=pod({"name": "worker", "image": "x"}),
        ),
    },
    "TrainJob": {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {
                "numNodes": 2,
                "image": "python:3.12",
                "command": ["python3", "train.py"],
                "args": ["--lr=${trialParameters.lr}", "--opt=${trialParameters.opt}"],
            },
        },
    },
}
PRIMARY = {
    "Job": ("training", None, ".spec.template.spec.containers[0]"),
    "PyTorchJob": (
        "pytorch",
        None,
        ".spec.pytorchReplicaSpecs.Master.template.spec.containers[0]",
    ),
    "TFJob": ("tensorflow", None, ".spec.tfReplicaSpecs.Chief"),  # job-role: master
    "XGBoostJob": ("xgboost", None, ".spec.xgbReplicaSpecs.Master.template.spec.containers[0]"),
    "MPIJob": ("launcher", {"mpi-job-role": "launcher"}, ".spec.mpiReplicaSpecs.Launcher"),
    "TrainJob": ("node", None, ".spec.trainer"),
}


def experiment_doc(
    kind: str = "Job", collector: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    name, pod_labels, _ = PRIMARY[kind]
    template: dict[str, Any] = {
        "primaryContainerName": name,
        "trialParameters": [
            {"name": "lr", "reference": "lr"},
            {"name": "opt", "reference": "optimizer"},
        ],
        "trialSpec": copy.deepcopy(TEMPLATES[kind]),
    }
    if pod_labels:
        template["primaryPodLabels"] = pod_labels
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "exp", "namespace": NS, "uid": "exp-uid", "labels": {"team": "a"}},
        "spec": {
            "objective": {
                "type": "maximize",
                "objectiveMetricName": "accuracy",
                "additionalMetricNames": ["loss"],
            },
            "algorithm": {"algorithmName": "random"},
            "parameters": [
                {
                    "name": "lr",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0.01", "max": "0.1"},
                },
                {
                    "name": "optimizer",
                    "parameterType": "categorical",
                    "feasibleSpace": {"list": ["sgd", "adam"]},
                },
            ],
            "trialTemplate": template,
            "metricsCollectorSpec": collector or {"collector": {"kind": "StdOut"}},
            **spec,
        },
    }


def render_trial(
    doc: dict[str, Any], assignments: list[tuple[str, str]] | None = None, **kw: Any
) -> dict[str, Any]:
    spec = load_experiment(doc, check_algorithm=False)
    trial = render.trial_object(
        spec, doc, "exp-abc12", assignments or [("lr", "0.05"), ("optimizer", "adam")], **kw
    )
    trial["metadata"]["uid"] = "trial-uid"  # as the API server would set it
    return trial


def at(obj: Any, path: str) -> Any:
    """The value at a ``.a.b[0]`` path."""
    for part in path.replace("[", ".[").strip(".").split("."):
        obj = obj[int(part[1:-1])] if part.startswith("[") else obj[part]
    return obj


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_trial_object_matches_katib(kind: str) -> None:
    trial = render_trial(experiment_doc(kind), labels={"pbt.suggestion/generation": "2"})
    meta, spec = trial["metadata"], trial["spec"]
    assert (trial["apiVersion"], trial["kind"]) == ("kubeflow.org/v1beta1", "Trial")
    assert meta["name"] == "exp-abc12" and meta["namespace"] == NS
    assert meta["labels"] == {
        "team": "a",
        "katib.kubeflow.org/experiment": "exp",
        "pbt.suggestion/generation": "2",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "kubeflow.org/v1beta1",
            "kind": "Experiment",
            "name": "exp",
            "uid": "exp-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert spec["parameterAssignments"] == [
        {"name": "lr", "value": "0.05"},
        {"name": "optimizer", "value": "adam"},
    ]
    assert spec["objective"]["metricStrategies"] == [
        {"name": "accuracy", "value": "max"},
        {"name": "loss", "value": "max"},
    ]
    assert spec["metricsCollector"] == {  # Katib's webhook default for StdOut
        "collector": {"kind": "StdOut"},
        "source": {
            "fileSystemPath": {
                "path": "/var/log/katib/metrics.log",
                "kind": "File",
                "format": "TEXT",
            }
        },
    }
    assert spec["primaryContainerName"] == PRIMARY[kind][0]
    done = "Complete" if kind in ("Job", "TrainJob") else "Succeeded"
    assert spec["successCondition"] == f'status.conditions.#(type=="{done}")#|#(status=="True")#'
    assert spec["failureCondition"] == 'status.conditions.#(type=="Failed")#|#(status=="True")#'
    run = spec["runSpec"]
    assert run["metadata"] == {"name": "exp-abc12", "namespace": NS}
    assert run["kind"] == kind


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_run_object_wraps_the_primary_container_only(kind: str) -> None:
    trial = render_trial(experiment_doc(kind))
    obj = render.run_object(trial, db_address="katib-db-manager.katib-system:6789")
    assert obj["metadata"]["name"] == "exp-abc12"
    assert obj["metadata"]["labels"] == {
        "katib.kubeflow.org/experiment": "exp",
        "katib.kubeflow.org/trial": "exp-abc12",
    }
    assert obj["metadata"]["ownerReferences"][0]["kind"] == "Trial"
    assert obj["metadata"]["ownerReferences"][0]["uid"] == "trial-uid"
    wrapped = []
    for path, template in podspec.pod_templates(obj["spec"], ".spec"):
        assert template["metadata"]["labels"]["katib.kubeflow.org/trial"] == "exp-abc12"
        for i, c in enumerate(template["spec"]["containers"]):
            if c.get("command", [""])[0] == "katib-metrics-collector":
                wrapped.append(f"{path}.spec.containers[{i}]")
    containers = list(podspec.containers(obj))
    assert containers
    for c in containers:
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["KATIB_TRIAL_NAME"] == "exp-abc12"
        assert env["KATIB_DB_MANAGER_ADDRESS"] == "katib-db-manager.katib-system:6789"
        assert env["KATIB_NAMESPACE"] == NS
    path = PRIMARY[kind][2]
    primary = obj["spec"]["trainer"] if kind == "TrainJob" else None
    if primary is None:
        assert len(wrapped) == 1 and wrapped[0].startswith(path), wrapped
        primary = at(obj, wrapped[0])
    command = primary["command"]
    split = command.index("--")
    options = command[1:split]
    assert command[split + 1 :] == ["python3", "train.py"]
    assert primary["args"] == ["--lr=0.05", "--opt=adam"]
    opts = dict(zip(options[::2], options[1::2], strict=True))  # the last of repeated ones
    assert opts["--trial-name"] == "exp-abc12"
    assert opts["--metric-names"] == "accuracy,loss"
    assert opts["--objective-type"] == "maximize"
    assert opts["--kind"] == "StdOut"
    assert opts["--termination-log"] == "/dev/termination-log"
    gates = [options[i + 1] for i, o in enumerate(options) if o == "--primary-env"]
    if kind == "TrainJob":  # every node runs the trainer: only node 0's collector reports
        assert gates == [f"{render.PRIMARY_LABEL_ENV}0=0", f"{render.PRIMARY_LABEL_ENV}1=node"]
        refs = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in primary["env"][3:]}
        index, job = (
            "batch.kubernetes.io/job-completion-index",
            "jobset.sigs.k8s.io/replicatedjob-name",
        )
        assert refs == {
            f"{render.PRIMARY_LABEL_ENV}0": f"metadata.labels['{index}']",
            f"{render.PRIMARY_LABEL_ENV}1": f"metadata.labels['{job}']",
        }
    else:
        assert gates == []


def test_file_collector_options_and_stop_rules() -> None:
    collector = {
        "collector": {"kind": "File"},
        "source": {
            "fileSystemPath": {"path": "/var/log/m.json", "kind": "File", "format": "JSON"},
        },
    }
    doc = experiment_doc(collector=collector, earlyStopping={"algorithmName": "medianstop"})
    rules = RuleSet((Rule("accuracy", 0.5, Comparison.LESS, 3),), Semantics.ANY)
    trial = render_trial(doc, rules=rules)
    assert trial["spec"]["earlyStoppingRules"] == [
        {"name": "accuracy", "value": "0.5", "comparison": "less", "startStep": 3}
    ]
    assert render.rules_from_trial(trial) == rules
    c = render.run_object(trial, db_address="db:1")["spec"]["template"]["spec"]["containers"][0]
    options = c["command"][1 : c["command"].index("--")]
    opts = dict(zip(options[::2], options[1::2], strict=True))
    assert opts["--kind"] == "File"
    assert opts["--file-path"] == "/var/log/m.json"
    assert opts["--format"] == "JSON"
    assert json.loads(opts["--stop-rules"]) == {
        "semantics": "any",
        "rules": [{"name": "accuracy", "value": "0.5", "comparison": "less", "startStep": 3}],
    }


@pytest.mark.parametrize("kind", ["Push", "None"])
def test_push_and_none_get_env_only(kind: str) -> None:
    trial = render_trial(experiment_doc(collector={"collector": {"kind": kind}}))
    c = render.run_object(trial, db_address="db:1")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python3", "train.py"]
    assert [e["name"] for e in c["env"]] == [
        "KATIB_TRIAL_NAME",
        "KATIB_DB_MANAGER_ADDRESS",
        "KATIB_NAMESPACE",
    ]


def test_container_env_is_kept_and_ours_wins() -> None:
    doc = experiment_doc()
    c0 = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    c0["env"] = [{"name": "A", "value": "1"}, {"name": "KATIB_TRIAL_NAME", "value": "spoof"}]
    c = render.run_object(render_trial(doc), db_address="db:1")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert c["env"] == [
        {"name": "KATIB_TRIAL_NAME", "value": "exp-abc12"},
        {"name": "KATIB_DB_MANAGER_ADDRESS", "value": "db:1"},
        {"name": "KATIB_NAMESPACE", "value": NS},
        {"name": "A", "value": "1"},
    ]


def test_missing_command_names_the_field() -> None:
    doc = experiment_doc()
    c0 = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    del c0["command"]
    with pytest.raises(render.RenderError) as info:
        render.run_object(render_trial(doc), db_address="db:1")
    assert (
        info.value.field == "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].command"
    )


def test_unknown_primary_container_and_unsupported_collector() -> None:
    doc = experiment_doc()
    trial = render_trial(doc)
    trial["spec"]["primaryContainerName"] = "nope"
    with pytest.raises(render.RenderError, match="primaryContainerName"):
        render.run_object(trial, db_address="db:1")
    trial = render_trial(experiment_doc(collector={"collector": {"kind": "TensorFlowEvent"}}))
    with pytest.raises(render.RenderError, match=r"collector\.kind: TensorFlowEvent"):
        render.run_object(trial, db_address="db:1")


def test_owner_without_uid_is_refused() -> None:
    doc = experiment_doc()
    del doc["metadata"]["uid"]
    with pytest.raises(render.RenderError, match=r"Experiment.metadata.uid"):
        render_trial(doc)


def test_missing_assignment_names_the_parameter() -> None:
    with pytest.raises(render.RenderError, match=r"trialParameters\[opt\]"):
        render_trial(experiment_doc(), assignments=[("lr", "0.1")])


def test_argo_workflow_wraps_the_labelled_template() -> None:
    doc = experiment_doc()
    steps = {"name": "prep", "container": {"image": "alpine", "command": ["true"]}}
    train = {
        "name": "train",
        "metadata": {"labels": {"role": "train"}},
        "container": {"image": "python", "command": ["python3", "t.py", "${trialParameters.lr}"]},
    }
    doc["spec"]["trialTemplate"].update(
        primaryContainerName="main",
        primaryPodLabels={"role": "train"},
        successCondition='status.[@this].#(phase=="Succeeded")#',
        failureCondition='status.[@this].#(phase=="Failed")#',
        trialParameters=[{"name": "lr", "reference": "lr"}],
        trialSpec={
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "spec": {"entrypoint": "prep", "templates": [steps, train]},
        },
    )
    obj = render.run_object(render_trial(doc), db_address="db:1")
    prep, wrapped = (t["container"] for t in obj["spec"]["templates"])
    assert prep["command"] == ["true"]
    assert wrapped["command"][0] == "katib-metrics-collector"
    assert wrapped["command"][-3:] == ["python3", "t.py", "0.05"]
    assert {e["name"] for e in prep["env"]} >= {"KATIB_TRIAL_NAME"}
    labels = obj["spec"]["templates"][1]["metadata"]["labels"]
    assert labels == {"role": "train", **obj["metadata"]["labels"]}


HOSTILE = ["a'b\"c", "$(HOME)", "x\ny", "; rm -rf / #", "${trialParameters.lr}", "$$", "`id`"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_literal_arguments(value: str) -> None:
    """Kubernetes expands ``$(VAR)`` in command, args and env values; render escapes ``$``
    in parameter values, so after expansion each value reaches the program byte for byte."""
    doc = experiment_doc()
    c0 = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    c0["env"] = [{"name": "OPT", "value": "${trialParameters.opt}"}]
    c0["command"] = [
        sys.executable,
        "-c",
        "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['OPT']]))",
    ]
    c0["args"] = ["${trialParameters.opt}", "--lr=${trialParameters.lr}"]
    trial = render_trial(doc, assignments=[("lr", "0.5"), ("optimizer", value)])
    obj = render.run_object(
        trial, db_address="db:1", collector_command=["katib-metrics-collector"]
    )
    c = obj["spec"]["template"]["spec"]["containers"][0]
    # What the kubelet does: expand $(VAR) from the container's env, run command + args.
    env = {e["name"]: expand_k8s_vars(e["value"], {"HOME": "/root"}) for e in c["env"]}
    argv = [expand_k8s_vars(a, env) for a in c["command"] + c.get("args", [])]
    child = argv[argv.index("--") + 1 :]
    out = subprocess.run(child, capture_output=True, text=True, check=True, env=env).stdout
    args, opt_env = json.loads(out)
    assert args == [value, "--lr=0.5"]
    assert opt_env == value


def test_metadata_references_and_values_elsewhere_are_not_escaped() -> None:
    doc = experiment_doc()
    doc["spec"]["trialTemplate"]["trialParameters"].append(
        {"name": "me", "reference": "${trialSpec.Name}"}
    )
    spec = doc["spec"]["trialTemplate"]["trialSpec"]
    spec["metadata"] = {"annotations": {"opt": "${trialParameters.opt}"}}
    spec["spec"]["template"]["spec"]["containers"][0]["args"].append("--me=${trialParameters.me}")
    trial = render_trial(doc, assignments=[("lr", "0.1"), ("optimizer", "$x")])
    run = trial["spec"]["runSpec"]
    assert run["metadata"]["annotations"] == {"opt": "$x"}
    args = run["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--lr=0.1", "--opt=$$x", "--me=exp-abc12"]


def test_collector_options_are_escaped() -> None:
    collector = {
        "collector": {"kind": "StdOut"},
        "source": {"filter": {"metricsFormat": [r"(\w+):\s*(\d+)$(x)"]}},
    }
    trial = render_trial(experiment_doc(collector=collector))
    c = render.run_object(trial, db_address="db:1")["spec"]["template"]["spec"]["containers"][0]
    i = c["command"].index("--filter")
    assert c["command"][i + 1] == r"(\w+):\s*(\d+)$$(x)"
    assert expand_k8s_vars(c["command"][i + 1], {"x": "no"}) == r"(\w+):\s*(\d+)$(x)"


@pytest.mark.skipif(not katib_examples.available(), reason="Katib's examples are not present")
def test_katib_examples_render() -> None:
    """Every admissible example renders, or is refused naming the field a cluster run needs."""
    refused = {
        "kubeflow-training-operator/tfjob-mnist-with-summaries.yaml": "spec.metricsCollectorSpec",
        "kubeflow-training-operator/xgboostjob-lightgbm.yaml": "spec.trialTemplate.trialSpec.spec",
        "metrics-collector/custom-metrics-collector.yaml": "spec.metricsCollectorSpec",
        "trial-template/trial-configmap-source.yaml": "spec.trialTemplate.trialSpec",
    }
    rendered = 0
    for rel, doc in katib_examples.experiments():
        if rel.startswith("nas/") or rel in (
            "hp-tuning/simple-pbt.yaml",
            "tekton/pipeline-run.yaml",
        ):
            continue  # NAS assignments come from the service; the two Katib rejects
        spec = load_experiment(doc, check_algorithm=False)
        doc["metadata"]["uid"] = "u"
        try:
            trial = render.trial_object(spec, doc, "t", [(p.name, "1") for p in spec.parameters])
            trial["metadata"]["uid"] = "v"
            render.run_object(trial, db_address="db:1")
        except render.RenderError as exc:
            assert rel in refused and exc.field.startswith(refused[rel]), (rel, exc)
            continue
        assert rel not in refused, rel
        rendered += 1
    assert rendered >= 20
