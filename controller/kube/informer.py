"""An informer: a local, always-current copy of one resource's objects, and change events.

It lists the objects once, then watches from the list's ``resourceVersion``. After every event
(bookmarks included) it remembers the newest ``resourceVersion``, so when a watch ends (the
server's timeout) or breaks (connection lost, 5xx) it resumes from there without missing or
repeating a change; only when the server answers 410 Gone (that version has left its history)
does it list again, and then it reports the difference between its copy and the new list as
ADDED/MODIFIED/DELETED events. Errors are retried forever with capped, jittered back-off until
the stop event is set.

The store keeps each object as received; it replaces (never edits) an entry when a new version
arrives, so an object returned by :meth:`Informer.get` or :meth:`Informer.list` is a stable
snapshot. Treat it as read-only: copy it before changing it.
"""

from __future__ import annotations

import builtins
import collections
import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from katib.controller.kube.api import ApiError, Gone, KubeApi, RetryPolicy, WatchStream
from katib.controller.kube.resources import Resource

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
EventHandler = Callable[[str, dict[str, Any]], None]


def object_key(obj: Mapping[str, Any]) -> Key:
    """``(namespace, name)`` of an object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class Store:
    """Objects by ``(namespace, name)``, indexed by namespace and by label; thread-safe.
    ``list`` returns objects sorted by ``(namespace, name)``."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_namespace: dict[str, set[Key]] = collections.defaultdict(set)
        self._by_label: dict[tuple[str, str], set[Key]] = collections.defaultdict(set)
        self._lock = threading.Lock()

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((namespace or "", name))

    def list(
        self, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            candidates: list[set[Key]] = []
            if namespace is not None:
                candidates.append(self._by_namespace.get(namespace, set()))
            for pair in (labels or {}).items():
                candidates.append(self._by_label.get(pair, set()))
            if not candidates:
                keys: Iterable[Key] = self._objects
            else:
                candidates.sort(key=len)
                keys = candidates[0].intersection(*candidates[1:])
            return [self._objects[key] for key in sorted(keys)]

    def all_keys(self) -> builtins.list[Key]:
        with self._lock:
            return list(self._objects)

    def put(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Store ``obj``; the version it replaced, if any."""
        key = object_key(obj)
        with self._lock:
            old = self._objects.get(key)
            if old is not None:
                self._unindex(key, old)
            self._objects[key] = obj
            self._by_namespace[key[0]].add(key)
            for pair in _labels(obj).items():
                self._by_label[pair].add(key)
            return old

    def remove(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            old = self._objects.pop(key, None)
            if old is not None:
                self._unindex(key, old)
            return old

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def _unindex(self, key: Key, obj: dict[str, Any]) -> None:
        self._discard(self._by_namespace, key[0], key)
        for pair in _labels(obj).items():
            self._discard(self._by_label, pair, key)

    @staticmethod
    def _discard(index: dict[Any, set[Key]], entry: Any, key: Key) -> None:
        keys = index.get(entry)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[entry]


class Informer:
    """Keeps :attr:`store` equal to the cluster's ``res`` objects and reports changes.

    ``on_event(type, obj)`` is called from the informer's thread for ``ADDED``, ``MODIFIED``
    and ``DELETED`` (with the last known object), in the order the server sent them; an
    exception in it is logged and does not stop the informer. Run with ``run(stop)`` in a
    thread of its own.
    """

    def __init__(
        self,
        api: KubeApi,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        on_event: EventHandler | None = None,
        watch_timeout: int = 300,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        # No retries inside a request: the informer backs off itself, and stays stoppable.
        self._api = api.with_options(retry=RetryPolicy(deadline=0.0))
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.on_event = on_event
        self.watch_timeout = watch_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.store = Store()
        self.resource_version = ""
        self.lists = 0  # how many times it has listed (1 + relists after Gone)
        self.watches = 0  # how many watch requests it has opened
        self._rng = rng or random.Random()
        self._synced = threading.Event()
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()

    def has_synced(self) -> bool:
        """Whether the first list has been stored (readiness)."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until :meth:`has_synced` or ``timeout``; the final state."""
        return self._synced.wait(timeout)

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object (read-only), or ``None``."""
        return self.store.get(namespace, name)

    def list(
        self, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Stored objects (read-only) in ``namespace`` (all if ``None``) having every label."""
        return self.store.list(namespace, labels)

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop`` is set; closes the open watch promptly on stop."""
        closer = threading.Thread(
            target=self._close_on,
            args=(stop,),
            daemon=True,
            name=f"informer-{self.res.plural}-stop",
        )
        closer.start()
        failures = 0
        must_list = True
        while not stop.is_set():
            try:
                if must_list:
                    self._list()
                    must_list = False
                self._watch(stop)
                failures = 0
            except Gone:
                log.info(
                    "%s: resourceVersion %s expired; listing again",
                    self.res,
                    self.resource_version,
                )
                must_list = True
                failures += 1
                if failures > 1:  # expired again straight after a list: do not spin
                    stop.wait(self._delay(failures - 2))
            except ApiError as exc:
                delay = self._delay(failures)
                failures += 1
                log.warning("%s: %s; retrying in %.1fs", self.res, exc, delay)
                stop.wait(delay)
        self._close_stream()

    def _list(self) -> None:
        items, version = self._api.list(
            self.res, self.namespace, label_selector=self.label_selector
        )
        self.lists += 1
        fresh = {object_key(item): item for item in items}
        events: list[tuple[str, dict[str, Any]]] = []
        for key in self.store.all_keys():
            if key not in fresh:
                old = self.store.remove(key)
                if old is not None:
                    events.append(("DELETED", old))
        for item in items:
            old = self.store.put(item)
            if old is None:
                events.append(("ADDED", item))
            elif _rv(old) != _rv(item):
                events.append(("MODIFIED", item))
        self.resource_version = version
        self._synced.set()
        for kind, obj in events:
            self._emit(kind, obj)

    def _watch(self, stop: threading.Event) -> None:
        # A randomised timeout, as client-go does, so many informers do not reconnect in step.
        timeout = int(self.watch_timeout * (1 + self._rng.random()))
        stream = self._api.watch(
            self.res,
            self.namespace,
            resource_version=self.resource_version,
            timeout_seconds=timeout,
            label_selector=self.label_selector,
        )
        with self._stream_lock:
            self._stream = stream
        if stop.is_set():
            stream.close()
        self.watches += 1
        try:
            for kind, obj in stream:
                self._apply(kind, obj)
        finally:
            stream.close()
            with self._stream_lock:
                self._stream = None

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        version = _rv(obj)
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        if kind == "DELETED":
            self.store.remove(object_key(obj))
        else:
            self.store.put(obj)
        self._emit(kind, obj)

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(kind, obj)
        except Exception:
            log.exception("%s: event handler failed on %s %s", self.res, kind, object_key(obj))

    def _delay(self, failures: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** min(failures, 30))
        return self._rng.uniform(ceiling / 2, ceiling)

    def _close_on(self, stop: threading.Event) -> None:
        stop.wait()
        self._close_stream()

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()


def run_informers(informers: Iterable[Informer], stop: threading.Event) -> list[threading.Thread]:
    """Start each informer's ``run(stop)`` in a daemon thread; the threads."""
    threads = []
    for informer in informers:
        thread = threading.Thread(
            target=informer.run, args=(stop,), daemon=True, name=f"informer-{informer.res.plural}"
        )
        thread.start()
        threads.append(thread)
    return threads
