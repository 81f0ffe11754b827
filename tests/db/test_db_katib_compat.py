"""Katib's own published Python stubs (``kubeflow-katib`` 0.19.0) against our DBManager.

Those stubs register the same protobuf symbols as ``katib.api``, so the Katib client runs in a
clean interpreter with only the stub directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from katib.api.server import RunningServer, start
from katib.db.server import build_service
from katib.db.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.katib_stubs import katib_stubs_dir

KATIB_CLIENT = textwrap.dedent(
    """
    import json, sys
    import grpc
    from kubeflow.katib import katib_api_pb2 as pb, katib_api_pb2_grpc as pb_grpc

    assert "katib.api" not in sys.modules
    stub = pb_grpc.DBManagerStub(grpc.insecure_channel(sys.argv[1]))
    logs = [
        pb.MetricLog(time_stamp=t, metric=pb.Metric(name=n, value=v))
        for t, n, v in [
            ("2024-01-01T10:00:00.5+02:00", "loss", "0.5"),
            ("2024-01-01T08:00:01.123456789Z", "loss", "0.25"),
            ("2024-01-01T08:00:00Z", "accuracy", "0.75"),
            ("", "loss", "untimed"),
        ]
    ]
    stub.ReportObservationLog(pb.ReportObservationLogRequest(
        trial_name="katib-trial", observation_log=pb.ObservationLog(metric_logs=logs)))

    def get(**kw):
        reply = stub.GetObservationLog(pb.GetObservationLogRequest(trial_name="katib-trial", **kw))
        return [[l.time_stamp, l.metric.name, l.metric.value]
                for l in reply.observation_log.metric_logs]

    out = {"all": get(), "loss_window": get(metric_name="loss",
           start_time="2024-01-01T08:00:00.5Z", end_time="2024-01-01T08:00:01.123456Z")}
    try:
        stub.ReportObservationLog(pb.ReportObservationLogRequest(
            trial_name="katib-trial", observation_log=pb.ObservationLog(
                metric_logs=[pb.MetricLog(time_stamp="bogus", metric=pb.Metric(name="m"))])))
    except grpc.RpcError as exc:
        out["bad_code"] = exc.code().name
    stub.DeleteObservationLog(pb.DeleteObservationLogRequest(trial_name="katib-trial"))
    out["after_delete"] = get()
    print(json.dumps(out))
    """
)


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[RunningServer]:
    """Our DBManager over SQLite on a free loopback port."""
    store = open_store(f"sqlite:///{tmp_path / 'obs.db'}")
    running = start([build_service(store)], host="127.0.0.1", port=0)
    yield running
    running.stop(grace=1)
    store.close()


def test_katib_published_stubs_talk_to_our_db_manager(sqlite_server: RunningServer) -> None:
    env = {**os.environ, "PYTHONPATH": str(katib_stubs_dir())}
    result = subprocess.run(
        [sys.executable, "-c", KATIB_CLIENT, sqlite_server.address],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["all"] == [
        ["0001-01-01T00:00:00Z", "loss", "untimed"],
        ["2024-01-01T08:00:00Z", "accuracy", "0.75"],
        ["2024-01-01T08:00:00.5Z", "loss", "0.5"],
        ["2024-01-01T08:00:01.123456Z", "loss", "0.25"],
    ]
    assert out["loss_window"] == [
        ["2024-01-01T08:00:00.5Z", "loss", "0.5"],
        ["2024-01-01T08:00:01.123456Z", "loss", "0.25"],
    ]
    assert out["bad_code"] == "INVALID_ARGUMENT"
    assert out["after_delete"] == []
