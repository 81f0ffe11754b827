"""Observation-store throughput: inserts (batches of 1 and of 1 000) and read latency.

Per backend: SQLite (a file in a temp dir), PostgreSQL and MariaDB (throw-away servers started
with :mod:`katib.db.testing`, durable settings unless ``--fast-servers``), or any ``--url``.
With ``--grpc`` the same workload also runs through ``katib-db-manager``'s servicer and
:class:`~katib.db.client.DBClient` over loopback.

Usage::

    python benchmarks/db_throughput.py                     # all three backends
    python benchmarks/db_throughput.py --backends sqlite --rows 200000 --grpc
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from katib.db.records import LogRow
from katib.db.store import ObservationStore, open_store
from katib.db.testing import MariaDBServer, PostgresServer

BASE_US = 1_700_000_000_000_000  # 2023-11-14, one row every 10 ms


@dataclass
class Result:
    """Figures for one backend (and access path)."""

    name: str
    single_rows_s: float
    batched_rows_s: float
    read_all_ms: float
    read_window_ms: float
    read_rows: int


def make_rows(count: int, offset: int = 0) -> list[LogRow]:
    """``count`` rows alternating two metrics, 10 ms apart."""
    return [
        LogRow(BASE_US + (offset + i) * 10_000, "loss" if i % 2 else "accuracy", f"{i * 1e-3:.6f}")
        for i in range(count)
    ]


def timed(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``action`` in milliseconds."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def run_workload(
    name: str,
    add: Callable[[str, list[LogRow]], None],
    query: Callable[[str, str, int | None, int | None], int],
    singles: int,
    rows: int,
    batch: int,
) -> Result:
    """Insert ``singles`` one-row reports, then ``rows`` rows in batches; time reads."""
    trial = f"bench-{uuid.uuid4().hex[:8]}"
    one_row = make_rows(singles)
    start = time.perf_counter()
    for row in one_row:
        add(f"{trial}-single", [row])
    single_rate = singles / (time.perf_counter() - start)
    batches = [make_rows(batch, offset=i) for i in range(0, rows, batch)]
    start = time.perf_counter()
    for chunk in batches:
        add(trial, chunk)
    batched_rate = rows / (time.perf_counter() - start)
    count = query(trial, "", None, None)
    low, high = BASE_US + rows // 3 * 10_000, BASE_US + rows // 3 * 10_000 + 1_000 * 10_000
    read_all = timed(lambda: query(trial, "", None, None), 5)
    read_window = timed(lambda: query(trial, "loss", low, high), 20)
    return Result(name, single_rate, batched_rate, read_all, read_window, count)


def bench_store(name: str, store: ObservationStore, args: argparse.Namespace) -> Result:
    """The workload directly against an ObservationStore."""

    def query(trial: str, metric: str, low: int | None, high: int | None) -> int:
        return len(store.query(trial, metric, low, high))

    return run_workload(name, store.add, query, args.singles, args.rows, args.batch)


def bench_grpc(name: str, store: ObservationStore, args: argparse.Namespace) -> Result:
    """The workload through a loopback DBManager server and DBClient."""
    from katib.api.server import start
    from katib.db.client import DBClient
    from katib.db.server import build_service
    from katib.db.timestamps import format_rfc3339

    server = start([build_service(store)], host="127.0.0.1", port=0)
    client = DBClient(server.address, timeout=120)
    try:
        client.wait_ready(10)

        def add(trial: str, rows: list[LogRow]) -> None:
            client.report(
                trial, [(format_rfc3339(r.time_us), r.metric_name, r.value) for r in rows]
            )

        def query(trial: str, metric: str, low: int | None, high: int | None) -> int:
            bounds = [format_rfc3339(b) if b is not None else None for b in (low, high)]
            return len(client.get(trial, metric, bounds[0], bounds[1]))

        return run_workload(name + " (gRPC)", add, query, args.singles, args.rows, args.batch)
    finally:
        client.close()
        server.stop(grace=1)


@contextmanager
def backend_url(backend: str, durable: bool, workdir: Path) -> Iterator[str]:
    """A fresh database of ``backend``; servers are started and stopped around the block."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    server: PostgresServer | MariaDBServer = (
        PostgresServer.start(durable=durable)
        if backend == "postgresql"
        else MariaDBServer.start(durable=durable)
    )
    try:
        yield server.create_database("bench")
    finally:
        server.stop()


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    """One row per backend."""
    print(
        f"\n{args.singles} one-row reports; {args.rows} rows in batches of {args.batch}; "
        f"reads of one trial holding {args.rows} rows (median)\n"
    )
    header = (
        f"{'backend':<22}{'batch=1 rows/s':>16}{'batch=' + str(args.batch) + ' rows/s':>20}"
        f"{'read all (ms)':>15}{'read 500 (ms)':>15}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.name:<22}{r.single_rows_s:>16,.0f}{r.batched_rows_s:>20,.0f}"
            f"{r.read_all_ms:>15.1f}{r.read_window_ms:>15.2f}"
        )


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    parser.add_argument("--url", action="append", default=[], help="benchmark this database too")
    parser.add_argument("--rows", type=int, default=100_000, help="rows inserted in batches")
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--singles", type=int, default=2_000, help="one-row reports")
    parser.add_argument("--fast-servers", action="store_true", help="fsync off on PG/MariaDB")
    parser.add_argument("--grpc", action="store_true", help="also measure through gRPC")
    args = parser.parse_args()

    targets = [b for b in args.backends.split(",") if b] + args.url
    results = []
    with tempfile.TemporaryDirectory(prefix="katib-bench-") as workdir:
        for target in targets:
            if "://" in target:
                stores = [(target.split("://")[0] + " (url)", _nullcontext(target))]
            else:
                stores = [(target, backend_url(target, not args.fast_servers, Path(workdir)))]
            for name, location in stores:
                with location as url, open_store(url) as store:
                    results.append(bench_store(name, store, args))
                    print(f"done: {name}", flush=True)
                    if args.grpc:
                        results.append(bench_grpc(name, store, args))
    print_table(results, args)


@contextmanager
def _nullcontext(value: str) -> Iterator[str]:
    yield value


if __name__ == "__main__":
    main()
