"""GetSuggestions latency of ``tpe`` and ``multivariate-tpe`` against Optuna's TPE ask time.

    python -m benchmarks.tpe_latency [--history 1000] [--calls 30] [--count 1]

Ours: one GetSuggestions call through the real gRPC servicer on loopback, carrying a history of
``--history`` completed trials over a 10-parameter mixed space (everything included: proto
decoding, the model, encoding the reply). Optuna: ``study.ask`` with the same space and the
same completed trials in an in-memory study, TPESampler with default settings except
``multivariate`` (each asked trial is then told FAIL so that the study does not grow). Prints
median and p90 milliseconds per suggestion and the ratio ours/optuna (the target is <= 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import grpc
import numpy as np

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.server import start
from katib.suggestion.proto import space_from_proto
from katib.suggestion.server import services
from katib.suggestion.space import SearchSpace
from tests.suggestion.requests import Param, experiment, request, trial

#: Ten parameters touching every type: 4 uniform and 2 log doubles, a stepped double, 2 ints
#: (one log) and a categorical.
SPACE: list[Param] = [
    *[(f"x{i}", pb.DOUBLE, {"min": "-5", "max": "5"}) for i in range(4)],
    ("lr", pb.DOUBLE, {"min": "0.0001", "max": "0.1", "distribution": pb.LOG_UNIFORM}),
    ("wd", pb.DOUBLE, {"min": "0.000001", "max": "0.01", "distribution": pb.LOG_UNIFORM}),
    ("momentum", pb.DOUBLE, {"min": "0.5", "max": "0.95", "step": "0.05"}),
    ("layers", pb.INT, {"min": "1", "max": "8"}),
    ("units", pb.INT, {"min": "16", "max": "1024", "distribution": pb.LOG_UNIFORM}),
    ("optimizer", pb.CATEGORICAL, {"list": ["sgd", "adam", "rmsprop", "adagrad"]}),
]


def history(space: SearchSpace, n: int) -> tuple[list[dict], list[float]]:
    """``n`` random points of ``space`` and a smooth loss for each."""
    points = space.sample(np.random.default_rng(0), n)
    u = space.encode(points)
    return points, [float(((row - 0.3) ** 2).sum()) for row in u]


def timed(call: Callable[[], object], calls: int, warmup: int = 3) -> list[float]:
    """Seconds per call, sorted."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def ours(
    algorithm: str, space: SearchSpace, points, losses, calls: int, count: int
) -> list[float]:
    """Per-suggestion seconds of GetSuggestions through gRPC on loopback."""
    exp = experiment(algorithm, SPACE, {"random_state": "1"})
    trials = [
        trial(f"t{i}", space.format(p), loss=v)
        for i, (p, v) in enumerate(zip(points, losses, strict=True))
    ]
    req = request(exp, trials, count)
    server = start(services(["tpe", "multivariate-tpe"]), port=0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = api_pb2_grpc.SuggestionStub(channel)
            assert len(stub.GetSuggestions(req).parameter_assignments) == count
            return [t / count for t in timed(lambda: stub.GetSuggestions(req), calls)]
    finally:
        server.stop(grace=0)


def optuna_ask(multivariate: bool, space: SearchSpace, points, losses, calls: int) -> list[float]:
    """Seconds of one ``study.ask`` with a study of completed trials."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from benchmarks.tpe_vs_optuna import _optuna_distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p.name: _optuna_distribution(p) for p in space.params}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--count", type=int, default=1, help="suggestions per GetSuggestions")
    args = parser.parse_args()
    space = space_from_proto(experiment("tpe", SPACE).spec.parameter_specs.parameters)
    points, losses = history(space, args.history)
    print(f"history {args.history} trials, {space.dim} parameters; ms per suggestion")
    print(f"{'method':<34}{'median':>9}{'p90':>9}{'ours/optuna':>13}")
    for ours_name, multivariate in (("tpe", False), ("multivariate-tpe", True)):
        theirs = optuna_ask(multivariate, space, points, losses, args.calls)
        mine = ours(ours_name, space, points, losses, args.calls, args.count)
        ratio = statistics.median(mine) / statistics.median(theirs)
        for label, times, note in (
            (f"optuna TPE ask (multivariate={multivariate})", theirs, ""),
            (f"{ours_name} GetSuggestions x{args.count}", mine, f"{ratio:.2f}"),
        ):
            p90 = times[int(0.9 * (len(times) - 1))]
            median = statistics.median(times)
            print(f"{label:<34}{median * 1e3:>9.1f}{p90 * 1e3:>9.1f}{note:>13}")


if __name__ == "__main__":
    main()
