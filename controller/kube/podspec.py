"""Where a run object keeps its pods and containers, whatever its kind.

A pod template is any mapping whose ``spec`` has a ``containers`` list (a Job's
``spec.template``, each ``spec.<x>ReplicaSpecs.<Role>.template`` of a training-operator job);
a TrainJob's trainer is ``spec.trainer``; an Argo Workflow's container templates are
``spec.templates[].container``. :func:`primary_container` applies Katib's
``primaryContainerName`` / ``primaryPodLabels`` semantics (see :mod:`render`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

CONTAINER_LISTS = ("containers", "initContainers")


def pod_templates(obj: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod template (a mapping whose ``spec`` has a ``containers`` list) with its path."""
    if isinstance(obj, dict):
        inner = obj.get("spec")
        if isinstance(inner, dict) and isinstance(inner.get("containers"), list):
            yield path, obj
        for key, value in obj.items():
            yield from pod_templates(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from pod_templates(value, f"{path}[{i}]")


def pod_template_metadata(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``metadata`` of every pod template under ``obj.spec`` (created where missing)."""
    for _, template in pod_templates(obj.get("spec")):
        meta = template.get("metadata")
        if not isinstance(meta, dict):
            meta = template["metadata"] = {}
        yield meta


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container the object's pods run: pod templates' containers and init containers,
    a TrainJob's trainer, an Argo Workflow's container templates."""
    for _, template in pod_templates(obj.get("spec")):
        for key in CONTAINER_LISTS:
            for container in template["spec"].get(key) or []:
                if isinstance(container, dict):
                    yield container
    trainer = trainjob_trainer(obj)
    if trainer is not None:
        yield trainer
    for _, _, container in workflow_containers(obj):
        yield container


def workflow_containers(
    obj: Mapping[str, Any],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """An Argo Workflow's container templates: (path, template, container)."""
    spec = obj.get("spec")
    templates = spec.get("templates") if isinstance(spec, dict) else None
    for i, template in enumerate(templates if isinstance(templates, list) else []):
        if isinstance(template, dict) and isinstance(template.get("container"), dict):
            yield f".spec.templates[{i}].container", template, template["container"]


def trainjob_trainer(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """A TrainJob's ``spec.trainer`` (which stands for its training container), else None."""
    spec = obj.get("spec")
    trainer = spec.get("trainer") if isinstance(spec, dict) else None
    if obj.get("kind") == "TrainJob" and isinstance(trainer, dict):
        return trainer
    return None


def primary_container(
    obj: dict[str, Any], name: str, pod_labels: Mapping[str, str]
) -> tuple[str, dict[str, Any], bool] | None:
    """The primary container of a run object (see the module docstring): its path under the
    object, the container (to edit in place), and whether every pod runs it, so that the
    collector must check ``primaryPodLabels`` itself (TrainJob), or None."""
    candidates = []
    for path, template in pod_templates(obj.get("spec"), ".spec"):
        for i, container in enumerate(template["spec"].get("containers") or []):
            if isinstance(container, dict) and container.get("name") == name:
                candidates.append((f"{path}.spec.containers[{i}]", template, container))
    if not candidates:
        trainer = trainjob_trainer(obj)
        if trainer is not None:
            return ".spec.trainer", trainer, True
        return _workflow_primary(obj, name, pod_labels)
    for wanted in _roles(pod_labels):  # the replica named by a label value
        for path, _template, container in candidates:
            role = _replica_role(path)
            if role is not None and role.lower() == wanted:
                return path, container, False
    for path, template, container in candidates:  # a template carrying the labels itself
        labels = (template.get("metadata") or {}).get("labels") or {}
        if pod_labels and all(labels.get(k) == v for k, v in pod_labels.items()):
            return path, container, False
    path, _template, container = candidates[0]
    return path, container, False


def _workflow_primary(
    obj: Mapping[str, Any], name: str, pod_labels: Mapping[str, str]
) -> tuple[str, dict[str, Any], bool] | None:
    """An Argo Workflow's primary container: in the template whose labels match
    ``primaryPodLabels``; Argo names a template's container ``main`` in its pod."""
    for path, template, container in workflow_containers(obj):
        labels = (template.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in pod_labels.items()):
            continue
        if name in ("main", container.get("name")):
            return path, container, False
    return None


#: The training operator labels the pods of a job's Chief (TFJob) or Launcher (MPIJob) replica
#: ``job-role: master`` as it does a Master's, so Katib's default label names any of them.
_ROLE_ALIASES = {"master": ("master", "chief", "launcher")}


def _roles(pod_labels: Mapping[str, str]) -> list[str]:
    """Replica roles (lower case) that ``primaryPodLabels`` values name, in preference order."""
    roles: list[str] = []
    for value in pod_labels.values():
        for role in _ROLE_ALIASES.get(str(value).lower(), (str(value).lower(),)):
            if role not in roles:
                roles.append(role)
    return roles


def _replica_role(path: str) -> str | None:
    """``Master`` for ``.spec.pytorchReplicaSpecs.Master.template.spec...``."""
    parts = path.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.endswith("ReplicaSpecs"):
            return parts[i + 1]
    return None
