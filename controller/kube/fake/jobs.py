"""The Job controller and kubelet of the fake cluster: pods run as local processes.

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
kinds) plus the template's. Each container runs ``command + args`` (no shell, the image is
ignored) with ``$(VAR)`` expanded as Kubernetes does, the container ``env`` (values,
``fieldRef``, ``configMapKeyRef``, ``secretKeyRef``, ``envFrom``) over ``env`` given here, in
``workdir/<namespace>/<pod>`` (or a relative ``workingDir`` inside it). Output goes to
``pods/log``; a relative ``terminationMessagePath`` is read from the pod directory, an absolute
one as is, except the default ``/dev/termination-log``, which a host process cannot own and is
therefore not read (``FallbackToLogsOnError`` still works). Deleting a pod (directly or by
garbage collection of its Job) sends SIGTERM to its process group and SIGKILL after
``terminationGracePeriodSeconds``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import re
import secrets
import signal
import string
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.fake.store import Kind, StatusError, clone, now
from katib.controller.kube.resources import Resource

log = logging.getLogger(__name__)

PODS = Resource("", "v1", "pods", "Pod")
_PRIMARY_ROLES = ("master", "chief", "launcher")
_TERMINATION_DEFAULT = "/dev/termination-log"
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class PodConfigError(ValueError):
    """A container the kubelet cannot start (CreateContainerConfigError)."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, undefined references are
    kept verbatim, and ``$$`` is an escaped ``$``."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(variables[name] if name in variables else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


@dataclass
class _Pod:
    namespace: str
    name: str
    group: int | None = None  # process group id of the running containers
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    deleted: bool = False
    grace: float = 30.0


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
        self.env = dict(os.environ if env is None else env)
        self.default_backoff_limit = default_backoff_limit
        self._pods_kind = self.store.kind_of(PODS)
        self._runs: dict[str, _Run] = {}
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._lock = threading.Lock()
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
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            self._kill(pod, grace=0.0)
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
                        self._pod_deleted(event.obj)
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

    # ----------------------------------------------------------------- pods

    def _run_pod(self, run: _Run, pod_obj: dict[str, Any]) -> None:
        meta, spec = pod_obj["metadata"], pod_obj.get("spec") or {}
        pod = _Pod(
            run.namespace, meta["name"], grace=float(spec.get("terminationGracePeriodSeconds", 30))
        )
        with self._lock:
            self._pods[(pod.namespace, pod.name)] = pod
        directory = self.workdir / pod.namespace / pod.name
        directory.mkdir(parents=True, exist_ok=True)
        started = now()
        statuses: list[dict[str, Any]] = []
        try:
            for container in spec.get("initContainers") or ():
                status = self._run_containers(pod, pod_obj, [container], directory)[0]
                if status["state"]["terminated"]["exitCode"] != 0 or pod.deleted:
                    statuses = [status]
                    break
            else:
                containers = spec.get("containers") or []
                running = {
                    "phase": "Running",
                    "startTime": started,
                    "hostIP": "127.0.0.1",
                    "podIP": "127.0.0.1",
                    "containerStatuses": [
                        {
                            "name": c.get("name"),
                            "ready": True,
                            "restartCount": 0,
                            "image": c.get("image", ""),
                            "started": True,
                            "state": {"running": {"startedAt": started}},
                        }
                        for c in containers
                    ],
                }
                statuses = self._run_containers(
                    pod,
                    pod_obj,
                    containers,
                    directory,
                    functools.partial(self._set_pod_status, pod, running),
                )
        finally:
            with self._lock:
                self._pods.pop((pod.namespace, pod.name), None)
        ok = all(s["state"]["terminated"]["exitCode"] == 0 for s in statuses)
        if not pod.deleted:
            self._set_pod_status(
                pod,
                {
                    "phase": "Succeeded" if ok else "Failed",
                    "startTime": started,
                    "hostIP": "127.0.0.1",
                    "podIP": "127.0.0.1",
                    "containerStatuses": statuses,
                },
            )
        self._pod_finished(run, pod.name, ok)

    def _run_containers(
        self,
        pod: _Pod,
        pod_obj: dict[str, Any],
        containers: list[dict[str, Any]],
        directory: Path,
        on_started: Callable[[], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Run ``containers`` side by side to their end; ``on_started`` once all are up."""
        launched: list[tuple[dict[str, Any], subprocess.Popen[bytes] | None, str, str]] = []
        for container in containers:
            name = str(container.get("name", ""))
            started = now()
            try:
                argv, env, cwd = self._prepare(pod_obj, container, directory)
                process = None
                if not pod.deleted:
                    process = subprocess.Popen(
                        argv,
                        cwd=cwd,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        process_group=pod.group or 0,
                    )
                    pod.group = pod.group or process.pid
                    pod.processes.append(process)
                    self.server.logs.append(pod.namespace, pod.name, name, b"")  # log exists
                launched.append((container, process, started, ""))
            except (PodConfigError, OSError) as error:
                launched.append((container, None, started, str(error)))
        readers = [
            threading.Thread(
                target=self._copy_log, args=(pod, str(c.get("name", "")), p), daemon=True
            )
            for c, p, _, _ in launched
            if p is not None
        ]
        if on_started is not None:
            on_started()
        for reader in readers:
            reader.start()
        statuses = []
        for container, process, started, problem in launched:
            code = process.wait() if process is not None else (128 if problem else 137)
            for reader in readers:
                reader.join(5)
            name = str(container.get("name", ""))
            message = problem or self._termination_message(pod, container, directory, code)
            terminated: dict[str, Any] = {
                "exitCode": code,
                "reason": "Completed"
                if code == 0
                else ("ContainerCannotRun" if problem else "Error"),
                "startedAt": started,
                "finishedAt": now(),
            }
            if code < 0:  # killed by a signal: the kubelet reports 128 + signal
                terminated["exitCode"] = 128 - code
            if message:
                terminated["message"] = message
            statuses.append(
                {
                    "name": name,
                    "ready": False,
                    "restartCount": 0,
                    "image": container.get("image", ""),
                    "started": False,
                    "state": {"terminated": terminated},
                }
            )
        return statuses

    def _copy_log(self, pod: _Pod, container: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        while chunk := process.stdout.read1(65536):  # type: ignore[attr-defined]
            self.server.logs.append(pod.namespace, pod.name, container, chunk)
        self.server.logs.finish(pod.namespace, pod.name, container)

    def _termination_message(
        self, pod: _Pod, container: dict[str, Any], directory: Path, code: int
    ) -> str:
        path = container.get("terminationMessagePath") or _TERMINATION_DEFAULT
        message = ""
        if path != _TERMINATION_DEFAULT:
            file = Path(path) if os.path.isabs(path) else directory / path
            try:
                message = file.read_bytes()[:4096].decode(errors="replace")
            except OSError:
                message = ""
        if (
            not message
            and code != 0
            and (container.get("terminationMessagePolicy") == "FallbackToLogsOnError")
        ):
            data = self.server.logs.read(pod.namespace, pod.name, str(container.get("name")), 0)
            lines = (data[0] if data else b"").splitlines()[-80:]
            message = b"\n".join(lines)[-2048:].decode(errors="replace")
        return message

    def _prepare(
        self, pod_obj: dict[str, Any], container: dict[str, Any], directory: Path
    ) -> tuple[list[str], dict[str, str], str]:
        name = container.get("name")
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        if not container.get("command"):
            raise PodConfigError(
                f"container {name}: no command; the simulated kubelet runs "
                "command + args and cannot run an image's entrypoint"
            )
        variables = self._container_env(pod_obj, container)
        env = dict(self.env, HOSTNAME=pod_obj["metadata"]["name"], **variables)
        argv = [expand(arg, variables) for arg in argv]
        cwd = directory
        working = container.get("workingDir")
        if working:
            cwd = (
                Path(working)
                if os.path.isabs(working) and os.path.isdir(working)
                else (directory / working.lstrip("/"))
            )
            cwd.mkdir(parents=True, exist_ok=True)
        return argv, env, str(cwd)

    def _container_env(self, pod_obj: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        variables: dict[str, str] = {}
        namespace = pod_obj["metadata"]["namespace"]
        for source in container.get("envFrom") or ():
            prefix = source.get("prefix", "")
            for ref_name, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                ref = source.get(ref_name)
                if ref:
                    data = self._lookup(namespace, plural, ref.get("name"), ref.get("optional"))
                    variables.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or ():
            var = item.get("name")
            if "value" in item or "valueFrom" not in item:
                variables[var] = expand(str(item.get("value", "")), variables)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                variables[var] = _field(pod_obj, source["fieldRef"].get("fieldPath", ""))
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                plural = "configmaps" if "configMapKeyRef" in source else "secrets"
                ref = source.get("configMapKeyRef") or source.get("secretKeyRef")
                data = self._lookup(namespace, plural, ref.get("name"), ref.get("optional"))
                if ref.get("key") in data:
                    variables[var] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise PodConfigError(
                        f"env {var}: key {ref.get('key')!r} not found in "
                        f"{plural[:-1]} {ref.get('name')!r}"
                    )
            else:
                raise PodConfigError(f"env {var}: unsupported valueFrom {sorted(source)}")
        return variables

    def _lookup(
        self, namespace: str, plural: str, name: str | None, optional: bool | None
    ) -> dict[str, str]:
        kind = self.store.kinds[("", plural)]
        try:
            obj = self.store.get(kind, namespace, name or "")
        except StatusError:
            if optional:
                return {}
            raise PodConfigError(f'{plural[:-1]} "{name}" not found') from None
        if plural == "secrets":
            decoded = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            return {**decoded, **(obj.get("stringData") or {})}
        return dict(obj.get("data") or {})

    def _set_pod_status(self, pod: _Pod, status: dict[str, Any]) -> None:
        with self.store.changed:
            try:
                current = self.store.get(self._pods_kind, pod.namespace, pod.name)
            except StatusError:
                return
            self.store.update(
                self._pods_kind,
                pod.namespace,
                pod.name,
                dict(clone(current), status=status),
                subresource="status",
            )

    def _pod_deleted(self, obj: dict[str, Any]) -> None:
        namespace, name = obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
        with self._lock:
            pod = self._pods.get((namespace, name))
        if pod is not None:
            pod.deleted = True
            threading.Thread(target=self._kill, args=(pod, pod.grace), daemon=True).start()
        self.server.logs.forget(namespace, name)

    @staticmethod
    def _kill(pod: _Pod, grace: float) -> None:
        pod.deleted = True
        if pod.group is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
            try:
                os.killpg(pod.group, sig)
            except ProcessLookupError:
                return
            for process in pod.processes:
                try:
                    process.wait(wait)
                except subprocess.TimeoutExpired:
                    break

    # ----------------------------------------------------------------- run status

    def _pod_finished(self, run: _Run, pod: str, ok: bool) -> None:
        with run.lock:
            role = run.active.pop(pod, "")
            tally = run.succeeded if ok else run.failed
            tally[role] = tally.get(role, 0) + 1
            if run.finished:
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


def _field(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": "fake-node",
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    match = _FIELD.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise PodConfigError(f"fieldRef: unsupported fieldPath {path!r}")
