"""Controller mode: per-trial overhead of a local experiment over spawning the same processes bare.

``katib-bench controller`` runs an experiment of ``trials`` trivial trials
(``sh -c 'echo loss=…'``, ``parallel`` at a time, random search over one double) through the
whole local path: GetSuggestions over loopback gRPC, trial records persisted in SQLite, process
start, streamed stdout parsing, ReportObservationLog against the DB service — services start-up
included. The baseline spawns the same ``sh -c 'echo loss=…'`` processes with the same
parallelism, reading their output, and nothing else. Each is run ``repeats`` times and the best
(shortest) wall time kept; overhead per trial = (experiment - baseline) / ``trials``.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def experiment(trials: int, parallel: int) -> dict[str, Any]:
    """A random-search experiment whose trial is a shell ``echo``."""
    container = {
        "name": "main",
        "image": "none",
        "command": ["sh", "-c", "echo loss=${trialParameters.x}"],
    }
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
                    "spec": {"template": {"spec": {"containers": [container]}}},
                },
            },
        },
    }


def run_experiment(trials: int, parallel: int) -> float:
    """Wall seconds for the whole experiment (services start-up included)."""
    from katib.controller.runner import ExperimentRunner
    from katib.controller.validation import load_experiment

    doc = experiment(trials, parallel)
    with tempfile.TemporaryDirectory(prefix="katib-bench-") as tmp:
        start = time.perf_counter()
        result = ExperimentRunner(load_experiment(doc), doc, Path(tmp)).run()
        elapsed = time.perf_counter() - start
    if result.decision.counts.succeeded != trials:
        raise RuntimeError(f"expected {trials} succeeded trials, got {result.decision.counts}")
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


@dataclass(frozen=True)
class Overhead:
    """Best-of-``repeats`` wall seconds of the bare spawns and of the experiment."""

    trials: int
    parallel: int
    repeats: int
    bare_s: float
    experiment_s: float

    @property
    def per_trial_ms(self) -> float:
        """Controller overhead per trial, milliseconds."""
        return (self.experiment_s - self.bare_s) / self.trials * 1e3


def run_overhead(trials: int = 200, parallel: int = 4, repeats: int = 3) -> Overhead:
    """Both timings, each the best of ``repeats`` (all bare runs first)."""
    if trials < 1 or parallel < 1 or repeats < 1:
        raise ValueError("--trials, --parallel and --repeats must be at least 1")
    bare = min(run_bare(trials, parallel) for _ in range(repeats))
    full = min(run_experiment(trials, parallel) for _ in range(repeats))
    return Overhead(trials, parallel, repeats, bare, full)


def format_overhead(o: Overhead) -> str:
    """Both timings and the overhead per trial."""
    n = o.trials
    return "\n".join(
        [
            f"trials: {n}, parallelTrialCount: {o.parallel}, best of {o.repeats}",
            f"bare spawn:  {o.bare_s:7.3f} s  ({o.bare_s / n * 1e3:6.2f} ms/trial)",
            f"experiment:  {o.experiment_s:7.3f} s  ({o.experiment_s / n * 1e3:6.2f} ms/trial)",
            f"controller overhead: {o.per_trial_ms:.2f} ms/trial (target < 5 ms)",
        ]
    )
