"""The benchmark loop: every contender x problem x seed, one run at a time.

A run keeps up to ``batch`` trials in flight and evaluates them oldest first. In *batch* mode it
asks for ``batch`` points (``min(batch, remaining budget)``) only once all earlier trials are
told, so each call carries a complete history. In *async* mode it refills a slot as soon as one
trial finishes, as Katib's controller does with ``parallelTrialCount``, so each call also carries
``batch - 1`` RUNNING trials. A run stops when the budget is spent or the optimiser returns fewer
points than asked (exhausted space). Observation noise comes from a generator seeded by
``(seed, crc32 of the problem name)``, independent of the optimiser, so the same seed reproduces
the same run.

Records (arrays are per trial, in the order the points were asked):

* ``value`` — what the optimiser observed (``None`` for a failed evaluation);
* ``true_value`` — the noise-free objective;
* ``best`` — the running minimum of ``true_value`` (regret is measured on it);
* ``latency_s`` — wall time of the ask call that produced the trial (shared by a batch).
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from katib.bench.optimizer import Contender, RunSettings
from katib.bench.problems import Problem
from katib.bench.service import ServiceError
from katib.suggestion.space import Point

logger = logging.getLogger(__name__)


@dataclass
class TrialRecord:
    """One evaluated trial of a run."""

    index: int
    params: Point
    value: float | None
    true_value: float | None
    best: float | None
    latency_s: float
    history: int  # trials created before the ask call that produced this one


@dataclass
class RunResult:
    """One contender on one problem with one seed."""

    problem: str
    algorithm: str
    kind: str
    seed: int
    batch: int
    budget: int
    trials: list[TrialRecord] = field(default_factory=list)
    exhausted: bool = False
    error: str | None = None
    wall_s: float = 0.0

    def best_curve(self) -> np.ndarray:
        """Best-so-far true value after each trial (NaN before the first success)."""
        return np.array([np.nan if t.best is None else t.best for t in self.trials])


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def run_one(problem: Problem, contender: Contender, run: RunSettings) -> RunResult:
    """Run ``contender`` on ``problem`` for ``run.budget`` trials; errors end the run."""
    result = RunResult(
        problem.name, contender.name, contender.kind, run.seed, run.batch, run.budget
    )
    noise = np.random.default_rng([run.seed, zlib.crc32(problem.name.encode())])
    start = time.perf_counter()
    best: float | None = None
    try:
        optimizer = contender.make(problem, run)
    except Exception as exc:  # a rejected experiment or a broken peer must not stop the suite
        result.error = _describe(exc)
        logger.warning("%s on %s: %s", contender.name, problem.name, result.error)
        return result
    inflight: deque[tuple[Point, float, int]] = deque()
    asked = 0
    try:
        while True:
            free = run.batch - len(inflight) if run.asynchronous or not inflight else 0
            want = min(free, run.budget - asked) if not result.exhausted else 0
            if want > 0:
                t0 = time.perf_counter()
                points = optimizer.ask(want)
                latency = time.perf_counter() - t0
                inflight.extend((p, latency, asked) for p in points)
                asked += len(points)
                if len(points) < want:
                    result.exhausted = True
                    logger.info(
                        "%s on %s (seed %d): exhausted after %d trials",
                        contender.name,
                        problem.name,
                        run.seed,
                        asked,
                    )
            if not inflight:
                break
            point, latency, history = inflight.popleft()
            value, true = _evaluate(problem, point, noise)
            optimizer.tell(len(result.trials), value)
            if true is not None:
                best = true if best is None else min(best, true)
            result.trials.append(
                TrialRecord(len(result.trials), point, value, true, best, latency, history)
            )
    except Exception as exc:  # recorded with the run; the other runs go on
        result.error = _describe(exc)
        logger.warning(
            "%s on %s (seed %d): %s", contender.name, problem.name, run.seed, result.error
        )
    finally:
        optimizer.close()
    result.wall_s = time.perf_counter() - start
    return result


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"


def _evaluate(
    problem: Problem, point: Point, noise: np.random.Generator
) -> tuple[float | None, float | None]:
    """``(observed, true)``; ``(None, None)`` when the objective raises or is not finite."""
    try:
        evaluation = problem.evaluate(point, noise)
    except (ValueError, ArithmeticError) as exc:
        logger.warning("%s: evaluation failed at %s: %s", problem.name, point, exc)
        return None, None
    value, true = _finite(evaluation.value), _finite(evaluation.true_value)
    return (value, true) if value is not None and true is not None else (None, None)


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to run: problems, seeds, budget, batch size and batch/async mode."""

    problems: Sequence[Problem]
    seeds: Sequence[int]
    budget: int
    batch: int = 1
    asynchronous: bool = False


def run_benchmark(
    config: BenchmarkConfig,
    contenders: Sequence[Contender],
    progress: Callable[[RunResult, int, int], Any] | None = None,
) -> list[RunResult]:
    """Every contender on every problem with every seed, sequentially.

    A contender whose experiment is rejected (e.g. ``grid`` on a continuous space) is skipped
    on that problem after its first failed run; ``progress(result, done, total)`` is called
    after each run.
    """
    results: list[RunResult] = []
    total = len(config.problems) * len(contenders) * len(config.seeds)
    for problem in config.problems:
        for contender in contenders:
            for seed in config.seeds:
                run = RunSettings(
                    seed=seed,
                    budget=config.budget,
                    batch=config.batch,
                    asynchronous=config.asynchronous,
                )
                result = run_one(problem, contender, run)
                results.append(result)
                if progress is not None:
                    progress(result, len(results), total)
                if result.error and not result.trials:
                    skipped = len(config.seeds) - config.seeds.index(seed) - 1
                    total -= skipped
                    break
    return results
