"""DB mode: observation-store throughput — inserts in batches of 1 and of 1 000, read latency.

``katib-bench db`` runs one workload per backend: SQLite (a file in a temp dir), PostgreSQL and
MariaDB (throw-away servers started with :mod:`katib.db.testing`, durable settings unless
``durable=False``), or any database URL. With ``grpc=True`` the same workload also runs through
``katib-db-manager``'s servicer and :class:`~katib.db.client.DBClient` over loopback.

The workload, for one fresh trial name per run: ``singles`` one-row reports (rows/s), then
``rows`` rows reported in batches of ``batch`` (rows/s), then reads of that trial — every row
(median of 5 reads) and a 1 000-row time window of one of its two metrics, about 500 rows (median
of 20 reads). Rows alternate the metrics ``accuracy`` and ``loss``, 10 ms apart.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from katib.db.records import LogRow
from katib.db.store import ObservationStore, open_store

BASE_US = 1_700_000_000_000_000  # 2023-11-14, one row every 10 ms
BACKENDS = ("sqlite", "postgresql", "mysql")


@dataclass(frozen=True)
class Workload:
    """How much to write: one-row reports, rows in batches, and the batch size."""

    singles: int = 2_000
    rows: int = 100_000
    batch: int = 1_000


@dataclass(frozen=True)
class DBResult:
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


def timed_ms(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``action`` in milliseconds."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


Query = Callable[[str, str, int | None, int | None], int]


def run_workload(
    name: str, add: Callable[[str, list[LogRow]], None], query: Query, work: Workload
) -> DBResult:
    """Insert ``work.singles`` one-row reports, then ``work.rows`` rows in batches; time reads."""
    trial = f"bench-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    for row in make_rows(work.singles):
        add(f"{trial}-single", [row])
    single_rate = work.singles / (time.perf_counter() - start)
    batches = [make_rows(work.batch, offset=i) for i in range(0, work.rows, work.batch)]
    start = time.perf_counter()
    for chunk in batches:
        add(trial, chunk)
    batched_rate = work.rows / (time.perf_counter() - start)
    count = query(trial, "", None, None)
    low = BASE_US + work.rows // 3 * 10_000
    high = low + 1_000 * 10_000
    read_all = timed_ms(lambda: query(trial, "", None, None), 5)
    read_window = timed_ms(lambda: query(trial, "loss", low, high), 20)
    return DBResult(name, single_rate, batched_rate, read_all, read_window, count)


def bench_store(name: str, store: ObservationStore, work: Workload) -> DBResult:
    """The workload directly against an ObservationStore."""

    def query(trial: str, metric: str, low: int | None, high: int | None) -> int:
        return len(store.query(trial, metric, low, high))

    return run_workload(name, store.add, query, work)


def bench_grpc(name: str, store: ObservationStore, work: Workload) -> DBResult:
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

        return run_workload(name + " (gRPC)", add, query, work)
    finally:
        client.close()
        server.stop(grace=1)


@contextmanager
def backend_url(backend: str, durable: bool, workdir: Path) -> Iterator[str]:
    """A fresh database of ``backend``; servers are started and stopped around the block."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    from katib.db.testing import MariaDBServer, PostgresServer

    server: PostgresServer | MariaDBServer = (
        PostgresServer.start(durable=durable)
        if backend == "postgresql"
        else MariaDBServer.start(durable=durable)
    )
    try:
        yield server.create_database("bench")
    finally:
        server.stop()


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def run_db(
    backends: Sequence[str] = BACKENDS,
    urls: Sequence[str] = (),
    work: Workload = Workload(),
    durable: bool = True,
    grpc: bool = False,
    progress: Callable[[str], object] | None = None,
) -> list[DBResult]:
    """The workload on every backend (then every URL), directly and, with ``grpc``, via gRPC."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"--backends: unknown {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    if min(work.singles, work.rows) < 0 or work.batch < 1:
        raise ValueError("--singles and --rows must be >= 0 and --batch >= 1")
    results = []
    with tempfile.TemporaryDirectory(prefix="katib-bench-") as workdir:
        targets = [(b, backend_url(b, durable, Path(workdir))) for b in backends]
        targets += [(url.split("://")[0] + " (url)", _given(url)) for url in urls]
        for name, location in targets:
            with location as url, open_store(url) as store:
                results.append(bench_store(name, store, work))
                if progress is not None:
                    progress(name)
                if grpc:
                    results.append(bench_grpc(name, store, work))
    return results


def format_db(results: Sequence[DBResult], work: Workload) -> str:
    """One row per backend (and access path)."""
    header = (
        f"{'backend':<22}{'batch=1 rows/s':>16}{'batch=' + str(work.batch) + ' rows/s':>20}"
        f"{'read all (ms)':>15}{'read 500 (ms)':>15}"
    )
    lines = [
        f"{work.singles} one-row reports; {work.rows} rows in batches of {work.batch}; "
        f"reads of one trial holding {work.rows} rows (median)",
        "",
        header,
        "-" * len(header),
    ]
    for r in results:
        lines.append(
            f"{r.name:<22}{r.single_rows_s:>16,.0f}{r.batched_rows_s:>20,.0f}"
            f"{r.read_all_ms:>15.1f}{r.read_window_ms:>15.2f}"
        )
    return "\n".join(lines)
