"""A small kustomize renderer: the subset of ``kubectl apply -k`` our manifests use.

Supported kustomization fields: ``resources`` (files and directories holding a kustomization),
``namespace``, ``patches`` (strategic-merge patches given by ``path`` or inline ``patch``,
optionally narrowed by ``target``), ``images`` (``newName``, ``newTag``, ``digest``), and the
``apiVersion``/``kind`` header. Any other field raises :class:`KustomizeError`, so a manifest that
starts to rely on something this renderer does not do fails the tests instead of being rendered
wrongly.

Strategic merge follows the Kubernetes rules for the fields our manifests touch: maps merge
recursively (``null`` deletes a key), lists with a merge key (``containers`` and ``env`` by
``name``, ``ports`` by ``containerPort``, ``volumeMounts`` by ``mountPath``, ...) merge item by
item and honour ``$patch: delete``, other lists are replaced, and a patch whose top level says
``$patch: delete`` removes the object.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "patches", "images"}

#: Kinds that live outside namespaces (the ones a kustomization may plausibly hold).
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
}

#: List fields merged item by item, and the key that identifies an item.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "tolerations": "key",
}

POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully."""


def render(directory: str | Path) -> list[Obj]:
    """The objects ``kubectl apply -k directory`` would send, in kustomize's output order."""
    return _render(Path(directory).resolve(), stack=())


def _render(directory: Path, stack: tuple[Path, ...]) -> list[Obj]:
    if directory in stack:
        raise KustomizeError(f"{directory}: resources form a cycle")
    kustomization = _load_kustomization(directory)
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}: unsupported fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(_render(path, (*stack, directory)))
        elif path.is_file():
            objects.extend(_documents(path))
        else:
            raise KustomizeError(f"{directory}: resource {entry!r} not found")
    _check_unique(objects, directory)
    for entry in kustomization.get("patches", []):
        objects = _apply_patch(objects, entry, directory)
    if "namespace" in kustomization:
        accounts = {
            (o["metadata"]["name"], o["metadata"].get("namespace", ""))
            for o in objects
            if o["kind"] == "ServiceAccount"
        }
        for obj in objects:
            set_namespace(obj, kustomization["namespace"], accounts)
    for image in kustomization.get("images", []):
        for obj in objects:
            set_image(obj, image)
    return objects


def _load_kustomization(directory: Path) -> Obj:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise KustomizeError(f"{path}: not a mapping")
            return loaded
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _documents(path: Path) -> list[Obj]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
            raise KustomizeError(f"{path}: every document needs apiVersion and kind")
        if not doc.get("metadata", {}).get("name"):
            raise KustomizeError(f"{path}: a {doc['kind']} has no metadata.name")
    return docs


def identity(obj: Obj) -> tuple[str, str, str]:
    """(kind, namespace, name) of an object."""
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _check_unique(objects: Iterable[Obj], directory: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{directory}: {key} appears twice")
        seen.add(key)


# ---------------------------------------------------------------- patches


def _apply_patch(objects: list[Obj], entry: Obj, directory: Path) -> list[Obj]:
    if "path" in entry:
        text = (directory / entry["path"]).read_text()
    elif "patch" in entry:
        text = entry["patch"]
    else:
        raise KustomizeError(f"{directory}: a patch needs path or patch")
    patches = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if any(not isinstance(doc, dict) for doc in patches):
        raise KustomizeError(f"{directory}: only strategic-merge patches are supported")
    target = entry.get("target")
    for patch in patches:
        selected = [obj for obj in objects if _matches(obj, patch, target)]
        if not selected:
            name = patch.get("metadata", {}).get("name")
            raise KustomizeError(
                f"{directory}: patch for {patch.get('kind')}/{name} matches nothing"
            )
        if patch.get("$patch") == "delete":
            objects = [obj for obj in objects if not any(obj is s for s in selected)]
            continue
        objects = [
            strategic_merge(obj, patch) if any(obj is s for s in selected) else obj
            for obj in objects
        ]
    return objects


def _matches(obj: Obj, patch: Obj, target: Obj | None) -> bool:
    if target is not None:
        checks = {
            "kind": obj["kind"],
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"].get("namespace", ""),
            "group": obj["apiVersion"].rpartition("/")[0],
            "version": obj["apiVersion"].rpartition("/")[2],
        }
        return all(checks[key] == value for key, value in target.items() if key in checks)
    meta = patch.get("metadata", {})
    return obj["kind"] == patch.get("kind") and obj["metadata"]["name"] == meta.get("name")


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """``base`` with the strategic-merge ``patch`` applied (neither argument is modified)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if key == "$patch":
                continue
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = _strip_directives(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        return _merge_list(base, patch, MERGE_KEYS[field], field)
    return _strip_directives(patch)


def _merge_list(base: list[Any], patch: list[Any], key: str, field: str) -> list[Any]:
    merged = copy.deepcopy(base)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise KustomizeError(f"{field}: every patch item needs {key!r}")
        index = next((i for i, old in enumerate(merged) if old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(_strip_directives(item))
        else:
            merged[index] = strategic_merge(merged[index], item, field)
    return merged


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if k != "$patch"}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)


# ---------------------------------------------------------------- transformers


def set_namespace(obj: Obj, namespace: str, accounts: set[tuple[str, str]]) -> None:
    """Put a namespaced object into ``namespace``, as kustomize's namespace field does.

    A binding's ServiceAccount subject moves along when it names a ServiceAccount of this
    kustomization (``accounts``: (name, namespace) before the move) or the name ``default``;
    other subjects are left alone (kustomize 5's ``setRoleBindingSubjects: defaultOnly``).
    """
    if obj["kind"] not in CLUSTER_SCOPED:
        obj["metadata"]["namespace"] = namespace
    if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
        for subject in obj.get("subjects", []):
            if subject.get("kind") != "ServiceAccount":
                continue
            key = (subject.get("name"), subject.get("namespace", ""))
            if subject.get("name") == "default" or key in accounts:
                subject["namespace"] = namespace


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec inside a workload object, or None for other kinds."""
    path = POD_TEMPLATE_PATHS.get(obj["kind"])
    node: Any = obj
    for part in path or ():
        node = node.get(part) if isinstance(node, dict) else None
    return node if path and isinstance(node, dict) else None


def image_name(image: str) -> str:
    """An image reference without its tag or digest."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def set_image(obj: Obj, rule: Obj) -> None:
    """Apply one ``images`` entry to every container of a workload object."""
    spec = pod_spec(obj)
    if spec is None:
        return
    for field in ("initContainers", "containers"):
        for container in spec.get(field, []):
            if image_name(container.get("image", "")) != rule["name"]:
                continue
            name = rule.get("newName", rule["name"])
            if "digest" in rule:
                container["image"] = f"{name}@{rule['digest']}"
            elif "newTag" in rule:
                container["image"] = f"{name}:{rule['newTag']}"
            else:
                old = container["image"][len(rule["name"]) :]
                container["image"] = name + old
