"""Patches as the API server applies them.

``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json`` (RFC 6902: add,
remove, replace, test) and ``application/strategic-merge-patch+json``, which is taken as a merge
patch (lists are replaced, not merged by key; the operator never relies on merge keys).
"""

from __future__ import annotations

from typing import Any

from katib.controller.kube.fake.store import StatusError, clone


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, else replace."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise StatusError(422, "Invalid", f"json patch: path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch with the operations clients send: add, remove, replace, test."""
    if not isinstance(operations, list):
        raise StatusError(400, "BadRequest", "json patch: the body must be a list of operations")
    doc = clone(target)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise StatusError(422, "Invalid", f"json patch: operation {number} needs op and path")
        parts = _pointer(op["path"])
        if not parts:
            raise StatusError(422, "Invalid", "json patch: the root cannot be patched")
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.get(part)
            if parent is None:
                raise StatusError(422, "Invalid", f"json patch: path {op['path']!r} not found")
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op.get("value"))
            elif kind == "remove":
                parent.pop(index)
            elif kind == "replace":
                parent[index] = op.get("value")
            elif kind == "test" and parent[index] != op.get("value"):
                raise StatusError(422, "Invalid", f"json patch: test failed at {op['path']!r}")
        elif isinstance(parent, dict):
            if kind in ("remove", "replace", "test") and last not in parent:
                raise StatusError(422, "Invalid", f"json patch: path {op['path']!r} not found")
            if kind in ("add", "replace"):
                parent[last] = op.get("value")
            elif kind == "remove":
                del parent[last]
            elif kind == "test" and parent[last] != op.get("value"):
                raise StatusError(422, "Invalid", f"json patch: test failed at {op['path']!r}")
        else:
            raise StatusError(422, "Invalid", f"json patch: path {op['path']!r} not found")
        if kind not in ("add", "remove", "replace", "test"):
            raise StatusError(422, "Invalid", f"json patch: unsupported op {kind!r}")
    return doc
