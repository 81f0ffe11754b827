"""Signals always land (issue 13 item 2), a relative results directory works with the File
collector (item 3), and ``katib validate`` tells admission from local capability (item 13)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from katib.api import api_pb2 as pb
from katib.api.errors import InvalidArgument
from katib.controller import checks
from katib.controller.local import LOCAL_CAPABILITIES
from katib.controller.validation import load_experiment
from tests.controller.experiments import container, experiment, write_trial_script
from tests.controller.fakes import FixedRules, ScriptedSuggestion, serve

KATIB = [sys.executable, "-m", "katib.controller.cli"]

SLEEPER = """
import sys, time
print("started", flush=True)
time.sleep(60)
"""


def _alive_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def busy_cpu() -> object:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield burners
    for burner in burners:
        burner.kill()
        burner.wait()


def test_many_signals_at_random_moments_always_end_the_run(
    tmp_path: Path, busy_cpu: object
) -> None:
    rng = random.Random(1234)
    sleeper = tmp_path / "sleeper_marker.py"
    sleeper.write_text(SLEEPER)
    doc = experiment(sleeper, max_trials=6, parallel=2)
    container(doc)["command"] = [sys.executable, str(sleeper)]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    for run in range(6):
        proc = subprocess.Popen(
            [*KATIB, "run", str(path), "--results", str(tmp_path / f"r{run}"), "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the run has installed its handlers
        assert "experiment" in first, first
        time.sleep(rng.uniform(0, 1.5))
        sent = [rng.choice([signal.SIGINT, signal.SIGTERM]) for _ in range(rng.randint(1, 4))]
        for sig in sent:
            proc.send_signal(sig)
            time.sleep(rng.uniform(0, 0.2))
        started = time.monotonic()
        output, _ = proc.communicate(timeout=30)
        assert time.monotonic() - started < 15, output
        # The first signal delivered decides; two pending at once (a busy CPU) are delivered
        # in signal-number order, not in the order they were sent.
        assert proc.returncode in {128 + sig for sig in sent}, (run, sent, output)
        assert "Traceback" not in output, output
        deadline = time.monotonic() + 5
        while _alive_with(str(sleeper)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive_with(str(sleeper)) == [], (run, sent)


def test_file_collector_under_the_default_relative_results_dir(tmp_path: Path) -> None:
    script = write_trial_script(tmp_path)
    doc = experiment(script, max_trials=2, parallel=2)
    doc["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": "/katib/metrics.log", "kind": "File"}},
    }
    container(doc)["command"] = [
        "sh",
        "-c",
        f"{sys.executable} {script} ${{trialParameters.x}} ${{trialParameters.y}} "
        "> /katib/metrics.log",
    ]
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc))
    done = subprocess.run(
        [*KATIB, "run", "exp.yaml", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 trials: 2 succeeded" in done.stdout
    assert (tmp_path / "results" / "test-exp" / "experiment.db").exists()


def _validate(tmp_path: Path, doc: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(doc))
    return subprocess.run(
        [*KATIB, "validate", str(path), *extra], capture_output=True, text=True, timeout=60
    )


def test_args_without_command_is_a_local_problem_not_an_admission_one(tmp_path: Path) -> None:
    doc = experiment("/t.py")
    container(doc)["args"] = container(doc).pop("command")
    spec = load_experiment(doc)  # Katib admits it: the image has an entrypoint
    problems = checks.runnable(spec, LOCAL_CAPABILITIES).problems
    assert any("args but no command" in p for p in problems), problems
    done = _validate(tmp_path, doc)
    assert done.returncode == 2
    assert "accepted by Katib" in done.stdout and "args but no command" in done.stdout


WORKFLOW = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Workflow",
    "spec": {
        "templates": [
            {
                "name": "t",
                "container": {"command": ["${trialParameters.x}", "${trialParameters.y}"]},
            }
        ]
    },
}


def test_workflow_kinds_are_not_supported_locally(tmp_path: Path) -> None:
    doc = experiment("/t.py")
    template = doc["spec"]["trialTemplate"]
    template.update(
        trialSpec=WORKFLOW,
        primaryContainerName="main",
        successCondition="status.phase == Succeeded",
        failureCondition="status.phase == Failed",
    )
    spec = load_experiment(doc)
    problems = checks.runnable(spec, LOCAL_CAPABILITIES).problems
    assert problems == [
        "spec.trialTemplate.trialSpec.kind: Workflow is not supported by local runs: an Argo "
        "Workflow is a graph of steps that only Argo can run"
    ]


def test_trainjob_runs_its_trainer_command_and_pytorch_workers_warn() -> None:
    doc = experiment("/t.py")
    command = container(doc)["command"]
    doc["spec"]["trialTemplate"].update(
        primaryContainerName="node",
        trialSpec={
            "apiVersion": "trainer.kubeflow.org/v1alpha1",
            "kind": "TrainJob",
            "spec": {"trainer": {"numNodes": 2, "image": "i", "command": command}},
        },
    )
    report = checks.runnable(load_experiment(doc), LOCAL_CAPABILITIES)
    assert report.problems == []
    assert any("numNodes" in w for w in report.warnings)
    torch = experiment("/t.py")
    pod = torch["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]
    torch["spec"]["trialTemplate"].update(
        trialSpec={
            "apiVersion": "kubeflow.org/v1",
            "kind": "PyTorchJob",
            "spec": {
                "pytorchReplicaSpecs": {
                    "Master": {"replicas": 1, "template": pod},
                    "Worker": {"replicas": 2, "template": pod},
                }
            },
        }
    )
    report = checks.runnable(load_experiment(torch), LOCAL_CAPABILITIES)
    assert report.problems == []
    assert [w.split(":")[0] for w in report.warnings] == [
        "spec.trialTemplate.trialSpec.spec.pytorchReplicaSpecs.Worker"
    ]


def test_early_stopping_is_built_in_and_remote_algorithms_pass(tmp_path: Path) -> None:
    doc = experiment("/t.py")
    doc["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}
    built_in = _validate(tmp_path, doc)
    assert built_in.returncode == 0, built_in.stdout + built_in.stderr
    doc["spec"]["earlyStopping"]["algorithmSettings"] = [{"name": "start_step", "value": "0"}]
    bad = _validate(tmp_path, doc)
    assert bad.returncode == 2
    assert "spec.earlyStopping: start_step must be greater or equal than one" in bad.stdout
    doc["spec"]["earlyStopping"] = {"algorithmName": "vizier-curve"}
    unknown = _validate(tmp_path, doc)
    assert unknown.returncode == 2 and "--early-stopping-address" in unknown.stdout
    assert "medianstop, asha, none" in unknown.stdout
    with serve(FixedRules([])) as early:
        ok = _validate(tmp_path, doc, "--early-stopping-address", early)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    remote = experiment("/t.py")
    remote["spec"]["algorithm"] = {"algorithmName": "pbt"}
    local = _validate(tmp_path, remote)
    assert local.returncode == 2 and "--suggestion-address" in local.stdout
    service = ScriptedSuggestion(lambda request: pb.GetSuggestionsReply())
    with serve(service) as address:
        accepted = _validate(tmp_path, remote, "--suggestion-address", address)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "'pbt'" in accepted.stdout


KATIB_EXAMPLES = Path(os.environ.get("KATIB_EXAMPLES", "/tmp/katib-ex/examples/v1beta1"))
#: Examples Katib's own webhook rejects as shipped, and why.
KATIB_REJECTS = {
    "tekton/pipeline-run.yaml": "spec.trialTemplate.trialParameters[0].name",  # not in template
    "hp-tuning/simple-pbt.yaml": "spec.maxFailedTrialCount",  # 3 > maxTrialCount 2
}


#: What a local run cannot do with some of them (admitted all the same).
LOCAL_PROBLEMS = {
    "argo/argo-workflow.yaml": ["spec.trialTemplate.trialSpec.kind"],
    "kubeflow-training-operator/tfjob-mnist-with-summaries.yaml": [
        "spec.metricsCollectorSpec.collector.kind"
    ],
    "metrics-collector/custom-metrics-collector.yaml": [
        "spec.metricsCollectorSpec.collector.kind"
    ],
    "trial-template/trial-configmap-source.yaml": ["spec.trialTemplate.configMap"],
    # args without command: the image's entrypoint is not at hand locally
    "kubeflow-training-operator/xgboostjob-lightgbm.yaml": [
        "spec.trialTemplate.primaryContainerName"
    ],
}
#: Examples a local run carries out as they are (the trainer command of a TrainJob included).
LOCAL_OK = {
    "hp-tuning/random.yaml",
    "early-stopping/median-stop.yaml",
    "kubeflow-trainer/trainjob-pytorch.yaml",
    "metrics-collector/file-metrics-collector.yaml",
    "kubeflow-training-operator/pytorchjob-mnist.yaml",
}


@pytest.mark.skipif(not KATIB_EXAMPLES.is_dir(), reason="Katib's examples are not present")
def test_katib_examples_pass_admission() -> None:
    for path in sorted(KATIB_EXAMPLES.rglob("*.yaml")):
        rel = str(path.relative_to(KATIB_EXAMPLES))
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Experiment":
                continue
            if rel in KATIB_REJECTS:
                with pytest.raises(InvalidArgument) as info:
                    load_experiment(doc)
                assert any(p.startswith(KATIB_REJECTS[rel]) for p in info.value.problems)
                continue
            spec = load_experiment(doc)  # admission
            problems = checks.runnable(spec, LOCAL_CAPABILITIES).problems
            for field in LOCAL_PROBLEMS.get(rel, ()):
                assert any(p.startswith(field) for p in problems), (rel, problems)
            if rel in LOCAL_OK:
                assert problems == [], (rel, problems)
