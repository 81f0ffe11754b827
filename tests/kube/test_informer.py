"""Informer: list then watch, resume from the last resourceVersion (bookmarks included) after a
stream ends, breaks or fails, relist on 410 Gone with the difference reported as events."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from katib.controller.kube.api import KubeApi, RetryPolicy
from katib.controller.kube.informer import Informer, Store
from katib.controller.kube.resources import CONFIGMAPS, TRIALS
from tests.kube.loopback import LoopbackServer, Reply, Request, event_lines, status_body


def trial(name: str, rv: int, namespace: str = "ns", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "resourceVersion": str(rv),
            "labels": labels,
        },
    }


def listing(rv: int, *items: dict[str, Any]) -> Reply:
    return Reply(
        body={"kind": "TrialList", "metadata": {"resourceVersion": str(rv)}, "items": list(items)}
    )


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Script:
    """Answers requests in order, checking each is the expected list or watch."""

    def __init__(self, *steps: tuple[str, Reply]) -> None:
        self.steps = list(steps)
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        kind = "watch" if request.query.get("watch") == "true" else "list"
        with self.lock:
            assert self.steps, f"unexpected {kind} {request.query}"
            expected, reply = self.steps.pop(0)
        assert kind == expected, f"expected a {expected}, got a {kind}"
        return reply


def test_resume_from_last_rv_through_drops_errors_and_gone() -> None:
    release = threading.Event()
    script = Script(
        ("list", listing(12, trial("a", 10, exp="x"), trial("b", 11, exp="x"))),
        # a clean end of stream (the server's timeout), after an event and a bookmark
        (
            "watch",
            Reply(
                lines=event_lines(
                    ("ADDED", trial("c", 13, exp="y")),
                    ("BOOKMARK", {"metadata": {"resourceVersion": "15"}}),
                )
            ),
        ),
        ("watch", Reply(500, status_body(500, "InternalError"))),  # a failed reconnect
        # events, then the connection breaks mid-stream
        (
            "watch",
            Reply(
                lines=[
                    *event_lines(
                        ("MODIFIED", trial("a", 16, exp="x")), ("DELETED", trial("b", 17, exp="x"))
                    ),
                    b'{"type": "ADDED", "obj',
                ],
                abort=True,
            ),
        ),
        ("watch", Reply(lines=event_lines(("ERROR", status_body(410, "Expired", "too old"))))),
        # the relist: c changed and d appeared while we were not watching; a is unchanged
        (
            "list",
            listing(22, trial("a", 16, exp="x"), trial("c", 20, exp="z"), trial("d", 21, exp="x")),
        ),
        (
            "watch",
            Reply(
                lines=[*event_lines(("ADDED", trial("e", 23, exp="x"))), b"\n"],
                line_gate=lambda i: release.wait(30) if i > 0 else None,
            ),
        ),
    )
    events: list[tuple[str, str, str]] = []
    with LoopbackServer(script) as server:
        api = KubeApi(server.api_client(), retry=RetryPolicy(base=0.001, cap=0.01, deadline=0))
        informer = Informer(
            api,
            TRIALS,
            on_event=lambda t, o: events.append(
                (t, o["metadata"]["name"], o["metadata"]["resourceVersion"])
            ),
            backoff_base=0.01,
            backoff_cap=0.05,
            rng=random.Random(0),
        )
        stop = threading.Event()
        thread = threading.Thread(target=informer.run, args=(stop,))
        thread.start()
        try:
            wait_for(lambda: informer.get("ns", "e") is not None)
            assert informer.has_synced()
        finally:
            stop.set()
            thread.join(10)
            release.set()
        assert not thread.is_alive(), "stop must end the open watch promptly"
        watches = [r.query for r in server.requests if r.query.get("watch")]
        lists = [r for r in server.requests if not r.query.get("watch")]
    assert [w["resourceVersion"] for w in watches] == ["12", "15", "15", "17", "22"]
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)
    assert len(lists) == 2 and informer.lists == 2
    assert events == [
        ("ADDED", "a", "10"),
        ("ADDED", "b", "11"),
        ("ADDED", "c", "13"),
        ("MODIFIED", "a", "16"),
        ("DELETED", "b", "17"),
        ("MODIFIED", "c", "20"),
        ("ADDED", "d", "21"),  # the relist's difference
        ("ADDED", "e", "23"),
    ]
    assert sorted(o["metadata"]["name"] for o in informer.list()) == ["a", "c", "d", "e"]
    assert sorted(o["metadata"]["name"] for o in informer.list("ns", {"exp": "x"})) == [
        "a",
        "d",
        "e",
    ]
    assert [o["metadata"]["name"] for o in informer.list(labels={"exp": "z"})] == ["c"]
    assert informer.resource_version == "23"


def test_relist_reports_objects_deleted_while_not_watching() -> None:
    release = threading.Event()
    script = Script(
        ("list", listing(5, trial("a", 1), trial("b", 2))),
        ("watch", Reply(410, status_body(410, "Gone"))),
        ("list", listing(9, trial("b", 2))),
        ("watch", Reply(lines=[b"\n"], line_gate=lambda i: release.wait(30))),
    )
    events: list[tuple[str, str]] = []
    with LoopbackServer(script) as server:
        api = KubeApi(server.api_client(), retry=RetryPolicy(deadline=0))
        informer = Informer(
            api,
            TRIALS,
            "ns",
            on_event=lambda t, o: events.append((t, o["metadata"]["name"])),
            backoff_base=0.01,
            backoff_cap=0.05,
        )
        stop = threading.Event()
        thread = threading.Thread(target=informer.run, args=(stop,))
        thread.start()
        try:
            wait_for(lambda: informer.lists == 2 and informer.watches == 2)
        finally:
            stop.set()
            thread.join(10)
            release.set()
        assert not thread.is_alive()
        assert server.requests[0].path == "/apis/kubeflow.org/v1beta1/namespaces/ns/trials"
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert informer.get("ns", "a") is None and informer.get("ns", "b") is not None


def test_a_failing_handler_does_not_stop_the_informer() -> None:
    release = threading.Event()
    script = Script(
        ("list", listing(5, trial("a", 1))),
        (
            "watch",
            Reply(
                lines=[*event_lines(("ADDED", trial("b", 6)), ("ADDED", trial("c", 7))), b"\n"],
                line_gate=lambda i: release.wait(30) if i > 1 else None,
            ),
        ),
    )
    seen: list[str] = []

    def handler(kind: str, obj: dict[str, Any]) -> None:
        seen.append(obj["metadata"]["name"])
        if obj["metadata"]["name"] == "b":
            raise RuntimeError("boom")

    with LoopbackServer(script) as server:
        informer = Informer(KubeApi(server.api_client()), TRIALS, on_event=handler)
        stop = threading.Event()
        thread = threading.Thread(target=informer.run, args=(stop,))
        thread.start()
        try:
            wait_for(lambda: informer.get("ns", "c") is not None)
        finally:
            stop.set()
            thread.join(10)
            release.set()
    assert seen == ["a", "b", "c"]


def test_store_indexes_follow_label_changes() -> None:
    store = Store()
    store.put(trial("a", 1, exp="x", role="r"))
    store.put(trial("b", 2, exp="x"))
    store.put(trial("c", 3, namespace="other", exp="x"))
    assert [o["metadata"]["name"] for o in store.list("ns", {"exp": "x"})] == ["a", "b"]
    assert [o["metadata"]["name"] for o in store.list(None, {"exp": "x", "role": "r"})] == ["a"]
    store.put(trial("a", 4, exp="y"))  # relabelled
    assert [o["metadata"]["name"] for o in store.list("ns", {"exp": "x"})] == ["b"]
    assert [o["metadata"]["name"] for o in store.list(labels={"exp": "y"})] == ["a"]
    assert store.list(labels={"role": "r"}) == []
    store.remove(("ns", "b"))
    assert store.list("ns", {"exp": "x"}) == []
    assert len(store) == 2
    assert store.list("nowhere") == []


# -- against the faithful fake API server ------------------------------------------------------


def configmap(name: str, value: int, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "data": {"value": str(value)},
    }


def test_informer_tracks_the_fake_through_churn_drops_and_expiry() -> None:
    """Random creates/updates/deletes with watch drops (clean and abrupt), server-side watch
    timeouts and history compaction: the store ends equal to the server, replaying the events
    reproduces it, and only compaction causes relists."""
    from katib.controller.kube.fake.server import FakeApiServer

    rng = random.Random(7)
    replay: dict[str, str] = {}
    lock = threading.Lock()

    def on_event(kind: str, obj: dict[str, Any]) -> None:
        with lock:
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                replay.pop(name, None)
            else:
                replay[name] = obj["data"]["value"]

    with FakeApiServer(bookmark_interval=0.05) as server:
        api = KubeApi(server.api_client(), retry=RetryPolicy(base=0.01, cap=0.05, deadline=2))
        informer = Informer(
            api,
            CONFIGMAPS,
            "default",
            on_event=on_event,
            watch_timeout=1,
            backoff_base=0.01,
            backoff_cap=0.1,
            rng=random.Random(1),
        )
        stop = threading.Event()
        thread = threading.Thread(target=informer.run, args=(stop,))
        thread.start()
        expiries = 0
        try:
            assert informer.wait_synced(20)
            names = [f"cm{i}" for i in range(12)]
            for step in range(240):
                name = rng.choice(names)
                current = api.get(CONFIGMAPS, "default", name)
                if current is None:
                    api.create(CONFIGMAPS, "default", configmap(name, step, group=str(step % 3)))
                elif rng.random() < 0.3:
                    api.delete(CONFIGMAPS, "default", name)
                else:
                    current["data"] = {"value": str(step)}
                    api.replace(CONFIGMAPS, "default", name, current)
                if step % 40 == 13:
                    server.faults.drop_watches()
                elif step % 40 == 27:
                    server.faults.drop_watches(abrupt=True)
                elif step % 80 == 61:
                    server.faults.expire()
                    server.faults.drop_watches()  # resume from a compacted version: 410
                    expiries += 1

            def truth() -> dict[str, str]:
                return {
                    o["metadata"]["name"]: o["data"]["value"]
                    for o in server.objects(CONFIGMAPS, "default")
                }

            def store() -> dict[str, str]:
                return {o["metadata"]["name"]: o["data"]["value"] for o in informer.list()}

            wait_for(lambda: store() == truth())
            with lock:
                assert replay == truth()
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()
    assert informer.lists <= 1 + expiries  # relists only after compaction, never after drops
    assert informer.watches > 6  # it resumed after every drop


def test_informer_relists_on_the_fake_when_its_version_was_compacted_away() -> None:
    from katib.controller.kube.fake.server import FakeApiServer

    events: list[tuple[str, str]] = []
    with FakeApiServer(bookmark_interval=0.05) as server:
        api = KubeApi(server.api_client(), retry=RetryPolicy(deadline=0))
        api.create(CONFIGMAPS, "default", configmap("a", 1))
        api.create(CONFIGMAPS, "default", configmap("b", 1))
        informer = Informer(
            api,
            CONFIGMAPS,
            "default",
            backoff_base=0.05,
            backoff_cap=0.1,
            on_event=lambda t, o: events.append((t, o["metadata"]["name"])),
        )
        stop = threading.Event()
        thread = threading.Thread(target=informer.run, args=(stop,))
        thread.start()
        try:
            assert informer.wait_synced(20)
            # Keep the informer from reconnecting while the cluster moves on and compacts.
            server.faults.fail(verb="watch", plural="configmaps", status=503, times=10**6)
            server.faults.drop_watches(abrupt=True)
            wait_for(lambda: server.faults.fired > 0)
            api.delete(CONFIGMAPS, "default", "a")
            b = api.get(CONFIGMAPS, "default", "b")
            assert b is not None
            b["data"] = {"value": "2"}
            api.replace(CONFIGMAPS, "default", "b", b)
            api.create(CONFIGMAPS, "default", configmap("c", 1))
            server.faults.expire()
            server.faults.clear()
            wait_for(lambda: informer.get("default", "c") is not None)
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()
    assert informer.lists == 2
    assert events == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
        ("MODIFIED", "b"),
        ("ADDED", "c"),
    ]


def test_informer_with_a_label_selector_on_the_fake() -> None:
    from katib.controller.kube.fake.server import FakeApiServer

    with FakeApiServer(bookmark_interval=0.05) as server:
        api = KubeApi(server.api_client())
        api.create(CONFIGMAPS, "default", configmap("early", 1, app="katib"))
        api.create(CONFIGMAPS, "default", configmap("other", 1, app="else"))
        informer = Informer(api, CONFIGMAPS, label_selector="app=katib")
        stop = threading.Event()
        thread = threading.Thread(target=informer.run, args=(stop,))
        thread.start()
        try:
            assert informer.wait_synced(20)
            api.create(CONFIGMAPS, "default", configmap("late", 2, app="katib"))
            api.create(CONFIGMAPS, "default", configmap("late-other", 2, app="else"))
            wait_for(lambda: informer.get("default", "late") is not None)
            api.delete(CONFIGMAPS, "default", "early")
            wait_for(lambda: informer.get("default", "early") is None)
            assert sorted(o["metadata"]["name"] for o in informer.list()) == ["late"]
            assert informer.list("default", {"app": "katib"})[0]["metadata"]["name"] == "late"
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()


def test_an_outage_is_retried_with_back_off_and_stop_is_prompt() -> None:
    attempts: list[float] = []

    def answer(request: Request) -> Reply:
        attempts.append(time.monotonic())
        return Reply(503, status_body(503, "ServiceUnavailable"))

    with LoopbackServer(answer) as server:
        informer = Informer(
            KubeApi(server.api_client()),
            TRIALS,
            backoff_base=0.05,
            backoff_cap=0.2,
            rng=random.Random(3),
        )
        stop = threading.Event()
        thread = threading.Thread(target=informer.run, args=(stop,))
        thread.start()
        wait_for(lambda: len(attempts) >= 5)
        stopped = time.monotonic()
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        assert time.monotonic() - stopped < 5  # not held by the API layer's own retries
    assert not informer.has_synced()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.02 for gap in gaps[:4])  # the informer waits between attempts
