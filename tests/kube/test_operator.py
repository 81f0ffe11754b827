"""The operator end to end: a fake API server, simulated Jobs, real services and collector.

Each test runs whole Experiments through the real ``kubernetes`` client against
:class:`FakeApiServer`; trial pods are local processes running the real
``katib-metrics-collector`` around a ``python -c`` program, the suggestion service and the DB
manager are real processes on loopback.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from katib.controller.kube.config import OperatorConfig
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.reconciler import ApiReads, Reconciler
from katib.controller.kube.resources import (
    CONFIGMAPS,
    EVENTS,
    EXPERIMENTS,
    JOBS,
    PODS,
    SUGGESTIONS,
    TRIALS,
    Resource,
    resource_for,
)
from katib.db.client import DBClient
from tests.kube.cluster import (
    NAMESPACE,
    api_for,
    completed,
    condition,
    experiment,
    fake_cluster,
    operator_thread,
    trial_state,
    wait_for,
)
from tests.processes import service_process


def _loss(trial: dict[str, Any]) -> float:
    x = float(next(a["value"] for a in trial["spec"]["parameterAssignments"] if a["name"] == "x"))
    return (x - 0.3) ** 2


class _RunningJobs:
    """Samples the fake cluster's Jobs: the most ever running at once."""

    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.most = 0
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _RunningJobs:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            jobs = self.server.objects(JOBS, NAMESPACE)
            self.seen.update(j["metadata"]["name"] for j in jobs)
            running = [j for j in jobs if not (condition(j, "Complete") or condition(j, "Failed"))]
            self.most = max(self.most, len(running))


def test_experiment_runs_to_max_trials_with_trials_as_jobs(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    with fake_cluster(workdir) as server, _RunningJobs(server) as jobs:
        api = api_for(server)
        api.create(EXPERIMENTS, NAMESPACE, experiment("random-run", retain=True))
        with operator_thread(server, suggestion, db):
            exp = wait_for(lambda: completed(server, "random-run"), "the experiment to end")
        trials = server.objects(TRIALS, NAMESPACE)
        kept_jobs = server.objects(JOBS, NAMESPACE)
        suggestion_obj = server.get(SUGGESTIONS, NAMESPACE, "random-run")
        events = server.objects(EVENTS, NAMESPACE)
    status = exp["status"]
    assert condition(exp, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
    assert len(trials) == 6
    assert [trial_state(t) for t in trials] == ["Succeeded"] * 6
    names = sorted(t["metadata"]["name"] for t in trials)
    assert status["trials"] == 6 and status["trialsSucceeded"] == 6
    assert sorted(status["succeededTrialList"]) == names
    assert "trialsRunning" not in status and "trialsPending" not in status
    assert status["startTime"] and status["completionTime"]
    # The suggestion service was asked for exactly the trials that ran, and they were kept.
    assert suggestion_obj is not None
    assert sorted(s["name"] for s in suggestion_obj["status"]["suggestions"]) == names
    assert suggestion_obj["status"]["suggestionCount"] == 6
    # Trials ran as Jobs owned by their Trials, never more than parallelTrialCount at once.
    assert sorted(j["metadata"]["name"] for j in kept_jobs) == names
    for job in kept_jobs:
        (owner,) = job["metadata"]["ownerReferences"]
        assert owner["kind"] == "Trial" and owner["name"] == job["metadata"]["name"]
        assert job["metadata"]["labels"]["katib.kubeflow.org/experiment"] == "random-run"
    assert 1 <= jobs.most <= 2
    # Metrics reached the DB through the in-pod collector, and each Trial's observation and
    # the best trial agree with the program's output.
    with DBClient(db) as client:
        for trial in trials:
            rows = client.get(trial["metadata"]["name"])
            assert [r.name for r in rows] == ["loss"]
            assert float(rows[0].value) == round(_loss(trial), 6)
            (metric,) = trial["status"]["observation"]["metrics"]
            assert float(metric["latest"]) == round(_loss(trial), 6)
            assert trial["metadata"]["ownerReferences"][0]["kind"] == "Experiment"
            assert "clean-metrics-in-db" in trial["metadata"]["finalizers"]
    best = min(trials, key=_loss)
    optimal = status["currentOptimalTrial"]
    assert optimal["bestTrialName"] == best["metadata"]["name"]
    assert float(optimal["observation"]["metrics"][0]["latest"]) == round(_loss(best), 6)
    assert optimal["parameterAssignments"] == best["spec"]["parameterAssignments"]
    reasons = [(e["involvedObject"]["kind"], e["reason"]) for e in events]
    assert reasons.count(("Experiment", "ExperimentCreated")) == 1
    assert reasons.count(("Experiment", "ExperimentMaxTrialsReached")) == 1
    assert reasons.count(("Trial", "TrialCreated")) == 6
    assert reasons.count(("Trial", "TrialSucceeded")) == 6


def test_goal_reached_kills_the_trials_still_running(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    params = [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0.3", "max": "0.3"}},
        {
            "name": "mode",
            "parameterType": "categorical",
            "feasibleSpace": {"list": ["ok", "hang"]},
        },
    ]
    params[0]["feasibleSpace"] = {"list": ["0.3"]}
    params[0]["parameterType"] = "discrete"
    body = experiment(
        "goal-run", algorithm="grid", parameters=params, max_trials=2, parallel=2, goal=0.01
    )
    with fake_cluster(workdir) as server:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            exp = wait_for(lambda: completed(server, "goal-run"), "the experiment to end")
            wait_for(lambda: not server.objects(PODS, NAMESPACE), "the hanging pod to go")
        trials = {trial_state(t): t for t in server.objects(TRIALS, NAMESPACE)}
    assert condition(exp, "Succeeded")["reason"] == "ExperimentGoalReached"
    assert sorted(trials) == ["Killed", "Succeeded"]
    killed = trials["Killed"]
    assert condition(killed, "Killed")["reason"] == "TrialKilled"
    assert exp["status"]["trialsKilled"] == 1 and exp["status"]["trialsSucceeded"] == 1
    assert (
        exp["status"]["currentOptimalTrial"]["bestTrialName"]
        == (trials["Succeeded"]["metadata"]["name"])
    )


def test_failing_trials_fail_the_experiment(services: tuple[str, str], workdir: Path) -> None:
    suggestion, db = services
    body = experiment("fail-run", mode="fail", max_trials=3, parallel=1, max_failed=1)
    with fake_cluster(workdir) as server:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            exp = wait_for(lambda: completed(server, "fail-run"), "the experiment to end")
        trials = server.objects(TRIALS, NAMESPACE)
    failed = condition(exp, "Failed")
    assert failed is not None and failed["reason"] == "ExperimentFailed"
    assert "max failed count" in failed["message"]
    assert len(trials) == 1 and trial_state(trials[0]) == "Failed"
    assert condition(trials[0], "Failed")["reason"] == "TrialFailed"
    assert exp["status"]["failedTrialList"] == [trials[0]["metadata"]["name"]]


def test_an_invalid_experiment_fails_with_every_problem(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("bad-run")
    body["spec"]["parameters"][0]["feasibleSpace"] = {"min": "5", "max": "1"}
    body["spec"]["maxFailedTrialCount"] = 9
    with fake_cluster(workdir) as server:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            exp = wait_for(lambda: completed(server, "bad-run"), "the experiment to fail")
            time.sleep(0.3)  # would anything else be made? (nothing may be)
        assert server.objects(TRIALS, NAMESPACE) == []
        assert server.objects(SUGGESTIONS, NAMESPACE) == []
    message = condition(exp, "Failed")["message"]
    assert message.startswith("Experiment is invalid: ")
    assert "spec.parameters[0].feasibleSpace" in message
    assert "spec.maxFailedTrialCount" in message


def test_deleting_the_experiment_deletes_everything_it_made(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("gc-run", mode="hang", max_trials=4, parallel=2)
    with fake_cluster(workdir) as server, DBClient(db) as client:
        api = api_for(server)
        api.create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):

            def reporting() -> list[dict[str, Any]] | None:
                found = server.objects(TRIALS, NAMESPACE)
                if len(found) == 2 and all(client.get(t["metadata"]["name"]) for t in found):
                    return found
                return None

            trials = wait_for(reporting, "two trials reporting")
            api.delete(EXPERIMENTS, NAMESPACE, "gc-run", propagation="Foreground")
            for res in (EXPERIMENTS, SUGGESTIONS, TRIALS, JOBS, PODS):
                wait_for(lambda res=res: not server.objects(res, NAMESPACE), f"{res} to go")
        for trial in trials:
            assert client.get(trial["metadata"]["name"]) == []  # the finalizer's work


def test_early_stopping_rules_reach_the_collector_and_stop_trials(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    params = [
        {
            "name": "x",
            "parameterType": "discrete",
            "feasibleSpace": {"list": ["0.3", "0.31", "0.9", "0.95"]},
        }
    ]
    body = experiment(
        "es-run",
        mode="steps",
        algorithm="grid",
        parameters=params,
        max_trials=4,
        parallel=1,
        early_stopping={
            "algorithmName": "medianstop",
            "algorithmSettings": [
                {"name": "min_trials_required", "value": "2"},
                {"name": "start_step", "value": "2"},
            ],
        },
    )
    with (
        service_process("katib.earlystopping.server") as (_, early),
        fake_cluster(workdir) as server,
    ):
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db, earlystopping_address=early):
            exp = wait_for(lambda: completed(server, "es-run"), "the experiment to end")
        trials = server.objects(TRIALS, NAMESPACE)
    by_x = {t["spec"]["parameterAssignments"][0]["value"]: t for t in trials}
    assert condition(exp, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
    states = {x: trial_state(t) for x, t in by_x.items()}
    assert states == {
        "0.3": "Succeeded",
        "0.31": "Succeeded",
        "0.9": "EarlyStopped",
        "0.95": "EarlyStopped",
    }
    for x in ("0.9", "0.95"):
        rules = by_x[x]["spec"]["earlyStoppingRules"]
        # stop once loss is greater than the median (our service answers in the "any" form)
        assert [(r["name"], r["comparison"]) for r in rules] == [("loss", "greater")]
        semantics = by_x[x]["metadata"]["annotations"]
        assert semantics["katib.kubeflow.org/early-stopping-semantics"] == "any"
        assert condition(by_x[x], "EarlyStopped")["reason"] == "TrialEarlyStopped"
    assert by_x["0.3"]["spec"]["earlyStoppingRules"] == []
    assert exp["status"]["trialsEarlyStopped"] == 2


def test_a_trial_without_its_objective_is_metrics_unavailable(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("silent-run", mode="silent", max_trials=2, parallel=2)
    with fake_cluster(workdir) as server, DBClient(db) as client:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db, metrics_grace_seconds=0.2):
            exp = wait_for(lambda: completed(server, "silent-run"), "the experiment to end")
        trials = server.objects(TRIALS, NAMESPACE)
        for trial in trials:
            rows = client.get(trial["metadata"]["name"])
            assert [(r.name, r.value) for r in rows] == [("loss", "unavailable")]
    assert [trial_state(t) for t in trials] == ["MetricsUnavailable"] * 2
    assert exp["status"]["trialMetricsUnavailable"] == 2
    assert condition(exp, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
    assert "currentOptimalTrial" not in exp["status"]


def test_a_long_running_experiment_continues_when_max_trials_is_raised(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("resume-run", max_trials=2, parallel=2, resume_policy="LongRunning")
    with fake_cluster(workdir) as server:
        api = api_for(server)
        api.create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            first = wait_for(lambda: completed(server, "resume-run"), "the first end")
            assert first["status"]["trials"] == 2
            api.patch(EXPERIMENTS, NAMESPACE, "resume-run", {"spec": {"maxTrialCount": 4}})
            exp = wait_for(
                lambda: (
                    (e := completed(server, "resume-run")) and e["status"]["trials"] == 4 and e
                ),
                "the second end",
            )
        trials = server.objects(TRIALS, NAMESPACE)
    assert [trial_state(t) for t in trials] == ["Succeeded"] * 4
    assert condition(exp, "Restarting")["reason"] == "ExperimentRestarting"
    assert condition(exp, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"


def test_a_configmap_template_is_read_and_an_unknown_algorithm_fails(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    inline = experiment("cm-run", max_trials=2, parallel=2)
    template = inline["spec"]["trialTemplate"]
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "templates", "namespace": NAMESPACE},
        "data": {"job.yaml": yaml.safe_dump(template.pop("trialSpec"))},
    }
    template["configMap"] = {
        "configMapName": "templates",
        "configMapNamespace": NAMESPACE,
        "templatePath": "job.yaml",
    }
    missing = copy.deepcopy(inline)
    missing["metadata"]["name"] = "cm-missing"
    missing["spec"]["trialTemplate"]["configMap"]["templatePath"] = "other.yaml"
    unknown = experiment("algo-run")
    unknown["spec"]["algorithm"] = {"algorithmName": "no-such-algorithm"}
    with fake_cluster(workdir) as server:
        api = api_for(server)
        api.create(CONFIGMAPS, NAMESPACE, config_map)
        for body in (inline, missing, unknown):
            api.create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            ran = wait_for(lambda: completed(server, "cm-run"), "the ConfigMap experiment")
            no_key = wait_for(lambda: completed(server, "cm-missing"), "the missing template")
            no_algo = wait_for(lambda: completed(server, "algo-run"), "the unknown algorithm")
        trials = [
            t
            for t in server.objects(TRIALS, NAMESPACE)
            if t["metadata"]["labels"]["katib.kubeflow.org/experiment"] == "cm-run"
        ]
    assert condition(ran, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
    assert [trial_state(t) for t in trials] == ["Succeeded"] * 2
    assert trials[0]["spec"]["runSpec"]["kind"] == "Job"
    assert condition(no_key, "Failed")["message"] == (
        "Experiment is invalid: spec.trialTemplate.configMap.templatePath: ConfigMap "
        "kubeflow/templates has no key 'other.yaml'"
    )
    message = condition(no_algo, "Failed")["message"]
    assert message.startswith("Suggestion has failed: ")
    assert "no-such-algorithm" in message


def test_trials_of_another_kind_run_as_unstructured_objects(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("pytorch-run", max_trials=2, parallel=2)
    job = body["spec"]["trialTemplate"]["trialSpec"]
    pod = job["spec"]["template"]
    pod["spec"]["containers"][0]["name"] = "pytorch"
    body["spec"]["trialTemplate"]["primaryContainerName"] = "pytorch"
    body["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": pod}}},
    }
    pytorch = resource_for("kubeflow.org/v1", "PyTorchJob")
    with fake_cluster(workdir) as server:
        server.register(pytorch)
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            exp = wait_for(lambda: completed(server, "pytorch-run"), "the experiment to end")
        trials = server.objects(TRIALS, NAMESPACE)
    assert condition(exp, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
    assert [trial_state(t) for t in trials] == ["Succeeded"] * 2
    for trial in trials:
        assert trial["spec"]["primaryPodLabels"] == {"training.kubeflow.org/job-role": "master"}
        (metric,) = trial["status"]["observation"]["metrics"]
        assert float(metric["latest"]) == round(_loss(trial), 6)


def test_a_kind_the_cluster_does_not_serve_fails_the_trial(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("tf-run", max_trials=2, parallel=1, max_failed=1)
    job = body["spec"]["trialTemplate"]["trialSpec"]
    job["spec"]["template"]["spec"]["containers"][0]["name"] = "tensorflow"
    body["spec"]["trialTemplate"]["primaryContainerName"] = "tensorflow"
    body["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",  # no training operator in this cluster
        "spec": {
            "tfReplicaSpecs": {"Chief": {"replicas": 1, "template": job["spec"]["template"]}}
        },
    }
    with fake_cluster(workdir) as server:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            exp = wait_for(lambda: completed(server, "tf-run"), "the experiment to end")
        (trial,) = server.objects(TRIALS, NAMESPACE)
    assert condition(exp, "Failed")["reason"] == "ExperimentFailed"
    failed = condition(trial, "Failed")
    assert failed["message"].startswith("cannot create the trial's TFJob: ")


class _ColdCache(ApiReads):
    """Reads from a cache that has not seen any run object yet."""

    def run_object(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return None


def test_a_run_object_missing_from_the_cache_is_looked_up_not_called_deleted(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("cold-run", mode="hang", max_trials=1, parallel=1)
    with fake_cluster(workdir) as server:
        api = api_for(server)
        api.create(EXPERIMENTS, NAMESPACE, body)
        with operator_thread(server, suggestion, db):
            (trial,) = wait_for(
                lambda: [
                    t for t in server.objects(TRIALS, NAMESPACE) if trial_state(t) == "Running"
                ],
                "a running trial",
            )
            name = trial["metadata"]["name"]
            config = OperatorConfig(suggestion_address=suggestion, db_address=db)
            cold = Reconciler(api, config, reads=_ColdCache(api))
            assert cold.trial(NAMESPACE, name) is None
            assert trial_state(server.get(TRIALS, NAMESPACE, name)) == "Running"
            api.delete(JOBS, NAMESPACE, name)  # now it is really gone
            assert cold.trial(NAMESPACE, name) is None
            gone = condition(server.get(TRIALS, NAMESPACE, name), "Failed")
            assert gone is not None and "was deleted while it ran" in gone["message"]
            cold.services.close()
