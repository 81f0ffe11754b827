"""SQLite backend: the embedded default, one file, safe for concurrent threads and processes.

Each thread gets its own connection. The database runs in WAL mode (readers never block the
writer), ``synchronous=NORMAL`` (durable across process crashes; a power loss may drop the last
commits but never corrupts the file) and a busy timeout, and every write opens its transaction
with ``BEGIN IMMEDIATE`` so concurrent writers queue on the lock instead of failing on upgrade.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from katib.db.records import LogRow
from katib.db.store import INDEX, REPORT_IDS, REPORT_IDS_INDEX, TABLE, SqlStore

logger = logging.getLogger(__name__)

#: How long a writer waits for another connection's lock before giving up (``Unavailable``).
BUSY_TIMEOUT_S = 30.0

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "id INTEGER PRIMARY KEY, "
        "trial_name TEXT NOT NULL, "
        "time_us INTEGER NOT NULL, "
        "metric_name TEXT NOT NULL, "
        "value TEXT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON {TABLE} (trial_name, metric_name, time_us)",
    ),
    (
        f"CREATE TABLE IF NOT EXISTS {REPORT_IDS} ("
        "report_id TEXT NOT NULL PRIMARY KEY, "
        "trial_name TEXT NOT NULL, "
        "created_us INTEGER NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {REPORT_IDS_INDEX} ON {REPORT_IDS} (trial_name)",
    ),
)


class SqliteStore(SqlStore):
    """Observation log in an SQLite file (created with its parent directory when missing).

    >>> import tempfile, os
    >>> store = SqliteStore(os.path.join(tempfile.mkdtemp(), "obs.db"))
    >>> store.add("trial-1", [LogRow(0, "loss", "0.5")])
    >>> store.query("trial-1")
    [LogRow(time_us=0, metric_name='loss', value='0.5')]
    >>> store.close()
    """

    placeholder = "?"
    migrations = MIGRATIONS
    retryable_errors = (sqlite3.OperationalError,)
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: str | Path, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.description = f"SQLite database {self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(connect_timeout=0.0)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # autocommit; transactions are explicit BEGIN IMMEDIATE
            check_same_thread=False,  # only close() crosses threads
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                logger.warning("%s: could not enable WAL (journal_mode=%s)", self.path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
        cursor = conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            cursor.close()

    def _insert(self, cursor: Any, trial_name: str, rows: Sequence[LogRow]) -> None:
        cursor.executemany(
            f"INSERT INTO {TABLE} (trial_name, time_us, metric_name, value) VALUES (?, ?, ?, ?)",
            [(trial_name, row.time_us, row.metric_name, row.value) for row in rows],
        )
