"""``katib-bench gp-latency``: one ``bayesianoptimization`` GetSuggestions vs an Optuna GP trial.

    katib-bench gp-latency [--history 200] [--calls 10] [--batch 8]

The space has ten parameters of every kind (four uniform and two log doubles, a stepped double,
two ints, one log, and a categorical). ``--history`` completed trials at seeded random points
with a smooth loss start both runs; each timed call then adds one more completed trial, as a
real experiment does, so every call fits its model on new data (our per-experiment cache
cannot answer it; a last line times the cache hit of an identical repeated request).

* ours: ``GetSuggestions`` over gRPC on loopback to an in-process ``katib-suggestion`` (proto
  decoding, the fit, the acquisition search, the reply), for 1 and for ``--batch`` suggestions;
* Optuna: ``study.ask`` then ``study.tell`` of the same loss with ``GPSampler(seed=1)``, the
  per-trial cost of its sampler (``greenlet`` installed, so its L-BFGS-B runs batched).

Prints median and p90 milliseconds and the ratio ours / Optuna (the target is <= 0.25).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.bench.peers import optuna_distribution
from katib.bench.service import METRIC, Services, experiment_to_proto
from katib.suggestion.space import (
    Distribution,
    ParameterSpec,
    ParameterType,
    Point,
    SearchSpace,
)

D, INT, CAT = ParameterType.DOUBLE, ParameterType.INT, ParameterType.CATEGORICAL
LOG = Distribution.LOG_UNIFORM
SPACE = SearchSpace(
    (
        *(ParameterSpec(f"x{i}", D, low=-5.0, high=5.0) for i in range(4)),
        ParameterSpec("lr", D, low=1e-4, high=0.1, distribution=LOG),
        ParameterSpec("wd", D, low=1e-6, high=0.01, distribution=LOG),
        ParameterSpec("momentum", D, low=0.5, high=0.95, step=0.05),
        ParameterSpec("layers", INT, low=1, high=8),
        ParameterSpec("units", INT, low=16, high=1024, distribution=LOG),
        ParameterSpec("optimizer", CAT, choices=("sgd", "adam", "rmsprop", "adagrad")),
    )
)


def loss(point: Point) -> float:
    """A smooth loss over the encoded space."""
    u = SPACE.encode([point])[0]
    return float(((u - 0.3) ** 2).sum())


def _trial(name: str, point: Point) -> pb.Trial:
    t = pb.Trial(name=name)
    t.spec.parameter_assignments.assignments.extend(
        pb.ParameterAssignment(name=k, value=v) for k, v in SPACE.format(point)
    )
    t.status.condition = pb.TrialStatus.SUCCEEDED
    t.status.observation.metrics.add(name=METRIC, value=repr(loss(point)))
    return t


def ours(points: list[Point], n0: int, calls: int, count: int) -> tuple[list[float], float]:
    """Seconds per GetSuggestions with ``n0 + i`` trials, and one cache-hit repeat."""
    trials = [_trial(f"t{i:05d}", p) for i, p in enumerate(points)]
    exp = experiment_to_proto(
        "gp-latency", SPACE, "bayesianoptimization", [("random_state", "1")], 10_000, count
    )
    with Services(["bayesianoptimization"]) as running:
        stub = api_pb2_grpc.SuggestionStub(running.endpoints[0][1])

        def call(n: int) -> float:
            req = pb.GetSuggestionsRequest(
                experiment=exp, trials=trials[:n], current_request_number=count
            )
            t0 = time.perf_counter()
            reply = stub.GetSuggestions(req, timeout=120)
            assert len(reply.parameter_assignments) == count
            return time.perf_counter() - t0

        call(n0 - 1)  # warm up imports and the server
        seconds = [call(n0 + i) for i in range(calls)]
        hit = call(n0 + calls - 1)
    return seconds, hit


def optuna(points: list[Point], n0: int, calls: int) -> list[float]:
    """Seconds per ask (and tell) of Optuna's GPSampler with ``n0 + i`` completed trials."""
    import warnings

    import optuna as op
    from optuna.trial import create_trial

    op.logging.set_verbosity(op.logging.WARNING)
    warnings.filterwarnings("ignore", category=op.exceptions.ExperimentalWarning)
    dists = {p.name: optuna_distribution(p) for p in SPACE.params}
    study = op.create_study(sampler=op.samplers.GPSampler(seed=1))
    study.add_trials(
        [
            create_trial(params=_to_optuna(p), distributions=dists, value=loss(p))
            for p in points[:n0]
        ]
    )
    seconds = []
    for _ in range(calls + 1):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        point = {k: float(v) if SPACE[k].type is ParameterType.DISCRETE else v
                 for k, v in trial.params.items()}  # fmt: skip
        study.tell(trial, loss(point))
        seconds.append(time.perf_counter() - t0)
    return seconds[1:]  # the first ask also imports torch


def _to_optuna(point: Point) -> dict[str, Any]:
    return dict(point)


def _summary(label: str, seconds: list[float], ratio: str = "") -> str:
    ordered = sorted(seconds)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"{label:<44}{statistics.median(seconds) * 1e3:>9.1f}{p90 * 1e3:>9.1f}{ratio:>12}"


def add_parser(sub: Any) -> None:
    """Register ``gp-latency`` on ``katib-bench``'s subparsers."""
    p = sub.add_parser("gp-latency", help="bayesianoptimization vs Optuna GPSampler, per trial")
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Time both and print the table."""
    points = SPACE.sample(np.random.default_rng(0), args.history + args.calls + 1)
    print(
        f"history {args.history} completed trials (+1 per call), {SPACE.dim} parameters; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'':<44}{'median':>9}{'p90':>9}{'ours/optuna':>12}  (ms)")
    theirs = optuna(points, args.history, args.calls)
    one, hit = ours(points, args.history, args.calls, 1)
    batch, _ = ours(points, args.history, args.calls, args.batch)
    base = statistics.median(theirs)
    print(_summary("Optuna GPSampler ask + tell", theirs))
    print(
        _summary(
            "bayesianoptimization GetSuggestions x1", one, f"{statistics.median(one) / base:.2f}"
        )
    )
    print(_summary(
        f"bayesianoptimization GetSuggestions x{args.batch}",
        batch,
        f"{statistics.median(batch) / base:.2f}",
    ))  # fmt: skip
    print(f"{'bayesianoptimization x1, cache hit':<44}{hit * 1e3:>9.1f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0
