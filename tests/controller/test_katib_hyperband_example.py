"""Katib's ``examples/v1beta1/hp-tuning/hyperband.yaml`` under ``katib validate`` and ``katib
run``, its trial command swapped for a tiny local program.

The experiment below has that example's spec field for field (checked against the Katib mirror
when one is on this machine); only the container's command differs. With ``eta = 2`` and
``r_l = 2`` Hyperband's schedule is bracket ``s = 1``: 2 configurations at 1 epoch, the better
one promoted to 2; then bracket ``s = 0``: 2 configurations at 2 epochs (5 trials). The example
caps the experiment at ``maxTrialCount: 2``, so as written it runs the first rung only.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

KATIB = [sys.executable, "-m", "katib.controller.cli"]
MIRROR = Path(os.environ.get("KATIB_MIRROR", "/work/.mirror/kubeflow+katib/repo"))
EXAMPLE = "examples/v1beta1/hp-tuning/hyperband.yaml"

#: Stands in for Katib's PyTorch MNIST trainer: same flags, a loss that falls with the epochs
#: and stays above the example's goal (0.001), in Katib's StdOut format.
TRAINER = textwrap.dedent(
    """
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--momentum", type=float)
    args = parser.parse_args()
    print(f"loss={abs(args.lr - 0.03) + abs(args.momentum - 0.7) + 0.1 / args.epochs:.6f}")
    """
)


def katib_example() -> dict[str, Any]:
    """The example's experiment, with the container command still pointing at Katib's image."""
    container = {
        "name": "training-container",
        "image": "ghcr.io/kubeflow/katib/pytorch-mnist-cpu:latest",
        "command": [
            "python3",
            "/opt/pytorch-mnist/mnist.py",
            "--epochs=${trialParameters.numberEpochs}",
            "--batch-size=16",
            "--lr=${trialParameters.learningRate}",
            "--momentum=${trialParameters.momentum}",
        ],
    }

    def double(name: str, low: str, high: str) -> dict[str, Any]:
        return {
            "name": name,
            "parameterType": "double",
            "feasibleSpace": {"min": low, "max": high},
        }

    def trial_parameter(name: str, what: str, reference: str) -> dict[str, str]:
        return {
            "name": name,
            "description": f"{what} for the training model",
            "reference": reference,
        }

    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"namespace": "kubeflow", "name": "hyperband"},
        "spec": {
            "parallelTrialCount": 2,
            "maxTrialCount": 2,
            "objective": {"type": "minimize", "goal": 0.001, "objectiveMetricName": "loss"},
            "algorithm": {
                "algorithmName": "hyperband",
                "algorithmSettings": [
                    {"name": "resource_name", "value": "num-epochs"},
                    {"name": "eta", "value": "2"},
                    {"name": "r_l", "value": "2"},
                ],
            },
            "maxFailedTrialCount": 2,
            "parameters": [
                double("lr", "0.01", "0.05"),
                double("momentum", "0.5", "0.9"),
                {
                    "name": "num-epochs",
                    "parameterType": "int",
                    "feasibleSpace": {"min": "1", "max": "1"},
                },
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    trial_parameter("learningRate", "Learning rate", "lr"),
                    trial_parameter("momentum", "Momentum", "momentum"),
                    {
                        "name": "numberEpochs",
                        "description": "Number of epochs to train the model",
                        "reference": "num-epochs",
                    },
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {"spec": {"containers": [container], "restartPolicy": "Never"}}
                    },
                },
            },
        },
    }


def mirrored() -> dict[str, Any] | None:
    """The example as Katib ships it, when the mirror is on this machine."""
    if not MIRROR.is_dir():
        return None
    shown = subprocess.run(
        ["git", f"--git-dir={MIRROR}", "show", f"HEAD:{EXAMPLE}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return yaml.safe_load(shown.stdout) if shown.returncode == 0 else None


def container(doc: dict[str, Any]) -> dict[str, Any]:
    """The trial's only container."""
    return doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


def local(tmp_path: Path, doc: dict[str, Any]) -> Path:
    """``doc`` with the command swapped for :data:`TRAINER`, written as YAML."""
    trainer = tmp_path / "mnist.py"
    trainer.write_text(TRAINER)
    command = container(doc)["command"]
    command[:2] = [sys.executable, str(trainer)]
    path = tmp_path / "hyperband.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(path: Path, results: Path) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """``katib run`` the experiment, then its trials as ``katib trials -o json`` lists them."""
    done = subprocess.run(
        [*KATIB, "run", str(path), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run(
        [*KATIB, "trials", str(results), "-o", "json"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    return done, json.loads(listed.stdout)["trials"]


def per_rung(trials: list[dict]) -> dict[tuple[str, int], collections.Counter[str]]:
    """Epochs run per (bracket, rung), read from the trial names ``hyperband-b<k>c<i>-r<j>``."""
    counts: dict[tuple[str, int], collections.Counter[str]] = {}
    for trial in trials:
        match = re.fullmatch(r"hyperband-(b\d+)c\d+-r(\d+)", trial["name"])
        assert match, trial["name"]
        key = (match.group(1), int(match.group(2)))
        counts.setdefault(key, collections.Counter())[trial["parameters"]["num-epochs"]] += 1
    return counts


def test_our_copy_is_katibs_example() -> None:
    shipped = mirrored()
    if shipped is None:
        pytest.skip("the Katib mirror is not on this machine")
    assert shipped == katib_example()


def test_the_example_validates(tmp_path: Path) -> None:
    path = tmp_path / "hyperband.yaml"
    path.write_text(yaml.safe_dump(katib_example()))  # Katib's own command: validation only
    done = subprocess.run(
        [*KATIB, "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_runs_its_first_rung_within_max_trial_count(tmp_path: Path) -> None:
    done, trials = run(local(tmp_path, katib_example()), tmp_path / "results")
    assert "ExperimentMaxTrialsReached" in done.stdout
    assert [t["condition"] for t in trials] == ["Succeeded"] * 2
    assert per_rung(trials) == {("b0", 0): {"1": 2}}


def test_the_example_runs_every_bracket_when_max_trial_count_allows(tmp_path: Path) -> None:
    doc = katib_example()
    doc["spec"]["maxTrialCount"] = 10  # above the schedule's 5: the algorithm ends the search
    done, trials = run(local(tmp_path, doc), tmp_path / "results")
    assert "ExperimentMaxTrialsReached" not in done.stdout
    assert [t["condition"] for t in trials] == ["Succeeded"] * 5
    assert per_rung(trials) == {("b0", 0): {"1": 2}, ("b0", 1): {"2": 1}, ("b1", 0): {"2": 2}}
    at_one = [t for t in trials if t["name"].endswith("-r0") and "-b0" in t["name"]]
    best = min(at_one, key=lambda t: float(t["objectiveValue"]))
    promoted = next(t for t in trials if t["name"].endswith("-r1"))
    assert promoted["parameters"]["lr"] == best["parameters"]["lr"]
    assert promoted["parameters"]["momentum"] == best["parameters"]["momentum"]
