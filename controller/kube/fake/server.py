"""A real HTTP/1.1 Kubernetes API server on loopback, backed by the in-memory :class:`Store`.

The official ``kubernetes`` client talks to it unchanged (``server.api_client()``). Paths are
Kubernetes': ``/api/v1/...`` for the core group and ``/apis/<group>/<version>/...`` otherwise,
namespaced (``/namespaces/<ns>/<plural>[/<name>[/status|/log]]``) or not. Watches
(``?watch=true``) and followed pod logs stream with chunked transfer encoding, each event
flushed at once (Nagle is off). Errors are Kubernetes ``Status`` JSON.

Patches are applied by :mod:`~katib.controller.kube.fake.patches`; server-side apply is
answered 415. Pod logs come from :class:`~katib.controller.kube.fake.logs.PodLogs`, which the
simulated kubelet fills.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes

from katib.controller.kube.fake.faults import FaultPlan, reason_for
from katib.controller.kube.fake.logs import PodLogs
from katib.controller.kube.fake.patches import json_patch, merge_patch
from katib.controller.kube.fake.selectors import SelectorError, field_selector, label_selector
from katib.controller.kube.fake.store import Event, Kind, StatusError, Store, clone
from katib.controller.kube.resources import Resource

log = logging.getLogger(__name__)

_BUILTIN_GROUPS = frozenset({"", "batch", "coordination.k8s.io", "apps", "apiextensions.k8s.io"})
CRDS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
)
_BUILTINS = (
    (Resource("", "v1", "namespaces", "Namespace", namespaced=False), True),
    (Resource("", "v1", "pods", "Pod"), True),
    (Resource("", "v1", "events", "Event"), False),
    (Resource("", "v1", "configmaps", "ConfigMap"), False),
    (Resource("", "v1", "secrets", "Secret"), False),
    (Resource("", "v1", "services", "Service"), True),
    (Resource("coordination.k8s.io", "v1", "leases", "Lease"), False),
    (Resource("batch", "v1", "jobs", "Job"), True),
    (CRDS, True),
)
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FakeApiServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal (a closed watch, a stopped test): log it quietly."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class FakeApiServer:
    """A Kubernetes API server on 127.0.0.1 for tests and simulations.

    Example::

        with FakeApiServer() as server:
            server.register_crds(yaml.safe_load_all(open("manifests/base/crds.yaml")))
            api = kubernetes.client.CustomObjectsApi(server.api_client())
            api.create_namespaced_custom_object("kubeflow.org", "v1beta1", "default",
                                                "experiments", experiment)
    """

    def __init__(
        self,
        *,
        watch_window: int = 10_000,
        bookmark_interval: float = 1.0,
        watch_timeout: float = 1800.0,
        namespaces: Iterable[str] = ("default", "kube-system"),
    ) -> None:
        self.store = Store(watch_window=watch_window)
        self.logs = PodLogs()
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.requests: list[tuple[str, str, int]] = []
        #: Seconds spent serving requests other than watches and followed logs (the fake's own
        #: cost, so a benchmark can tell it from its client's).
        self.busy_seconds = 0.0
        self._busy_lock = threading.Lock()
        self.faults = FaultPlan(on_drop=self._drop_watches, on_expire=self.store.compact)
        self.url = ""
        self.stopping = False
        self.drops = 0  # bumped by drop_watches; open watches compare it
        self.abrupt = False
        self.open_watches = 0  # watch streams being served now
        self.open_streams = 0  # followed pod logs being served now
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        for resource, status in _BUILTINS:
            self.store.register(Kind(resource, status_subresource=status))
        self.store.on_created.append(self._on_created)
        for namespace in namespaces:
            self.store.create(
                self.store.kind_of(_BUILTINS[0][0]), "", {"metadata": {"name": namespace}}
            )

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> str:
        """Listen on a free loopback port; returns the URL."""
        self._http = _HttpServer(("127.0.0.1", 0), _Handler)
        self._http.owner = self
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-apiserver",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving: open watches and log follows end, the port closes."""
        self.stopping = True
        with self.store.changed:
            self.store.changed.notify_all()
        with self.logs.changed:
            self.logs.changed.notify_all()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> FakeApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api_client(self) -> kubernetes.client.ApiClient:
        """An official client configured for this server (no auth, no TLS)."""
        config = kubernetes.client.Configuration()
        config.host = self.url
        return kubernetes.client.ApiClient(config)

    # ----------------------------------------------------------------- resources

    def register(
        self,
        res: Resource,
        *,
        schema: dict[str, Any] | None = None,
        status_subresource: bool = True,
    ) -> None:
        """Serve ``res`` (a custom resource unless its group is a built-in one)."""
        self.store.register(
            Kind(res, schema, status_subresource, crd=res.group not in _BUILTIN_GROUPS)
        )

    def register_crds(self, docs: Iterable[dict[str, Any] | None]) -> None:
        """Serve the kinds of ``CustomResourceDefinition`` documents (other documents are
        skipped): served versions, the storage version's schema, the status subresource."""
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                self.store.register(crd_kind(doc))

    def _on_created(self, kind: Kind, obj: dict[str, Any]) -> None:
        if kind.resource == CRDS:
            self.store.register(crd_kind(obj))

    def objects(self, res: Resource, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored objects of ``res`` (all namespaces when ``namespace`` is None)."""
        items, _ = self.store.select(self.store.kind_of(res), namespace)
        return clone(items)

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of one stored object, or None."""
        try:
            return clone(self.store.get(self.store.kind_of(res), namespace or "", name))
        except StatusError:
            return None

    def add_busy(self, seconds: float) -> None:
        """Account ``seconds`` of request serving to :attr:`busy_seconds`."""
        with self._busy_lock:
            self.busy_seconds += seconds

    def _drop_watches(self, abrupt: bool) -> None:
        with self.store.changed:
            self.abrupt = abrupt
            self.drops += 1
            self.store.changed.notify_all()


def crd_kind(doc: dict[str, Any]) -> Kind:
    """The :class:`Kind` a CustomResourceDefinition declares (ValueError names a bad field)."""
    spec = doc.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    for field_name, value in (
        ("spec.group", group),
        ("spec.names.plural", plural),
        ("spec.names.kind", kind),
    ):
        if not isinstance(value, str) or not value:
            raise ValueError(f"CustomResourceDefinition {field_name}: required, got {value!r}")
    versions = [v for v in spec.get("versions") or () if v.get("served", True)]
    if not versions:
        raise ValueError(f"CustomResourceDefinition {plural}.{group}: no served versions")
    storage = next((v for v in versions if v.get("storage")), versions[0])
    schema = (storage.get("schema") or {}).get("openAPIV3Schema")
    assert isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)
    return Kind(
        Resource(
            group,
            storage["name"],
            plural,
            kind,
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        ),
        schema,
        "status" in (storage.get("subresources") or {}),
        crd=True,
        versions=frozenset(v["name"] for v in versions),
    )


class _Route:
    """A parsed API path."""

    def __init__(
        self, kind: Kind, namespace: str, name: str | None, sub: str | None, all_namespaces: bool
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.sub = sub
        self.all_namespaces = all_namespaces

    @property
    def resource(self) -> str:
        plural = self.kind.resource.plural
        return f"{plural}/{self.sub}" if self.sub else plural


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def api(self) -> FakeApiServer:
        return self.server.owner

    # ----------------------------------------------------------------- plumbing

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self._status = code

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode())

    def _error(self, error: StatusError) -> None:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        self._send(error.code, json.dumps(error.status()).encode(), headers=headers)

    def _start_stream(self, content_type: str) -> None:
        self._streamed = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._status = 200

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise StatusError(400, "BadRequest", f"the request body is not JSON: {exc}") from exc

    def _route(self, parts: list[str]) -> _Route:
        store = self.api.store
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
            kind = store.kind(group, version, rest[0])
            if not kind.resource.namespaced:
                raise StatusError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            all_namespaces = False
        else:
            namespace, kind = "", store.kind(group, version, rest[0])
            all_namespaces = kind.resource.namespaced
            if kind.resource.namespaced and len(rest) > 1:
                raise StatusError(
                    404, "NotFound", "the server could not find the requested resource"
                )
        if len(rest) > 3:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not (
            (sub == "status" and kind.status_subresource)
            or (sub == "log" and kind.resource.plural == "pods")
        ):
            raise StatusError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({kind.resource.plural}/{sub})",
            )
        return _Route(kind, namespace, name, sub, all_namespaces)

    # ----------------------------------------------------------------- dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self._status = 500
        self._streamed = False
        began = time.perf_counter()
        try:
            try:
                body = self._body()
                parts = [p for p in url.path.split("/") if p]
                if method == "GET" and self._discovery(parts):
                    return
                route = self._route(parts)
                verb = self._verb(method, route, query)
                fault = self.api.faults.check(verb, route.resource)
                if fault is not None:
                    raise StatusError(
                        fault.status,
                        reason_for(fault.status),
                        f"injected fault: {verb} {route.resource} answered {fault.status}",
                        retry_after=fault.retry_after,
                    )
                self._serve(verb, route, query, body)
            except StatusError as error:
                self._error(error)
            except SelectorError as error:
                self._error(StatusError(400, "BadRequest", str(error)))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.api.requests.append((method, url.path, self._status))
            if not self._streamed:
                self.api.add_busy(time.perf_counter() - began)

    def _discovery(self, parts: list[str]) -> bool:
        """``/version``, ``/api``, ``/apis`` and the per-version resource lists, enough for
        discovery clients (``kubernetes.dynamic.DynamicClient``, kubectl)."""
        kinds = list(self.api.store.kinds.values())
        if parts == ["version"]:
            self._json(
                200,
                {
                    "major": "1",
                    "minor": "31",
                    "gitVersion": "v1.31.0-katib-fake",
                    "platform": "linux/amd64",
                },
            )
        elif parts == ["api"]:
            self._json(200, {"kind": "APIVersions", "versions": ["v1"]})
        elif parts == ["apis"]:
            self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": _groups(kinds)})
        elif len(parts) == 2 and parts[0] == "api":
            self._json(200, _resource_list(kinds, "", parts[1]))
        elif len(parts) == 3 and parts[0] == "apis":
            listed = _resource_list(kinds, parts[1], parts[2])
            if not listed["resources"]:
                raise StatusError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            self._json(200, listed)
        else:
            return False
        return True

    @staticmethod
    def _verb(method: str, route: _Route, query: dict[str, str]) -> str:
        if method == "GET":
            if route.name is None:
                return "watch" if query.get("watch") in ("true", "1") else "list"
            return "get"
        if method == "DELETE" and route.name is None:
            return "deletecollection"
        if route.name is None and method != "POST":
            raise StatusError(405, "MethodNotAllowed", f"{method} needs an object name")
        if route.name is not None and method == "POST":
            raise StatusError(405, "MethodNotAllowed", "POST goes to the collection")
        return _VERBS[method]

    def _serve(self, verb: str, route: _Route, query: dict[str, str], body: Any) -> None:
        store, kind, name = self.api.store, route.kind, route.name or ""
        dry = query.get("dryRun")
        if dry not in (None, "All"):
            raise StatusError(
                400, "BadRequest", f'dryRun: Unsupported value: "{dry}": supported values: "All"'
            )
        dry_run = dry == "All"
        if verb == "get" and route.sub == "log":
            self._pod_log(route, query)
        elif verb == "get":
            self._json(200, store.get(kind, route.namespace, name))
        elif verb == "list":
            self._list(route, query)
        elif verb == "watch":
            self._watch(route, query)
        elif verb == "create":
            if not isinstance(body, dict):
                raise StatusError(400, "BadRequest", "create needs a JSON object body")
            self._json(201, store.create(kind, route.namespace, body, dry_run=dry_run))
        elif verb == "update":
            self._json(
                200,
                store.update(
                    kind, route.namespace, name, body, subresource=route.sub, dry_run=dry_run
                ),
            )
        elif verb == "patch":
            self._json(
                200,
                store.patch(
                    kind,
                    route.namespace,
                    name,
                    self._patcher(body),
                    subresource=route.sub,
                    dry_run=dry_run,
                ),
            )
        elif verb == "delete":
            options = body if isinstance(body, dict) else {}
            propagation = options.get("propagationPolicy") or query.get("propagationPolicy")
            self._json(
                200,
                store.delete(
                    kind,
                    route.namespace,
                    name,
                    propagation=propagation,
                    preconditions=options.get("preconditions"),
                    dry_run=dry_run,
                ),
            )
        else:  # deletecollection
            for obj in self._matching(route, query):
                store.delete(
                    kind,
                    obj["metadata"].get("namespace", ""),
                    obj["metadata"]["name"],
                    propagation=(body or {}).get("propagationPolicy"),
                    dry_run=dry_run,
                )
            self._json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def _patcher(self, body: Any) -> Any:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type == "application/json-patch+json":
            return lambda obj: json_patch(obj, body)
        if content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            if not isinstance(body, dict):
                raise StatusError(400, "BadRequest", "a merge patch must be a JSON object")
            return lambda obj: merge_patch(obj, body)
        raise StatusError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media "
            f"types include: application/json-patch+json, "
            f"application/merge-patch+json, application/strategic-merge-patch+json "
            f"(got {content_type!r})",
        )

    def _matching(self, route: _Route, query: dict[str, str]) -> list[dict[str, Any]]:
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(query.get("fieldSelector"), route.kind.resource.plural)
        items, _ = self.api.store.select(
            route.kind,
            None if route.all_namespaces else route.namespace,
            lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj),
        )
        return items

    def _list(self, route: _Route, query: dict[str, str]) -> None:
        """A list, paged by ``limit``/``continue`` when asked: pages follow (namespace, name)
        order and report the first page's resourceVersion (objects changed between pages show
        their newer state: the real server's snapshot consistency is not kept)."""
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(query.get("fieldSelector"), route.kind.resource.plural)
        items, rv = self.api.store.select(
            route.kind,
            None if route.all_namespaces else route.namespace,
            lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj),
        )
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if query.get("continue"):
            rv, after = _continue_token(query["continue"])
            if rv < self.api.store.floor:
                raise StatusError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old "
                    "to display a consistent list result. You can start a new list "
                    "without the continue parameter.",
                )
            meta["resourceVersion"] = str(rv)
            items = [o for o in items if _position(o) > after]
        limit = query.get("limit") or "0"
        if not limit.isdigit():
            raise StatusError(400, "BadRequest", f"limit: invalid value {limit!r}")
        if 0 < int(limit) < len(items):
            rest = len(items) - int(limit)
            items = items[: int(limit)]
            token = json.dumps(
                {"rv": int(meta["resourceVersion"]), "after": list(_position(items[-1]))}
            )
            meta["continue"] = base64.urlsafe_b64encode(token.encode()).decode()
            meta["remainingItemCount"] = rest
        resource = route.kind.resource
        self._json(
            200,
            {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": meta,
                "items": items,
            },
        )

    # ----------------------------------------------------------------- watch

    def _watch(self, route: _Route, query: dict[str, str]) -> None:
        api, store, kind = self.api, self.api.store, route.kind
        labels = label_selector(query.get("labelSelector"))
        fields = field_selector(query.get("fieldSelector"), kind.resource.plural)
        namespace = None if route.all_namespaces else route.namespace

        def visible(obj: dict[str, Any] | None) -> bool:
            return (
                obj is not None
                and (namespace is None or obj["metadata"].get("namespace", "") == namespace)
                and labels(obj["metadata"].get("labels") or {})
                and fields(obj)
            )

        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or api.watch_timeout)
        deadline = time.monotonic() + timeout
        start = query.get("resourceVersion") or "0"
        if not start.isdigit():
            raise StatusError(400, "BadRequest", f"resourceVersion: invalid value {start!r}")
        streaming_list = query.get("sendInitialEvents") == "true"
        if streaming_list:  # a list streamed as events, ended by a marked bookmark
            if not bookmarks or query.get("resourceVersionMatch") != "NotOlderThan":
                raise StatusError(
                    422,
                    "Invalid",
                    "sendInitialEvents: Forbidden: requires "
                    "allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
                )
            start = "0"
        drops = api.drops
        self._start_stream("application/json")
        with store.changed:
            api.open_watches += 1
        try:
            self._stream_events(
                kind, namespace, visible, start, bookmarks, deadline, drops, streaming_list
            )
        finally:
            with store.changed:
                api.open_watches -= 1

    def _stream_events(
        self,
        kind: Kind,
        namespace: str | None,
        visible: Any,
        start: str,
        bookmarks: bool,
        deadline: float,
        drops: int,
        streaming_list: bool = False,
    ) -> None:
        api, store = self.api, self.api.store
        with store.changed:
            if start == "0":
                initial, cursor = store.select(kind, namespace, visible)
            else:
                initial, cursor = [], int(start)
        for obj in initial:
            self._event("ADDED", obj)
        if streaming_list:
            self._bookmark(kind, cursor, {"k8s.io/initial-events-end": "true"})
        self.wfile.flush()
        last_bookmark = time.monotonic()
        while True:
            with store.changed:
                try:
                    events = store.events_after(cursor)
                except StatusError as gone:
                    self._event("ERROR", gone.status())
                    break
                if not events:
                    cursor = max(cursor, store.rv)  # nothing after cursor: all seen
                    wait = deadline - time.monotonic()
                    if bookmarks:
                        wait = min(wait, last_bookmark + api.bookmark_interval - time.monotonic())
                    if wait > 0 and not api.stopping and api.drops == drops:
                        store.changed.wait(wait)
            if api.stopping or api.drops != drops:
                if api.abrupt and api.drops != drops:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                break
            for event in events:
                self._send_event(event, kind, visible)
                cursor = event.rv
            now = time.monotonic()
            if bookmarks and now - last_bookmark >= api.bookmark_interval:
                self._bookmark(kind, cursor)
                last_bookmark = now
            if now >= deadline:
                if bookmarks:
                    self._bookmark(kind, cursor)
                break
        self._end_stream()

    def _event(self, type_: str, obj: dict[str, Any]) -> None:
        self._chunk(b'{"type":"%s","object":%s}\n' % (type_.encode(), json.dumps(obj).encode()))

    def _bookmark(self, kind: Kind, rv: int, annotations: dict[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if annotations:
            meta["annotations"] = annotations
        self._event(
            "BOOKMARK",
            {
                "kind": kind.resource.kind,
                "apiVersion": kind.resource.api_version,
                "metadata": meta,
            },
        )

    def _send_event(self, event: Event, kind: Kind, visible: Any) -> None:
        if event.key != kind.key:
            return
        now_in = event.type != "DELETED" and visible(event.obj)
        was_in = visible(event.old) if event.type != "ADDED" else False
        if event.type == "DELETED":
            if was_in:
                self._event("DELETED", event.obj)
        elif now_in and was_in:
            self._event("MODIFIED", event.obj)
        elif now_in:
            self._event("ADDED", event.obj)
        elif was_in:
            self._event("DELETED", event.obj)

    # ----------------------------------------------------------------- pods/log

    def _pod_log(self, route: _Route, query: dict[str, str]) -> None:
        pod = self.api.store.get(route.kind, route.namespace, route.name or "")
        name = pod["metadata"]["name"]
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in spec.get("containers") or ()]
        names_init = [c.get("name") for c in spec.get("initContainers") or ()]
        container = query.get("container")
        if not container:
            if len(names) != 1:
                raise StatusError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for "
                    f"pod {name}, choose one of: [{' '.join(map(str, names))}]",
                )
            container = str(names[0])
        elif container not in names + names_init:
            raise StatusError(
                400, "BadRequest", f"container {container} is not valid for pod {name}"
            )
        follow = query.get("follow") in ("true", "1")
        first = self.api.logs.read(route.namespace, name, container, 0)
        if first is None:
            raise StatusError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
            )
        data, done = first
        if not follow or done:
            self._send(200, _tail(data, query.get("tailLines")), "text/plain")
            return
        self._start_stream("text/plain")
        self._chunk(_tail(data, query.get("tailLines")))
        self.wfile.flush()
        with self.api.logs.changed:
            self.api.open_streams += 1
        try:
            self._follow_log(route.namespace, name, container, len(data))
        finally:
            with self.api.logs.changed:
                self.api.open_streams -= 1
        self._end_stream()

    def _follow_log(self, namespace: str, name: str, container: str, offset: int) -> None:
        logs = self.api.logs
        while not self.api.stopping:
            with logs.changed:
                chunk = logs.read(namespace, name, container, offset)
                if chunk is not None and not chunk[0] and not chunk[1]:
                    logs.changed.wait(1.0)
                    continue
            if chunk is None:
                return
            self._chunk(chunk[0])
            offset += len(chunk[0])
            if chunk[1]:
                return


def _versions(kind: Kind) -> list[str]:
    return sorted(kind.versions or {kind.resource.version})


def _groups(kinds: list[Kind]) -> list[dict[str, Any]]:
    by_group: dict[str, set[str]] = {}
    preferred: dict[str, str] = {}
    for kind in kinds:
        if kind.resource.group:
            by_group.setdefault(kind.resource.group, set()).update(_versions(kind))
            preferred.setdefault(kind.resource.group, kind.resource.version)
    return [
        {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in sorted(versions)],
            "preferredVersion": {
                "groupVersion": f"{group}/{preferred[group]}",
                "version": preferred[group],
            },
        }
        for group, versions in sorted(by_group.items())
    ]


def _resource_list(kinds: list[Kind], group: str, version: str) -> dict[str, Any]:
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    resources: list[dict[str, Any]] = []
    for kind in kinds:
        res = kind.resource
        if res.group != group or version not in _versions(kind):
            continue
        resources.append(
            {
                "name": res.plural,
                "singularName": res.kind.lower(),
                "namespaced": res.namespaced,
                "kind": res.kind,
                "verbs": verbs,
            }
        )
        if kind.status_subresource:
            resources.append(
                {
                    "name": f"{res.plural}/status",
                    "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": res.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if res.plural == "pods":
            resources.append(
                {
                    "name": "pods/log",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Pod",
                    "verbs": ["get"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _position(obj: dict[str, Any]) -> tuple[str, str]:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _continue_token(token: str) -> tuple[int, tuple[str, str]]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = doc["after"]
        return int(doc["rv"]), (str(namespace), str(name))
    except (ValueError, KeyError, TypeError) as exc:
        raise StatusError(400, "BadRequest", f"continue: invalid token ({exc})") from exc


def _tail(data: bytes, tail_lines: str | None) -> bytes:
    if tail_lines is None or not tail_lines.isdigit():
        return data
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-int(tail_lines) :]) if int(tail_lines) else b""
