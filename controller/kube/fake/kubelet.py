"""The fake cluster's kubelet: a pod's containers run as local processes.

Each container runs ``command + args`` (no shell; the image is ignored) with ``$(VAR)``
expanded as Kubernetes does (:func:`katib.controller.template.expand_k8s_vars`, shared with
local runs), the container ``env`` (values, ``fieldRef``, ``configMapKeyRef``,
``secretKeyRef``, ``envFrom``) over the environment given to :class:`Kubelet`, in
``workdir/<namespace>/<pod>`` (or a relative ``workingDir`` inside it); all of a pod's
processes share one process group. Output goes to ``pods/log``; a relative
``terminationMessagePath`` is read from the pod directory, an absolute one as is, except the
default ``/dev/termination-log``, which a host process cannot own and is therefore not read
(``FallbackToLogsOnError`` still works). :meth:`Kubelet.pod_deleted` sends SIGTERM to the
pod's process group and SIGKILL after ``terminationGracePeriodSeconds``.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.fake.store import StatusError, clone, now
from katib.controller.kube.resources import Resource
from katib.controller.template import expand_k8s_vars

PODS = Resource("", "v1", "pods", "Pod")
_TERMINATION_DEFAULT = "/dev/termination-log"
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class PodConfigError(ValueError):
    """A container the kubelet cannot start (CreateContainerConfigError)."""


@dataclass
class _Pod:
    namespace: str
    name: str
    group: int | None = None  # process group id of the running containers
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    deleted: bool = False
    grace: float = 30.0


class Kubelet:
    """Runs pods of the fake server as local process groups; thread-safe."""

    def __init__(self, server: FakeApiServer, workdir: Path, env: Mapping[str, str]) -> None:
        self.server = server
        self.store = server.store
        self.workdir = Path(workdir)
        self.env = dict(env)
        self._pods_kind = self.store.kind_of(PODS)
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Kill every process still running, without grace."""
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            self._kill(pod, grace=0.0)

    def run(self, pod_obj: dict[str, Any]) -> bool:
        """Run the pod's init containers, then its containers, writing its status; returns
        whether it succeeded (False too when it was deleted meanwhile)."""
        meta, spec = pod_obj["metadata"], pod_obj.get("spec") or {}
        pod = _Pod(
            meta["namespace"],
            meta["name"],
            grace=float(spec.get("terminationGracePeriodSeconds", 30)),
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
        return ok and not pod.deleted

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
        argv = [expand_k8s_vars(arg, variables) for arg in argv]
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
                variables[var] = expand_k8s_vars(str(item.get("value", "")), variables)
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

    def pod_deleted(self, namespace: str, name: str) -> None:
        """The pod object is gone: kill its processes (TERM, KILL after the grace period)."""
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
