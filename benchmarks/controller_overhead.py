"""Per-trial controller overhead: a full local experiment vs. spawning the same processes bare.

    python benchmarks/controller_overhead.py [--trials 200] [--parallel 4]

The experiment runs ``N`` trivial trials (``sh -c 'echo loss=…'``) through the whole path:
GetSuggestions over loopback gRPC, trial records persisted in SQLite, process start, streamed
StdOut parsing, ReportObservationLog against the DB service. The baseline
spawns the same ``sh -c 'echo loss=…'`` processes with the same parallelism, reading their
output, and nothing else. Overhead per trial = (experiment wall time - baseline wall time) / N.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from katib.controller.runner import ExperimentRunner
from katib.controller.validation import load_experiment


def experiment(trials: int, parallel: int) -> dict[str, Any]:
    """A random-search experiment whose trial is a shell ``echo``."""
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "overhead"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": parallel,
            "maxTrialCount": trials,
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "main",
                                        "image": "none",
                                        "command": ["sh", "-c", "echo loss=${trialParameters.x}"],
                                    }
                                ]
                            }
                        }
                    },
                },
            },
        },
    }


def run_experiment(trials: int, parallel: int) -> float:
    """Wall seconds for the whole experiment (services start-up included)."""
    doc = experiment(trials, parallel)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = ExperimentRunner(load_experiment(doc), doc, Path(tmp)).run()
        elapsed = time.perf_counter() - start
    if result.decision.counts.succeeded != trials:
        raise SystemExit(f"expected {trials} succeeded trials, got {result.decision.counts}")
    return elapsed


def run_bare(trials: int, parallel: int) -> float:
    """Wall seconds to spawn the same processes with the same parallelism, reading stdout."""
    start = time.perf_counter()
    running: deque[subprocess.Popen[bytes]] = deque()
    for i in range(trials):
        if len(running) >= parallel:
            proc = running.popleft()
            proc.communicate()
        running.append(
            subprocess.Popen(
                ["sh", "-c", f"echo loss=0.{i}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    for proc in running:
        proc.communicate()
    return time.perf_counter() - start


def main() -> None:
    """Print both timings and the overhead per trial."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bare = min(run_bare(args.trials, args.parallel) for _ in range(args.repeat))
    full = min(run_experiment(args.trials, args.parallel) for _ in range(args.repeat))
    n = args.trials
    print(f"trials: {n}, parallelTrialCount: {args.parallel}, best of {args.repeat}")
    print(f"bare spawn:  {bare:7.3f} s  ({bare / n * 1e3:6.2f} ms/trial)")
    print(f"experiment:  {full:7.3f} s  ({full / n * 1e3:6.2f} ms/trial)")
    print(f"controller overhead: {(full - bare) / n * 1e3:.2f} ms/trial (target < 5 ms)")


if __name__ == "__main__":
    main()
