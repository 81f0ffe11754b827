"""One conformance suite for every observation-store backend (SQLite, PostgreSQL, MariaDB).

Each test gets a fresh database of each backend (fixtures in ``conftest.py``). Reports go
through :func:`ingest`, the same validate-then-add path the gRPC service takes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from contextlib import closing

import pytest

from katib.api.errors import InvalidArgument
from katib.db.records import MAX_VALUE_BYTES, LogRow, validate_report
from katib.db.store import TABLE, VERSION_TABLE, ObservationStore, SqlStore, open_store
from katib.db.timestamps import ZERO_TIME_US, format_rfc3339, parse_rfc3339


def ingest(store: ObservationStore, trial: str, entries: Sequence[tuple[str, str, str]]) -> None:
    """Validate and store a report, as ``ReportObservationLog`` does."""
    store.add(trial, validate_report(trial, entries))


def as_tuples(rows: Sequence[LogRow]) -> list[tuple[str, str, str]]:
    """Rows as ``(RFC 3339 UTC time, metric, value)`` for readable assertions."""
    return [(format_rfc3339(r.time_us), r.metric_name, r.value) for r in rows]


def test_round_trip_keeps_values_verbatim(store: ObservationStore) -> None:
    entries = [
        ("2024-01-01T08:00:00Z", "loss", "0.50"),
        ("2024-01-01T08:00:01.25Z", "accuracy", "1e-3"),
        ("2024-01-01T08:00:02Z", "损失", "🎯 not a number"),
        ("2024-01-01T08:00:03Z", "big", "x" * MAX_VALUE_BYTES),
    ]
    ingest(store, "trial-a", entries)
    assert as_tuples(store.query("trial-a")) == [
        ("2024-01-01T08:00:00Z", "loss", "0.50"),
        ("2024-01-01T08:00:01.25Z", "accuracy", "1e-3"),
        ("2024-01-01T08:00:02Z", "损失", "🎯 not a number"),
        ("2024-01-01T08:00:03Z", "big", "x" * MAX_VALUE_BYTES),
    ]


def test_metric_filter_and_exact_name_matching(store: ObservationStore) -> None:
    ingest(store, "trial", [("2024-01-01T00:00:01Z", "loss", "1")])
    ingest(store, "trial", [("2024-01-01T00:00:02Z", "acc", "2")])
    ingest(store, "trial", [("2024-01-01T00:00:03Z", "Loss", "3")])
    ingest(store, "trial ", [("2024-01-01T00:00:04Z", "loss", "4")])
    ingest(store, "Trial", [("2024-01-01T00:00:05Z", "loss", "5")])
    assert [r.value for r in store.query("trial", "loss")] == ["1"]
    assert [r.value for r in store.query("trial")] == ["1", "2", "3"]
    assert [r.value for r in store.query("trial ")] == ["4"]
    assert [r.value for r in store.query("Trial")] == ["5"]
    assert store.query("trial", "loss ") == []


def test_inclusive_time_filters_with_fractions_and_offsets(store: ObservationStore) -> None:
    ingest(
        store,
        "t",
        [
            ("2024-01-01T08:00:00.4Z", "m", "a"),
            ("2024-01-01T10:00:00.5+02:00", "m", "b"),  # = 08:00:00.5Z
            ("2024-01-01T08:00:00.600001Z", "m", "c"),
            ("2024-01-01T03:00:00.7-05:00", "m", "d"),  # = 08:00:00.7Z
        ],
    )
    start = parse_rfc3339("2024-01-01T08:00:00.5Z")
    end = parse_rfc3339("2024-01-01T09:00:00.600001+01:00")
    assert [r.value for r in store.query("t", start_us=start)] == ["b", "c", "d"]
    assert [r.value for r in store.query("t", end_us=end)] == ["a", "b", "c"]
    assert [r.value for r in store.query("t", "m", start, end)] == ["b", "c"]
    assert [r.value for r in store.query("t", start_us=end, end_us=end)] == ["c"]
    assert store.query("t", start_us=end, end_us=start) == []
    assert store.query("t")[1].time_us == parse_rfc3339("2024-01-01T08:00:00.5Z")


def test_order_by_time_then_insertion(store: ObservationStore) -> None:
    ingest(store, "t", [("2024-01-01T00:00:02Z", "m", "late-1"), ("", "m", "untimed-1")])
    ingest(store, "t", [("2024-01-01T00:00:01Z", "m", "early"), ("", "m", "untimed-2")])
    ingest(store, "t", [("2024-01-01T01:00:02+01:00", "m", "late-2")])
    assert [r.value for r in store.query("t")] == [
        "untimed-1",
        "untimed-2",
        "early",
        "late-1",
        "late-2",
    ]


def test_untimed_rows_are_kept_at_zero_time(store: ObservationStore) -> None:
    ingest(store, "t", [("", "loss", "0.1"), ("2024-01-01T00:00:00Z", "loss", "0.2")])
    rows = store.query("t")
    assert rows[0] == LogRow(ZERO_TIME_US, "loss", "0.1")
    assert format_rfc3339(rows[0].time_us) == "0001-01-01T00:00:00Z"
    assert [r.value for r in store.query("t", start_us=0)] == ["0.2"]


def test_delete_removes_only_that_trial(store: ObservationStore) -> None:
    ingest(store, "a", [("", "m", "1"), ("", "m", "2")])
    ingest(store, "b", [("", "m", "3")])
    assert store.delete("a") == 2
    assert store.query("a") == []
    assert [r.value for r in store.query("b")] == ["3"]
    assert store.delete("a") == 0


def test_unknown_trial_and_empty_report(store: ObservationStore) -> None:
    assert store.query("nobody") == []
    ingest(store, "t", [])
    assert store.query("t") == []


def test_bad_entry_writes_nothing(store: ObservationStore) -> None:
    entries = [("2024-01-01T00:00:00Z", "m", "ok")] * 5 + [("yesterday", "m", "bad")]
    with pytest.raises(InvalidArgument, match=r"metric_logs\[5\]: time_stamp"):
        ingest(store, "t", entries)
    assert store.query("t") == []


class Unstorable:
    """A value no driver can bind: it has no adapter and refuses to become a string."""

    def __str__(self) -> str:
        raise ValueError("unstorable")


@pytest.mark.parametrize("size", [3, 100])
def test_failure_inside_the_transaction_rolls_back(store: ObservationStore, size: int) -> None:
    """The last row fails while binding, after the earlier rows went out (COPY / executemany)."""
    rows: list[LogRow] = [LogRow(i, "m", str(i)) for i in range(size - 1)]
    rows.append(LogRow(size, "m", Unstorable()))  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017  driver-specific error type
        store.add("t", rows)
    assert store.query("t") == []
    store.add("t", rows[:2])  # the store is still usable afterwards
    assert len(store.query("t")) == 2


def test_concurrent_writer_threads_lose_no_row(store: ObservationStore) -> None:
    threads, reports, per_report = 6, 20, 10
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for report in range(reports):
                rows = [
                    LogRow(report * per_report + i, "m", f"{worker}-{report}-{i}")
                    for i in range(per_report)
                ]
                store.add(f"trial-{worker % 2}", rows)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    values = [r.value for r in store.query("trial-0") + store.query("trial-1")]
    assert len(values) == len(set(values)) == threads * reports * per_report


WRITER = textwrap.dedent(
    """
    import sys
    from katib.db.records import LogRow
    from katib.db.store import open_store
    url, worker, reports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open_store(url, connect_timeout=30) as store:
        for report in range(reports):
            store.add("shared", [LogRow(report, "m", f"{worker}-{report}-{i}") for i in range(10)])
    """
)


def test_concurrent_writer_processes_lose_no_row(db_url: str) -> None:
    """Several processes open a brand-new database at once (racing on the schema) and write."""
    processes, reports = 3, 30
    children = [
        subprocess.Popen([sys.executable, "-c", WRITER, db_url, str(w), str(reports)])
        for w in range(processes)
    ]
    assert [child.wait(timeout=120) for child in children] == [0] * processes
    with open_store(db_url) as store:
        values = [r.value for r in store.query("shared")]
        assert store.schema_version() == 2
    assert len(values) == len(set(values)) == processes * reports * 10


def test_schema_creation_is_idempotent_and_versioned(db_url: str) -> None:
    with open_store(db_url) as first:
        ingest(first, "t", [("", "m", "kept")])
        assert first.schema_version() == 2
    for _ in range(2):
        with open_store(db_url) as again:
            assert again.schema_version() == 2
            assert [r.value for r in again.query("t")] == ["kept"]
    with open_store(db_url) as store:
        assert isinstance(store, SqlStore)
        with store._use() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(f"SELECT version FROM {VERSION_TABLE}")
            assert sorted(tuple(row) for row in cursor.fetchall()) == [(1,), (2,)]
            cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
            assert cursor.fetchone()[0] == 1


def test_newer_schema_is_refused(db_url: str) -> None:
    with open_store(db_url) as store:
        assert isinstance(store, SqlStore)
        p = store.placeholder
        with store._use() as conn, store._transaction(conn) as cursor:
            cursor.execute(
                f"INSERT INTO {VERSION_TABLE} (version, applied_at) VALUES ({p}, {p})", (99, "x")
            )
    with pytest.raises(RuntimeError, match="schema version 99"):
        open_store(db_url)


def test_ping(store: ObservationStore) -> None:
    store.ping()
