"""A rendered run object through the fake cluster: SimulatedJobs runs the pods as processes,
the wrapped ``katib-metrics-collector`` reports to a real DB manager, ``run_outcome`` reads the
Job's conditions and the termination message says EarlyStopped."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from katib.controller.kube import render
from katib.controller.kube.api import KubeApi
from katib.controller.kube.conditions import Outcome, run_outcome
from katib.controller.kube.fake.jobs import PODS, SimulatedJobs
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import EXPERIMENTS, JOBS, TRIALS, resource_for
from katib.controller.validation import load_experiment
from katib.earlystopping.rules import Comparison, Rule, RuleSet
from tests.controller.kube import test_render
from tests.controller.kube.conftest import register_katib, rows
from tests.kube.cluster import pod_env

NS = "default"
COLLECTOR = (sys.executable, "-m", "katib.controller.kube.collect")
#: The trial: echoes its argument, prints losses (``slow``: then waits to be stopped).
SCRIPT = """
import sys, time
print("arg:", repr(sys.argv[1]), flush=True)
for v in (0.9, 0.8, 0.7):
    print(f"loss={v}", flush=True)
if sys.argv[2] == "slow":
    time.sleep(600)
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeApiServer, KubeApi]]:
    server = FakeApiServer()
    kinds = [("kubeflow.org/v1", "PyTorchJob"), ("trainer.kubeflow.org/v1alpha1", "TrainJob")]
    register_katib(server)
    for res in (resource_for(v, k) for v, k in kinds):
        server.register(res)
    with server:
        api = KubeApi(server.api_client())
        with SimulatedJobs(server, workdir=tmp_path / "pods", env=pod_env()):
            yield server, api
        api.close()


def experiment(kind: str, mode: str, **spec: Any) -> dict[str, Any]:
    main = {
        "name": "training",
        "image": "python",
        "command": [sys.executable, "-c", SCRIPT, "${trialParameters.opt}", mode],
        "terminationMessagePath": "termination-log",  # relative: inside the simulated pod
    }
    pod = {"spec": {"containers": [main], "restartPolicy": "Never"}}
    if kind == "Job":
        trial_spec = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": pod}}
    elif kind == "TrainJob":
        trainer = {k: main[k] for k in ("image", "command")}
        trial_spec = {
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "kind": "TrainJob",
            "spec": {"runtimeRef": {"name": "torch"}, "trainer": {**trainer, "numNodes": 2}},
        }
    else:
        worker = {"spec": {"containers": [dict(main, command=["true"])]}}
        trial_spec = {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "spec": {
                "pytorchReplicaSpecs": {
                    "Master": {"replicas": 1, "template": pod},
                    "Worker": {"replicas": 1, "template": worker},
                }
            },
        }
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "e2e", "namespace": NS},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parameters": [
                {
                    "name": "opt",
                    "parameterType": "categorical",
                    "feasibleSpace": {"list": ["sgd", "adam"]},
                }
            ],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [{"name": "opt", "reference": "opt"}],
                "trialSpec": trial_spec,
            },
            **spec,
        },
    }


def start_trial(
    api: KubeApi, doc: dict[str, Any], name: str, value: str, db: str, rules: RuleSet | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = load_experiment(doc, check_algorithm=False)
    exp = api.create(EXPERIMENTS, NS, doc)
    trial = api.create(
        TRIALS, NS, render.trial_object(spec, exp, name, [("opt", value)], rules=rules)
    )
    obj = render.run_object(trial, db_address=db, collector_command=COLLECTOR)
    res = resource_for(obj["apiVersion"], obj["kind"])
    return trial, api.create(res, NS, obj)


def wait_outcome(api: KubeApi, trial: dict[str, Any], obj: dict[str, Any]) -> Outcome:
    res = resource_for(obj["apiVersion"], obj["kind"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        current = api.get(res, NS, obj["metadata"]["name"])
        assert current is not None
        outcome = run_outcome(
            current, trial["spec"]["successCondition"], trial["spec"]["failureCondition"]
        )
        if outcome is not None:
            return outcome
        time.sleep(0.1)
    raise AssertionError(f"{obj['kind']} did not finish: {current.get('status')}")


def primary_pod(server: FakeApiServer) -> dict[str, Any]:
    pods = [  # not a PyTorchJob's worker, not a TrainJob's node 1
        p
        for p in server.objects(PODS, NS)
        if "worker" not in p["metadata"]["name"] and not p["metadata"]["name"].endswith("-1")
    ]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


@pytest.mark.parametrize("kind", ["Job", "PyTorchJob", "TrainJob"])
def test_trial_runs_and_reports(
    cluster: tuple[FakeApiServer, KubeApi], db: str, kind: str
) -> None:
    server, api = cluster
    hostile = "$(HOME) 'q\" `id`"
    trial, obj = start_trial(
        api, experiment(kind, "fast"), f"run-{kind.lower()}", hostile, db, None
    )
    outcome = wait_outcome(api, trial, obj)
    assert outcome.succeeded, outcome
    name = trial["metadata"]["name"]
    assert rows(db, name) == [("loss", "0.9"), ("loss", "0.8"), ("loss", "0.7")]
    pod = primary_pod(server)
    if kind != "TrainJob":  # a TrainJob has no pod template to label; JobSet labels its pods
        assert pod["metadata"]["labels"]["katib.kubeflow.org/trial"] == name
    container = "node" if kind == "TrainJob" else "training"
    log = b"".join(api.pod_log(NS, pod["metadata"]["name"], container=container)).decode()
    assert f"arg: {hostile!r}" in log
    if kind == "Job":
        assert server.get(JOBS, NS, name) is not None


def test_early_stopped_trial_completes_with_the_message(
    cluster: tuple[FakeApiServer, KubeApi], db: str
) -> None:
    server, api = cluster
    doc = experiment("Job", "slow", earlyStopping={"algorithmName": "medianstop"})
    rules = RuleSet((Rule("loss", 0.5, Comparison.GREATER, 2),))
    trial, obj = start_trial(api, doc, "run-early", "sgd", db, rules)
    outcome = wait_outcome(api, trial, obj)
    assert outcome.succeeded  # the collector exits 0: the Job completes
    statuses = primary_pod(server)["status"]["containerStatuses"]
    assert statuses[0]["state"]["terminated"]["message"] == "EarlyStopped"
    assert ("loss", "0.9") in rows(db, "run-early")


@pytest.mark.parametrize("kind", sorted(test_render.TEMPLATES))
def test_trial_objects_fit_the_trial_crd(tmp_path: Path, kind: str) -> None:
    """What render writes is what the API server keeps: nothing refused, nothing pruned."""
    server = FakeApiServer(namespaces=("default", test_render.NS))
    if not register_katib(server):
        pytest.skip("the CRD manifests are not in this checkout")
    doc = test_render.experiment_doc(kind, earlyStopping={"algorithmName": "medianstop"})
    del doc["metadata"]["uid"]
    with server:
        api = KubeApi(server.api_client())
        exp = api.create(EXPERIMENTS, test_render.NS, doc)
        spec = load_experiment(exp, check_algorithm=False)
        rules = RuleSet((Rule("accuracy", 0.25, Comparison.LESS, 2),))
        assignments = [("lr", "0.05"), ("optimizer", "adam")]
        body = render.trial_object(spec, exp, "t-1", assignments, {"x": "y"}, rules=rules)
        created = api.create(TRIALS, test_render.NS, body)
        api.close()
    assert created["spec"] == body["spec"]
    for key in ("labels", "annotations", "ownerReferences"):
        assert created["metadata"][key] == body["metadata"][key]
