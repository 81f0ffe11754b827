"""Latency mode: GetSuggestions time against the size of the trial history.

For each history size ``n`` a synthetic history is drawn once per problem from a seeded generator
(``n`` uniform points of the problem's space, SUCCEEDED with their objective values). Every
contender then answers ``repeats`` identical requests for ``count`` suggestions with that history;
the time of each call (client side, so gRPC and protobuf costs are included) is recorded.
Only gRPC services are measured: peers have no comparable request/response boundary.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.bench.problems import Problem
from katib.bench.service import DEADLINE, METRIC, ServiceTarget, experiment_to_proto

logger = logging.getLogger(__name__)

SIZES = (10, 30, 100, 300, 1000)


@dataclass(frozen=True)
class LatencySample:
    """The call times of one contender at one history size."""

    algorithm: str
    history: int
    seconds: tuple[float, ...]
    error: str | None = None

    @property
    def median(self) -> float:
        """Median seconds per call (NaN if the calls failed)."""
        return statistics.median(self.seconds) if self.seconds else float("nan")


def synthetic_history(problem: Problem, size: int, seed: int) -> list[pb.Trial]:
    """``size`` SUCCEEDED trials at uniform random points, with their objective values."""
    rng = np.random.default_rng([seed, size])
    trials = []
    for i, point in enumerate(problem.space.sample(rng, size)):
        value = problem.evaluate(point, rng).value
        trial = pb.Trial(name=f"latency-{size}-{i:05d}")
        trial.spec.parameter_assignments.assignments.extend(
            pb.ParameterAssignment(name=k, value=v) for k, v in problem.space.format(point)
        )
        trial.status.condition = pb.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.add(name=METRIC, value=repr(float(value)))
        trials.append(trial)
    return trials


def measure(
    channel: grpc.Channel,
    target: ServiceTarget,
    problem: Problem,
    history: Sequence[pb.Trial],
    repeats: int,
    count: int = 1,
    seed: int = 0,
) -> LatencySample:
    """Time ``repeats`` GetSuggestions calls (after one warm-up call) for one history."""
    stub = api_pb2_grpc.SuggestionStub(channel)
    experiment = experiment_to_proto(
        f"latency-{problem.name}",
        problem.space,
        target.algorithm,
        [("random_state", str(seed))],
        budget=len(history) + count,
        batch=count,
    )
    request = pb.GetSuggestionsRequest(
        experiment=experiment,
        trials=history,
        current_request_number=count,
        total_request_number=len(history) + count,
    )
    seconds = []
    try:
        stub.GetSuggestions(request, timeout=DEADLINE)
        for _ in range(repeats):
            t0 = time.perf_counter()
            stub.GetSuggestions(request, timeout=DEADLINE)
            seconds.append(time.perf_counter() - t0)
    except grpc.RpcError as exc:
        error = f"{exc.code().name}: {exc.details()}"
        logger.warning("%s at history %d: %s", target.label, len(history), error)
        return LatencySample(target.label, len(history), tuple(seconds), error)
    return LatencySample(target.label, len(history), tuple(seconds))


def run_latency(
    channels: Sequence[tuple[ServiceTarget, grpc.Channel]],
    problem: Problem,
    sizes: Sequence[int] = SIZES,
    repeats: int = 5,
    count: int = 1,
    seed: int = 0,
    progress: Callable[[LatencySample], object] | None = None,
) -> list[LatencySample]:
    """Every contender at every history size; a contender that fails stops growing."""
    samples = []
    failed: set[str] = set()
    for size in sizes:
        history = synthetic_history(problem, size, seed)
        for target, channel in channels:
            if target.label in failed:
                continue
            sample = measure(channel, target, problem, history, repeats, count, seed)
            samples.append(sample)
            if sample.error:
                failed.add(target.label)
            if progress is not None:
                progress(sample)
    return samples


def format_latency(samples: Sequence[LatencySample], markdown: bool = False) -> str:
    """Median milliseconds per call: one row per contender, one column per history size."""
    sizes = sorted({s.history for s in samples})
    names = list(dict.fromkeys(s.algorithm for s in samples))
    cell = {(s.algorithm, s.history): s for s in samples}
    header = ["algorithm", *(f"n={n} (ms)" for n in sizes)]
    body = []
    for name in names:
        row = [name]
        for n in sizes:
            s = cell.get((name, n))
            row.append("-" if s is None else "error" if s.error else f"{s.median * 1e3:.2f}")
        body.append(row)
    if markdown:
        return "\n".join(
            [
                "| " + " | ".join(header) + " |",
                "|" + "|".join("---" for _ in header) + "|",
                *("| " + " | ".join(r) + " |" for r in body),
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in body)])
