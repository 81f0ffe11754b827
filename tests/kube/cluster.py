"""A fake cluster for operator tests: FakeApiServer + SimulatedJobs, Katib's CRDs, services.

Trials are Jobs whose container runs :data:`PROGRAM` under the real ``katib-metrics-collector``;
the suggestion service and the DB manager are real processes on loopback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from katib.controller.kube.api import KubeApi
from katib.controller.kube.config import OperatorConfig
from katib.controller.kube.fake.jobs import SimulatedJobs
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.operator import Operator
from katib.controller.kube.resources import EXPERIMENTS, SUGGESTIONS, TRIALS

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "manifests" / "base" / "crds"
NAMESPACE = "kubeflow"
#: The trial: loss = (x - 0.3)^2; ``mode`` fail exits 3, ``sleepN`` sleeps N s first,
#: ``silent`` reports nothing, ``hang`` reports then sleeps a minute, ``steps`` reports ten
#: more times, 50 ms apart.
PROGRAM = """
import sys, time
x = float(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "ok"
if mode == "fail":
    print("crashing", flush=True)
    sys.exit(3)
if mode == "silent":
    sys.exit(0)
if mode.startswith("sleep"):
    time.sleep(float(mode[5:]))
print(f"loss={(x - 0.3) ** 2:.6f}", flush=True)
if mode == "hang":
    time.sleep(60)
if mode == "steps":
    for step in range(10):
        time.sleep(0.05)
        print(f"loss={(x - 0.3) ** 2:.6f}", flush=True)
"""


def collector_command() -> tuple[str, ...]:
    """The real console script, next to this Python."""
    return (str(Path(sys.executable).parent / "katib-metrics-collector"),)


def experiment(
    name: str,
    *,
    mode: str = "ok",
    max_trials: int = 6,
    parallel: int = 2,
    algorithm: str = "random",
    parameters: list[dict[str, Any]] | None = None,
    goal: float | None = None,
    retain: bool = False,
    max_failed: int | None = None,
    early_stopping: dict[str, Any] | None = None,
    resume_policy: str | None = None,
) -> dict[str, Any]:
    """An Experiment whose trials run :data:`PROGRAM` as a Job."""
    params = parameters or [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
    ]
    mode_arg = "${trialParameters.mode}" if any(p["name"] == "mode" for p in params) else mode
    objective: dict[str, Any] = {"type": "minimize", "objectiveMetricName": "loss"}
    if goal is not None:
        objective["goal"] = goal
    spec: dict[str, Any] = {
        "objective": objective,
        "algorithm": {
            "algorithmName": algorithm,
            "algorithmSettings": [{"name": "random_state", "value": "11"}]
            if algorithm == "random"
            else [],
        },
        "parallelTrialCount": parallel,
        "maxTrialCount": max_trials,
        "parameters": params,
        "trialTemplate": {
            "primaryContainerName": "training",
            "retain": retain,
            "trialParameters": [{"name": p["name"], "reference": p["name"]} for p in params],
            "trialSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "training",
                                    "image": "python:3.12",
                                    # relative: read from the simulated pod's directory
                                    "terminationMessagePath": "termination-log",
                                    "command": [
                                        sys.executable,
                                        "-c",
                                        PROGRAM,
                                        "${trialParameters.x}",
                                        mode_arg,
                                    ],
                                }
                            ],
                        }
                    },
                },
            },
        },
    }
    if max_failed is not None:
        spec["maxFailedTrialCount"] = max_failed
    if early_stopping is not None:
        spec["earlyStopping"] = early_stopping
    if resume_policy is not None:
        spec["resumePolicy"] = resume_policy
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


@contextlib.contextmanager
def fake_cluster(workdir: Path) -> Iterator[FakeApiServer]:
    """A started fake API server with Katib's CRDs and simulated Jobs."""
    server = FakeApiServer(namespaces=("default", NAMESPACE))
    docs = [
        doc for path in sorted(CRDS.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]
    if docs:
        server.register_crds(docs)
    else:
        for res in (EXPERIMENTS, TRIALS, SUGGESTIONS):
            server.register(res)
    with server, SimulatedJobs(server, workdir=workdir, env=pod_env()):
        yield server


def pod_env() -> dict[str, str]:
    """The environment of simulated pods: ours, with this interpreter's scripts first on PATH,
    as in our image, where ``katib-metrics-collector`` is on PATH (the tests may run from a
    venv that is not activated)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, PYTHONUNBUFFERED="1", PATH=path)


def write_kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig whose current context is the fake server at ``url`` (no auth)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "me", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    return path


def api_for(server: FakeApiServer) -> KubeApi:
    """A client of the fake server."""
    return KubeApi(server.api_client())


@contextlib.contextmanager
def operator_thread(
    server: FakeApiServer, suggestion: str, db: str, **options: Any
) -> Iterator[Operator]:
    """The operator in a thread of this process, stopped on exit."""
    config = OperatorConfig(
        suggestion_address=suggestion,
        db_address=db,
        collector_command=collector_command(),
        workers=options.pop("workers", 3),
        resync_seconds=options.pop("resync_seconds", 5.0),
        **options,
    )
    operator = Operator(api_for(server), config)
    stop = threading.Event()
    thread = threading.Thread(target=operator.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield operator
    finally:
        stop.set()
        thread.join(timeout=30)


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 90.0) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The ``"True"`` condition of type ``kind``."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or ():
        if item.get("type") == kind and item.get("status") == "True":
            return item
    return None


def completed(server: FakeApiServer, name: str) -> dict[str, Any] | None:
    """The Experiment once it is Succeeded or Failed."""
    exp = server.get(EXPERIMENTS, NAMESPACE, name)
    if condition(exp, "Succeeded") or condition(exp, "Failed"):
        return exp
    return None


def trial_state(trial: dict[str, Any]) -> str:
    """The trial's condition by Katib's precedence."""
    for kind in (
        "Killed",
        "Failed",
        "Succeeded",
        "EarlyStopped",
        "MetricsUnavailable",
        "Running",
        "Created",
    ):
        if condition(trial, kind):
            return kind
    return "Created"
