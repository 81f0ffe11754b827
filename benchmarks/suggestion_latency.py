"""GetSuggestions latency and throughput over loopback gRPC (issue 2's figures).

    python -m benchmarks.suggestion_latency [--algorithm random] [--history 1000] [--calls 200]

Prints the median / p90 latency of one GetSuggestions call (one suggestion, a history of
``--history`` completed trials over a 7-parameter mixed space), then the requests/s that
``--clients`` concurrent clients sustain, each with its own channel. The service runs as its own
``katib-suggestion`` process, as a controller would reach it; ``--in-process`` hosts it in the
benchmark's process instead (client and server then share one interpreter lock).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.server import start
from katib.suggestion.server import services
from tests.suggestion.requests import MIXED, assignments, experiment, request, trial


def build_request(
    stub: api_pb2_grpc.SuggestionStub, algorithm: str, history: int
) -> pb.GetSuggestionsRequest:
    """A request carrying ``history`` completed trials sampled by the random service."""
    seed_exp = experiment("random", MIXED, {"random_state": "0"})
    reply = stub.GetSuggestions(request(seed_exp, [], history))
    trials = [
        trial(f"t{i}", a.items(), loss=(i * 7919) % 1000 / 1000)
        for i, a in enumerate(assignments(reply))
    ]
    return request(experiment(algorithm, MIXED, {"random_state": "1"}), trials, 1)


def latency(
    stub: api_pb2_grpc.SuggestionStub, req: pb.GetSuggestionsRequest, calls: int
) -> list[float]:
    """Seconds per call for ``calls`` sequential calls (after 5 warm-up calls)."""
    for _ in range(5):
        stub.GetSuggestions(req)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        stub.GetSuggestions(req)
        times.append(time.perf_counter() - t0)
    return times


def throughput(address: str, req: pb.GetSuggestionsRequest, clients: int, seconds: float) -> float:
    """Requests per second sustained by ``clients`` threads, each on its own channel."""
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = api_pb2_grpc.SuggestionStub(channel)
            stub.GetSuggestions(req)
            while time.perf_counter() < stop:
                stub.GetSuggestions(req)
                done[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start_time = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start_time)


@contextlib.contextmanager
def serve(algorithms: list[str], in_process: bool) -> Iterator[str]:
    """The address of a suggestion service hosting ``algorithms``, stopped on exit."""
    if in_process:
        server = start(services(algorithms), port=0)
        try:
            yield server.address
        finally:
            server.stop(grace=0)
        return
    argv = [sys.executable, "-m", "katib.suggestion.server", "--host", "127.0.0.1", "--port", "0"]
    argv += [arg for name in algorithms for arg in ("--algorithm", name)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    stderr = proc.stderr
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algorithm", action="append", help="repeatable; default random")
    parser.add_argument("--history", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-process", action="store_true", help="host the service in-process")
    args = parser.parse_args()
    algorithms = args.algorithm or ["random"]
    rps_label = f"req/s x{args.clients}"
    print(f"{'algorithm':<18}{'history':>8}{'median ms':>11}{'p90 ms':>9}{rps_label:>12}")
    with (
        serve(sorted({*algorithms, "random"}), args.in_process) as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = api_pb2_grpc.SuggestionStub(channel)
        for algorithm in algorithms:
            req = build_request(stub, algorithm, args.history)
            times = sorted(latency(stub, req, args.calls))
            rps = throughput(address, req, args.clients, args.seconds)
            print(
                f"{algorithm:<18}{args.history:>8}{statistics.median(times) * 1e3:>11.2f}"
                f"{times[int(0.9 * len(times))] * 1e3:>9.2f}{rps:>12.0f}"
            )


if __name__ == "__main__":
    main()
