"""PostgreSQL backend (psycopg 3): one autocommit connection per thread, explicit transactions.

Reports of up to :data:`COPY_THRESHOLD` rows are inserted with ``executemany`` (pipelined by
psycopg); larger ones are streamed with ``COPY ... FROM STDIN``, several times faster. Both run
inside the report's single transaction. Schema migrations hold a transaction-scoped advisory
lock so several managers starting at once cannot race on ``CREATE TABLE``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from katib.db.config import DatabaseConfig
from katib.db.records import LogRow
from katib.db.store import INDEX, REPORT_IDS, REPORT_IDS_INDEX, TABLE, SqlStore

try:
    import psycopg
    from psycopg.conninfo import make_conninfo
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL backend needs psycopg 3: pip install 'katib-py[postgres]'"
    ) from exc

#: Reports larger than this go through COPY.
COPY_THRESHOLD = 16
#: Key of the advisory lock taken while migrating ("KATB" in ASCII).
MIGRATION_LOCK_KEY = 0x4B415442
#: Seconds one connection attempt may take.
CONNECT_ATTEMPT_TIMEOUT_S = 5

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "id BIGSERIAL PRIMARY KEY, "
        "trial_name VARCHAR(255) NOT NULL, "
        "time_us BIGINT NOT NULL, "
        "metric_name VARCHAR(255) NOT NULL, "
        "value TEXT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON {TABLE} (trial_name, metric_name, time_us)",
    ),
    (
        f"CREATE TABLE IF NOT EXISTS {REPORT_IDS} ("
        "report_id VARCHAR(64) NOT NULL PRIMARY KEY, "
        "trial_name VARCHAR(255) NOT NULL, "
        "created_us BIGINT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {REPORT_IDS_INDEX} ON {REPORT_IDS} (trial_name)",
    ),
)


class PostgresStore(SqlStore):
    """Observation log in a PostgreSQL database (the database itself must exist)."""

    migrations = MIGRATIONS
    retryable_errors = (psycopg.OperationalError, psycopg.InterfaceError)
    integrity_errors = (psycopg.IntegrityError,)

    def __init__(self, config: DatabaseConfig, connect_timeout: float = 60.0) -> None:
        self.config = config
        self.description = f"PostgreSQL {config.redacted()}"
        self._conninfo = make_conninfo(
            host=config.host,
            port=config.port,
            user=config.user or None,
            password=config.password or None,
            dbname=config.database,
            connect_timeout=CONNECT_ATTEMPT_TIMEOUT_S,
            application_name="katib-db-manager",
            **dict(config.options),
        )
        super().__init__(connect_timeout=connect_timeout)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=True)

    @contextmanager
    def _transaction(self, conn: psycopg.Connection[Any]) -> Iterator[psycopg.Cursor[Any]]:
        with conn.transaction(), conn.cursor() as cursor:
            yield cursor

    @contextmanager
    def _schema_transaction(self, conn: psycopg.Connection[Any]) -> Iterator[psycopg.Cursor[Any]]:
        with self._transaction(conn) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            yield cursor

    def _insert(self, cursor: Any, trial_name: str, rows: Sequence[LogRow]) -> None:
        if len(rows) <= COPY_THRESHOLD:
            cursor.executemany(
                f"INSERT INTO {TABLE} (trial_name, time_us, metric_name, value) "
                "VALUES (%s, %s, %s, %s)",
                [(trial_name, row.time_us, row.metric_name, row.value) for row in rows],
            )
            return
        with cursor.copy(
            f"COPY {TABLE} (trial_name, time_us, metric_name, value) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row((trial_name, row.time_us, row.metric_name, row.value))
