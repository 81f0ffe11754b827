"""MySQL / MariaDB backend (PyMySQL): one autocommit connection per thread.

PyMySQL's ``executemany`` rewrites ``INSERT ... VALUES`` into multi-row statements (up to about
1 MB each), so a report costs a handful of round trips in one transaction. Names are stored as
``VARBINARY`` so that matching is exact: MySQL's text collations ignore case or trailing spaces
(``'a' = 'a '``), which would merge distinct trials. Values are ``MEDIUMTEXT`` (``TEXT`` stops
at 65 535 bytes, just short of the 64 KiB limit). Migrations hold a named lock (``GET_LOCK``)
because MySQL DDL is not transactional.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

from katib.api.errors import Unavailable
from katib.db.config import DatabaseConfig
from katib.db.records import LogRow
from katib.db.store import INDEX, REPORT_IDS, REPORT_IDS_INDEX, TABLE, SqlStore

try:
    import pymysql
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("the MySQL backend needs PyMySQL: pip install 'katib-py[mysql]'") from exc

#: Seconds one connection attempt may take (Katib's DSN uses timeout=5s).
CONNECT_ATTEMPT_TIMEOUT_S = 5
#: Seconds to wait for another manager's migration.
MIGRATION_LOCK_TIMEOUT_S = 60
MIGRATION_LOCK_NAME = "katib_observation_logs_schema"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "trial_name VARBINARY(1020) NOT NULL, "
        "time_us BIGINT NOT NULL, "
        "metric_name VARBINARY(1020) NOT NULL, "
        "value MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
        f"INDEX {INDEX} (trial_name, metric_name, time_us)"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    ),
    (
        f"CREATE TABLE IF NOT EXISTS {REPORT_IDS} ("
        "report_id VARBINARY(64) NOT NULL PRIMARY KEY, "
        "trial_name VARBINARY(1020) NOT NULL, "
        "created_us BIGINT NOT NULL, "
        f"INDEX {REPORT_IDS_INDEX} (trial_name)"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    ),
)


class MysqlStore(SqlStore):
    """Observation log in a MySQL or MariaDB database (the database itself must exist)."""

    migrations = MIGRATIONS
    retryable_errors = (pymysql.err.OperationalError, pymysql.err.InterfaceError)
    integrity_errors = (pymysql.err.IntegrityError,)

    def __init__(self, config: DatabaseConfig, connect_timeout: float = 60.0) -> None:
        self.config = config
        self.description = f"MySQL {config.redacted()}"
        super().__init__(connect_timeout=connect_timeout)

    def _connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.config.host,
            port=self.config.port,
            user=self.config.user or None,
            password=self.config.password,
            database=self.config.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=CONNECT_ATTEMPT_TIMEOUT_S,
            init_command="SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
        )

    @contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        conn.begin()
        try:
            with closing(conn.cursor()) as cursor:
                yield cursor
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

    @contextmanager
    def _schema_transaction(self, conn: Any) -> Iterator[Any]:
        with closing(conn.cursor()) as cursor:
            cursor.execute(
                "SELECT GET_LOCK(%s, %s)", (MIGRATION_LOCK_NAME, MIGRATION_LOCK_TIMEOUT_S)
            )
            (granted,) = cursor.fetchone()
            if granted != 1:
                raise Unavailable(f"{self.description}: another migration holds the lock")
            try:
                yield cursor
            finally:
                cursor.execute("SELECT RELEASE_LOCK(%s)", (MIGRATION_LOCK_NAME,))
                cursor.fetchall()

    def _rows(self, fetched: list[Any]) -> list[LogRow]:
        return [LogRow(time_us, name.decode(), value) for time_us, name, value in fetched]

    def _insert(self, cursor: Any, trial_name: str, rows: Sequence[LogRow]) -> None:
        cursor.executemany(
            f"INSERT INTO {TABLE} (trial_name, time_us, metric_name, value) "
            "VALUES (%s, %s, %s, %s)",
            [(trial_name, row.time_us, row.metric_name, row.value) for row in rows],
        )
