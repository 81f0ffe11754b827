"""TPE latency: our ``tpe`` / ``multivariate-tpe`` GetSuggestions against Optuna's TPE ``ask``.

``katib-bench tpe latency`` times one suggestion with a history of ``history`` completed trials
over :data:`SPACE` (10 parameters touching every type):

* ours — one ``GetSuggestions`` call through the real gRPC servicer, in process, on loopback
  (everything included: proto decoding, the model, encoding the reply), for ``count``
  suggestions; the time is divided by ``count``;
* Optuna — ``study.ask`` with the same space and the same completed trials in an in-memory
  study, ``TPESampler(seed=1)`` with default settings except ``multivariate``, which matches
  ours (each asked trial is then told FAIL so that the study does not grow).

The history is ``history`` points drawn by :meth:`SearchSpace.sample` from
``numpy.random.default_rng(0)``, each with the smooth loss ``sum((u - 0.3)^2)`` of its unit-cube
encoding ``u``. Each method is timed ``repeats`` times after 3 warm-up calls; the table shows
median and p90 (the ``int(0.9 (n - 1))``-th sorted time) in ms per suggestion and the ratio of
the medians, ours / Optuna (the target is at most 0.5).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.bench.peers import optuna_distribution
from katib.bench.service import experiment_to_proto
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, Point, SearchSpace

D, INT = ParameterType.DOUBLE, ParameterType.INT
LOG = Distribution.LOG_UNIFORM

#: Ten parameters: 4 uniform and 2 log doubles, a stepped double, 2 ints (one log) and a
#: categorical.
SPACE = SearchSpace(
    (
        *(ParameterSpec(f"x{i}", D, low=-5, high=5) for i in range(4)),
        ParameterSpec("lr", D, low=1e-4, high=0.1, distribution=LOG),
        ParameterSpec("wd", D, low=1e-6, high=0.01, distribution=LOG),
        ParameterSpec("momentum", D, low=0.5, high=0.95, step=0.05),
        ParameterSpec("layers", INT, low=1, high=8),
        ParameterSpec("units", INT, low=16, high=1024, distribution=LOG),
        ParameterSpec(
            "optimizer", ParameterType.CATEGORICAL, choices=("sgd", "adam", "rmsprop", "adagrad")
        ),
    )
)
#: Our algorithm and whether the matching Optuna sampler is multivariate.
PAIRS = (("tpe", False), ("multivariate-tpe", True))


@dataclass(frozen=True)
class TimedMethod:
    """Sorted seconds per suggestion of one method."""

    label: str
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median seconds per suggestion."""
        return statistics.median(self.seconds)

    @property
    def p90(self) -> float:
        """The ``int(0.9 (n - 1))``-th sorted time."""
        return self.seconds[int(0.9 * (len(self.seconds) - 1))]


def history(space: SearchSpace, n: int) -> tuple[list[Point], list[float]]:
    """``n`` random points of ``space`` and a smooth loss for each."""
    points = space.sample(np.random.default_rng(0), n)
    u = space.encode(points)
    return points, [float(((row - 0.3) ** 2).sum()) for row in u]


def timed(call: Callable[[], object], calls: int, warmup: int = 3) -> tuple[float, ...]:
    """Seconds per call, sorted."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return tuple(sorted(times))


def ours(
    algorithm: str, points: Sequence[Point], losses: Sequence[float], calls: int, count: int
) -> tuple[float, ...]:
    """Per-suggestion seconds of GetSuggestions through gRPC on loopback."""
    from katib.api.server import start
    from katib.suggestion.server import services

    experiment = experiment_to_proto(
        "bench-tpe-latency", SPACE, algorithm, [("random_state", "1")], 0, 0
    )
    trials = []
    for i, (point, loss) in enumerate(zip(points, losses, strict=True)):
        trial = pb.Trial(name=f"t{i}")
        trial.spec.parameter_assignments.assignments.extend(
            pb.ParameterAssignment(name=k, value=v) for k, v in SPACE.format(point)
        )
        trial.status.condition = pb.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.add(name="loss", value=repr(loss))
        trials.append(trial)
    request = pb.GetSuggestionsRequest(
        experiment=experiment,
        trials=trials,
        current_request_number=count,
        total_request_number=len(trials) + count,
    )
    server = start(services([name for name, _ in PAIRS]), host="127.0.0.1", port=0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = api_pb2_grpc.SuggestionStub(channel)
            got = len(stub.GetSuggestions(request).parameter_assignments)
            if got != count:
                raise RuntimeError(f"{algorithm} returned {got} suggestions for {count} asked")
            return tuple(t / count for t in timed(lambda: stub.GetSuggestions(request), calls))
    finally:
        server.stop(grace=0)


def optuna_ask(
    multivariate: bool, points: Sequence[Point], losses: Sequence[float], calls: int
) -> tuple[float, ...]:
    """Seconds of one ``study.ask`` with a study of completed trials."""
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p.name: optuna_distribution(p) for p in SPACE.params}
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=1, multivariate=multivariate)
    )
    study.add_trials(
        [
            create_trial(params=p, distributions=dists, value=v)
            for p, v in zip(points, losses, strict=True)
        ]
    )

    def ask() -> None:
        study.tell(study.ask(dists), state=TrialState.FAIL)

    return timed(ask, calls)


def run_tpe_latency(
    size: int = 1000,
    repeats: int = 30,
    count: int = 1,
    progress: Callable[[TimedMethod], object] | None = None,
) -> list[tuple[TimedMethod, TimedMethod]]:
    """For each pair of :data:`PAIRS`: (Optuna's timing, ours)."""
    if size < 0 or repeats < 1 or count < 1:
        raise ValueError("--history must be >= 0, --repeats >= 1 and --count >= 1")
    points, losses = history(SPACE, size)
    rows = []
    for name, multivariate in PAIRS:
        theirs = TimedMethod(
            f"optuna TPE ask (multivariate={multivariate})",
            optuna_ask(multivariate, points, losses, repeats),
        )
        mine = TimedMethod(
            f"{name} GetSuggestions x{count}", ours(name, points, losses, repeats, count)
        )
        for method in (theirs, mine):
            if progress is not None:
                progress(method)
        rows.append((theirs, mine))
    return rows


def format_tpe_latency(rows: Sequence[tuple[TimedMethod, TimedMethod]], size: int) -> str:
    """The table: median and p90 ms per suggestion, and ours/optuna of the medians."""
    lines = [
        f"history {size} trials, {SPACE.dim} parameters; ms per suggestion",
        f"{'method':<34}{'median':>9}{'p90':>9}{'ours/optuna':>13}",
    ]
    for theirs, mine in rows:
        ratio = f"{mine.median / theirs.median:.2f}"
        for method, note in ((theirs, ""), (mine, ratio)):
            lines.append(
                f"{method.label:<34}{method.median * 1e3:>9.1f}{method.p90 * 1e3:>9.1f}{note:>13}"
            )
    return "\n".join(lines)
