"""The Kubernetes resources the controller reads and writes, named once.

A :class:`Resource` is what the API paths need (group, version, plural, scope) plus the kind for
the objects' ``kind`` field. The module constants name every resource the operator touches;
:func:`resource_for` maps a run object's ``apiVersion``/``kind`` (from a trial template) to one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """One Kubernetes resource type: ``group`` is ``""`` for the core group."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """The objects' ``apiVersion``: ``"kubeflow.org/v1beta1"``, ``"batch/v1"``, ``"v1"``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


EXPERIMENTS = Resource("kubeflow.org", "v1beta1", "experiments", "Experiment")
TRIALS = Resource("kubeflow.org", "v1beta1", "trials", "Trial")
SUGGESTIONS = Resource("kubeflow.org", "v1beta1", "suggestions", "Suggestion")
JOBS = Resource("batch", "v1", "jobs", "Job")
PODS = Resource("", "v1", "pods", "Pod")
EVENTS = Resource("", "v1", "events", "Event")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)

# (group, kind) -> (plural, namespaced) for the kinds a trial template may name, and those whose
# plural or scope the default rule below would get wrong.
_KNOWN: dict[tuple[str, str], tuple[str, bool]] = {
    ("batch", "Job"): ("jobs", True),
    ("kubeflow.org", "PyTorchJob"): ("pytorchjobs", True),
    ("kubeflow.org", "TFJob"): ("tfjobs", True),
    ("kubeflow.org", "XGBoostJob"): ("xgboostjobs", True),
    ("kubeflow.org", "MXJob"): ("mxjobs", True),
    ("kubeflow.org", "PaddleJob"): ("paddlejobs", True),
    ("kubeflow.org", "JAXJob"): ("jaxjobs", True),
    ("kubeflow.org", "MPIJob"): ("mpijobs", True),
    ("trainer.kubeflow.org", "TrainJob"): ("trainjobs", True),
    ("kubeflow.org", "Experiment"): ("experiments", True),
    ("kubeflow.org", "Trial"): ("trials", True),
    ("kubeflow.org", "Suggestion"): ("suggestions", True),
    ("", "Namespace"): ("namespaces", False),
    ("", "Endpoints"): ("endpoints", True),
    ("", "Node"): ("nodes", False),
    ("", "PersistentVolume"): ("persistentvolumes", False),
    ("networking.k8s.io", "Ingress"): ("ingresses", True),
    ("networking.k8s.io", "NetworkPolicy"): ("networkpolicies", True),
}


def resource_for(api_version: str, kind: str) -> Resource:
    """The resource for objects of ``apiVersion``/``kind``, e.g. from a Katib trial template.

    Kinds not in the table get Kubernetes' default plural, ``kind.lower() + "s"``, and are
    taken to be namespaced (every kind a trial can run is). Raises ``ValueError`` naming the
    field for an empty or malformed ``apiVersion`` or ``kind``.
    """
    if not isinstance(api_version, str) or not api_version or api_version.count("/") > 1:
        raise ValueError(f"apiVersion: expected 'group/version' or 'version', got {api_version!r}")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind: expected a non-empty string, got {kind!r}")
    group, _, version = api_version.rpartition("/")
    if not version or (api_version.count("/") == 1 and not group):
        raise ValueError(f"apiVersion: expected 'group/version' or 'version', got {api_version!r}")
    plural, namespaced = _KNOWN.get((group, kind), (kind.lower() + "s", True))
    return Resource(group, version, plural, kind, namespaced)
