"""``katib run --backend kubernetes``: the local runner's loop with trials as Jobs in a cluster."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from katib.controller import cli
from katib.controller.checks import backends
from katib.controller.kube.resources import JOBS
from katib.controller.store import ResultsStore
from katib.controller.trials import TrialCondition
from tests.kube.cluster import NAMESPACE, experiment, fake_cluster, write_kubeconfig


@pytest.fixture(autouse=True)
def _signals_restored() -> Iterator[None]:
    """``katib run`` ignores SIGINT and SIGTERM once it is done; processes started later
    (the next test's pods) would inherit that."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_katib_run_kubernetes_runs_trials_as_jobs(tmp_path: Path) -> None:
    workdir = tmp_path / "pods"
    workdir.mkdir()
    body = experiment("cli-run", max_trials=4, parallel=2, retain=True)
    spec_file = tmp_path / "exp.yaml"
    spec_file.write_text(yaml.safe_dump(body))
    results = tmp_path / "results"
    with fake_cluster(workdir) as server:
        code = cli.main(
            [
                "run",
                str(spec_file),
                "--backend",
                "kubernetes",
                "--kubeconfig",
                str(write_kubeconfig(tmp_path / "kubeconfig", server.url)),
                "--results",
                str(results),
                "--quiet",
            ]
        )
        jobs = server.objects(JOBS, NAMESPACE)
    assert code == cli.EXIT_OK
    with ResultsStore(results, create=False) as store:
        trials = store.trials()
    assert [t.condition for t in trials] == [TrialCondition.SUCCEEDED] * 4
    for trial in trials:
        x = float(dict(trial.assignments)["x"])
        assert float(trial.objective_value(_objective()) or "nan") == round((x - 0.3) ** 2, 6)
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(t.name for t in trials)
    for job in jobs:
        assert "ownerReferences" not in job["metadata"]  # no Trial CR to own it
        assert job["metadata"]["labels"]["katib.kubeflow.org/experiment"] == "cli-run"


def test_katib_run_kubernetes_stops_running_trials_when_the_goal_is_reached(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "pods"
    workdir.mkdir()
    params = [
        {"name": "x", "parameterType": "discrete", "feasibleSpace": {"list": ["0.3"]}},
        {
            "name": "mode",
            "parameterType": "categorical",
            "feasibleSpace": {"list": ["ok", "hang"]},
        },
    ]
    body = experiment(
        "cli-goal", algorithm="grid", parameters=params, max_trials=2, parallel=2, goal=0.01
    )
    spec_file = tmp_path / "exp.yaml"
    spec_file.write_text(yaml.safe_dump(body))
    results = tmp_path / "results"
    with fake_cluster(workdir) as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        args = ["run", str(spec_file), "--backend", "kubernetes", "--kubeconfig", str(kubeconfig)]
        code = cli.main([*args, "--results", str(results), "--quiet"])
        jobs = server.objects(JOBS, NAMESPACE)
    assert code == cli.EXIT_OK
    with ResultsStore(results, create=False) as store:
        by_mode = {dict(t.assignments)["mode"]: t for t in store.trials()}
    assert by_mode["ok"].condition is TrialCondition.SUCCEEDED
    assert by_mode["hang"].condition is TrialCondition.KILLED
    assert jobs == []  # finished and stopped runs are deleted (retain is false)


def _objective():  # type: ignore[no-untyped-def]
    from katib.controller.validation import load_experiment

    return load_experiment(experiment("cli-run")).objective


def test_kubernetes_is_a_backend_and_needs_a_readable_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "kubernetes" in backends()
    spec_file = tmp_path / "exp.yaml"
    spec_file.write_text(yaml.safe_dump(experiment("cli-run")))
    missing = tmp_path / "no-such-kubeconfig"
    code = cli.main(
        ["run", str(spec_file), "--backend", "kubernetes", "--kubeconfig", str(missing)]
    )
    assert code == cli.EXIT_INVALID
    assert "no-such-kubeconfig" in capsys.readouterr().out
