"""The operator end to end: a fake API server, simulated Jobs, real services and collector.

Each test runs whole Experiments through the real ``kubernetes`` client against
:class:`FakeApiServer`; trial pods are local processes running the real
``katib-metrics-collector`` around a ``python -c`` program, the suggestion service and the DB
manager are real processes on loopback.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import EXPERIMENTS, JOBS, PODS, SUGGESTIONS, TRIALS
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
