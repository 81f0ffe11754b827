"""Fixtures for the Kubernetes tests: real suggestion and DB services on loopback."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib.db.client import DBClient
from tests.processes import service_process


def _drain(proc: subprocess.Popen[str]) -> None:
    """Keep reading the service's log, so a full pipe never blocks it."""
    if proc.stderr is not None:
        threading.Thread(target=proc.stderr.read, daemon=True).start()


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(suggestion address, DB manager address): ``katib-suggestion`` and
    ``katib-db-manager`` processes, shared by a module's tests."""
    db_file = tmp_path_factory.mktemp("db") / "observations.db"
    with (
        service_process("katib.suggestion.server") as (suggestion_proc, suggestion),
        service_process("katib.db.server", "--db", f"sqlite:///{db_file}") as (db_proc, db),
    ):
        _drain(suggestion_proc)
        _drain(db_proc)
        with DBClient(db) as client:
            client.wait_ready(60)
        yield suggestion, db


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where simulated pods run."""
    path = tmp_path / "pods"
    path.mkdir()
    return path
