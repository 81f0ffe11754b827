"""The fake API server, driven by the real ``kubernetes`` client over HTTP on loopback."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from katib.controller.kube.api import Conflict, Gone, KubeApi, NotFound, RetryPolicy
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import CONFIGMAPS, EXPERIMENTS, JOBS, LEASES, PODS, TRIALS

GROUP, VERSION = "kubeflow.org", "v1beta1"

TRIAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["objective"],
            "properties": {
                "objective": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["maximize", "minimize"]},
                        "goal": {"type": "number"},
                    },
                },
                "parallelTrialCount": {"type": "integer", "minimum": 1},
                "parameterAssignments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                    },
                },
                "runSpec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "replicas": {"x-kubernetes-int-or-string": True},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(bookmark_interval=0.1) as fake:
        fake.register(EXPERIMENTS)
        fake.register(TRIALS, schema=TRIAL_SCHEMA)
        yield fake


@pytest.fixture
def custom(server: FakeApiServer) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(server.api_client())


@pytest.fixture
def core(server: FakeApiServer) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(server.api_client())


def trial(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Trial",
        "metadata": {"name": name, "labels": {"katib.kubeflow.org/experiment": "exp"}},
        "spec": {"objective": {"type": "maximize"}, **spec},
    }


def create(
    custom: kubernetes.client.CustomObjectsApi, body: dict[str, Any], plural: str = "trials"
) -> dict[str, Any]:
    return custom.create_namespaced_custom_object(GROUP, VERSION, "default", plural, body)


def error_of(call: Any, *args: Any, **kwargs: Any) -> ApiException:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value


def test_create_get_list_replace_patch_delete(custom: kubernetes.client.CustomObjectsApi) -> None:
    made = create(custom, trial("t1", parallelTrialCount=2))
    meta = made["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and meta["namespace"] == "default"
    got = custom.get_namespaced_custom_object(GROUP, VERSION, "default", "trials", "t1")
    assert got == made
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", "trials")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["t1"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])

    got["spec"]["parallelTrialCount"] = 3
    replaced = custom.replace_namespaced_custom_object(
        GROUP, VERSION, "default", "trials", "t1", got
    )
    assert replaced["metadata"]["generation"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    same = custom.replace_namespaced_custom_object(
        GROUP, VERSION, "default", "trials", "t1", replaced
    )
    assert same["metadata"]["resourceVersion"] == replaced["metadata"]["resourceVersion"]

    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", "trials", "t1", {"metadata": {"labels": {"x": "y"}}}
    )
    assert patched["metadata"]["labels"] == {"katib.kubeflow.org/experiment": "exp", "x": "y"}
    assert patched["metadata"]["generation"] == 2  # metadata changes do not bump generation

    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "trials", "t1")
    gone = error_of(custom.get_namespaced_custom_object, GROUP, VERSION, "default", "trials", "t1")
    assert gone.status == 404 and '"reason": "NotFound"' in gone.body


def test_already_exists_conflict_and_unknown_paths(
    custom: kubernetes.client.CustomObjectsApi, core: kubernetes.client.CoreV1Api
) -> None:
    made = create(custom, trial("t1"))
    assert error_of(create, custom, trial("t1")).status == 409
    made["spec"]["parallelTrialCount"] = 5
    custom.replace_namespaced_custom_object(GROUP, VERSION, "default", "trials", "t1", made)
    stale = error_of(
        custom.replace_namespaced_custom_object, GROUP, VERSION, "default", "trials", "t1", made
    )
    assert stale.status == 409 and "the object has been modified" in stale.body
    patch_stale = error_of(
        custom.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        "trials",
        "t1",
        {"metadata": {"resourceVersion": "1"}},
    )
    assert patch_stale.status == 409
    assert (
        error_of(custom.list_namespaced_custom_object, GROUP, VERSION, "default", "widgets").status
        == 404
    )
    missing_ns = error_of(
        custom.create_namespaced_custom_object, GROUP, VERSION, "nowhere", "trials", trial("t2")
    )
    assert missing_ns.status == 404 and 'namespaces \\"nowhere\\" not found' in missing_ns.body
    assert error_of(core.read_namespaced_config_map, "cm", "default").status == 404


def test_status_subresource_separates_spec_and_status(
    custom: kubernetes.client.CustomObjectsApi,
) -> None:
    made = create(custom, dict(trial("t1"), status={"ignored": True}))
    assert "status" not in made  # create drops status when a status subresource exists
    with_status = custom.replace_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        "trials",
        "t1",
        dict(made, status={"phase": "Running"}, spec={"objective": {"type": "minimize"}}),
    )
    assert with_status["status"] == {"phase": "Running"}
    assert with_status["spec"]["objective"]["type"] == "maximize"  # spec change ignored
    assert with_status["metadata"]["generation"] == 1
    main = custom.replace_namespaced_custom_object(
        GROUP, VERSION, "default", "trials", "t1", dict(with_status, status={"phase": "Lost"})
    )
    assert main["status"] == {"phase": "Running"}  # status change ignored on the main resource
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", "trials", "t1", {"status": {"phase": "Done", "x": 1}}
    )
    assert patched["status"] == {"phase": "Done", "x": 1}
    experiments_have_no_schema = create(
        custom, {"metadata": {"name": "e"}, "spec": {"a": 1}}, "experiments"
    )
    assert experiments_have_no_schema["spec"] == {"a": 1}


def test_schema_validation_reports_field_paths_and_prunes(
    custom: kubernetes.client.CustomObjectsApi,
) -> None:
    bad = trial("t1", parallelTrialCount="two", parameterAssignments=[{"name": 3}])
    bad["spec"]["objective"]["type"] = "sideways"
    error = error_of(create, custom, bad)
    assert error.status == 422
    body = kubernetes.client.ApiClient().sanitize_for_serialization(error.body)
    for field in (
        "spec.parallelTrialCount",
        "spec.objective.type",
        "spec.parameterAssignments[0].name",
    ):
        assert f'"field": "{field}"' in body
    missing = trial("t2")
    del missing["spec"]["objective"]
    assert '"field": "spec.objective"' in error_of(create, custom, missing).body
    pruned = create(custom, trial("t3", unknown=1, runSpec={"kept": {"deep": 1}}, replicas="50%"))
    assert "unknown" not in pruned["spec"]
    assert pruned["spec"]["runSpec"] == {"kept": {"deep": 1}}
    assert pruned["spec"]["replicas"] == "50%"


def test_label_and_field_selectors(custom: kubernetes.client.CustomObjectsApi) -> None:
    for name, labels in (("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}), ("c", {})):
        create(custom, dict(trial(name), metadata={"name": name, "labels": labels}))

    def names(**kwargs: str) -> list[str]:
        listed = custom.list_namespaced_custom_object(
            GROUP, VERSION, "default", "trials", **kwargs
        )
        return [i["metadata"]["name"] for i in listed["items"]]

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app==y") == ["b"]
    assert names(label_selector="app!=x") == ["b", "c"]
    assert names(label_selector="app in (x, y)") == ["a", "b"]
    assert names(label_selector="app notin (x)") == ["b", "c"]
    assert names(label_selector="tier") == ["a"]
    assert names(label_selector="!app") == ["c"]
    assert names(label_selector="app,!tier") == ["b"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.namespace!=default") == []
    assert error_of(names, field_selector="spec.x=1").status == 400
    assert error_of(names, label_selector="app in (x").status == 400


def test_finalizers_hold_deletion_until_removed(
    custom: kubernetes.client.CustomObjectsApi,
) -> None:
    create(custom, dict(trial("t1"), metadata={"name": "t1", "finalizers": ["katib/cleanup"]}))
    held = custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "trials", "t1")
    assert held["metadata"]["deletionTimestamp"]
    still = custom.get_namespaced_custom_object(GROUP, VERSION, "default", "trials", "t1")
    assert still["metadata"]["finalizers"] == ["katib/cleanup"]
    refused = error_of(
        custom.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        "trials",
        "t1",
        {"metadata": {"finalizers": ["katib/cleanup", "new"]}},
    )
    assert refused.status == 422
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", "trials", "t1", {"metadata": {"finalizers": None}}
    )
    assert (
        error_of(
            custom.get_namespaced_custom_object, GROUP, VERSION, "default", "trials", "t1"
        ).status
        == 404
    )


def _owned(name: str, owner: dict[str, Any], **meta: Any) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return dict(trial(name), metadata={"name": name, "ownerReferences": [ref], **meta})


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_owner_references_cascade(server: FakeApiServer, propagation: str) -> None:
    api = KubeApi(server.api_client())
    experiment = api.create(EXPERIMENTS, "default", {"metadata": {"name": "e"}, "spec": {}})
    t1 = api.create(TRIALS, "default", _owned("t1", experiment))
    api.create(TRIALS, "default", _owned("t2", experiment, finalizers=["katib/cleanup"]))
    job = api.create(
        JOBS,
        "default",
        {
            "metadata": {
                "name": "t1-job",
                "ownerReferences": [
                    {
                        "apiVersion": "kubeflow.org/v1beta1",
                        "kind": "Trial",
                        "name": "t1",
                        "uid": t1["metadata"]["uid"],
                    }
                ],
            },
            "spec": {"template": {"spec": {"containers": []}}},
        },
    )
    assert job["metadata"]["name"] == "t1-job"
    api.delete(EXPERIMENTS, "default", "e", propagation=propagation)
    assert api.get(TRIALS, "default", "t1") is None
    assert api.get(JOBS, "default", "t1-job") is None  # cascades through the trial
    t2 = api.get(TRIALS, "default", "t2")
    assert t2 is not None and t2["metadata"]["deletionTimestamp"]  # held by its finalizer
    held = api.get(EXPERIMENTS, "default", "e")
    if propagation == "Foreground":  # the owner waits for its dependents
        assert held is not None and "foregroundDeletion" in held["metadata"]["finalizers"]
    else:
        assert held is None
    api.patch(TRIALS, "default", "t2", {"metadata": {"finalizers": None}})
    assert api.get(TRIALS, "default", "t2") is None
    assert api.get(EXPERIMENTS, "default", "e") is None


def test_orphan_propagation_keeps_dependents(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    experiment = api.create(EXPERIMENTS, "default", {"metadata": {"name": "e"}, "spec": {}})
    api.create(TRIALS, "default", _owned("t1", experiment))
    api.delete(EXPERIMENTS, "default", "e", propagation="Orphan")
    kept = api.get(TRIALS, "default", "t1")
    assert kept is not None and "ownerReferences" not in kept["metadata"]


def test_watch_replays_history_sends_bookmarks_and_ends_at_timeout(
    server: FakeApiServer, custom: kubernetes.client.CustomObjectsApi
) -> None:
    start = create(custom, trial("t1"))["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", "trials", "t1", {"status": {"phase": "Running"}}
    )
    create(custom, dict(trial("other"), metadata={"name": "other", "labels": {"x": "1"}}))
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "trials", "t1")
    began = time.monotonic()
    seen = []
    for event in kubernetes.watch.Watch().stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        "trials",
        resource_version=str(int(start) - 1),
        timeout_seconds=1,
        allow_watch_bookmarks=True,
        label_selector="katib.kubeflow.org/experiment=exp",
    ):
        seen.append((event["type"], event["object"]["metadata"].get("name")))
    assert time.monotonic() - began < 10
    changes = [e for e in seen if e[0] != "BOOKMARK"]
    assert changes == [("ADDED", "t1"), ("MODIFIED", "t1"), ("DELETED", "t1")]
    assert ("BOOKMARK", None) in seen


def test_watch_without_version_lists_first_and_follows_live_changes(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    api.create(TRIALS, "default", trial("t1"))
    events: list[tuple[str, str]] = []
    first = threading.Event()

    def follow() -> None:
        for type_, obj in api.watch(TRIALS, "default", resource_version="", timeout_seconds=3):
            events.append((type_, obj["metadata"].get("name", "")))
            first.set()
            if type_ == "ADDED" and obj["metadata"]["name"] == "t2":
                return

    watcher = threading.Thread(target=follow)
    watcher.start()
    assert first.wait(10)
    api.create(TRIALS, "default", trial("t2"))
    watcher.join(10)
    assert [e for e in events if e[0] != "BOOKMARK"] == [("ADDED", "t1"), ("ADDED", "t2")]


def test_label_change_out_of_selector_is_a_deletion(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    made = api.create(TRIALS, "default", trial("t1"))
    api.patch(
        TRIALS,
        "default",
        "t1",
        {"metadata": {"labels": {"katib.kubeflow.org/experiment": "other"}}},
    )
    events = list(
        api.watch(
            TRIALS,
            "default",
            resource_version=str(int(made["metadata"]["resourceVersion"]) - 1),
            timeout_seconds=1,
            label_selector="katib.kubeflow.org/experiment=exp",
        )
    )
    assert [t for t, _ in events if t != "BOOKMARK"] == ["ADDED", "DELETED"]


def test_too_old_resource_version_is_gone(
    server: FakeApiServer, custom: kubernetes.client.CustomObjectsApi
) -> None:
    old = create(custom, trial("t1"))["metadata"]["resourceVersion"]
    create(custom, trial("t2"))
    server.faults.expire()
    api = KubeApi(server.api_client())
    with pytest.raises(Gone):
        list(api.watch(TRIALS, "default", resource_version=old, timeout_seconds=1))
    with pytest.raises(ApiException) as info:
        list(
            kubernetes.watch.Watch().stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                "default",
                "trials",
                resource_version=old,
                timeout_seconds=1,
            )
        )
    assert info.value.status == 410
    _, rv = api.list(TRIALS, "default")
    after = api.watch(TRIALS, "default", resource_version=rv, timeout_seconds=1)
    assert [t for t, _ in after if t != "BOOKMARK"] == []


def test_small_watch_window_compacts_history() -> None:
    with FakeApiServer(watch_window=4) as server:
        api = KubeApi(server.api_client())
        first = api.create(CONFIGMAPS, "default", {"metadata": {"name": "c0"}})
        for i in range(1, 12):
            api.create(CONFIGMAPS, "default", {"metadata": {"name": f"c{i}"}})
        with pytest.raises(Gone):
            list(
                api.watch(
                    CONFIGMAPS,
                    "default",
                    resource_version=first["metadata"]["resourceVersion"],
                    timeout_seconds=1,
                )
            )


def test_drop_watches_ends_open_streams(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    _, rv = api.list(TRIALS, "default")
    ended = threading.Event()

    def follow() -> None:
        list(api.watch(TRIALS, "default", resource_version=rv, timeout_seconds=60))
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    deadline = time.monotonic() + 10
    while server.open_watches == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.faults.drop_watches()
    assert ended.wait(10)


def test_injected_faults(
    server: FakeApiServer, custom: kubernetes.client.CustomObjectsApi
) -> None:
    server.faults.fail(verb="create", plural="trials", status=500, times=2)
    assert error_of(create, custom, trial("t1")).status == 500
    assert error_of(create, custom, trial("t1")).status == 500
    create(custom, trial("t1"))
    server.faults.fail(verb="update", plural="trials/status", status=409)
    patched = custom.patch_namespaced_custom_object_status(  # a patch is not an update
        GROUP, VERSION, "default", "trials", "t1", {"status": {"a": 1}}
    )
    conflict = error_of(
        custom.replace_namespaced_custom_object_status,
        GROUP,
        VERSION,
        "default",
        "trials",
        "t1",
        patched,
    )
    assert conflict.status == 409 and "injected fault" in conflict.body
    custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, "default", "trials", "t1", patched
    )
    server.faults.clear()
    server.faults.fail(verb="get", status=429, retry_after=7)
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    connection.request("GET", "/apis/kubeflow.org/v1beta1/namespaces/default/trials/t1")
    busy = connection.getresponse()
    assert busy.status == 429 and busy.headers["Retry-After"] == "7"
    assert json.loads(busy.read())["reason"] == "TooManyRequests"
    connection.close()
    assert ("POST", "/apis/kubeflow.org/v1beta1/namespaces/default/trials", 500) in (
        server.requests
    )
    # KubeApi retries 5xx and gives up on 4xx at once.
    retrying = KubeApi(server.api_client(), retry=RetryPolicy(base=0.01, cap=0.02, deadline=5))
    server.faults.fail(verb="get", plural="trials", status=503, times=2)
    assert retrying.get(TRIALS, "default", "t1") is not None
    server.faults.fail(verb="update", plural="trials", status=409)
    with pytest.raises(Conflict):
        retrying.replace(TRIALS, "default", "t1", retrying.get(TRIALS, "default", "t1") or {})
    with pytest.raises(ValueError, match="times or probability"):
        server.faults.fail(times=1, probability=0.5)


def test_probabilistic_faults_fire_about_as_often_as_asked(server: FakeApiServer) -> None:
    server.faults.fail(verb="get", status=500, probability=0.5)
    fired = sum(server.faults.check("get", "trials") is not None for _ in range(400))
    assert 140 < fired < 260  # binomial(400, 0.5): outside this band with p < 1e-8


def test_core_batch_and_coordination_clients(server: FakeApiServer) -> None:
    client = server.api_client()
    core = kubernetes.client.CoreV1Api(client)
    batch = kubernetes.client.BatchV1Api(client)
    leases = kubernetes.client.CoordinationV1Api(client)
    core.create_namespace({"metadata": {"name": "katib"}})
    core.create_namespaced_config_map("katib", {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    assert core.read_namespaced_config_map("cm", "katib").data == {"a": "b"}
    job = batch.create_namespaced_job(
        "katib",
        {
            "metadata": {"name": "j", "labels": {"app": "x"}},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}
                }
            },
        },
    )
    assert job.metadata.uid and job.status is None
    assert [
        j.metadata.name for j in batch.list_job_for_all_namespaces(label_selector="app=x").items
    ] == ["j"]
    lease = leases.create_namespaced_lease(
        "katib",
        {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "b"
    updated = leases.replace_namespaced_lease("leader", "katib", lease)
    assert updated.spec.holder_identity == "b"
    with pytest.raises(ApiException) as info:
        leases.replace_namespaced_lease("leader", "katib", lease)  # stale now
    assert info.value.status == 409
    core.delete_namespace("katib")
    assert server.get(JOBS, "katib", "j") is None
    assert server.get(LEASES, "katib", "leader") is None
    with pytest.raises(ApiException) as missing:
        core.read_namespace("katib")
    assert missing.value.status == 404


def test_pod_log_reads_and_follows(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    core = kubernetes.client.CoreV1Api(server.api_client())
    api.create(
        PODS,
        "default",
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "main", "image": "i"}, {"name": "side", "image": "i"}]
            },
        },
    )
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("p", "default")
    assert info.value.status == 400 and "choose one of: [main side]" in info.value.body
    with pytest.raises(ApiException) as waiting:
        core.read_namespaced_pod_log("p", "default", container="main")
    assert "waiting to start" in waiting.value.body
    server.logs.append("default", "p", "main", b"line 1\n")
    assert core.read_namespaced_pod_log("p", "default", container="main") == "line 1\n"
    received: list[bytes] = []

    def follow() -> None:
        received.extend(api.pod_log("default", "p", container="main", follow=True))

    follower = threading.Thread(target=follow)
    follower.start()
    deadline = time.monotonic() + 10
    while b"".join(received) != b"line 1\n" and time.monotonic() < deadline:
        time.sleep(0.01)
    server.logs.append("default", "p", "main", b"line 2\n")
    server.logs.finish("default", "p", "main")
    follower.join(10)
    assert b"".join(received) == b"line 1\nline 2\n"
    assert (
        core.read_namespaced_pod_log("p", "default", container="main", tail_lines=1) == "line 2\n"
    )


def test_register_crds_from_documents_and_the_api(server: FakeApiServer) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = kubernetes.client.ApiextensionsV1Api(server.api_client())
    ext.create_custom_resource_definition(crd)
    custom = kubernetes.client.CustomObjectsApi(server.api_client())
    made = custom.create_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 3, "colour": "red"},
        },
    )
    assert made["spec"] == {"size": 3}
    with pytest.raises(ApiException) as info:
        custom.get_namespaced_custom_object("example.com", "v2", "default", "widgets", "w")
    assert info.value.status == 404


def test_kubeapi_not_found_is_none(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    assert api.get(TRIALS, "default", "none") is None
    assert api.delete(TRIALS, "default", "none") is False
    with pytest.raises(NotFound):
        api.replace(TRIALS, "default", "none", trial("none"))


def test_followed_log_through_the_official_watch_helper(server: FakeApiServer) -> None:
    core = kubernetes.client.CoreV1Api(server.api_client())
    core.create_namespaced_pod(
        "default",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "main", "image": "i"}]}},
    )
    server.logs.append("default", "p", "main", b"epoch 1\n")

    def finish_later() -> None:
        deadline = time.monotonic() + 10
        while server.open_streams == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.logs.append("default", "p", "main", b"epoch 2\n")
        server.logs.finish("default", "p", "main")

    threading.Thread(target=finish_later, daemon=True).start()
    lines = list(
        kubernetes.watch.Watch().stream(
            core.read_namespaced_pod_log, "p", "default", container="main", follow=True
        )
    )
    assert lines == ["epoch 1", "epoch 2"]


def test_abrupt_watch_drop_breaks_the_connection(server: FakeApiServer) -> None:
    from katib.controller.kube.api import Unreachable

    api = KubeApi(server.api_client(), retry=RetryPolicy(base=0.01, cap=0.02, deadline=1))
    _, rv = api.list(TRIALS, "default")
    outcome: list[BaseException | None] = []

    def follow() -> None:
        try:
            list(api.watch(TRIALS, "default", resource_version=rv, timeout_seconds=60))
            outcome.append(None)
        except Unreachable as exc:
            outcome.append(exc)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 10
    while server.open_watches == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.faults.drop_watches(abrupt=True)
    watcher.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], Unreachable)


def test_generate_name_and_bad_names(custom: kubernetes.client.CustomObjectsApi) -> None:
    made = create(custom, dict(trial(""), metadata={"generateName": "t-"}))
    assert made["metadata"]["name"].startswith("t-") and len(made["metadata"]["name"]) == 7
    bad = error_of(create, custom, trial("Not_Valid"))
    assert bad.status == 422 and '"field": "metadata.name"' in bad.body
    nameless = error_of(create, custom, dict(trial(""), metadata={}))
    assert nameless.status == 422
    elsewhere = dict(trial("t9"), metadata={"name": "t9", "namespace": "kube-system"})
    assert error_of(create, custom, elsewhere).status == 400


def test_lists_page_with_limit_and_continue(server: FakeApiServer) -> None:
    core = kubernetes.client.CoreV1Api(server.api_client())
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    first = core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["c0", "c1"]
    assert first.metadata.remaining_item_count == 3
    second = core.list_namespaced_config_map(
        "default", limit=2, _continue=first.metadata._continue
    )
    assert [c.metadata.name for c in second.items] == ["c2", "c3"]
    assert second.metadata.resource_version == first.metadata.resource_version
    last = core.list_namespaced_config_map("default", limit=2, _continue=second.metadata._continue)
    assert [c.metadata.name for c in last.items] == ["c4"] and not last.metadata._continue
    core.create_namespaced_config_map("default", {"metadata": {"name": "c5"}})
    server.faults.expire()  # the first page's resourceVersion is compacted away now
    with pytest.raises(ApiException) as info:
        core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    assert info.value.status == 410
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_config_map("default", _continue="garbage")
    assert bad.value.status == 400


def test_discovery_serves_the_dynamic_client(server: FakeApiServer) -> None:
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(server.api_client())
    trials = dynamic.resources.get(api_version="kubeflow.org/v1beta1", kind="Trial")
    trials.create(body=trial("t1"), namespace="default")
    listed = trials.get(namespace="default")
    assert [item.metadata.name for item in listed.items] == ["t1"]
    pods = dynamic.resources.get(api_version="v1", kind="Pod")
    assert pods.namespaced and pods.subresources["status"]


def test_dry_run_admits_without_storing(
    server: FakeApiServer, custom: kubernetes.client.CustomObjectsApi
) -> None:
    checked = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "trials", trial("t1", unknown=1), dry_run="All"
    )
    assert checked["metadata"]["uid"] and "unknown" not in checked["spec"]
    assert server.get(TRIALS, "default", "t1") is None
    bad = trial("t1", parallelTrialCount=0)
    assert (
        error_of(
            custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            "trials",
            bad,
            dry_run="All",
        ).status
        == 422
    )
    made = create(custom, trial("t1"))
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        "default",
        "trials",
        "t1",
        {"spec": {"parallelTrialCount": 4}},
        dry_run="All",
    )
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, "default", "trials", "t1", dry_run="All"
    )
    assert server.get(TRIALS, "default", "t1") == made


def test_streaming_list_ends_its_initial_events_with_a_marked_bookmark(
    server: FakeApiServer, custom: kubernetes.client.CustomObjectsApi
) -> None:
    create(custom, trial("t1"))
    create(custom, trial("t2"))
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    path = "/apis/kubeflow.org/v1beta1/namespaces/default/trials?watch=true&timeoutSeconds=1"
    connection.request(
        "GET",
        path + "&sendInitialEvents=true&allowWatchBookmarks=true"
        "&resourceVersionMatch=NotOlderThan",
    )
    events = [json.loads(line) for line in connection.getresponse().read().splitlines()]
    kinds = [(e["type"], e["object"]["metadata"].get("name")) for e in events]
    assert kinds[:3] == [("ADDED", "t1"), ("ADDED", "t2"), ("BOOKMARK", None)]
    assert events[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    connection.request("GET", path + "&sendInitialEvents=true")
    refused = connection.getresponse()
    assert refused.status == 422
    refused.read()
    connection.close()
