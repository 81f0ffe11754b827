"""One thin, typed layer over the Kubernetes REST API: plain dicts in, plain dicts out.

Every request goes through the official client's ``ApiClient.call_api`` (its configuration,
auth, TLS and urllib3 pool; both the python-legacy client of kubernetes <= 36, called with
``_preload_content=False``, and the OpenAPI Generator v7 client of kubernetes >= 37, whose
``call_api`` never reads the body) with JSON bodies, unparsed responses, and one code path for core
(``/api/v1/...``) and group (``/apis/<group>/<version>/...``) resources. Errors become the
:class:`ApiError` hierarchy; 429, 5xx and connection failures are retried under a
:class:`RetryPolicy`; every HTTP request is counted in :attr:`KubeApi.calls` as
``(verb, plural)`` so a benchmark (and the RBAC test) can see exactly what the operator does.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import urllib3

from katib.controller.kube.resources import PODS, Resource

if TYPE_CHECKING:
    import kubernetes.client

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0  # seconds for one ordinary (non-streaming) request
CONNECT_TIMEOUT = 10.0
WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})


class ApiError(Exception):
    """A failed API request: the HTTP ``status`` (0: no answer), Kubernetes' ``reason``, and
    the server's ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        """Whether repeating the same request may succeed: 429, 5xx, or no answer at all."""
        return self.status in (0, 429) or self.status >= 500


class NotFound(ApiError):
    """404: the object (or its namespace, or the resource type) does not exist."""


class Conflict(ApiError):
    """409: the write was based on a stale ``resourceVersion``."""


class AlreadyExists(Conflict):
    """409 with reason ``AlreadyExists``: a create found an object of that name."""


class Gone(ApiError):
    """410: the requested ``resourceVersion`` is older than the server's history; relist."""


class Invalid(ApiError):
    """422: the object failed validation; ``message`` names the fields."""


class Unreachable(ApiError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure (status 0)."""


class KubeConfigError(ValueError):
    """The kubeconfig (or in-cluster service account) could not be loaded."""


_BY_STATUS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 410: Gone, 422: Invalid}


def error_from(status: int, body: bytes | dict[str, Any] | None) -> ApiError:
    """The :class:`ApiError` for an error answer whose body is (ideally) a ``Status`` object."""
    doc: Any = body
    if isinstance(body, bytes | bytearray):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {"message": body[:500].decode("utf-8", "replace")}
    if not isinstance(doc, dict):
        doc = {}
    reason = str(doc.get("reason") or "")
    message = str(doc.get("message") or "")
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists(status, reason, message)
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason or cls.__name__, message)


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures are retried, and how long to wait.

    429, 5xx and connection failures are retried with exponential back-off and full jitter
    (a delay drawn uniformly from ``[0, min(cap, base * 2**attempt)]``), at least as long as the
    server's ``Retry-After`` asks, until ``deadline`` seconds have passed since the first try;
    then the last error is raised. Other errors are never retried. A create whose answer was
    lost is retried too: it then gets :class:`AlreadyExists`, which callers treat as done
    (the controller never uses ``generateName``).
    """

    base: float = 0.1
    cap: float = 10.0
    deadline: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("base", "cap", "deadline"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RetryPolicy.{name}: must be >= 0, got {getattr(self, name)}")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        jitter = self.rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(attempt, 60)))
        return max(jitter, retry_after) if retry_after is not None else jitter


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None


def _object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ApiError(200, "BadResponse", f"{what}: expected a JSON object")
    return doc


class KubeApi:
    """Typed access to the Kubernetes API over an official ``ApiClient``.

    >>> api = KubeApi.from_config()                       # doctest: +SKIP
    >>> items, rv = api.list(EXPERIMENTS, "kubeflow")      # doctest: +SKIP

    Thread-safe: the client's urllib3 pool is shared, and :attr:`calls` is guarded.
    """

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, retry: RetryPolicy | None = None
    ) -> None:
        _leave_retries_to_us(api_client)
        self.api_client = api_client
        self.retry = retry or RetryPolicy()
        self.request_timeout = REQUEST_TIMEOUT
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def with_options(
        self, *, retry: RetryPolicy | None = None, request_timeout: float | None = None
    ) -> KubeApi:
        """A view with its own retry policy or request timeout that shares this one's client
        and :attr:`calls` (leader election uses short ones so a renewal never blocks long)."""
        view = copy.copy(self)
        if retry is not None:
            view.retry = retry
        if request_timeout is not None:
            view.request_timeout = request_timeout
        return view

    @classmethod
    def from_config(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeApi:
        """A client from ``kubeconfig`` (default: ``$KUBECONFIG`` or ``~/.kube/config``), or
        the pod's service account when ``KUBERNETES_SERVICE_HOST`` is set and neither
        ``kubeconfig`` nor ``context`` is given. Raises :class:`KubeConfigError`."""
        import kubernetes.client
        import kubernetes.config

        configuration = kubernetes.client.Configuration()
        in_cluster = (
            kubeconfig is None
            and context is None
            and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        )
        where = (
            "in-cluster service account"
            if in_cluster
            else (f"kubeconfig {kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'}")
        )
        try:
            if in_cluster:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            else:
                kubernetes.config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
        except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise KubeConfigError(f"{where}: {exc}") from exc
        return cls(kubernetes.client.ApiClient(configuration))

    def close(self) -> None:
        """Close the client's connection pool."""
        self.api_client.close()

    # -- paths ---------------------------------------------------------------------------------

    @staticmethod
    def path(
        res: Resource, namespace: str | None = None, name: str | None = None, sub: str = ""
    ) -> str:
        """The URL path: ``/api/v1/namespaces/ns/pods/name/log`` or ``/apis/g/v/...``."""
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        if res.namespaced and namespace is not None:
            base += f"/namespaces/{_segment(namespace, 'namespace')}"
        base += f"/{res.plural}"
        if name is not None:
            base += f"/{_segment(name, 'name')}"
        if sub:
            base += f"/{sub}"
        return base

    # -- verbs ---------------------------------------------------------------------------------

    def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist."""
        _need_namespace(res, namespace)
        try:
            return _object(
                self._json("get", res.plural, "GET", self.path(res, namespace, name)), "get"
            )
        except NotFound:
            return None

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """``(items, the list's resourceVersion)``; ``namespace=None`` lists all namespaces.

        Items get ``apiVersion`` and ``kind`` filled in (the server leaves them out of lists).
        """
        query = _query(labelSelector=label_selector, fieldSelector=field_selector)
        doc = _object(
            self._json("list", res.plural, "GET", self.path(res, namespace), query), "list"
        )
        items = doc.get("items") or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ApiError(200, "BadResponse", f"list {res}: items must be a list of objects")
        for item in items:
            item.setdefault("apiVersion", res.api_version)
            item.setdefault("kind", res.kind)
        return items, str((doc.get("metadata") or {}).get("resourceVersion") or "")

    def create(self, res: Resource, namespace: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create ``body``; :class:`AlreadyExists` if the name is taken."""
        _need_namespace(res, namespace)
        path = self.path(res, namespace)
        return _object(self._json("create", res.plural, "POST", path, body=body), "create")

    def replace(
        self, res: Resource, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT the whole object; :class:`Conflict` if its ``resourceVersion`` is stale."""
        _need_namespace(res, namespace)
        path = self.path(res, namespace, name)
        return _object(self._json("update", res.plural, "PUT", path, body=body), "replace")

    def replace_status(
        self, res: Resource, namespace: str | None, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """PUT the status subresource; :class:`Conflict` if ``resourceVersion`` is stale."""
        _need_namespace(res, namespace)
        path = self.path(res, namespace, name, "status")
        doc = self._json("update", f"{res.plural}/status", "PUT", path, body=body)
        return _object(doc, "replace_status")

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        *,
        status: bool = False,
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of the object, or of its status subresource."""
        _need_namespace(res, namespace)
        path = self.path(res, namespace, name, "status" if status else "")
        plural = f"{res.plural}/status" if status else res.plural
        doc = self._json("patch", plural, "PATCH", path, body=body, content_type=MERGE_PATCH)
        return _object(doc, "patch")

    def delete(
        self, res: Resource, namespace: str | None, name: str, *, propagation: str = "Background"
    ) -> bool:
        """Delete the object (dependents by ``propagation``); ``False`` if it was already gone."""
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise ValueError(
                f"propagation: expected Background, Foreground or Orphan, got {propagation!r}"
            )
        _need_namespace(res, namespace)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self._json("delete", res.plural, "DELETE", self.path(res, namespace, name), body=body)
        except NotFound:
            return False
        return True

    def update_status(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        mutate: Callable[[dict[str, Any]], bool],
        *,
        attempts: int = 8,
    ) -> dict[str, Any] | None:
        """Read-modify-write of the status: ``mutate(obj)`` edits ``obj`` in place and returns
        whether there is anything to write. On :class:`Conflict` the object is read again and
        ``mutate`` runs again, up to ``attempts`` times. Returns the object as written (or as
        read when nothing changed), ``None`` if it no longer exists."""
        if attempts < 1:
            raise ValueError(f"attempts: must be at least 1, got {attempts}")
        attempt = 0
        while True:
            obj = self.get(res, namespace, name)
            if obj is None:
                return None
            if not mutate(obj):
                return obj
            try:
                return self.replace_status(res, namespace, name, obj)
            except NotFound:
                return None
            except Conflict:
                attempt += 1
                if attempt == attempts:
                    raise
                log.debug("status of %s %s/%s changed underneath; retrying", res, namespace, name)
                time.sleep(self.retry.delay(attempt) / 10)

    def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> WatchStream:
        """Changes after ``resource_version``: ``(type, object)`` with type ``ADDED``,
        ``MODIFIED``, ``DELETED`` or ``BOOKMARK`` (bookmarks are asked for). Iterating raises
        :class:`Gone` when the version is too old (HTTP 410 or an ERROR event with code 410)
        and :class:`Unreachable` if the connection breaks, and stops when the server ends the
        stream (at ``timeout_seconds``). The request is sent on the first ``next()``;
        :meth:`WatchStream.close` (from any thread) ends the stream."""
        query = _query(
            watch="true",
            resourceVersion=resource_version,
            timeoutSeconds=str(int(timeout_seconds)),
            allowWatchBookmarks="true",
            labelSelector=label_selector,
        )
        timeout = (CONNECT_TIMEOUT, timeout_seconds + self.request_timeout)
        path = self.path(res, namespace)
        return WatchStream(
            lambda: self._request("watch", res.plural, "GET", path, query, timeout=timeout)
        )

    def pod_log(
        self, namespace: str, name: str, *, container: str | None = None, follow: bool = False
    ) -> Iterator[bytes]:
        """The pod's log as it arrives (until the container ends when ``follow``)."""
        query = _query(container=container, follow="true" if follow else None)
        timeout = (CONNECT_TIMEOUT, None if follow else self.request_timeout)
        path = self.path(PODS, namespace, name, "log")
        response = self._request(
            "get", "pods/log", "GET", path, query, timeout=timeout, accept="text/plain, */*"
        )
        try:
            yield from _chunks(response)
        finally:
            _close(response)

    # -- transport -----------------------------------------------------------------------------

    def _json(
        self,
        verb: str,
        plural: str,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        *,
        body: dict[str, Any] | None = None,
        content_type: str = JSON,
    ) -> Any:
        response = self._request(
            verb,
            plural,
            method,
            path,
            query,
            body=body,
            content_type=content_type,
            timeout=self.request_timeout,
        )
        try:
            data = response.read()
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(0, "Unreachable", f"{method} {path}: {exc}") from exc
        finally:
            response.release_conn()
        try:
            return json.loads(data) if data else {}
        except ValueError as exc:
            raise ApiError(response.status, "BadResponse", f"{method} {path}: not JSON") from exc

    def _request(
        self,
        verb: str,
        plural: str,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        *,
        body: dict[str, Any] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
        timeout: float | tuple[float, float | None] = REQUEST_TIMEOUT,
    ) -> urllib3.BaseHTTPResponse:
        """Send with retries; the urllib3 response of a 2xx answer, body not yet read."""
        started = time.monotonic()
        attempt = 0
        while True:
            with self._lock:
                self.calls[(verb, plural)] += 1
            retry_after: float | None = None
            try:
                response = self._send(method, path, query, body, content_type, accept, timeout)
            except Unreachable as exc:
                error: ApiError = exc
            except _ErrorAnswer as answer:
                retry_after = _retry_after(answer.headers.get("Retry-After"))
                error = error_from(answer.status, answer.body)
            else:
                if 200 <= response.status < 300:
                    return response
                retry_after = _retry_after(response.headers.get("Retry-After"))
                try:
                    error = error_from(response.status, response.read())
                except urllib3.exceptions.HTTPError:
                    error = ApiError(response.status, "", "")
                finally:
                    response.release_conn()
            delay = self.retry.delay(attempt, retry_after)
            if not error.retryable or time.monotonic() - started + delay > self.retry.deadline:
                raise error
            log.info(
                "%s %s failed (%s); retry %d in %.2fs", method, path, error, attempt + 1, delay
            )
            time.sleep(delay)
            attempt += 1

    def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: dict[str, Any] | None,
        content_type: str,
        accept: str,
        timeout: float | tuple[float, float | None],
    ) -> urllib3.BaseHTTPResponse:
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        client = self.api_client
        try:
            if hasattr(client, "param_serialize"):  # kubernetes >= 37 (OpenAPI Generator v7)
                _, url, headers, data, _ = client.param_serialize(
                    method=method,
                    resource_path=path,
                    query_params=list(query) or None,
                    header_params=headers,
                    body=body,
                    auth_settings=["BearerToken"],
                )
                response = client.call_api(
                    method, url, header_params=headers, body=data, _request_timeout=timeout
                )
                raw: urllib3.BaseHTTPResponse = response.response
                return raw
            call_legacy: Any = client.call_api  # the python-legacy client (kubernetes <= 36)
            legacy: urllib3.BaseHTTPResponse = call_legacy(
                path,
                method,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=timeout,
            )
            return legacy
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(0, "Unreachable", f"{method} {path}: {exc}") from exc
        except ApiException as exc:
            if exc.status:  # the legacy client raises for non-2xx answers
                body_text = exc.body if isinstance(exc.body, str | bytes) else ""
                raise _ErrorAnswer(exc.status, exc.headers or {}, body_text) from exc
            # TLS failures and other client-side refusals
            raise Unreachable(0, "Unreachable", f"{method} {path}: {exc.reason}") from exc


class _ErrorAnswer(Exception):
    """A non-2xx answer that the client raised instead of returning (python-legacy clients)."""

    def __init__(self, status: int, headers: Any, body: str | bytes) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers
        self.body = body.encode() if isinstance(body, str) else body


class WatchStream(Iterator[tuple[str, dict[str, Any]]]):
    """An open watch: iterate for ``(type, object)``; :meth:`close` from any thread ends it
    (a reader blocked waiting for the next event then sees the end of the stream)."""

    def __init__(self, open_response: Callable[[], urllib3.BaseHTTPResponse]) -> None:
        self._open = open_response
        self._response: urllib3.BaseHTTPResponse | None = None
        self._events: Iterator[tuple[str, dict[str, Any]]] | None = None
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> tuple[str, dict[str, Any]]:
        if self._closed:
            raise StopIteration
        if self._events is None:
            response = self._open()
            with self._lock:
                self._response = response
                closed = self._closed
            if closed:
                _close(response)
                raise StopIteration
            self._events = (_watch_event(line) for line in _lines(response))
        try:
            return next(self._events)
        except StopIteration:
            self.close()
            raise
        except Exception:
            was_closed = self._closed
            self.close()
            if was_closed:  # closed from another thread: whatever the read saw, it is the end
                raise StopIteration from None
            raise

    def close(self) -> None:
        """End the stream and drop its connection; safe to call twice or from another thread."""
        with self._lock:
            if self._closed and self._response is None:
                return
            self._closed = True
            response, self._response = self._response, None
        if response is not None:
            shutdown = getattr(response, "shutdown", None)  # urllib3 >= 2.3: unblocks a reader
            if shutdown is not None:
                with contextlib.suppress(RuntimeError, ValueError, OSError):  # already released
                    shutdown()
            _close(response)

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Connections kept per host: one per open watch (an informer each) plus the reconcile workers
#: and their parallel creates, which the client's default (5 per CPU: 10 here) cannot hold, so
#: urllib3 would discard and reopen connections under load.
POOL_SIZE = 32


def _leave_retries_to_us(api_client: kubernetes.client.ApiClient) -> None:
    """Turn off urllib3's own retries in the client's pool, so that every attempt is counted and
    paced by :class:`RetryPolicy` (urllib3 would otherwise silently repeat 429/503 answers that
    carry ``Retry-After``, and reject fractional values); keep :data:`POOL_SIZE` connections."""
    pool = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if pool is not None:
        pool.connection_pool_kw["retries"] = urllib3.Retry(
            total=0, redirect=False, respect_retry_after_header=False
        )
        pool.connection_pool_kw["maxsize"] = max(
            POOL_SIZE, int(pool.connection_pool_kw.get("maxsize") or 0)
        )
        pool.clear()


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or value in (".", ".."):
        raise ValueError(f"{what}: expected a non-empty object name, got {value!r}")
    return quote(value, safe="")


def _need_namespace(res: Resource, namespace: str | None) -> None:
    if res.namespaced and not namespace:
        raise ValueError(f"namespace: required for namespaced resource {res}")


def _query(**params: str | None) -> list[tuple[str, str]]:
    return [(key, value) for key, value in params.items() if value is not None]


def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(65536, decode_content=True)
    except urllib3.exceptions.HTTPError as exc:
        raise Unreachable(0, "Unreachable", f"stream broken: {exc}") from exc


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The newline-delimited records of a streamed body (a last unterminated one included)."""
    buffer = b""
    for chunk in _chunks(response):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


def _watch_event(line: bytes) -> tuple[str, dict[str, Any]]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ApiError(200, "BadResponse", f"watch: not JSON: {line[:200]!r}") from exc
    if not isinstance(event, dict):
        raise ApiError(200, "BadResponse", "watch: event is not an object")
    kind, obj = event.get("type"), event.get("object")
    if not isinstance(obj, dict):
        raise ApiError(200, "BadResponse", f"watch: {kind} event without an object")
    if kind == "ERROR":
        code = obj.get("code")
        raise error_from(code if isinstance(code, int) else 500, obj)
    if kind not in WATCH_EVENT_TYPES:
        raise ApiError(200, "BadResponse", f"watch: unknown event type {kind!r}")
    return kind, obj


def _close(response: urllib3.BaseHTTPResponse) -> None:
    """Drop a streamed response: the connection may hold unread data, so it is not reused."""
    try:
        response.close()
    finally:
        response.release_conn()
