"""The operator under faults: killed and restarted, API errors and conflicts, dropped watches.

What must hold whatever happens: exactly ``maxTrialCount`` trials, each one the suggestion
service returned (no duplicate, none lost), each run once (one metric row in the DB).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import EXPERIMENTS, SUGGESTIONS, TRIALS
from katib.db.client import DBClient
from tests.kube.cluster import (
    NAMESPACE,
    ROOT,
    api_for,
    completed,
    condition,
    experiment,
    fake_cluster,
    operator_thread,
    trial_state,
    wait_for,
    write_kubeconfig,
)


@contextmanager
def operator_process(
    server: FakeApiServer, suggestion: str, db: str, kubeconfig: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``katib-controller`` as a process, with leader election on short timings: a killed
    leader's Lease expires within eight seconds, and a live leader keeps it through six
    seconds of failed renewals. (With 2 s / 1.5 s a leader beside two CPU burners lost its
    Lease when the fake API server, in this test's process, answered no renewal for 1.5 s; it
    then exited, as it must, and the test waited in vain for a controller to reach the next
    kill point.)"""
    command = [
        str(Path(sys.executable).parent / "katib-controller"),
        *("--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE),
        *("--suggestion-address", suggestion, "--db-manager-address", db),
        *("--health-port", "0", "--workers", "2", "--log-level", "WARNING"),
        *("--lease-namespace", NAMESPACE, "--lease-duration", "8"),
        *("--renew-deadline", "6", "--retry-period", "0.5"),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _assignments(server: FakeApiServer, name: str) -> list[str]:
    found = server.get(SUGGESTIONS, NAMESPACE, name)
    return [s["name"] for s in ((found or {}).get("status") or {}).get("suggestions") or ()]


def _check_exactly_once(server: FakeApiServer, name: str, db: str, count: int) -> None:
    """``count`` trials, all Succeeded, one per persisted assignment, each run once."""
    exp = completed(server, name)
    assert exp is not None and condition(exp, "Succeeded")
    trials = server.objects(TRIALS, NAMESPACE)
    names = sorted(t["metadata"]["name"] for t in trials)
    assert len(names) == len(set(names)) == count
    assert sorted(_assignments(server, name)) == names
    assert [trial_state(t) for t in trials] == ["Succeeded"] * count
    assert exp["status"]["trials"] == exp["status"]["trialsSucceeded"] == count
    with DBClient(db) as client:
        for trial_name in names:
            assert len(client.get(trial_name)) == 1, f"{trial_name} ran more than once"


def test_a_killed_controller_neither_duplicates_nor_loses_trials(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("restart-run", mode="sleep0.3", max_trials=6, parallel=2)
    with fake_cluster(workdir) as server:
        kubeconfig = write_kubeconfig(workdir.parent / "kubeconfig", server.url)
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        # SIGKILL at three points: suggestions persisted but maybe no Trial made yet, trials
        # running, and with some trials done.
        checkpoints = [
            lambda: len(_assignments(server, "restart-run")) >= 1,
            lambda: len(server.objects(TRIALS, NAMESPACE)) >= 3,
            lambda: (
                sum(trial_state(t) == "Succeeded" for t in server.objects(TRIALS, NAMESPACE)) >= 4
            ),
        ]
        for reached in checkpoints:
            with operator_process(server, suggestion, db, kubeconfig) as proc:
                wait_for(reached, "the next kill point")
                proc.kill()
        with operator_process(server, suggestion, db, kubeconfig):
            wait_for(lambda: completed(server, "restart-run"), "the experiment to end")
        _check_exactly_once(server, "restart-run", db, 6)


def test_api_errors_and_conflicts_are_retried(services: tuple[str, str], workdir: Path) -> None:
    suggestion, db = services
    body = experiment("faults-run", max_trials=6, parallel=3)
    with fake_cluster(workdir) as server:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        faults = server.faults
        faults.fail(verb="update", plural="experiments", status=409, probability=0.3)
        faults.fail(verb="update", plural="trials", status=409, probability=0.3)
        faults.fail(verb="update", plural="suggestions", status=409, probability=0.3)
        faults.fail(verb="create", plural="trials", status=500, times=3)
        faults.fail(verb="create", plural="jobs", status=503, times=2)
        faults.fail(verb="get", plural="suggestions", status=429, times=2)
        faults.fail(verb="create", plural="suggestions", status=403, times=1)
        with operator_thread(server, suggestion, db):
            wait_for(lambda: completed(server, "faults-run"), "the experiment to end")
        assert faults.fired >= 9
        _check_exactly_once(server, "faults-run", db, 6)


def test_dropped_and_expired_watches_are_resumed(services: tuple[str, str], workdir: Path) -> None:
    suggestion, db = services
    body = experiment("watch-run", mode="sleep0.2", max_trials=6, parallel=3)
    with fake_cluster(workdir) as server:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        # No resync to fall back on: progress depends on the watches coming back.
        with operator_thread(server, suggestion, db, resync_seconds=3600.0):
            wait_for(lambda: len(server.objects(TRIALS, NAMESPACE)) >= 2, "two trials")
            server.faults.drop_watches(abrupt=True)
            wait_for(lambda: len(server.objects(TRIALS, NAMESPACE)) >= 4, "four trials")
            server.faults.expire()
            server.faults.drop_watches()
            wait_for(lambda: completed(server, "watch-run"), "the experiment to end")
        _check_exactly_once(server, "watch-run", db, 6)


def test_assignments_are_persisted_before_any_trial_is_made(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    body = experiment("order-run", max_trials=4, parallel=2)
    with fake_cluster(workdir) as server:
        api_for(server).create(EXPERIMENTS, NAMESPACE, body)
        server.faults.fail(verb="create", plural="trials", status=403, probability=1.0)
        with operator_thread(server, suggestion, db):
            persisted = wait_for(lambda: _assignments(server, "order-run"), "assignments")
            assert len(persisted) == 2
            assert server.objects(TRIALS, NAMESPACE) == []
            wait_for(lambda: server.faults.fired >= 3, "Trial creates retried with back-off")
            server.faults.clear()
            wait_for(lambda: completed(server, "order-run"), "the experiment to end")
        _check_exactly_once(server, "order-run", db, 4)
        # The Trials were made from the persisted assignments, not from a second request.
        assert _assignments(server, "order-run")[:2] == persisted
