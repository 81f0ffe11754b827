"""``report_metrics`` (the Push collector's drop-in for the Katib SDK) rides out a DB manager
that is not up yet, and fails with a clear error when it never comes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from katib.controller.push import report_metrics
from katib.db.client import DBClient
from katib.db.testing import free_port
from tests.db.test_db_client_retry import _db_manager


def test_report_waits_for_a_db_manager_that_starts_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KATIB_TRIAL_NAME", "late-trial")
    port, db_file = free_port(), tmp_path / "obs.db"
    address = f"127.0.0.1:{port}"
    servers = []
    starter = threading.Timer(1.0, lambda: servers.append(_db_manager(db_file, port)))
    starter.start()
    try:
        report_metrics({"loss": 0.25, "accuracy": 0.5}, db_manager_address=address, retry_for=120)
        with DBClient(address, timeout=10) as db:
            rows = {(row.name, row.value) for row in db.get("late-trial")}
        assert rows == {("loss", "0.25"), ("accuracy", "0.5")}
    finally:
        starter.join()
        for server in servers:
            server.terminate()
            server.wait(timeout=60)


def test_report_to_nowhere_fails_naming_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KATIB_TRIAL_NAME", "t")
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"could not report metrics to {address}"):
        report_metrics({"loss": 1.0}, db_manager_address=address, timeout=2, retry_for=1.0)
    assert time.monotonic() - started < 60


def test_non_numeric_value_is_rejected_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KATIB_TRIAL_NAME", "t")
    with pytest.raises(ValueError, match="'loss'"):
        report_metrics({"loss": "high"}, db_manager_address="127.0.0.1:1")
