"""Hostile rows and undecodable bytes get INVALID_ARGUMENT from the DBManager over the wire, never
INTERNAL, nothing is written, and the service keeps serving (issue 13 item 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from katib.api import api_pb2, api_pb2_grpc
from katib.api.server import RunningServer, start
from katib.db.server import build_service
from katib.db.store import open_store

METHOD = "/api.v1.beta1.DBManager/"


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    running: RunningServer = start([build_service(store)], host="127.0.0.1", port=0)
    with grpc.insecure_channel(running.address) as chan:
        yield chan
    running.stop(grace=1)
    store.close()


def report(time_stamp: str, value: str, trial: str = "t") -> api_pb2.ReportObservationLogRequest:
    request = api_pb2.ReportObservationLogRequest(trial_name=trial)
    log = request.observation_log.metric_logs.add()
    log.time_stamp, log.metric.name, log.metric.value = time_stamp, "loss", value
    return request


@pytest.mark.parametrize(
    ("time_stamp", "value", "problem"),
    [
        ("0001-01-01T00:00:00+01:00", "1", "outside years 0001-9999"),
        ("9999-12-31T23:59:59-01:00", "1", "outside years 0001-9999"),
        ("\uff12\uff10\uff12\uff14-01-01T00:00:00Z", "1", "not RFC 3339"),
        ("", "7" * 70_000, "70000 bytes"),
        ("", "a\x00b", "NUL"),
    ],
)
def test_hostile_rows_are_invalid_argument(
    channel: grpc.Channel, time_stamp: str, value: str, problem: str
) -> None:
    stub = api_pb2_grpc.DBManagerStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ReportObservationLog(report(time_stamp, value), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (info.value.details() or "")
    reply = stub.GetObservationLog(api_pb2.GetObservationLogRequest(trial_name="t"), timeout=10)
    assert list(reply.observation_log.metric_logs) == []


@pytest.mark.parametrize(
    "method", ["ReportObservationLog", "GetObservationLog", "DeleteObservationLog"]
)
def test_undecodable_requests_are_invalid_argument(channel: grpc.Channel, method: str) -> None:
    raw = channel.unary_unary(
        METHOD + method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    hostile = [b"\xff\xff\xff", b"\n\x01\xff"]  # garbage; field 1 (trial_name) not UTF-8
    if method == "ReportObservationLog":  # a metric value that is not UTF-8
        hostile.append(report("", "X").SerializeToString().replace(b"X", b"\xff"))
    for data in hostile:
        with pytest.raises(grpc.RpcError) as info:
            raw(data, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "not a valid api.v1.beta1." in (info.value.details() or "")
    stub = api_pb2_grpc.DBManagerStub(channel)
    stub.ReportObservationLog(report("", "0.5"), timeout=10)  # still serving
    reply = stub.GetObservationLog(api_pb2.GetObservationLogRequest(trial_name="t"), timeout=10)
    assert [log.metric.value for log in reply.observation_log.metric_logs] == ["0.5"]
