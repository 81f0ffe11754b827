"""Which pods the operator reads for an early-stopped trial's termination message."""

from __future__ import annotations

from typing import Any

import pytest

from katib.controller.kube import render
from katib.controller.kube.api import KubeApi
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.objects import LABEL_TRIAL
from katib.controller.kube.reconciler import _early_stopped
from katib.controller.kube.resources import PODS

NAMESPACE = "default"


def trial(name: str, primary_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "earlyStoppingRules": [{"name": "loss", "value": "1", "comparison": "less"}],
            "primaryPodLabels": primary_labels,
            "primaryContainerName": "trainer",
        },
    }


def add_pod(api: KubeApi, name: str, labels: dict[str, str], message: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"containers": [{"name": "trainer", "image": "x"}]},
    }
    created = api.create(PODS, NAMESPACE, pod)
    created["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [
            {"name": "trainer", "state": {"terminated": {"exitCode": 0, "message": message}}}
        ],
    }
    api.replace_status(PODS, NAMESPACE, name, created)


@pytest.mark.parametrize(
    ("kind", "pod_labels", "primary"),
    [
        ("Job", {LABEL_TRIAL: "t1"}, {}),
        (
            "PyTorchJob",
            {LABEL_TRIAL: "t1", "training.kubeflow.org/job-role": "master"},
            {"training.kubeflow.org/job-role": "master"},
        ),
        # No trial label: a TrainJob's pods are made by its JobSet.
        (
            "TrainJob",
            {
                "jobset.sigs.k8s.io/jobset-name": "t1",
                "batch.kubernetes.io/job-completion-index": "0",
            },
            {"batch.kubernetes.io/job-completion-index": "0"},
        ),
    ],
)
def test_the_primary_pod_of_each_kind_is_found(
    kind: str, pod_labels: dict[str, str], primary: dict[str, str]
) -> None:
    with FakeApiServer() as server:
        api = KubeApi(server.api_client())
        run = {"kind": kind, "metadata": {"name": "t1"}}
        assert not _early_stopped(api, trial("t1", primary), run)
        add_pod(api, "t1-pod", pod_labels, render.EARLY_STOPPED_MESSAGE)
        # Another trial's pod with the same message is never taken for this one's.
        other = {k: ("t2" if v == "t1" else v) for k, v in pod_labels.items()}
        add_pod(api, "t2-pod", other, render.EARLY_STOPPED_MESSAGE)
        assert _early_stopped(api, trial("t1", primary), run)
        assert not _early_stopped(api, trial("t3", primary), {**run, "metadata": {"name": "t3"}})
