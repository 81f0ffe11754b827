"""Fixtures for the DB tests: real PostgreSQL and MariaDB servers, one fresh database per test.

The servers start once per session (about a second each) on loopback ports from throw-away
data directories. Missing binaries FAIL the tests with the install hint; they never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib.db.store import ObservationStore, open_store
from katib.db.testing import MariaDBServer, MissingServerBinariesError, PostgresServer

BACKENDS = ("sqlite", "postgresql", "mysql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session."""
    try:
        server = PostgresServer.start()
    except MissingServerBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A MariaDB server for the whole session."""
    try:
        server = MariaDBServer.start()
    except MissingServerBinariesError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def fresh_database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """URL of a new, empty database of ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'observations.db'}"
    name = f"t_{uuid.uuid4().hex[:16]}"
    if backend == "postgresql":
        return request.getfixturevalue("postgres_server").create_database(name)
    return request.getfixturevalue("mariadb_server").create_database(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend in turn (schema not yet created)."""
    return fresh_database_url(request, request.param, tmp_path)


@pytest.fixture
def store(db_url: str) -> Iterator[ObservationStore]:
    """An open store on a fresh database of each backend in turn."""
    opened = open_store(db_url, connect_timeout=10)
    yield opened
    opened.close()
