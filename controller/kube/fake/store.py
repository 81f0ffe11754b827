"""The fake API server's object store: resource versions, history for watches, deletion, GC.

Every write takes the one lock, bumps the global resourceVersion and appends an :class:`Event`
to the history that watches replay. Stored objects are never mutated in place (a write stores a
new dict), so an event's ``obj`` is a stable snapshot that a watch may serialise later.

Semantics follow the real API server: uid, creationTimestamp and generation (bumped when
anything but metadata and, with a status subresource, status changes); a write that changes
nothing is a no-op (no new resourceVersion, no event); a stale resourceVersion is 409
Conflict; with a status subresource the main write ignores ``status`` and a status write ignores
everything else; deletion of an object with finalizers sets ``deletionTimestamp`` and waits for
them to be removed; ownerReferences garbage collection with Background, Foreground and Orphan
propagation, cascading; deleting a namespace deletes its contents; a ``batch/v1`` Job deleted
without a propagation policy orphans its pods, as the real default does; a PUT without a
resourceVersion is refused for custom resources and unconditional for built-in ones.

Where it is simpler than the real server, knowingly: garbage collection runs synchronously
inside the deleting request (an orphan whose owners are all gone goes at once, even at
creation); objects without finalizers vanish at once (pods have no graceful-termination phase:
the simulated kubelet kills them after the fact); one stored version per kind (no conversion);
paged lists (``limit``/``continue``) are not snapshot-consistent across pages.
"""

from __future__ import annotations

import bisect
import json
import secrets
import string
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from katib.controller.kube.fake import schema as openapi
from katib.controller.kube.resources import Resource

Key = tuple[str, str]  # (group, plural)
Ref = tuple[Key, str, str]  # (key, namespace or "", name)

_NAME_CHARS = string.ascii_lowercase + string.digits
_FOREGROUND = "foregroundDeletion"


def clone(obj: Any) -> Any:
    """A deep copy of a JSON value (faster than ``copy.deepcopy`` for plain dicts and lists)."""
    return json.loads(json.dumps(obj))


def now() -> str:
    """The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusError(Exception):
    """A request the server refuses; rendered as a Kubernetes ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        """The ``Status`` JSON the real server sends."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


@dataclass
class Kind:
    """A registered resource type and how the server treats it."""

    resource: Resource
    schema: dict[str, Any] | None = None
    status_subresource: bool = True
    crd: bool = False
    versions: frozenset[str] = frozenset()

    @property
    def key(self) -> Key:
        return (self.resource.group, self.resource.plural)

    @property
    def qualified(self) -> str:
        """``trials.kubeflow.org`` or ``pods``, as the server names resources in messages."""
        group = self.resource.group
        return f"{self.resource.plural}.{group}" if group else self.resource.plural


@dataclass(frozen=True)
class Event:
    """One change: ``obj`` is the object after it (for DELETED, its last state), ``old`` before."""

    rv: int
    key: Key
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


def _not_found(kind: Kind, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{kind.qualified} "{name}" not found',
        details={"name": name, "group": kind.resource.group, "kind": kind.resource.plural},
    )


def _conflict(kind: Kind, name: str, why: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind.qualified} "{name}": {why}',
        details={"name": name, "group": kind.resource.group, "kind": kind.resource.plural},
    )


def invalid(kind: Kind, name: str, causes: list[tuple[str, str, str]]) -> StatusError:
    """422 Invalid with one cause per (field, reason, message), worded like the real server."""
    text = ", ".join(f"{path}: {message}" if path else message for path, _, message in causes)
    return StatusError(
        422,
        "Invalid",
        f'{kind.resource.kind}.{kind.resource.group or "core"} "{name}" is invalid: [{text}]'
        if len(causes) > 1
        else f'{kind.resource.kind}.{kind.resource.group or "core"} "{name}" is invalid: {text}',
        details={
            "name": name,
            "group": kind.resource.group,
            "kind": kind.resource.kind,
            "causes": [
                {"reason": reason, "message": message, "field": path}
                for path, reason, message in causes
            ],
        },
    )


def _is_dns_subdomain(name: str) -> bool:
    allowed = set(string.ascii_lowercase + string.digits + "-.")
    return (
        0 < len(name) <= 253 and set(name) <= allowed and name[0].isalnum() and name[-1].isalnum()
    )


def _content(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """What bumps ``generation``: everything but metadata (and status, with the subresource)."""
    drop = ("metadata", "status") if kind.status_subresource else ("metadata",)
    return {k: v for k, v in obj.items() if k not in drop}


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal but for the resourceVersion: such a write is a no-op."""
    old_meta = {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}
    new_meta = {k: v for k, v in new["metadata"].items() if k != "resourceVersion"}
    if old_meta != new_meta:
        return False
    return {k: v for k, v in old.items() if k != "metadata"} == {
        k: v for k, v in new.items() if k != "metadata"
    }


@dataclass
class _Namespaced:
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class Store:
    """Objects of every registered kind, the event history and the garbage collector."""

    def __init__(self, *, watch_window: int = 10_000) -> None:
        if watch_window < 1:
            raise ValueError(f"watch_window must be at least 1, got {watch_window}")
        self.changed = threading.Condition(threading.RLock())
        self.kinds: dict[Key, Kind] = {}
        self.rv = 0
        self.floor = 0  # watches from a resourceVersion below this get 410 Gone
        self.history: list[Event] = []
        self._window = watch_window
        self._objects: dict[Key, _Namespaced] = defaultdict(_Namespaced)
        self._by_uid: dict[str, Ref] = {}
        self._dependents: dict[str, set[Ref]] = defaultdict(set)
        self.on_created: list[Callable[[Kind, dict[str, Any]], None]] = []

    # ----------------------------------------------------------------- registration & lookup

    def register(self, kind: Kind) -> None:
        """Serve ``kind`` (again: its schema and versions are replaced, objects kept)."""
        with self.changed:
            self.kinds[kind.key] = kind

    def kind(self, group: str, version: str, plural: str) -> Kind:
        """The registered kind at this API path; 404 as the real server answers unknown ones."""
        kind = self.kinds.get((group, plural))
        if (
            kind is None
            or (kind.versions and version not in kind.versions)
            or (not kind.versions and version != kind.resource.version)
        ):
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            raise StatusError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({path} {plural})",
            )
        return kind

    def kind_of(self, resource: Resource) -> Kind:
        """The registered kind for ``resource`` (ValueError if it was never registered)."""
        kind = self.kinds.get((resource.group, resource.plural))
        if kind is None:
            raise ValueError(f"resource {resource.plural!r} is not registered with the server")
        return kind

    def _find(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        obj = self._objects[kind.key].objects.get((namespace, name))
        if obj is None:
            raise _not_found(kind, name)
        return obj

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        """The stored object (shared: callers must not mutate it)."""
        with self.changed:
            return self._find(kind, namespace, name)

    def select(
        self,
        kind: Kind,
        namespace: str | None,
        match: Callable[[dict[str, Any]], bool] = lambda obj: True,
    ) -> tuple[list[dict[str, Any]], int]:
        """Stored objects (shared) in ``namespace`` (None: all) that ``match``, and the list RV."""
        with self.changed:
            items = [
                obj
                for (ns, _), obj in self._objects[kind.key].objects.items()
                if (namespace is None or ns == namespace) and match(obj)
            ]
            return sorted(
                items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
            ), self.rv

    # ----------------------------------------------------------------- events

    def _emit(
        self, kind: Kind, type_: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        self.history.append(Event(self.rv, kind.key, type_, obj, old))
        if len(self.history) > self._window + max(1, self._window // 8):
            cut = len(self.history) - self._window
            self.floor = self.history[cut - 1].rv
            del self.history[:cut]
        self.changed.notify_all()

    def events_after(self, rv: int) -> list[Event]:
        """Every event with a resourceVersion above ``rv``; 410 Gone if some were compacted."""
        with self.changed:
            if rv < self.floor:
                raise StatusError(
                    410, "Expired", f"too old resource version: {rv} ({self.floor + 1})"
                )
            start = bisect.bisect_right(self.history, rv, key=lambda event: event.rv)
            return self.history[start:]

    def compact(self) -> None:
        """Forget the whole history, as etcd compaction does."""
        with self.changed:
            self.history.clear()
            self.floor = self.rv
            self.changed.notify_all()

    # ----------------------------------------------------------------- writes

    def _write(
        self, kind: Kind, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        meta = obj["metadata"]
        ref: Ref = (kind.key, meta.get("namespace", ""), meta["name"])
        self._objects[kind.key].objects[ref[1:]] = obj
        self._by_uid[meta["uid"]] = ref
        if old is not None:
            for owner in old["metadata"].get("ownerReferences", ()):
                self._dependents[owner.get("uid", "")].discard(ref)
        for owner in meta.get("ownerReferences", ()):
            self._dependents[owner.get("uid", "")].add(ref)
        self._emit(kind, "ADDED" if old is None else "MODIFIED", obj, old)
        return obj

    def _check_namespace(self, kind: Kind, namespace: str) -> None:
        if not kind.resource.namespaced:
            return
        ns = self._objects[("", "namespaces")].objects.get(("", namespace))
        if ns is None:
            raise StatusError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )
        if ns["metadata"].get("deletionTimestamp"):
            raise StatusError(
                403,
                "Forbidden",
                f"{kind.resource.plural} is forbidden: unable to create new content in "
                f"namespace {namespace} because it is being terminated",
            )

    def _admit(self, kind: Kind, obj: dict[str, Any]) -> None:
        if kind.schema is None:
            return
        violations = openapi.admit(kind.schema, obj)
        if violations:
            raise invalid(
                kind,
                obj["metadata"].get("name", ""),
                [(v.field, v.reason, v.message) for v in violations],
            )

    def create(
        self, kind: Kind, namespace: str, body: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """POST: a new object named by ``metadata.name`` or ``generateName``; ``dry_run``
        admits it and returns it without storing it."""
        obj = clone(body)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
            raise StatusError(400, "BadRequest", "the body must be a JSON object with metadata")
        meta = obj.setdefault("metadata", {})
        with self.changed:
            if not meta.get("name"):
                prefix = meta.get("generateName")
                if not prefix:
                    raise invalid(
                        kind,
                        "",
                        [
                            (
                                "metadata.name",
                                "FieldValueRequired",
                                "Required value: name or generateName is required",
                            )
                        ],
                    )
                meta["name"] = prefix + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
            name = meta["name"]
            if not isinstance(name, str) or not _is_dns_subdomain(name):
                raise invalid(
                    kind,
                    str(name),
                    [
                        (
                            "metadata.name",
                            "FieldValueInvalid",
                            f"Invalid value: {json.dumps(name)}: a lowercase RFC 1123 "
                            "subdomain must consist of lower case alphanumeric characters, '-' "
                            "or '.', and must start and end with an alphanumeric character",
                        )
                    ],
                )
            if kind.resource.namespaced:
                if meta.get("namespace") not in (None, "", namespace):
                    raise StatusError(
                        400,
                        "BadRequest",
                        "the namespace of the provided object "
                        "does not match the namespace sent on the request",
                    )
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            self._check_namespace(kind, namespace)
            if (meta.get("namespace", ""), name) in self._objects[kind.key].objects:
                raise StatusError(
                    409,
                    "AlreadyExists",
                    f'{kind.qualified} "{name}" already exists',
                    details={
                        "name": name,
                        "group": kind.resource.group,
                        "kind": kind.resource.plural,
                    },
                )
            obj["apiVersion"] = kind.resource.api_version
            obj["kind"] = kind.resource.kind
            for transient in (
                "resourceVersion",
                "deletionTimestamp",
                "managedFields",
                "deletionGracePeriodSeconds",
            ):
                meta.pop(transient, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta["generation"] = 1
            if kind.status_subresource:
                obj.pop("status", None)
            if kind.key == ("", "namespaces"):
                obj["status"] = {"phase": "Active"}
            self._admit(kind, obj)
            if dry_run:
                return obj
            stored = self._write(kind, obj, None)
            for hook in self.on_created:
                hook(kind, stored)
            owners = meta.get("ownerReferences") or []
            if owners and not any(owner.get("uid") in self._by_uid for owner in owners):
                self._remove_or_finalize(kind, stored, "Background")
            return stored

    def update(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        subresource: str | None = None,
        require_version: bool | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT on the object (``subresource`` None) or its ``status``."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise StatusError(400, "BadRequest", "the body must be a JSON object with metadata")
        with self.changed:
            old = self._find(kind, namespace, name)
            if body.get("metadata", {}).get("name", name) != name:
                raise StatusError(
                    400,
                    "BadRequest",
                    "the name of the object "
                    f"({body['metadata']['name']}) does not match the name on the "
                    f"URL ({name})",
                )
            rv = body.get("metadata", {}).get("resourceVersion")
            if require_version is None:
                require_version = kind.crd
            if not rv and require_version:
                raise invalid(
                    kind,
                    name,
                    [
                        (
                            "metadata.resourceVersion",
                            "FieldValueInvalid",
                            "Invalid value: 0x0: must be specified for an update",
                        )
                    ],
                )
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise _conflict(
                    kind,
                    name,
                    "the object has been modified; please apply your "
                    "changes to the latest version and try again",
                )
            if subresource == "status":
                new = clone(old)
                if "status" in body:
                    new["status"] = clone(body["status"])
                else:
                    new.pop("status", None)
            else:
                new = clone(body)
                new["apiVersion"] = kind.resource.api_version
                new["kind"] = kind.resource.kind
                if kind.status_subresource:
                    if "status" in old:
                        new["status"] = clone(old["status"])
                    else:
                        new.pop("status", None)
                meta = new.setdefault("metadata", {})
                for fixed in (
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "namespace",
                    "deletionGracePeriodSeconds",
                    "generation",
                ):
                    if fixed in old["metadata"]:
                        meta[fixed] = old["metadata"][fixed]
                    else:
                        meta.pop(fixed, None)
                meta["name"] = name
                meta.pop("managedFields", None)
                if old["metadata"].get("deletionTimestamp"):
                    added = set(meta.get("finalizers") or ()) - set(
                        old["metadata"].get("finalizers") or ()
                    )
                    if added:
                        raise invalid(
                            kind,
                            name,
                            [
                                (
                                    "metadata.finalizers",
                                    "FieldValueForbidden",
                                    "Forbidden: no new finalizers can be added "
                                    "if the object is being deleted",
                                )
                            ],
                        )
            self._admit(kind, new)
            if _content(kind, new) != _content(kind, old):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            if _same(old, new):
                return old
            if dry_run:
                return new
            stored = self._write(kind, new, old)
            if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get(
                "finalizers"
            ):
                self._remove(kind, stored)
            return stored

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        apply: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PATCH: ``apply`` turns a copy of the current object into the wanted one; the write is
        conditional only when the patch itself set ``metadata.resourceVersion``."""
        with self.changed:
            old = self._find(kind, namespace, name)
            current_rv = old["metadata"]["resourceVersion"]
            wanted = apply(clone(old))
            if not isinstance(wanted, dict):
                raise StatusError(422, "Invalid", "the patched object is not a JSON object")
            meta = wanted.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise StatusError(422, "Invalid", "metadata: must be an object")
            if not meta.get("resourceVersion"):
                meta["resourceVersion"] = current_rv
            return self.update(
                kind, namespace, name, wanted, subresource=subresource, dry_run=dry_run
            )

    # ----------------------------------------------------------------- deletion & GC

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE: returns the object's last state (with deletionTimestamp while finalizers or
        foreground deletion hold it)."""
        with self.changed:
            obj = self._find(kind, namespace, name)
            for field_name in ("uid", "resourceVersion"):
                wanted = (preconditions or {}).get(field_name)
                if wanted and wanted != obj["metadata"][field_name]:
                    raise _conflict(
                        kind,
                        name,
                        f"Precondition failed: {field_name} in "
                        f"precondition: {wanted}, {field_name} in object meta: "
                        f"{obj['metadata'][field_name]}",
                    )
            if propagation is None:
                propagation = "Orphan" if kind.key == ("batch", "jobs") else "Background"
            if propagation not in ("Background", "Foreground", "Orphan"):
                raise StatusError(
                    400,
                    "BadRequest",
                    f"propagationPolicy: Unsupported value: "
                    f'"{propagation}": supported values: "Background", '
                    '"Foreground", "Orphan"',
                )
            if obj["metadata"].get("deletionTimestamp") or dry_run:
                return obj
            return self._remove_or_finalize(kind, obj, propagation)

    def _remove_or_finalize(
        self, kind: Kind, obj: dict[str, Any], propagation: str
    ) -> dict[str, Any]:
        uid = obj["metadata"]["uid"]
        if propagation == "Orphan":
            for ref in list(self._dependents.get(uid, ())):
                self._drop_owner(ref, uid)
        finalizers = list(obj["metadata"].get("finalizers") or ())
        if propagation == "Foreground" and self._dependents.get(uid):
            finalizers.append(_FOREGROUND)
        if kind.key == ("", "namespaces"):
            return self._delete_namespace(kind, obj)
        if not finalizers:
            self._remove(kind, obj)
            return obj
        new = clone(obj)
        new["metadata"]["finalizers"] = finalizers
        new["metadata"]["deletionTimestamp"] = now()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        stored = self._write(kind, new, obj)
        if _FOREGROUND in finalizers:
            for ref in list(self._dependents.get(uid, ())):
                self._delete_ref(ref, "Foreground")
            self._finish_foreground(uid)
        return self._objects[kind.key].objects.get(
            (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]), stored
        )

    def _delete_ref(self, ref: Ref, propagation: str) -> None:
        key, namespace, name = ref
        obj = self._objects[key].objects.get((namespace, name))
        if obj is not None and not obj["metadata"].get("deletionTimestamp"):
            self._remove_or_finalize(self.kinds[key], obj, propagation)

    def _drop_owner(self, ref: Ref, owner_uid: str) -> None:
        key, namespace, name = ref
        obj = self._objects[key].objects.get((namespace, name))
        if obj is None:
            return
        new = clone(obj)
        new["metadata"]["ownerReferences"] = [
            owner
            for owner in obj["metadata"].get("ownerReferences", ())
            if owner.get("uid") != owner_uid
        ]
        if not new["metadata"]["ownerReferences"]:
            del new["metadata"]["ownerReferences"]
        self._write(self.kinds[key], new, obj)

    def _remove(self, kind: Kind, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        namespace, name, uid = meta.get("namespace", ""), meta["name"], meta["uid"]
        del self._objects[kind.key].objects[(namespace, name)]
        self._by_uid.pop(uid, None)
        ref: Ref = (kind.key, namespace, name)
        for owner in meta.get("ownerReferences", ()):
            self._dependents[owner.get("uid", "")].discard(ref)
        self.rv += 1
        final = dict(obj, metadata=dict(meta, resourceVersion=str(self.rv)))
        self._emit(kind, "DELETED", final, obj)
        for dependent in list(self._dependents.pop(uid, ())):
            self._collect(dependent)
        for owner in meta.get("ownerReferences", ()):
            self._finish_foreground(owner.get("uid", ""))
        if namespace:
            self._finish_namespace(namespace)

    def _collect(self, ref: Ref) -> None:
        """The garbage collector's step for a dependent whose owner just went away."""
        key, namespace, name = ref
        obj = self._objects[key].objects.get((namespace, name))
        if obj is None:
            return
        owners = obj["metadata"].get("ownerReferences", ())
        if any(owner.get("uid") in self._by_uid for owner in owners):
            for owner in owners:
                if owner.get("uid") not in self._by_uid:
                    self._drop_owner(ref, owner.get("uid", ""))
            return
        if not obj["metadata"].get("deletionTimestamp"):
            self._remove_or_finalize(self.kinds[key], obj, "Background")

    def _finish_foreground(self, owner_uid: str) -> None:
        ref = self._by_uid.get(owner_uid)
        if ref is None or self._dependents.get(owner_uid):
            return
        key, namespace, name = ref
        owner = self._objects[key].objects.get((namespace, name))
        if owner is None or _FOREGROUND not in (owner["metadata"].get("finalizers") or ()):
            return
        new = clone(owner)
        new["metadata"]["finalizers"] = [
            f for f in owner["metadata"]["finalizers"] if f != _FOREGROUND
        ]
        stored = self._write(self.kinds[key], new, owner)
        if not stored["metadata"]["finalizers"]:
            self._remove(self.kinds[key], stored)

    def _delete_namespace(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        new = clone(obj)
        new["metadata"]["deletionTimestamp"] = now()
        new["status"] = {"phase": "Terminating"}
        stored = self._write(kind, new, obj)
        name = obj["metadata"]["name"]
        for key, bucket in list(self._objects.items()):
            for (namespace, _), member in list(bucket.objects.items()):
                if namespace == name and not member["metadata"].get("deletionTimestamp"):
                    self._remove_or_finalize(self.kinds[key], member, "Background")
        self._finish_namespace(name)
        return stored

    def _finish_namespace(self, namespace: str) -> None:
        ns = self._objects[("", "namespaces")].objects.get(("", namespace))
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        for key, bucket in self._objects.items():
            if key != ("", "namespaces") and any(ns_ == namespace for ns_, _ in bucket.objects):
                return
        self._remove(self.kinds[("", "namespaces")], ns)

    def objects_owned_by(self, uid: str) -> Iterable[Ref]:
        """The refs of the objects whose ownerReferences name ``uid``."""
        with self.changed:
            return list(self._dependents.get(uid, ()))
