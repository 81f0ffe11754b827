"""The DBManager gRPC service over loopback: real server (``katib.api.server.start``), real
client (:class:`DBClient` and raw stubs), and ``katib-db-manager`` as a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib.api import api_pb2, api_pb2_grpc
from katib.api.errors import InvalidArgument
from katib.api.server import RunningServer, start
from katib.db.client import ZERO_TIME, DBClient, MetricLogEntry
from katib.db.server import build_service
from katib.db.service import HEALTH_NAMES
from katib.db.store import open_store
from katib.db.testing import PostgresServer


@pytest.fixture
def server(db_url: str) -> Iterator[RunningServer]:
    """A DBManager server on a free loopback port, over each backend in turn."""
    store = open_store(db_url, connect_timeout=10)
    running = start([build_service(store)], host="127.0.0.1", port=0)
    yield running
    running.stop(grace=1)
    store.close()


@pytest.fixture
def client(server: RunningServer) -> Iterator[DBClient]:
    """A DBClient connected to ``server``."""
    with DBClient(server.address, timeout=10) as db:
        db.wait_ready(timeout=10)
        yield db


def test_client_round_trip(client: DBClient) -> None:
    paris = timezone(timedelta(hours=2))
    client.report(
        "trial-1",
        [
            (datetime(2024, 1, 1, 10, 0, 0, 500000, tzinfo=paris), "loss", 0.25),
            ("2024-01-01T08:00:01Z", "loss", "0.125"),
            ("2024-01-01T08:00:00.75Z", "accuracy", "0.5"),
            (None, "loss", "untimed"),
        ],
    )
    at = datetime(2024, 1, 1, 8, 0, 0, tzinfo=UTC)
    assert client.get("trial-1") == [
        MetricLogEntry(ZERO_TIME, "loss", "untimed"),
        MetricLogEntry(at + timedelta(seconds=0.5), "loss", "0.25"),
        MetricLogEntry(at + timedelta(seconds=0.75), "accuracy", "0.5"),
        MetricLogEntry(at + timedelta(seconds=1), "loss", "0.125"),
    ]
    assert not client.get("trial-1")[0].timed
    window = client.get(
        "trial-1", "loss", start="2024-01-01T10:00:00.5+02:00", end=at.replace(second=1)
    )
    assert [e.value for e in window] == ["0.25", "0.125"]
    client.delete("trial-1")
    assert client.get("trial-1") == []


def test_wire_format_of_times(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = api_pb2_grpc.DBManagerStub(channel)
        logs = [
            api_pb2.MetricLog(time_stamp=stamp, metric=api_pb2.Metric(name="m", value="v"))
            for stamp in ("2024-01-01T10:00:00.500+02:00", "2024-01-01T08:00:01Z", "")
        ]
        stub.ReportObservationLog(
            api_pb2.ReportObservationLogRequest(
                trial_name="t", observation_log=api_pb2.ObservationLog(metric_logs=logs)
            )
        )
        reply = stub.GetObservationLog(api_pb2.GetObservationLogRequest(trial_name="t"))
    assert [log.time_stamp for log in reply.observation_log.metric_logs] == [
        "0001-01-01T00:00:00Z",
        "2024-01-01T08:00:00.5Z",
        "2024-01-01T08:00:01Z",
    ]


def test_bad_report_is_rejected_whole_and_server_keeps_serving(client: DBClient) -> None:
    good = ("2024-01-01T00:00:00Z", "loss", "1")
    with pytest.raises(InvalidArgument) as caught:
        client.report(
            "t", [good, good, ("2024-13-01T00:00:00Z", "loss", "2"), good, (None, "", "x")]
        )
    message = str(caught.value)
    assert "metric_logs[2]: time_stamp" in message
    assert "metric_logs[4]: metric.name is empty" in message
    assert client.get("t") == []
    client.report("t", [good])
    assert [e.value for e in client.get("t")] == ["1"]


@pytest.mark.parametrize(
    ("trial", "logs", "expected"),
    [
        ("", [("", "m", "1")], "trial_name is empty"),
        ("t", [("", "m" * 256, "1")], r"metric_logs\[0\]: metric.name has 256 characters"),
        ("t", [("", "m", "x" * (64 * 1024 + 1))], r"metric.value has 65537 bytes"),
        ("t", [("2024-01-01T00:00:00", "m", "1")], r"metric_logs\[0\]: time_stamp.*not RFC 3339"),
    ],
)
def test_invalid_reports(client: DBClient, trial: str, logs: list, expected: str) -> None:
    with pytest.raises(InvalidArgument, match=expected):
        client.report(trial, logs)


def test_bad_query_bounds_and_empty_report(client: DBClient) -> None:
    with pytest.raises(InvalidArgument, match="start_time"):
        client.get("t", start="last tuesday")
    with pytest.raises(InvalidArgument, match="trial_name is empty"):
        client.get("")
    client.report("t", [])
    assert client.get("t") == []
    assert client.get("never-reported") == []


def test_raw_status_code_is_invalid_argument(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = api_pb2_grpc.DBManagerStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.DeleteObservationLog(api_pb2.DeleteObservationLogRequest(trial_name=""))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_names_are_serving(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in HEALTH_NAMES:
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name


def test_health_follows_the_database() -> None:
    """Like Katib's DB manager (``SELECT 1``), health turns NOT_SERVING when the database
    stops answering, and the service itself keeps answering."""
    postgres = PostgresServer.start()
    store = open_store(postgres.url(), connect_timeout=10)
    running = start([build_service(store)], host="127.0.0.1", port=0)
    try:
        with grpc.insecure_channel(running.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def status(name: str) -> int:
                request = health_pb2.HealthCheckRequest(service=name)
                return health.Check(request, timeout=10).status

            assert all(status(n) == health_pb2.HealthCheckResponse.SERVING for n in HEALTH_NAMES)
            postgres.stop()
            deadline = time.monotonic() + 15  # probed every second in the background
            while status("") != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() < deadline, "still SERVING with the database gone"
                time.sleep(0.1)
            for name in HEALTH_NAMES:
                assert status(name) == health_pb2.HealthCheckResponse.NOT_SERVING, name
            stub = api_pb2_grpc.DBManagerStub(channel)
            request = api_pb2.GetObservationLogRequest(trial_name="t")
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetObservationLog(request, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert status("") == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        running.stop(grace=1)
        store.close()
        postgres.stop()


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "katib-db-manager"
    if script.exists():
        return [str(script)]
    found = shutil.which("katib-db-manager")
    return [found] if found else [sys.executable, "-m", "katib.db.server"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_console_script_serves_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "KATIB_"))}
    command = [*_console_script(), "--db", db_url, "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        address = _wait_for_address(process)
        with DBClient(address, timeout=10) as db:
            db.wait_ready(timeout=20)
            db.report("t", [("2024-01-01T00:00:00Z", "loss", "0.5")])
            assert [e.value for e in db.get("t")] == ["0.5"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()


def _wait_for_address(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # the server logs to stderr; stops when the process dies
        seen.append(line)
        match = re.search(r"listening on (\S+:\d+)", line)
        if match:
            return match.group(1)
    raise AssertionError(f"katib-db-manager exited with {process.wait()}:\n{''.join(seen)}")
