"""Service mode: one suggestion service under load — per-call latency and throughput.

``katib-bench service`` measures what a controller sees of a suggestion service: the service
runs as its own ``katib-suggestion`` process (``in_process=True`` hosts it in the benchmark's
process instead, so client and server share one interpreter lock), reached over loopback gRPC.

For each algorithm, one request is built: one suggestion, carrying ``history`` SUCCEEDED trials
over :data:`SPACE` (7 parameters, every type and distribution). The trials' points are what the
``random`` service suggests with ``random_state = 0`` for that many trials, and trial ``i``'s
``loss`` is ``(i * 7919 mod 1000) / 1000``. The identical request is then

* sent ``repeats`` times in sequence after 5 warm-up calls: the median and p90 of the call times
  (p90 = the ``int(0.9 n)``-th of the ``n`` sorted times);
* sent by ``clients`` threads, each on its own channel, for ``seconds``: the requests per second
  they sustain together.

Services given by address (``NAME=[ALGORITHM@]HOST:PORT``) get the same request, built by our own
service (which always hosts ``random`` for that purpose).
"""

from __future__ import annotations

import contextlib
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.bench.service import ServiceTarget, experiment_to_proto
from katib.suggestion import registry
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace

D, INT = ParameterType.DOUBLE, ParameterType.INT

#: The 7-parameter space of the service figures: log-uniform, stepped and normal doubles, a
#: uniform and a log-uniform int, a discrete list and a categorical.
SPACE = SearchSpace(
    (
        ParameterSpec("lr", D, low=1e-4, high=0.1, distribution=Distribution.LOG_UNIFORM),
        ParameterSpec("momentum", D, low=0.5, high=0.9, step=0.05),
        ParameterSpec("dropout", D, low=0.0, high=0.5, distribution=Distribution.NORMAL),
        ParameterSpec("layers", INT, low=1, high=8),
        ParameterSpec("units", INT, low=16, high=512, distribution=Distribution.LOG_UNIFORM),
        ParameterSpec("batch", ParameterType.DISCRETE, choices=("16", "32", "64", "128")),
        ParameterSpec("optimizer", ParameterType.CATEGORICAL, choices=("sgd", "adam", "rmsprop")),
    )
)
WARMUP = 5


@dataclass(frozen=True)
class LoadSample:
    """One contender's figures: sorted call times and the throughput of ``clients`` clients."""

    algorithm: str
    history: int
    seconds: tuple[float, ...]
    requests_per_s: float | None

    @property
    def median(self) -> float:
        """Median seconds per call."""
        return statistics.median(self.seconds)

    @property
    def p90(self) -> float:
        """The ``int(0.9 n)``-th of the ``n`` sorted call times."""
        return self.seconds[int(0.9 * len(self.seconds))]


def _experiment(algorithm: str, seed: int) -> pb.Experiment:
    """No trial counts, as in the requests the figures were first measured with."""
    return experiment_to_proto(
        "bench-service", SPACE, algorithm, [("random_state", str(seed))], 0, 0
    )


def _request(
    experiment: pb.Experiment, trials: Sequence[pb.Trial], count: int
) -> pb.GetSuggestionsRequest:
    return pb.GetSuggestionsRequest(
        experiment=experiment,
        trials=trials,
        current_request_number=count,
        total_request_number=len(trials) + count,
    )


def history_trials(stub: api_pb2_grpc.SuggestionStub, size: int) -> list[pb.Trial]:
    """``size`` SUCCEEDED trials at the points the ``random`` service suggests (seed 0)."""
    reply = stub.GetSuggestions(_request(_experiment("random", 0), [], size))
    trials = []
    for i, item in enumerate(reply.parameter_assignments):
        trial = pb.Trial(name=f"t{i}")
        trial.spec.parameter_assignments.assignments.extend(item.assignments)
        trial.status.condition = pb.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.add(name="loss", value=repr((i * 7919) % 1000 / 1000))
        trials.append(trial)
    return trials


def call_times(
    stub: api_pb2_grpc.SuggestionStub, request: pb.GetSuggestionsRequest, repeats: int
) -> list[float]:
    """Seconds of ``repeats`` sequential calls (after :data:`WARMUP` warm-up calls), sorted."""
    for _ in range(WARMUP):
        stub.GetSuggestions(request)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stub.GetSuggestions(request)
        times.append(time.perf_counter() - t0)
    return sorted(times)


def throughput(
    address: str, request: pb.GetSuggestionsRequest, clients: int, seconds: float
) -> float:
    """Requests per second sustained by ``clients`` threads, each on its own channel."""
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = api_pb2_grpc.SuggestionStub(channel)
            stub.GetSuggestions(request)
            while time.perf_counter() < stop:
                stub.GetSuggestions(request)
                done[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


@contextlib.contextmanager
def serve(algorithms: Iterable[str], in_process: bool) -> Iterator[str]:
    """The address of a suggestion service hosting ``algorithms``, stopped on exit."""
    names = sorted(set(algorithms))
    if in_process:
        from katib.api.server import start
        from katib.suggestion.server import services

        server = start(services(names), host="127.0.0.1", port=0)
        try:
            yield server.address
        finally:
            server.stop(grace=0)
        return
    argv = [sys.executable, "-m", "katib.suggestion.server", "--host", "127.0.0.1", "--port", "0"]
    argv += [arg for name in names for arg in ("--algorithm", name)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr
    if stderr is None:  # pragma: no cover - Popen with PIPE always sets it
        raise RuntimeError("katib-suggestion: no stderr pipe")
    try:
        for line in stderr:
            match = re.search(r"listening on (\S+)", line)
            if match:
                break
        else:
            raise RuntimeError(f"katib-suggestion exited with {proc.wait()} before listening")
        # Keep draining (and showing) the server's log so that it never blocks on a full pipe.
        threading.Thread(target=lambda: sys.stderr.writelines(stderr), daemon=True).start()
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_service_load(
    algorithms: Sequence[str],
    targets: Sequence[ServiceTarget] = (),
    history: int = 1000,
    repeats: int = 200,
    count: int = 1,
    clients: int = 8,
    seconds: float = 5.0,
    in_process: bool = False,
    progress: Callable[[LoadSample], object] | None = None,
) -> list[LoadSample]:
    """Latency and throughput of each of ``algorithms`` (ours) and ``targets`` (by address)."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    if history < 0 or count < 1 or clients < 0:
        raise ValueError("--history must be >= 0, --count >= 1 and --clients >= 0")
    unknown = [name for name in algorithms if name not in registry.names()]
    if unknown:
        raise ValueError(
            f"--algorithms: unknown {', '.join(unknown)}; known: {', '.join(registry.names())}"
        )
    ours = [ServiceTarget(name, name, "") for name in algorithms]
    samples = []
    with serve([*algorithms, "random"], in_process) as address:
        with grpc.insecure_channel(address) as channel:
            trials = history_trials(api_pb2_grpc.SuggestionStub(channel), history)
        for target in [*ours, *targets]:
            where = target.address or address
            request = _request(_experiment(target.algorithm, 1), trials, count)
            try:
                with grpc.insecure_channel(where) as channel:
                    times = call_times(api_pb2_grpc.SuggestionStub(channel), request, repeats)
                rps = throughput(where, request, clients, seconds) if clients else None
            except grpc.RpcError as exc:
                raise ValueError(
                    f"{target.label} at {where}: GetSuggestions failed: "
                    f"{exc.code().name}: {exc.details()}"
                ) from None
            sample = LoadSample(target.label, history, tuple(times), rps)
            samples.append(sample)
            if progress is not None:
                progress(sample)
    return samples


def format_load(samples: Sequence[LoadSample], clients: int) -> str:
    """The table: algorithm, history, median and p90 ms, requests/s with ``clients`` clients."""
    rps_label = f"req/s x{clients}"
    lines = [f"{'algorithm':<18}{'history':>8}{'median ms':>11}{'p90 ms':>9}{rps_label:>12}"]
    for s in samples:
        rps = "-" if s.requests_per_s is None else f"{s.requests_per_s:.0f}"
        lines.append(
            f"{s.algorithm:<18}{s.history:>8}{s.median * 1e3:>11.2f}{s.p90 * 1e3:>9.2f}{rps:>12}"
        )
    return "\n".join(lines)
