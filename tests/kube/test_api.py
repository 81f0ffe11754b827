"""KubeApi against a scripted loopback server: paths, errors, retries, conflicts, watch, logs."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from katib.controller.kube.api import (
    AlreadyExists,
    ApiError,
    Conflict,
    Gone,
    Invalid,
    KubeApi,
    NotFound,
    RetryPolicy,
    Unreachable,
)
from katib.controller.kube.resources import (
    EXPERIMENTS,
    JOBS,
    NAMESPACES,
    PODS,
    Resource,
    resource_for,
)
from tests.kube.loopback import LoopbackServer, Reply, Request, event_lines, replies, status_body

KF = "kubeflow.org"
FAST = RetryPolicy(base=0.001, cap=0.01, deadline=5.0, rng=random.Random(0))


def experiment(name: str = "e1", rv: str = "5") -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
    }


def serve(answer: Any) -> Iterator[tuple[LoopbackServer, KubeApi]]:
    with LoopbackServer(answer) as server:
        api = KubeApi(server.api_client(), retry=FAST)
        yield server, api
        api.close()


# -- resources ---------------------------------------------------------------------------------


def test_resource_api_version_and_paths() -> None:
    assert EXPERIMENTS.api_version == "kubeflow.org/v1beta1"
    assert JOBS.api_version == "batch/v1"
    assert PODS.api_version == "v1"
    assert KubeApi.path(PODS, "ns", "p", "log") == "/api/v1/namespaces/ns/pods/p/log"
    assert KubeApi.path(EXPERIMENTS, None) == "/apis/kubeflow.org/v1beta1/experiments"
    assert (
        KubeApi.path(EXPERIMENTS, "ns", "e", "status")
        == "/apis/kubeflow.org/v1beta1/namespaces/ns/experiments/e/status"
    )
    assert KubeApi.path(NAMESPACES, "ignored", "kubeflow") == "/api/v1/namespaces/kubeflow"
    with pytest.raises(ValueError, match="name"):
        KubeApi.path(PODS, "ns", "..")


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("batch/v1", "Job", JOBS),
        (
            "kubeflow.org/v1",
            "PyTorchJob",
            Resource("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"),
        ),
        ("kubeflow.org/v1", "TFJob", Resource("kubeflow.org", "v1", "tfjobs", "TFJob")),
        (
            "kubeflow.org/v1",
            "XGBoostJob",
            Resource("kubeflow.org", "v1", "xgboostjobs", "XGBoostJob"),
        ),
        (
            "kubeflow.org/v2beta1",
            "MPIJob",
            Resource("kubeflow.org", "v2beta1", "mpijobs", "MPIJob"),
        ),
        (
            "trainer.kubeflow.org/v1alpha1",
            "TrainJob",
            Resource("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"),
        ),
        ("v1", "Namespace", NAMESPACES),
        ("example.com/v2", "Widget", Resource("example.com", "v2", "widgets", "Widget")),
        (
            "networking.k8s.io/v1",
            "Ingress",
            Resource("networking.k8s.io", "v1", "ingresses", "Ingress"),
        ),
    ],
)
def test_resource_for(api_version: str, kind: str, expected: Resource) -> None:
    assert resource_for(api_version, kind) == expected


@pytest.mark.parametrize(
    ("api_version", "kind", "field"),
    [
        ("", "Job", "apiVersion"),
        ("a/b/c", "Job", "apiVersion"),
        ("/v1", "Job", "apiVersion"),
        ("batch/v1", "", "kind"),
    ],
)
def test_resource_for_rejects_malformed(api_version: str, kind: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        resource_for(api_version, kind)


# -- verbs and errors --------------------------------------------------------------------------


def test_get_list_create_send_the_right_requests() -> None:
    def answer(req: Request) -> Reply:
        if req.method == "GET" and req.path.endswith("/experiments/e1"):
            return Reply(body=experiment())
        if req.method == "GET" and req.path.endswith("/experiments/missing"):
            return Reply(404, status_body(404, "NotFound"))
        if req.method == "GET":
            return Reply(
                body={
                    "kind": "ExperimentList",
                    "metadata": {"resourceVersion": "42"},
                    "items": [{"metadata": {"name": "a"}}],
                }
            )
        return Reply(201, {**req.body, "metadata": {**req.body["metadata"], "uid": "u"}})

    for server, api in serve(answer):
        assert api.get(EXPERIMENTS, "ns", "e1") == experiment()
        assert api.get(EXPERIMENTS, "ns", "missing") is None
        items, rv = api.list(EXPERIMENTS, label_selector="a=b,c in (x,y)")
        assert rv == "42"
        assert items == [
            {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "a"}}
        ]
        created = api.create(EXPERIMENTS, "ns", experiment("new"))
        assert created["metadata"]["uid"] == "u"
        listing, post = server.requests[2], server.requests[3]
        assert listing.path == "/apis/kubeflow.org/v1beta1/experiments"
        assert listing.query == {"labelSelector": "a=b,c in (x,y)"}
        assert post.method == "POST"
        assert post.path == "/apis/kubeflow.org/v1beta1/namespaces/ns/experiments"
        assert post.headers["content-type"] == "application/json"
        assert post.body == experiment("new")
        assert api.calls == {
            ("get", "experiments"): 2,
            ("list", "experiments"): 1,
            ("create", "experiments"): 1,
        }


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (410, "Expired", Gone),
        (422, "Invalid", Invalid),
        (403, "Forbidden", ApiError),
        (400, "BadRequest", ApiError),
    ],
)
def test_error_statuses_map_to_the_hierarchy_and_are_not_retried(
    status: int, reason: str, error: type[ApiError]
) -> None:
    for server, api in serve(
        lambda req: Reply(status, status_body(status, reason, "spec.x: bad"))
    ):
        with pytest.raises(error) as caught:
            api.replace(EXPERIMENTS, "ns", "e1", experiment())
        assert type(caught.value) is error
        assert (caught.value.status, caught.value.reason) == (status, reason)
        assert caught.value.message == "spec.x: bad"
        assert len(server.requests) == 1


def test_namespaced_writes_need_a_namespace() -> None:
    for _server, api in serve(lambda req: Reply(body={})):
        with pytest.raises(ValueError, match="namespace"):
            api.create(EXPERIMENTS, None, experiment())


def test_5xx_and_429_are_retried_then_succeed() -> None:
    sequence = replies(
        Reply(500, status_body(500, "InternalError")),
        Reply(429, status_body(429, "TooManyRequests")),
        Reply(503, b"not json"),
        Reply(body=experiment()),
    )
    for server, api in serve(lambda req: next(sequence)):
        assert api.get(EXPERIMENTS, "ns", "e1") == experiment()
        assert len(server.requests) == 4
        assert api.calls[("get", "experiments")] == 4


def test_retry_after_is_honoured() -> None:
    sequence = replies(
        Reply(429, status_body(429, "TooManyRequests"), {"Retry-After": "0.4"}),
        Reply(body=experiment()),
    )
    for _server, api in serve(lambda req: next(sequence)):
        started = time.monotonic()
        api.get(EXPERIMENTS, "ns", "e1")
        assert time.monotonic() - started >= 0.4


def test_retries_stop_at_the_deadline() -> None:
    policy = RetryPolicy(base=0.01, cap=0.05, deadline=0.3)
    with LoopbackServer(lambda req: Reply(503, status_body(503, "ServiceUnavailable"))) as server:
        api = KubeApi(server.api_client(), retry=policy)
        started = time.monotonic()
        with pytest.raises(ApiError) as caught:
            api.get(EXPERIMENTS, "ns", "e1")
        assert caught.value.status == 503
        assert time.monotonic() - started < 5
        assert len(server.requests) >= 2


def test_connection_refused_is_unreachable_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import kubernetes.client

    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    api = KubeApi(
        kubernetes.client.ApiClient(configuration),
        retry=RetryPolicy(base=0.01, cap=0.02, deadline=0.2),
    )
    with pytest.raises(Unreachable) as caught:
        api.list(EXPERIMENTS)
    assert caught.value.status == 0 and caught.value.retryable
    assert api.calls[("list", "experiments")] >= 2


def test_full_jitter_bounds() -> None:
    policy = RetryPolicy(base=0.1, cap=1.0, rng=random.Random(1))
    for attempt in range(8):
        ceiling = min(1.0, 0.1 * 2**attempt)
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # full jitter spans the range (P(fail) ~ 0.8**200)
    assert all(policy.delay(0, retry_after=2.0) >= 2.0 for _ in range(50))
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(deadline=-1)


def test_patch_and_status_writes() -> None:
    for server, api in serve(lambda req: Reply(body=experiment())):
        api.patch(EXPERIMENTS, "ns", "e1", {"metadata": {"labels": {"a": "b"}}})
        api.patch(EXPERIMENTS, "ns", "e1", {"status": {"x": 1}}, status=True)
        api.replace_status(EXPERIMENTS, "ns", "e1", experiment())
        first, second, third = server.requests
        assert first.method == "PATCH"
        assert first.headers["content-type"] == "application/merge-patch+json"
        assert first.path.endswith("/experiments/e1")
        assert second.path.endswith("/experiments/e1/status")
        assert (third.method, third.path) == (
            "PUT",
            "/apis/kubeflow.org/v1beta1/namespaces/ns/experiments/e1/status",
        )
        assert api.calls == {
            ("patch", "experiments"): 1,
            ("patch", "experiments/status"): 1,
            ("update", "experiments/status"): 1,
        }


def test_delete_sends_propagation_and_reports_gone() -> None:
    sequence = replies(
        Reply(body={"kind": "Status", "status": "Success"}),
        Reply(404, status_body(404, "NotFound")),
    )
    for server, api in serve(lambda req: next(sequence)):
        assert api.delete(JOBS, "ns", "j", propagation="Foreground") is True
        assert api.delete(JOBS, "ns", "j") is False
        assert server.requests[0].body["propagationPolicy"] == "Foreground"
        assert server.requests[0].path == "/apis/batch/v1/namespaces/ns/jobs/j"
        with pytest.raises(ValueError, match="propagation"):
            api.delete(JOBS, "ns", "j", propagation="Now")


def test_update_status_retries_conflicts_with_fresh_reads() -> None:
    version = iter(range(1, 100))
    puts: list[dict[str, Any]] = []

    def answer(req: Request) -> Reply:
        if req.method == "GET":
            return Reply(body=experiment(rv=str(next(version))))
        puts.append(req.body)
        if len(puts) < 3:
            return Reply(409, status_body(409, "Conflict", "the object has been modified"))
        return Reply(body=req.body)

    seen: list[str] = []

    def mutate(obj: dict[str, Any]) -> bool:
        seen.append(obj["metadata"]["resourceVersion"])
        obj["status"] = {"trials": 3}
        return True

    for _server, api in serve(answer):
        written = api.update_status(EXPERIMENTS, "ns", "e1", mutate)
        assert written is not None and written["status"] == {"trials": 3}
        assert seen == ["1", "2", "3"]  # every attempt mutates a fresh read
        assert [p["metadata"]["resourceVersion"] for p in puts] == ["1", "2", "3"]
        assert api.calls[("update", "experiments/status")] == 3


def test_update_status_gives_up_after_bounded_conflicts_and_handles_gone() -> None:
    def answer(req: Request) -> Reply:
        if req.method == "GET" and req.path.endswith("/gone"):
            return Reply(404, status_body(404, "NotFound"))
        if req.method == "GET":
            return Reply(body=experiment())
        return Reply(409, status_body(409, "Conflict"))

    for server, api in serve(answer):
        with pytest.raises(Conflict):
            api.update_status(EXPERIMENTS, "ns", "e1", lambda obj: True, attempts=3)
        assert sum(r.method == "PUT" for r in server.requests) == 3
        assert api.update_status(EXPERIMENTS, "ns", "gone", lambda obj: True) is None
        before = len(server.requests)
        assert api.update_status(EXPERIMENTS, "ns", "e1", lambda obj: False) == experiment()
        assert [r.method for r in server.requests[before:]] == ["GET"]


# -- watch and logs ----------------------------------------------------------------------------


def test_watch_parses_events_split_across_chunks() -> None:
    lines = event_lines(
        ("ADDED", experiment("a", "6")),
        ("MODIFIED", experiment("a", "7")),
        ("BOOKMARK", {"metadata": {"resourceVersion": "9"}}),
        ("DELETED", experiment("a", "10")),
    )
    joined = b"".join(lines)
    pieces = [joined[i : i + 7] for i in range(0, len(joined), 7)]  # lines broken anywhere
    for server, api in serve(lambda req: Reply(lines=pieces)):
        events = list(
            api.watch(
                EXPERIMENTS, "ns", resource_version="5", timeout_seconds=30, label_selector="x=y"
            )
        )
        assert [(t, o["metadata"]["resourceVersion"]) for t, o in events] == [
            ("ADDED", "6"),
            ("MODIFIED", "7"),
            ("BOOKMARK", "9"),
            ("DELETED", "10"),
        ]
        assert server.requests[0].query == {
            "watch": "true",
            "resourceVersion": "5",
            "timeoutSeconds": "30",
            "allowWatchBookmarks": "true",
            "labelSelector": "x=y",
        }
        assert server.requests[0].path == "/apis/kubeflow.org/v1beta1/namespaces/ns/experiments"
        assert api.calls == {("watch", "experiments"): 1}


def test_watch_error_event_410_raises_gone_after_earlier_events() -> None:
    lines = event_lines(
        ("ADDED", experiment("a", "6")),
        ("ERROR", status_body(410, "Expired", "too old resource version")),
    )
    for _server, api in serve(lambda req: Reply(lines=lines)):
        stream = api.watch(EXPERIMENTS, resource_version="1")
        assert next(stream)[0] == "ADDED"
        with pytest.raises(Gone, match="too old"):
            next(stream)


def test_watch_http_410_and_other_error_events() -> None:
    for _server, api in serve(lambda req: Reply(410, status_body(410, "Gone"))):
        with pytest.raises(Gone):
            list(api.watch(EXPERIMENTS, resource_version="1"))
    lines = event_lines(("ERROR", status_body(500, "InternalError", "etcd")))
    for _server, api in serve(lambda req: Reply(lines=lines)):
        with pytest.raises(ApiError) as caught:
            list(api.watch(EXPERIMENTS, resource_version="1"))
        assert caught.value.status == 500
    for _server, api in serve(lambda req: Reply(lines=[b'{"type": "SURPRISE", "object": {}}\n'])):
        with pytest.raises(ApiError, match="SURPRISE"):
            list(api.watch(EXPERIMENTS, resource_version="1"))
    for _server, api in serve(lambda req: Reply(lines=[b"{not json\n"])):
        with pytest.raises(ApiError, match="not JSON"):
            list(api.watch(EXPERIMENTS, resource_version="1"))


def test_watch_streams_before_the_response_ends() -> None:
    import threading

    release = threading.Event()

    def gate(index: int) -> None:
        if index == 1:
            assert release.wait(10)

    lines = event_lines(("ADDED", experiment("a", "6")), ("ADDED", experiment("b", "7")))
    for _server, api in serve(lambda req: Reply(lines=lines, line_gate=gate)):
        stream = api.watch(EXPERIMENTS, resource_version="5")
        assert next(stream)[1]["metadata"]["name"] == "a"  # arrives while the server waits
        release.set()
        assert next(stream)[1]["metadata"]["name"] == "b"
        stream.close()


def test_pod_log_streams_chunks() -> None:
    for server, api in serve(lambda req: Reply(lines=[b"epoch 1\n", b"loss=0.5\n"])):
        data = b"".join(api.pod_log("ns", "p", container="main", follow=True))
        assert data == b"epoch 1\nloss=0.5\n"
        assert server.requests[0].path == "/api/v1/namespaces/ns/pods/p/log"
        assert server.requests[0].query == {"container": "main", "follow": "true"}
        assert api.calls == {("get", "pods/log"): 1}


def test_watch_close_from_another_thread_unblocks_the_reader() -> None:
    import threading

    hold = threading.Event()
    lines = event_lines(("ADDED", experiment("a", "6")), ("ADDED", experiment("b", "7")))
    for _server, api in serve(lambda req: Reply(lines=lines, line_gate=lambda i: hold.wait(10))):
        stream = api.watch(EXPERIMENTS, resource_version="5")
        seen: list[Any] = []
        reader = threading.Thread(target=seen.extend, args=(stream,))
        reader.start()
        time.sleep(0.1)  # let the reader block (the test holds either way)
        stream.close()
        reader.join(5)
        assert not reader.is_alive()
        assert seen == []
        hold.set()


def test_with_options_shares_the_call_counter() -> None:
    for _server, api in serve(lambda req: Reply(body=experiment())):
        quick = api.with_options(retry=RetryPolicy(deadline=1.0), request_timeout=2.0)
        quick.get(EXPERIMENTS, "ns", "e1")
        api.get(EXPERIMENTS, "ns", "e1")
        assert api.calls[("get", "experiments")] == 2
        assert quick.request_timeout == 2.0 and api.request_timeout == 30.0


def test_from_config_picks_the_context_and_reports_bad_ones(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from katib.controller.kube.api import KubeConfigError

    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: a, cluster: {server: 'http://127.0.0.1:1111'}},\n"
        "           {name: b, cluster: {server: 'http://127.0.0.1:2222'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: ca, context: {cluster: a, user: u}},\n"
        "           {name: cb, context: {cluster: b, user: u}}]\n"
        "current-context: ca\n"
    )
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # a kubeconfig given wins
    assert KubeApi.from_config(str(config)).api_client.configuration.host.endswith(":1111")
    chosen = KubeApi.from_config(str(config), "cb")
    assert chosen.api_client.configuration.host.endswith(":2222")
    with pytest.raises(KubeConfigError, match="nope"):
        KubeApi.from_config(str(config), "nope")
    with pytest.raises(KubeConfigError, match="missing"):
        KubeApi.from_config(str(tmp_path / "missing"))
