"""KubeApi against the faithful fake API server: no lost status updates under concurrent
writers, the status subresource, followed pod logs, and faults retried transparently."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from katib.controller.kube.api import AlreadyExists, Conflict, KubeApi, RetryPolicy
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import EXPERIMENTS, PODS


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        fake.register(EXPERIMENTS)
        yield fake


def experiment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"maxTrialCount": 3},
    }


def test_concurrent_update_status_loses_no_write(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client(), retry=RetryPolicy(base=0.001, cap=0.01))
    api.create(EXPERIMENTS, "default", experiment("e"))
    writers, increments = 4, 15

    def bump(obj: dict[str, Any]) -> bool:
        status = obj.setdefault("status", {})
        status["trials"] = status.get("trials", 0) + 1
        return True

    def writer() -> None:
        for _ in range(increments):
            api.update_status(EXPERIMENTS, "default", "e", bump, attempts=1000)

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stored = server.get(EXPERIMENTS, "default", "e")
    assert stored is not None
    assert stored["status"]["trials"] == writers * increments
    assert stored["spec"] == {"maxTrialCount": 3}
    assert api.calls[("update", "experiments/status")] >= writers * increments


def test_status_writes_touch_only_status_and_stale_writes_conflict(
    server: FakeApiServer,
) -> None:
    api = KubeApi(server.api_client())
    created = api.create(EXPERIMENTS, "default", experiment("e"))
    with pytest.raises(AlreadyExists):
        api.create(EXPERIMENTS, "default", experiment("e"))
    sneaky = {**created, "spec": {"maxTrialCount": 99}, "status": {"trials": 1}}
    written = api.replace_status(EXPERIMENTS, "default", "e", sneaky)
    assert written["spec"] == {"maxTrialCount": 3} and written["status"] == {"trials": 1}
    with pytest.raises(Conflict):
        api.replace(EXPERIMENTS, "default", "e", created)  # created's resourceVersion is stale
    patched = api.patch(EXPERIMENTS, "default", "e", {"status": {"phase": "x"}}, status=True)
    assert patched["status"] == {"trials": 1, "phase": "x"}
    assert api.delete(EXPERIMENTS, "default", "e") is True
    assert api.delete(EXPERIMENTS, "default", "e") is False
    assert api.update_status(EXPERIMENTS, "default", "e", lambda obj: True) is None


def test_injected_faults_are_retried_and_counted(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client(), retry=RetryPolicy(base=0.001, cap=0.01))
    server.faults.fail(verb="create", plural="experiments", status=503, times=2)
    server.faults.fail(verb="list", plural="experiments", status=429, times=1, retry_after=1)
    api.create(EXPERIMENTS, "default", experiment("e"))
    started = time.monotonic()
    items, version = api.list(EXPERIMENTS, "default")
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert [i["metadata"]["name"] for i in items] == ["e"] and version
    assert api.calls[("create", "experiments")] == 3
    assert api.calls[("list", "experiments")] == 2


def test_followed_pod_log_streams_until_the_container_ends(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    api.create(
        PODS,
        "default",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "main", "image": "x"}]}},
    )
    server.logs.append("default", "p", "main", b"epoch 1\n")
    stream = api.pod_log("default", "p", container="main", follow=True)
    assert next(stream) == b"epoch 1\n"  # arrives before the container ends

    def finish() -> None:
        server.logs.append("default", "p", "main", b"loss=0.25\n")
        server.logs.finish("default", "p", "main")

    threading.Timer(0.1, finish).start()
    assert b"".join(stream) == b"loss=0.25\n"
