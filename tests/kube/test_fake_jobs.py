"""SimulatedJobs: Jobs and Kubeflow-shaped objects run as local processes, seen through the
real client."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from katib.controller.kube.api import KubeApi
from katib.controller.kube.fake.jobs import SimulatedJobs
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import JOBS, PODS, Resource
from katib.controller.template import Command, render_command

PYTORCHJOBS = Resource("kubeflow.org", "v1", "pytorchjobs", "PyTorchJob")
DEADLINE = 30.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeApiServer, KubeApi, Path]]:
    with FakeApiServer() as server:
        server.register(PYTORCHJOBS)
        with SimulatedJobs(server, workdir=tmp_path / "pods"):
            yield server, KubeApi(server.api_client()), tmp_path


def wait_for(what: str, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def job(name: str, code: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"katib.kubeflow.org/trial": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python",
                            "command": [sys.executable, "-c", code],
                            **container,
                        }
                    ],
                },
            }
        },
    }


def condition(obj: dict[str, Any] | None, type_: str) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or ()
    return any(c["type"] == type_ and c["status"] == "True" for c in conditions)


def pods_of(api: KubeApi, name: str, label: str = "job-name") -> list[dict[str, Any]]:
    return api.list(PODS, "default", label_selector=f"{label}={name}")[0]


def test_a_pods_command_expands_variables_as_a_local_run_does(
    cluster: tuple[FakeApiServer, KubeApi, Path],
) -> None:
    _, api, _ = cluster
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    args = ["$(Y)", "$(x$(Y))", "$$(Y)", "$(Z)", "$(HOME)", "$(Y"]
    env = [{"name": "Y", "value": "1"}, {"name": "Z", "value": "$(Y)-z"}]
    api.create(JOBS, "default", job("vars", code, args=args, env=env))
    wait_for("Complete", lambda: condition(api.get(JOBS, "default", "vars"), "Complete"))
    (pod,) = pods_of(api, "vars")
    log = b"".join(api.pod_log("default", pod["metadata"]["name"])).decode()
    expected = ["1", "$(x$(Y))", "$(Y)", "1-z", "$(HOME)", "$(Y"]
    assert json.loads(log) == expected
    local = Command(
        argv=(sys.executable, "-c", code, *args),
        env=tuple((e["name"], e["value"]) for e in env),
    )
    argv, _ = render_command(local, {}, {"HOME": "/root"})
    assert argv[3:] == expected


def test_a_job_that_succeeds(cluster: tuple[FakeApiServer, KubeApi, Path]) -> None:
    _, api, _ = cluster
    code = "import os; print('hello', os.environ['GREETING'], os.environ['POD'], os.getcwd())"
    made = api.create(
        JOBS,
        "default",
        job(
            "ok",
            code,
            env=[
                {"name": "GREETING", "value": "world"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        ),
    )
    done = wait_for(
        "Complete",
        lambda: (
            condition(api.get(JOBS, "default", "ok"), "Complete")
            and api.get(JOBS, "default", "ok")
        ),
    )
    status = done["status"]
    assert status["succeeded"] == 1 and status["failed"] == 0 and status["active"] == 0
    assert status["startTime"] and status["completionTime"]
    (pod,) = pods_of(api, "ok")
    labels = pod["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "ok"
    assert labels["controller-uid"] == made["metadata"]["uid"]
    assert labels["katib.kubeflow.org/trial"] == "ok"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == made["metadata"]["uid"]
    assert pod["status"]["phase"] == "Succeeded"
    (state,) = pod["status"]["containerStatuses"]
    assert state["state"]["terminated"]["exitCode"] == 0
    log = b"".join(api.pod_log("default", pod["metadata"]["name"])).decode()
    name = pod["metadata"]["name"]
    assert log.startswith(f"hello world {name} ") and log.rstrip().endswith(f"default/{name}")


def test_a_job_that_fails_reports_exit_code_and_termination_message(
    cluster: tuple[FakeApiServer, KubeApi, Path],
) -> None:
    _, api, _ = cluster
    code = "open('term.msg', 'w').write('diverged'); raise SystemExit(3)"
    api.create(JOBS, "default", job("bad", code, terminationMessagePath="term.msg"))
    failed = wait_for(
        "Failed",
        lambda: (
            condition(api.get(JOBS, "default", "bad"), "Failed")
            and api.get(JOBS, "default", "bad")
        ),
    )
    assert failed["status"]["failed"] == 1 and failed["status"]["succeeded"] == 0
    (pod,) = pods_of(api, "bad")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert pod["status"]["phase"] == "Failed"
    assert terminated["exitCode"] == 3 and terminated["message"] == "diverged"
    assert terminated["reason"] == "Error"


def test_fallback_to_logs_and_backoff_limit(cluster: tuple[FakeApiServer, KubeApi, Path]) -> None:
    _, api, _ = cluster
    body = job(
        "retry",
        "print('boom'); raise SystemExit(1)",
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    body["spec"]["backoffLimit"] = 1
    api.create(JOBS, "default", body)
    failed = wait_for(
        "Failed",
        lambda: (
            condition(api.get(JOBS, "default", "retry"), "Failed")
            and api.get(JOBS, "default", "retry")
        ),
    )
    assert failed["status"]["failed"] == 2  # one try plus one retry
    pods = pods_of(api, "retry")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "boom"


def test_var_expansion_and_missing_command(cluster: tuple[FakeApiServer, KubeApi, Path]) -> None:
    _, api, _ = cluster
    body = job(
        "expand",
        "import sys; print(sys.argv[1:])",
        args=["$(LR)", "$$(LR)", "$(UNSET)"],
        env=[{"name": "LR", "value": "0.1"}],
    )
    api.create(JOBS, "default", body)
    wait_for("Complete", lambda: condition(api.get(JOBS, "default", "expand"), "Complete"))
    (pod,) = pods_of(api, "expand")
    log = b"".join(api.pod_log("default", pod["metadata"]["name"])).decode()
    assert log.strip() == "['0.1', '$(LR)', '$(UNSET)']"
    no_command = job("image-only", "")
    del no_command["spec"]["template"]["spec"]["containers"][0]["command"]
    api.create(JOBS, "default", no_command)
    wait_for("Failed", lambda: condition(api.get(JOBS, "default", "image-only"), "Failed"))
    (pod,) = pods_of(api, "image-only")
    assert "no command" in pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]


def test_deleting_the_job_kills_the_process_group(
    cluster: tuple[FakeApiServer, KubeApi, Path],
) -> None:
    _, api, tmp_path = cluster
    child_pid = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    body = job("long", code)
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    api.create(JOBS, "default", body)
    wait_for("the child", lambda: child_pid.exists() and child_pid.read_text())
    pid = int(child_pid.read_text())
    (pod,) = wait_for(
        "a running pod",
        lambda: [
            p for p in pods_of(api, "long") if (p.get("status") or {}).get("phase") == "Running"
        ],
    )
    assert b"started" in wait_for(
        "output", lambda: b"".join(api.pod_log("default", pod["metadata"]["name"]))
    )
    api.delete(JOBS, "default", "long", propagation="Background")
    assert api.get(PODS, "default", pod["metadata"]["name"]) is None  # collected with the Job

    def child_gone() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.split(") ")[1].startswith("Z")  # a zombie awaiting its reaper is dead

    wait_for("the child process to die", child_gone)


def test_a_pytorchjob_succeeds_when_its_master_does(
    cluster: tuple[FakeApiServer, KubeApi, Path],
) -> None:
    _, api, _ = cluster

    def replica(code: str, count: int) -> dict[str, Any]:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": "pytorch",
                            "command": [sys.executable, "-c", code],
                        }
                    ]
                }
            },
        }

    api.create(
        PYTORCHJOBS,
        "default",
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": {"name": "pt"},
            "spec": {
                "pytorchReplicaSpecs": {
                    "Master": replica("print('loss=0.5')", 1),
                    "Worker": replica("import time; time.sleep(0.2)", 2),
                }
            },
        },
    )
    done = wait_for(
        "Succeeded",
        lambda: (
            condition(api.get(PYTORCHJOBS, "default", "pt"), "Succeeded")
            and api.get(PYTORCHJOBS, "default", "pt")
        ),
    )
    types = [c["type"] for c in done["status"]["conditions"]]
    assert types[:2] == ["Created", "Running"] and types[-1] == "Succeeded"
    assert done["status"]["replicaStatuses"]["Master"]["succeeded"] == 1
    (master,) = pods_of(api, "master", "training.kubeflow.org/job-role")
    assert master["metadata"]["name"] == "pt-master-0"
    assert master["metadata"]["labels"]["training.kubeflow.org/replica-type"] == "master"
    workers = pods_of(api, "worker", "training.kubeflow.org/replica-type")
    assert sorted(p["metadata"]["name"] for p in workers) == ["pt-worker-0", "pt-worker-1"]
    assert b"".join(api.pod_log("default", "pt-master-0")) == b"loss=0.5\n"


def test_a_pytorchjob_fails_when_a_replica_fails(
    cluster: tuple[FakeApiServer, KubeApi, Path],
) -> None:
    _, api, _ = cluster
    template = {
        "spec": {
            "containers": [
                {
                    "name": "pytorch",
                    "image": "pytorch",
                    "command": [sys.executable, "-c", "exit(2)"],
                }
            ]
        }
    }
    api.create(
        PYTORCHJOBS,
        "default",
        {
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "metadata": {"name": "pt"},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": template}}},
        },
    )
    failed = wait_for(
        "Failed",
        lambda: (
            condition(api.get(PYTORCHJOBS, "default", "pt"), "Failed")
            and api.get(PYTORCHJOBS, "default", "pt")
        ),
    )
    running = [c for c in failed["status"]["conditions"] if c["type"] == "Running"]
    assert running[0]["status"] == "False"


def test_deleting_a_running_pod_fails_the_job(
    cluster: tuple[FakeApiServer, KubeApi, Path],
) -> None:
    _, api, _ = cluster
    body = job("victim", "import time; print('up', flush=True); time.sleep(600)")
    body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    api.create(JOBS, "default", body)
    (pod,) = wait_for(
        "a running pod",
        lambda: [
            p for p in pods_of(api, "victim") if (p.get("status") or {}).get("phase") == "Running"
        ],
    )
    wait_for("output", lambda: b"".join(api.pod_log("default", pod["metadata"]["name"])))
    api.delete(PODS, "default", pod["metadata"]["name"])
    failed = wait_for(
        "Failed",
        lambda: (
            condition(api.get(JOBS, "default", "victim"), "Failed")
            and api.get(JOBS, "default", "victim")
        ),
    )
    assert failed["status"]["failed"] == 1


def test_env_from_config_maps_and_secrets(cluster: tuple[FakeApiServer, KubeApi, Path]) -> None:
    from katib.controller.kube.resources import CONFIGMAPS

    server, api, _ = cluster
    secrets = server.store.kind_of(Resource("", "v1", "secrets", "Secret"))
    api.create(CONFIGMAPS, "default", {"metadata": {"name": "cfg"}, "data": {"LR": "0.01"}})
    server.store.create(
        secrets, "default", {"metadata": {"name": "s"}, "data": {"token": "c2VjcmV0"}}
    )
    code = "import os; print(os.environ['CFG_LR'], os.environ['TOKEN'], os.environ['TRIAL'])"
    body = job(
        "envs",
        code,
        envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            {
                "name": "TRIAL",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['katib.kubeflow.org/trial']"}
                },
            },
        ],
    )
    api.create(JOBS, "default", body)
    wait_for("Complete", lambda: condition(api.get(JOBS, "default", "envs"), "Complete"))
    (pod,) = pods_of(api, "envs")
    assert b"".join(api.pod_log("default", pod["metadata"]["name"])) == b"0.01 secret envs\n"
    missing = job(
        "missing",
        "pass",
        env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}],
    )
    api.create(JOBS, "default", missing)
    wait_for("Failed", lambda: condition(api.get(JOBS, "default", "missing"), "Failed"))


def test_a_trainjob_runs_its_nodes(cluster: tuple[FakeApiServer, KubeApi, Path]) -> None:
    server, api, _ = cluster
    trainjobs = Resource("trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob")
    server.register(trainjobs)
    api.create(
        trainjobs,
        "default",
        {
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "kind": "TrainJob",
            "metadata": {"name": "tj"},
            "spec": {
                "trainer": {
                    "numNodes": 2,
                    "image": "x",
                    "command": [sys.executable, "-c", "print('node')"],
                }
            },
        },
    )
    wait_for("Complete", lambda: condition(api.get(trainjobs, "default", "tj"), "Complete"))
    nodes = pods_of(api, "tj", "jobset.sigs.k8s.io/jobset-name")
    assert sorted(p["metadata"]["name"] for p in nodes) == ["tj-node-0-0", "tj-node-0-1"]


def test_stopping_the_simulator_kills_pods_without_failing_their_jobs(tmp_path: Path) -> None:
    with FakeApiServer() as server:
        api = KubeApi(server.api_client())
        jobs = SimulatedJobs(server, workdir=tmp_path)
        jobs.start()
        api.create(JOBS, "default", job("long", "import time; time.sleep(600)"))
        wait_for(
            "a running pod",
            lambda: [
                p
                for p in pods_of(api, "long")
                if (p.get("status") or {}).get("phase") == "Running"
            ],
        )
        began = time.monotonic()
        jobs.stop()
        assert time.monotonic() - began < 20
        status = (api.get(JOBS, "default", "long") or {}).get("status") or {}
        assert not condition({"status": status}, "Failed") and not status.get("failed")
