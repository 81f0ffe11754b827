"""The Job controllers of the fake cluster: Jobs and Kubeflow kinds make pods, run locally.

:class:`SimulatedJobs` follows the fake server's event history. For each new run object it makes
Pod objects and runs them:

* ``batch/v1`` Job: ``spec.template``, up to ``parallelism`` pods at a time until
  ``completions`` succeed; a failed pod is replaced while failures stay within ``backoffLimit``
  (default here: ``default_backoff_limit``, 0, rather than Kubernetes' 6, so a failing trial
  fails at once; templates that set ``backoffLimit`` get exactly that). Status: ``active``,
  ``succeeded``, ``failed``, ``startTime``, ``completionTime`` and a ``Complete`` or ``Failed``
  condition with status "True".
* Kubeflow training kinds (PyTorchJob, TFJob, XGBoostJob, MXJob, PaddleJob, JAXJob, MPIJob):
  one pod per replica of each ``spec.<x>ReplicaSpecs.<Role>``; the job succeeds when its
  Master/Chief/Launcher succeeds (or, without one, every pod), fails when any pod fails.
  Conditions ``Created``, ``Running`` and ``Succeeded``/``Failed``; ``replicaStatuses``;
  pods still running at the end are deleted only when ``spec.runPolicy.cleanPodPolicy`` is
  ``Running`` or ``All`` (a finished batch Job deletes its active pods, as the real one does).
* TrainJob (trainer.kubeflow.org): ``spec.trainer.numNodes`` pods of container ``node``.

Pods carry the owner reference and the labels the real controllers set (``job-name``,
``batch.kubernetes.io/job-name``, ``controller-uid``; ``training.kubeflow.org/*`` for Kubeflow
kinds) plus the template's; :class:`~katib.controller.kube.fake.kubelet.Kubelet` runs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from katib.controller.kube.fake.kubelet import PODS, Kubelet
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.fake.store import Kind, StatusError, clone, now

log = logging.getLogger(__name__)

_PRIMARY_ROLES = ("master", "chief", "launcher")


@dataclass
class _Run:
    """One run object being driven: a Job, a Kubeflow job or a TrainJob."""

    kind: Kind
    namespace: str
    name: str
    uid: str
    flavor: str  # "job" | "kubeflow" | "trainjob"
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: dict[str, str] = field(default_factory=dict)  # pod name -> role
    succeeded: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    finished: bool = False


def _flavor(obj: dict[str, Any]) -> str | None:
    kind = obj.get("kind")
    if kind == "Job" and obj.get("apiVersion") == "batch/v1":
        return "job"
    if kind == "TrainJob":
        return "trainjob"
    spec = obj.get("spec")
    if isinstance(spec, dict) and any(k.endswith("ReplicaSpecs") for k in spec):
        return "kubeflow"
    return None


class SimulatedJobs:
    """Runs the fake cluster's Jobs (and Kubeflow kinds) as local processes; see the module."""

    def __init__(
        self,
        server: FakeApiServer,
        *,
        workdir: Path,
        env: dict[str, str] | None = None,
        default_backoff_limit: int = 0,
    ) -> None:
        self.server = server
        self.store = server.store
        self.workdir = Path(workdir)
        self.default_backoff_limit = default_backoff_limit
        self.kubelet = Kubelet(server, Path(workdir), os.environ if env is None else env)
        self._pods_kind = self.store.kind_of(PODS)
        self._runs: dict[str, _Run] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Adopt the run objects already stored, then follow new ones."""
        with self.store.changed:
            cursor = self.store.rv
            existing = [
                obj
                for kind in list(self.store.kinds.values())
                for obj in self.store.select(kind, None)[0]
                if _flavor(obj)
            ]
        for obj in existing:
            self._consider(obj)
        self._thread = threading.Thread(
            target=self._follow, args=(cursor,), name="simulated-jobs", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following and kill every process still running (no grace)."""
        self._stop.set()
        with self.store.changed:
            self.store.changed.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        self.kubelet.stop()
        for thread in list(self._threads):
            thread.join(10)

    def __enter__(self) -> SimulatedJobs:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _follow(self, cursor: int) -> None:
        while not self._stop.is_set():
            with self.store.changed:
                try:
                    events = self.store.events_after(cursor)
                except StatusError:  # history compacted under us: catch up from the present
                    cursor = self.store.rv
                    continue
                if not events:
                    self.store.changed.wait(0.5)
                    continue
            for event in events:
                cursor = event.rv
                try:
                    if event.key == ("", "pods") and event.type == "DELETED":
                        meta = event.obj["metadata"]
                        self.kubelet.pod_deleted(meta.get("namespace", ""), meta["name"])
                    elif event.type == "ADDED" and _flavor(event.obj):
                        self._consider(event.obj)
                except Exception:  # one bad object must not stop the kubelet
                    log.exception("simulated jobs: event %s failed", event.type)

    # ----------------------------------------------------------------- run objects

    def _consider(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        flavor = _flavor(obj)
        if flavor is None or meta["uid"] in self._runs or meta.get("deletionTimestamp"):
            return
        status = obj.get("status") or {}
        if any(
            c.get("type") in ("Complete", "Failed", "Succeeded") and c.get("status") == "True"
            for c in status.get("conditions") or ()
        ):
            return
        group, _, _ = obj["apiVersion"].rpartition("/")
        kind = self.store.kinds[(group, self._plural_of(group, obj["kind"]))]
        run = _Run(kind, meta.get("namespace", ""), meta["name"], meta["uid"], flavor)
        self._runs[run.uid] = run
        with run.lock:
            if flavor == "job":
                self._fill_job(run, obj)
            else:
                nodes = _replicas(obj) if flavor == "kubeflow" else _trainjob_nodes(obj)
                for role, index, template in nodes:
                    self._launch(run, obj, role, index, template)
            self._write_run_status(run, started=True)

    def _plural_of(self, group: str, kind_name: str) -> str:
        for (g, plural), kind in self.store.kinds.items():
            if g == group and kind.resource.kind == kind_name:
                return plural
        raise ValueError(f"no registered resource for kind {kind_name!r} in group {group!r}")

    def _fill_job(self, run: _Run, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec["parallelism"] if spec.get("parallelism") is not None else 1)
        done = sum(run.succeeded.values())
        want = min(parallelism, completions - done) - len(run.active)
        for _ in range(max(0, want)):
            self._launch(run, obj, "", done, spec.get("template") or {})

    def _launch(
        self, run: _Run, owner: dict[str, Any], role: str, index: int, template: dict[str, Any]
    ) -> None:
        meta = owner["metadata"]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        if run.flavor == "job":
            labels.update(
                {
                    "job-name": run.name,
                    "batch.kubernetes.io/job-name": run.name,
                    "controller-uid": run.uid,
                    "batch.kubernetes.io/controller-uid": run.uid,
                }
            )
            suffix = "".join(
                secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5)
            )
            name = f"{run.name}-{suffix}"
        elif run.flavor == "kubeflow":
            labels.update(
                {
                    "training.kubeflow.org/job-name": run.name,
                    "training.kubeflow.org/operator-name": owner["kind"].lower()[:-3]
                    + "job-controller",
                    "training.kubeflow.org/replica-type": role.lower(),
                    "training.kubeflow.org/replica-index": str(index),
                }
            )
            if role.lower() in _PRIMARY_ROLES:
                labels["training.kubeflow.org/job-role"] = "master"
            name = f"{run.name}-{role.lower()}-{index}"
        else:
            labels.update(
                {
                    "jobset.sigs.k8s.io/jobset-name": run.name,
                    "jobset.sigs.k8s.io/replicatedjob-name": "node",
                    "batch.kubernetes.io/job-completion-index": str(index),
                }
            )
            name = f"{run.name}-node-0-{index}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": run.namespace,
                "labels": labels,
                "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": owner["apiVersion"],
                        "kind": owner["kind"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": dict(clone(template.get("spec") or {}), nodeName="fake-node"),
        }
        try:
            created = self.store.create(self._pods_kind, run.namespace, pod)
        except StatusError as error:  # the owner vanished or the namespace is going away
            log.info("simulated jobs: cannot create pod for %s: %s", run.name, error.message)
            return
        run.active[created["metadata"]["name"]] = role
        thread = threading.Thread(
            target=self._run_pod,
            args=(run, created),
            name=f"pod-{created['metadata']['name']}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def _run_pod(self, run: _Run, pod_obj: dict[str, Any]) -> None:
        ok = self.kubelet.run(pod_obj)
        self._pod_finished(run, pod_obj["metadata"]["name"], ok)

    # ----------------------------------------------------------------- run status

    def _pod_finished(self, run: _Run, pod: str, ok: bool) -> None:
        with run.lock:
            role = run.active.pop(pod, "")
            tally = run.succeeded if ok else run.failed
            tally[role] = tally.get(role, 0) + 1
            if run.finished or self._stop.is_set():  # stopping kills pods; that is no failure
                return
            try:
                obj = self.store.get(run.kind, run.namespace, run.name)
            except StatusError:
                return  # the run object is gone; its pods are being collected
            if obj["metadata"]["uid"] != run.uid or obj["metadata"].get("deletionTimestamp"):
                return
            outcome = self._outcome(run, obj, role, ok)
            if outcome is None and run.flavor == "job":
                self._fill_job(run, obj)
            if outcome is not None:
                run.finished = True
                policy = ((obj.get("spec") or {}).get("runPolicy") or {}).get("cleanPodPolicy")
                if run.flavor != "kubeflow" or policy in ("Running", "All"):
                    for other in list(run.active):
                        self._delete_pod(run.namespace, other)
            self._write_run_status(run, outcome=outcome)

    def _outcome(self, run: _Run, obj: dict[str, Any], role: str, ok: bool) -> str | None:
        if run.flavor == "job":
            spec = obj.get("spec") or {}
            limit = spec.get("backoffLimit", self.default_backoff_limit)
            if sum(run.failed.values()) > int(limit):
                return "Failed"
            if sum(run.succeeded.values()) >= int(spec.get("completions") or 1):
                return "Complete"
            return None
        if not ok:
            return "Failed"
        if role.lower() in _PRIMARY_ROLES:
            return "Succeeded" if run.flavor == "kubeflow" else "Complete"
        expected = sum(
            1 for _ in (_replicas(obj) if run.flavor == "kubeflow" else _trainjob_nodes(obj))
        )
        has_primary = any(r.lower() in _PRIMARY_ROLES for r, _, _ in _replicas(obj))
        if not has_primary and sum(run.succeeded.values()) >= expected:
            return "Succeeded" if run.flavor == "kubeflow" else "Complete"
        return None

    def _delete_pod(self, namespace: str, name: str) -> None:
        with contextlib.suppress(StatusError):
            self.store.delete(self._pods_kind, namespace, name, propagation="Background")

    def _write_run_status(
        self, run: _Run, *, started: bool = False, outcome: str | None = None
    ) -> None:
        with self.store.changed:
            try:
                obj = self.store.get(run.kind, run.namespace, run.name)
            except StatusError:
                return
            status = clone(obj.get("status") or {})
            stamp = now()
            status.setdefault("startTime", stamp)
            if run.flavor == "job":
                status.update(
                    active=len(run.active),
                    succeeded=sum(run.succeeded.values()),
                    failed=sum(run.failed.values()),
                    ready=len(run.active),
                )
                conditions = status.setdefault("conditions", [])
            else:
                conditions = status.setdefault("conditions", [])
                prefix = obj["kind"]
                if started:
                    conditions.append(_condition("Created", "True", f"{prefix}Created", stamp))
                    conditions.append(_condition("Running", "True", f"{prefix}Running", stamp))
                roles = {r for r, _, _ in _replicas(obj)} or {"Node"}
                status["replicaStatuses"] = {
                    role: {
                        "active": sum(1 for r in run.active.values() if r == role),
                        "succeeded": run.succeeded.get(role, 0),
                        "failed": run.failed.get(role, 0),
                    }
                    for role in sorted(roles)
                }
            if outcome is not None:
                status["completionTime"] = stamp
                for condition in conditions:
                    if condition["type"] == "Running":
                        condition["status"] = "False"
                reason = {
                    "Complete": "Completed",
                    "Succeeded": f"{obj['kind']}Succeeded",
                    "Failed": "BackoffLimitExceeded"
                    if run.flavor == "job"
                    else f"{obj['kind']}Failed",
                }[outcome]
                conditions.append(_condition(outcome, "True", reason, stamp))
            if status == obj.get("status"):
                return
            self.store.update(
                run.kind,
                run.namespace,
                run.name,
                dict(clone(obj), status=status),
                subresource="status",
            )


def _condition(type_: str, status: str, reason: str, stamp: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": "",
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def _replicas(obj: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    spec = obj.get("spec") or {}
    out: list[tuple[str, int, dict[str, Any]]] = []
    for key, roles in spec.items():
        if key.endswith("ReplicaSpecs") and isinstance(roles, dict):
            for role, replica in sorted(roles.items()):
                count = int((replica or {}).get("replicas", 1))
                out.extend((role, i, (replica or {}).get("template") or {}) for i in range(count))
    return out


def _trainjob_nodes(obj: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    trainer = (obj.get("spec") or {}).get("trainer") or {}
    container = {k: trainer[k] for k in ("image", "command", "args", "env") if k in trainer}
    container["name"] = "node"
    template = {"spec": {"containers": [container], "restartPolicy": "Never"}}
    return [("Node", i, template) for i in range(int(trainer.get("numNodes", 1)))]
