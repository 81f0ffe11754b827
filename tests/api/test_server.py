"""The shared server runner's health probes: a failing or hung probe turns NOT_SERVING without
tying up request threads, and the probe never runs twice at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib.api import server as srv

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Probe:
    """A probe whose answer the test controls: pass, fail, or hang until released."""

    def __init__(self) -> None:
        self.mode = "pass"
        self.release = threading.Event()
        self.calls = self.concurrent = self.most_concurrent = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.calls += 1
            self.concurrent += 1
            self.most_concurrent = max(self.most_concurrent, self.concurrent)
            self.threads.add(threading.get_ident())
        try:
            if self.mode == "fail":
                raise ConnectionError("database is down")
            if self.mode == "hang":
                self.release.wait(30)
        finally:
            with self._lock:
                self.concurrent -= 1


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Probe]:
    monkeypatch.setattr(srv, "PROBE_INTERVAL_S", 0.05)
    monkeypatch.setattr(srv, "PROBE_TIMEOUT_S", 0.5)
    probe = Probe()
    yield probe
    probe.release.set()


def _wait_for(health: health_pb2_grpc.HealthStub, name: str, status: int) -> None:
    deadline = time.monotonic() + 10
    request = health_pb2.HealthCheckRequest(service=name)
    while health.Check(request, timeout=5).status != status:
        assert time.monotonic() < deadline, f"{name!r} never became {status}"
        time.sleep(0.02)


def test_probe_drives_health_and_a_hang_ties_up_no_request_thread(probe: Probe) -> None:
    spec = srv.ServiceSpec(
        register=lambda _servicer, _server: None,
        servicer=None,
        health_names=("", "demo.Service"),
        probe=probe,
    )
    running = srv.start([spec], port=0, max_workers=2)
    try:
        with grpc.insecure_channel(running.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service="demo.Service"))
            assert next(watch).status == SERVING
            probe.mode = "fail"
            _wait_for(health, "demo.Service", NOT_SERVING)
            assert next(watch).status == NOT_SERVING  # Watch follows the probe too
            probe.mode = "pass"
            _wait_for(health, "", SERVING)
            probe.mode = "hang"
            _wait_for(health, "", NOT_SERVING)
            # With 2 request threads, a probe run per Check would have starved these by now.
            for _ in range(10):
                request = health_pb2.HealthCheckRequest(service="demo.Service")
                assert health.Check(request, timeout=2).status == NOT_SERVING
            probe.mode = "pass"
            probe.release.set()
            _wait_for(health, "demo.Service", SERVING)
            watch.cancel()
    finally:
        running.stop(grace=0)
    assert probe.most_concurrent == 1
    assert len(probe.threads) == 1  # one worker: a store's per-thread connection is reused
    calls = probe.calls
    time.sleep(0.3)
    assert probe.calls == calls  # stopped with the server
