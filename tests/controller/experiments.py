"""Builders for test experiments: a valid Katib Experiment dict and a tiny trial script."""

from __future__ import annotations

import copy
import sys
import textwrap
from pathlib import Path
from typing import Any

#: A trial: prints ``loss=(x - 0.3)^2 + y`` unless told to fail or stay silent.
TRIAL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    x, y = float(sys.argv[1]), float(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "ok"
    if mode == "fail":
        print("crashing", flush=True)
        sys.exit(3)
    if mode == "silent":
        print("no metrics here")
        sys.exit(0)
    if mode == "slow":
        import time
        time.sleep(float(os.environ.get("TRIAL_SLEEP", "0.5")))
    print(f"epoch 1 loss={(x - 0.3) ** 2 + y + 1:.6f} accuracy=0.5")
    print(f"loss={(x - 0.3) ** 2 + y:.6f}")
    print(f"accuracy={1 - (x - 0.3) ** 2:.6f}")
    """
)


def write_trial_script(directory: Path) -> Path:
    """Write :data:`TRIAL_SCRIPT` into ``directory`` and return its path."""
    path = directory / "trial.py"
    path.write_text(TRIAL_SCRIPT)
    return path


def experiment(
    script: Path | str,
    name: str = "test-exp",
    mode: str = "ok",
    max_trials: int = 4,
    parallel: int = 2,
    **spec: Any,
) -> dict[str, Any]:
    """A valid Experiment over x in [0, 1] and y in [0, 0.1] running ``script``."""
    doc: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "kubeflow"},
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": "loss",
                "additionalMetricNames": ["accuracy"],
            },
            "algorithm": {
                "algorithmName": "random",
                "algorithmSettings": [{"name": "random_state", "value": "7"}],
            },
            "parallelTrialCount": parallel,
            "maxTrialCount": max_trials,
            "maxFailedTrialCount": min(3, max_trials),
            "parameters": [
                {
                    "name": "x",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0", "max": "1"},
                },
                {
                    "name": "y",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0", "max": "0.1"},
                },
            ],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [
                    {"name": "x", "reference": "x"},
                    {"name": "y", "reference": "y"},
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "training",
                                        "image": "ignored",
                                        "command": [
                                            sys.executable,
                                            str(script),
                                            "${trialParameters.x}",
                                            "${trialParameters.y}",
                                            mode,
                                        ],
                                    }
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
        },
    }
    doc["spec"].update(spec)
    return copy.deepcopy(doc)


def container(doc: dict[str, Any]) -> dict[str, Any]:
    """The primary container of an experiment built by :func:`experiment`."""
    return doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
