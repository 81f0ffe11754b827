"""``katib run --backend kubernetes``: the local runner's loop with trials as Jobs in a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from katib.controller import cli
from katib.controller.checks import backends
from katib.controller.kube.resources import JOBS
from katib.controller.store import ResultsStore
from katib.controller.trials import TrialCondition
from tests.kube.cluster import NAMESPACE, experiment, fake_cluster


def _kubeconfig(path: Path, url: str) -> Path:
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
                str(_kubeconfig(tmp_path / "kubeconfig", server.url)),
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
