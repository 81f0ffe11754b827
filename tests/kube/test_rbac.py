"""The controller's RBAC grants exactly what ``katib-controller`` uses: no more, no less.

``katib-controller`` runs as its Deployment runs it (the Deployment's own flags, leader
election on, the start-up cluster check) against the fake API server, with the services on
loopback, through two experiments and a deletion that between them take every path that talks
to the API server: a Job experiment with early stopping (rules on trials, so the primary pods
are listed), one whose trial is a PyTorchJob (a kind without an informer: polled with get),
and the deletion of an experiment (trial finalizers). Every request goes through one
:class:`~katib.controller.kube.api.KubeApi`, which counts ``(verb, resource)`` pairs; the test
then checks both directions against the rendered ClusterRole and leader-election Role:

- every pair used is granted (so the operator is not refused in a real cluster), counting
  ``update`` on ``<owner>/finalizers`` as used for every owner reference with
  ``blockOwnerDeletion`` the operator wrote (what the OwnerReferencesPermissionEnforcement
  admission plugin checks; seen by sampling the objects while they exist), and
- every granted pair is used (so the role is least privilege), where the Kubeflow training kinds
  other than PyTorchJob count as used when PyTorchJob's verbs are exactly theirs: the operator
  treats every non-Job run kind alike (one code path, :func:`resources.resource_for`).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from katib.controller.kube import main as controller_main
from katib.controller.kube.api import KubeApi
from katib.controller.kube.operator import Operator
from katib.controller.kube.resources import (
    CONFIGMAPS,
    EXPERIMENTS,
    JOBS,
    LEASES,
    NAMESPACES,
    SUGGESTIONS,
    TRIALS,
    Resource,
    resource_for,
)
from tests.kube.cluster import (
    NAMESPACE,
    collector_command,
    completed,
    condition,
    experiment,
    fake_cluster,
    wait_for,
)
from tests.kube.kustomize import pod_spec, render
from tests.processes import service_process

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "katib-system"
PYTORCHJOBS = resource_for("kubeflow.org/v1", "PyTorchJob")
#: Run kinds granted alike; the test runs PyTorchJob and Job trials.
KUBEFLOW_KINDS = {
    "tfjobs": "TFJob",
    "pytorchjobs": "PyTorchJob",
    "xgboostjobs": "XGBoostJob",
    "mxjobs": "MXJob",
    "paddlejobs": "PaddleJob",
    "jaxjobs": "JAXJob",
    "mpijobs": "MPIJob",
    "trainjobs": "TrainJob",
}

Grant = tuple[str, str, str]  # (verb, group, resource)


def rendered_rbac() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(ClusterRole, leader-election Role, controller args) from ``manifests/``."""
    objects = render(ROOT / "manifests")

    def one(kind: str, name: str) -> dict[str, Any]:
        (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        return obj

    deployment = one("Deployment", "katib-controller")
    (container,) = (pod_spec(deployment) or {})["containers"]
    return (
        one("ClusterRole", "katib-controller"),
        one("Role", "katib-controller-leader-election"),
        container["args"],
    )


def grants(role: dict[str, Any]) -> set[Grant]:
    """Every (verb, group, resource) a Role or ClusterRole allows (no wildcards allowed)."""
    result: set[Grant] = set()
    for rule in role["rules"]:
        for part in ("verbs", "apiGroups", "resources"):
            assert "*" not in rule[part], f"wildcard in {part}: least privilege lists them"
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for verb in rule["verbs"]:
            for group in rule["apiGroups"]:
                result.update((verb, group, resource) for resource in rule["resources"])
    return result


def group_of(plural: str) -> str:
    """The API group of a resource path the client counted (``trials/status`` -> kubeflow.org)."""
    base = plural.split("/", 1)[0]
    if base in KUBEFLOW_KINDS:
        kind = KUBEFLOW_KINDS[base]
        version = "trainer.kubeflow.org/v1alpha1" if kind == "TrainJob" else "kubeflow.org/v1"
        return resource_for(version, kind).group
    known = {
        "experiments": "kubeflow.org",
        "trials": "kubeflow.org",
        "suggestions": "kubeflow.org",
    }
    known |= {"jobs": "batch", "leases": "coordination.k8s.io"}
    return known.get(base, "")


def used(calls: Counter[tuple[str, str]]) -> set[Grant]:
    return {(verb, group_of(plural), plural) for (verb, plural), n in calls.items() if n}


def controller_args(deployment_args: list[str], suggestion: str, db: str, es: str) -> list[str]:
    """The Deployment's flags with loopback addresses and the pod's env filled in."""
    loopback = {
        "--suggestion-address": suggestion,
        "--db-manager-address": db,
        "--earlystopping-address": es,
        "--health-port": "0",
    }
    args = []
    for arg in deployment_args:
        flag = arg.split("=", 1)[0]
        if flag in loopback:
            arg = f"{flag}={loopback[flag]}"
        arg = arg.replace("$(POD_NAMESPACE)", SYSTEM).replace("$(POD_NAME)", "katib-controller-0")
        args.append(arg)
    return [*args, "--health-host=127.0.0.1"]


@pytest.fixture(scope="module")
def earlystopping(services: tuple[str, str]) -> Iterator[str]:
    """A ``katib-earlystopping`` process reading the module's DB manager."""
    _, db = services
    with service_process("katib.earlystopping.server", "--db-address", db) as (_, address):
        yield address


def pytorch_experiment(name: str) -> dict[str, Any]:
    """:func:`experiment` with its trial as a one-Master PyTorchJob."""
    exp = experiment(name, max_trials=1, parallel=1)
    job_template = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]
    job_template["spec"]["containers"][0]["name"] = "pytorch"
    exp["spec"]["trialTemplate"]["primaryContainerName"] = "pytorch"
    exp["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "Never", "template": job_template}
            }
        },
    }
    return exp


def template_config_map(exp: dict[str, Any]) -> dict[str, Any]:
    """Move ``exp``'s trial template into a ConfigMap (returned), as Katib's examples can."""
    template = exp["spec"]["trialTemplate"]
    name = f"{exp['metadata']['name']}-template"
    template["configMap"] = {
        "configMapName": name,
        "configMapNamespace": NAMESPACE,
        "templatePath": "trial.yaml",
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"trial.yaml": yaml.safe_dump(template.pop("trialSpec"))},
    }


def early_stopping_experiment(name: str) -> dict[str, Any]:
    """:func:`experiment` with medianstop, one trial at a time, so later trials carry rules."""
    exp = experiment(name, max_trials=2, parallel=1)
    exp["spec"]["earlyStopping"] = {
        "algorithmName": "medianstop",
        "algorithmSettings": [
            {"name": "min_trials_required", "value": "1"},
            {"name": "start_step", "value": "1"},
        ],
    }
    return exp


class OwnerSampler:
    """Records (owner kind, blockOwnerDeletion) of every object of ``kinds`` while it exists."""

    def __init__(self, server: Any, kinds: list[Resource]) -> None:
        self.server = server
        self.kinds = kinds
        self.owners: set[tuple[str, bool]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> OwnerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            for res in self.kinds:
                for obj in self.server.objects(res, NAMESPACE):
                    for ref in obj["metadata"].get("ownerReferences") or ():
                        self.owners.add((ref["kind"], bool(ref.get("blockOwnerDeletion"))))

    def implied(self) -> set[Grant]:
        """The finalizers updates the owner references written need."""
        plurals = {"Experiment": "experiments", "Trial": "trials"}
        return {
            ("update", "kubeflow.org", f"{plurals[kind]}/finalizers")
            for kind, blocking in self.owners
            if blocking
        }


def run_controller(api: KubeApi, args: list[str]) -> tuple[controller_main.Controller, Any]:
    """``katib-controller``'s start-up check and process loop, in a thread."""
    parsed = controller_main.build_parser().parse_args(args)
    assert controller_main.check_cluster(api, parsed.namespace, 10.0) is None
    config = dataclasses.replace(
        controller_main.operator_config(parsed), collector_command=collector_command()
    )
    controller = controller_main.Controller(api, Operator(api, config), parsed)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    return controller, thread


def experiment_of(trial: dict[str, Any]) -> str:
    return str(trial["metadata"]["labels"]["katib.kubeflow.org/experiment"])


def exercise(server: Any, client: KubeApi) -> None:
    """Run both experiments to the end, then delete one and wait for its trials to go."""
    for name in ("rbac-es", "rbac-pytorch"):
        wait_for(functools.partial(completed, server, name), f"{name} to end", 120)
    trials = server.objects(TRIALS, NAMESPACE)
    assert {experiment_of(t) for t in trials} == {"rbac-es", "rbac-pytorch"}
    es_trials = [t for t in trials if experiment_of(t) == "rbac-es"]
    assert any(t["spec"].get("earlyStoppingRules") for t in es_trials), "no rules reached a trial"
    client.delete(EXPERIMENTS, NAMESPACE, "rbac-es")
    wait_for(
        lambda: all(experiment_of(t) != "rbac-es" for t in server.objects(TRIALS, NAMESPACE)),
        "the deleted experiment's trials to go",
    )
    lease = server.get(LEASES, SYSTEM, "katib-controller")
    assert lease is not None and lease["spec"]["holderIdentity"] == "katib-controller-0"


def test_controller_uses_exactly_the_granted_verbs(
    services: tuple[str, str], earlystopping: str, workdir: Path
) -> None:
    cluster_role, lease_role, deployment_args = rendered_rbac()
    suggestion, db = services
    args = controller_args(deployment_args, suggestion, db, earlystopping)
    with fake_cluster(workdir) as server:
        server.register(PYTORCHJOBS)
        client = KubeApi(server.api_client())  # the test's own requests are not counted below
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}}
        client.create(NAMESPACES, None, namespace)
        client.create(EXPERIMENTS, NAMESPACE, early_stopping_experiment("rbac-es"))
        pytorch = pytorch_experiment("rbac-pytorch")
        client.create(CONFIGMAPS, NAMESPACE, template_config_map(pytorch))
        client.create(EXPERIMENTS, NAMESPACE, pytorch)
        api = KubeApi(server.api_client())
        with OwnerSampler(server, [SUGGESTIONS, TRIALS, JOBS, PYTORCHJOBS]) as owners:
            controller, thread = run_controller(api, args)
            try:
                exercise(server, client)
            finally:
                controller.stop.set()
                thread.join(timeout=30)
        assert condition(server.get(EXPERIMENTS, NAMESPACE, "rbac-pytorch"), "Succeeded")
    assert owners.owners == {("Experiment", True), ("Trial", True)}
    calls = used(api.calls) | owners.implied()
    cluster_grants, lease_grants = grants(cluster_role), grants(lease_role)

    missing = {g for g in calls if g[2] != "leases"} - cluster_grants
    missing |= {g for g in calls if g[2] == "leases"} - lease_grants
    assert not missing, f"used but not granted: {sorted(missing)}"

    pytorch_verbs = {verb for verb, _, res in calls if res == "pytorchjobs"}
    for plural in KUBEFLOW_KINDS:
        kind_verbs = {verb for verb, _, res in cluster_grants if res == plural}
        assert kind_verbs == pytorch_verbs, f"{plural}: granted {kind_verbs}, used {pytorch_verbs}"
    unused = {g for g in cluster_grants | lease_grants if g[2] not in KUBEFLOW_KINDS} - calls
    assert not unused, f"granted but never used: {sorted(unused)}"
