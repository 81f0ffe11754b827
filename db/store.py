"""The storage interface of the observation log and the SQL machinery its backends share.

:class:`ObservationStore` is the whole contract (``add`` / ``query`` / ``delete``, plus
``ping``, ``schema_version`` and ``close``); :func:`open_store` picks a backend from a URL or
:class:`~katib.db.config.DatabaseConfig`. :class:`SqlStore` implements the contract once in
portable SQL over a DB-API connection per thread; the SQLite, PostgreSQL and MySQL modules only
say how to connect, how to run a transaction, how to bulk-insert and which DDL to apply.

Schema (all backends; named so it can share a database with Katib's own ``observation_logs``)::

    katib_observation_logs(id auto-increment PK, trial_name, time_us BIGINT, metric_name, value)
        index (trial_name, metric_name, time_us)
    katib_report_ids(report_id PK, trial_name, created_us BIGINT)     -- schema version 2
        index (trial_name)
    katib_schema_version(version PK, applied_at)   -- one row per applied migration

``katib_report_ids`` makes a retried report idempotent: a report that carries an id (the
``x-katib-report-id`` call metadata, see :mod:`katib.db.service`) records it in the same
transaction as its rows, and a report whose id is already there writes nothing. Ids go with
their trial's rows on delete and are pruned after :data:`REPORT_ID_TTL_US` (a client retries
for minutes, not days).

Rows come back ordered by ``(time_us, id)``: by time, then in insertion order.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from katib.api.errors import Unavailable
from katib.db.config import DatabaseConfig, parse_url
from katib.db.records import LogRow

logger = logging.getLogger(__name__)

TABLE = "katib_observation_logs"
VERSION_TABLE = "katib_schema_version"
INDEX = "katib_observation_logs_trial_metric_time"
REPORT_IDS = "katib_report_ids"
REPORT_IDS_INDEX = "katib_report_ids_trial"
#: How long a report id is remembered (one day, in microseconds).
REPORT_ID_TTL_US = 24 * 3600 * 1_000_000
#: Reports between two prunings of expired report ids (per store).
PRUNE_EVERY = 1000

C = TypeVar("C")


class ObservationStore(ABC):
    """Where observation logs are kept. Implementations are safe to share between threads.

    Inputs are already validated (see :func:`katib.db.records.validate_report`). Backend
    failures that a retry may cure (connection lost, database locked) raise
    :class:`~katib.api.errors.Unavailable`.
    """

    @abstractmethod
    def add(self, trial_name: str, rows: Sequence[LogRow], report_id: str | None = None) -> bool:
        """Append ``rows`` to ``trial_name``'s log in one transaction: all or nothing.

        With a ``report_id``, a report whose id was stored before writes nothing and returns
        False (a client's retry of a report that was committed); otherwise returns True.
        """

    @abstractmethod
    def query(
        self,
        trial_name: str,
        metric_name: str = "",
        start_us: int | None = None,
        end_us: int | None = None,
    ) -> list[LogRow]:
        """Rows of a trial ordered by (time, insertion), optionally for one metric and within
        ``[start_us, end_us]`` (both inclusive, ``None`` = unbounded)."""

    @abstractmethod
    def delete(self, trial_name: str) -> int:
        """Remove every row of ``trial_name``; returns how many were removed."""

    @abstractmethod
    def ping(self) -> None:
        """Check the database answers; raise ``Unavailable`` if it does not."""

    @abstractmethod
    def schema_version(self) -> int:
        """The highest schema migration applied to the database."""

    @abstractmethod
    def close(self) -> None:
        """Release every connection. The store must not be used afterwards."""

    def __enter__(self) -> ObservationStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_store(target: str | DatabaseConfig, connect_timeout: float = 60.0) -> ObservationStore:
    """Open (and create or migrate the schema of) the store at a URL or config.

    Server backends retry the first connection until ``connect_timeout`` seconds have passed.
    """
    config = parse_url(target) if isinstance(target, str) else target
    if config.backend == "sqlite":
        from katib.db.sqlite import SqliteStore

        return SqliteStore(config.path)
    if config.backend == "postgresql":
        from katib.db.postgres import PostgresStore

        return PostgresStore(config, connect_timeout=connect_timeout)
    from katib.db.mysql import MysqlStore

    return MysqlStore(config, connect_timeout=connect_timeout)


def connect_with_retry(
    connect: Callable[[], C],
    timeout: float,
    retry_on: tuple[type[BaseException], ...],
    what: str,
) -> C:
    """Call ``connect`` until it succeeds or ``timeout`` seconds pass (then raise Unavailable)."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            return connect()
        except retry_on as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(f"cannot connect to {what} within {timeout:g} s: {exc}") from exc
            logger.warning("cannot connect to %s yet (%s); retrying", what, exc)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)


class SqlStore(ObservationStore):
    """:class:`ObservationStore` in portable SQL over one DB-API connection per thread.

    Subclasses set ``placeholder``, ``migrations`` (a tuple of DDL statement tuples; version N is
    ``migrations[N - 1]``), ``retryable_errors`` and ``description``, and implement
    :meth:`_connect`, :meth:`_transaction`, :meth:`_schema_transaction` and :meth:`_insert`.
    """

    placeholder = "%s"
    migrations: tuple[tuple[str, ...], ...] = ()
    retryable_errors: tuple[type[BaseException], ...] = ()
    #: The driver's unique-key violation (two concurrent copies of one report id).
    integrity_errors: tuple[type[BaseException], ...] = ()
    description = "database"

    def __init__(self, connect_timeout: float = 0.0) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._closed = False
        self._adds = 0
        first = connect_with_retry(
            self._connect, connect_timeout, self.retryable_errors, self.description
        )
        self._adopt(first)
        try:
            with self._use():
                self._migrate(first)
        except BaseException:
            self.close()
            raise

    # -- what a backend provides ------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """Open one new DB-API connection, ready for reads outside a transaction."""

    @abstractmethod
    def _transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """Run the block in one transaction on ``conn``, yielding a cursor; roll back on error."""

    def _schema_transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """Like :meth:`_transaction`, also excluding concurrent migrations of the database."""
        return self._transaction(conn)

    @abstractmethod
    def _insert(self, cursor: Any, trial_name: str, rows: Sequence[LogRow]) -> None:
        """Insert ``rows`` with the fewest round trips the driver allows (inside a transaction)."""

    def _rows(self, fetched: list[Any]) -> list[LogRow]:
        """Driver rows ``(time_us, metric_name, value)`` -> :class:`LogRow` (hook for drivers that
        return names as bytes)."""
        return list(map(LogRow._make, fetched))

    # -- the contract ---------------------------------------------------------------------

    def add(self, trial_name: str, rows: Sequence[LogRow], report_id: str | None = None) -> bool:
        """See :meth:`ObservationStore.add`."""
        if not rows:
            return True
        p = self.placeholder
        try:
            with self._use() as conn, self._transaction(conn) as cursor:
                if report_id is not None:
                    cursor.execute(
                        f"SELECT 1 FROM {REPORT_IDS} WHERE report_id = {p}", (report_id,)
                    )
                    if cursor.fetchall():
                        return False
                    cursor.execute(
                        f"INSERT INTO {REPORT_IDS} (report_id, trial_name, created_us) "
                        f"VALUES ({p}, {p}, {p})",
                        (report_id, trial_name, _now_us()),
                    )
                    self._adds += 1
                    if self._adds % PRUNE_EVERY == 0:
                        cursor.execute(
                            f"DELETE FROM {REPORT_IDS} WHERE created_us < {p}",
                            (_now_us() - REPORT_ID_TTL_US,),
                        )
                self._insert(cursor, trial_name, rows)
        except self.integrity_errors:
            if report_id is None:
                raise
            return False  # a concurrent copy of this report committed first
        return True

    def query(
        self,
        trial_name: str,
        metric_name: str = "",
        start_us: int | None = None,
        end_us: int | None = None,
    ) -> list[LogRow]:
        """See :meth:`ObservationStore.query`."""
        p = self.placeholder
        sql = f"SELECT time_us, metric_name, value FROM {TABLE} WHERE trial_name = {p}"
        params: list[Any] = [trial_name]
        if metric_name:
            sql += f" AND metric_name = {p}"
            params.append(metric_name)
        if start_us is not None:
            sql += f" AND time_us >= {p}"
            params.append(start_us)
        if end_us is not None:
            sql += f" AND time_us <= {p}"
            params.append(end_us)
        sql += " ORDER BY time_us, id"
        with self._use() as conn, closing(conn.cursor()) as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        return self._rows(fetched)

    def delete(self, trial_name: str) -> int:
        """See :meth:`ObservationStore.delete`."""
        p = self.placeholder
        with self._use() as conn, self._transaction(conn) as cursor:
            cursor.execute(f"DELETE FROM {TABLE} WHERE trial_name = {p}", (trial_name,))
            removed = max(int(cursor.rowcount), 0)
            cursor.execute(f"DELETE FROM {REPORT_IDS} WHERE trial_name = {p}", (trial_name,))
            return removed

    def ping(self) -> None:
        """See :meth:`ObservationStore.ping`."""
        with self._use() as conn, closing(conn.cursor()) as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchall()

    def schema_version(self) -> int:
        """See :meth:`ObservationStore.schema_version`."""
        with self._use() as conn, closing(conn.cursor()) as cursor:
            return self._read_version(cursor)

    def close(self) -> None:
        """See :meth:`ObservationStore.close`."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            _close_quietly(conn)

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _use(self) -> Iterator[Any]:
        """This thread's connection; a connection that failed is dropped and the error becomes
        ``Unavailable`` (the next call reconnects)."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._adopt(self._connect())
            yield conn
        except self.retryable_errors as exc:
            if conn is not None:
                self._drop(conn)
            raise Unavailable(f"{self.description}: {exc}") from exc

    def _adopt(self, conn: Any) -> Any:
        with self._lock:
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def _drop(self, conn: Any) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        _close_quietly(conn)

    def _read_version(self, cursor: Any) -> int:
        cursor.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}")
        row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _migrate(self, conn: Any) -> None:
        """Create the version table, then apply each migration newer than the recorded one."""
        p = self.placeholder
        with self._schema_transaction(conn) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
                "version INTEGER NOT NULL PRIMARY KEY, applied_at VARCHAR(40) NOT NULL)"
            )
            current = self._read_version(cursor)
            if current > len(self.migrations):
                raise RuntimeError(
                    f"{self.description} has schema version {current}, newer than the "
                    f"{len(self.migrations)} this katib-db-manager knows; upgrade it"
                )
            for version in range(current + 1, len(self.migrations) + 1):
                for statement in self.migrations[version - 1]:
                    cursor.execute(statement)
                cursor.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, applied_at) VALUES ({p}, {p})",
                    (version, datetime.now(UTC).isoformat()),
                )
                logger.info("%s: applied schema version %d", self.description, version)


def _now_us() -> int:
    return time.time_ns() // 1000


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # closing a broken connection may fail; nothing to do about it
        logger.debug("ignoring error while closing a connection", exc_info=True)
