"""A brief DB outage costs a retry, never a lost or a doubled row (issue 13 item 9).

``DBClient`` retries UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED (a stopping server's answer to
calls that arrive during its graceful stop) with back-off. A report whose reply is
lost after its rows were committed is resent under the same report id, which our service stores
once; a server that never announced that (as Katib's does not) gets no resend after the request
may have reached it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from katib.api import api_pb2, api_pb2_grpc
from katib.api.errors import Unavailable
from katib.api.server import RunningServer, ServiceSpec, start
from katib.db.client import DBClient
from katib.db.records import LogRow
from katib.db.server import build_service
from katib.db.service import REPORT_ID_KEY, DBManagerServicer
from katib.db.store import ObservationStore, open_store
from katib.db.testing import free_port


class CommitThenFail:
    """A store whose first ``failures`` adds commit and then fail as a lost reply would."""

    def __init__(self, store: ObservationStore, failures: int = 1) -> None:
        self.store = store
        self.failures = failures

    def add(self, trial_name: str, rows: Sequence[LogRow], report_id: str | None = None) -> bool:
        stored = self.store.add(trial_name, rows, report_id)
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("connection to the database lost after COMMIT (simulated)")
        return stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture
def store(db_url: str) -> Iterator[ObservationStore]:
    opened = open_store(db_url, connect_timeout=10)
    yield opened
    opened.close()


def serve(spec: ServiceSpec) -> RunningServer:
    return start([spec], host="127.0.0.1", port=0)


def test_a_report_resent_after_its_commit_is_stored_once(store: ObservationStore) -> None:
    flaky = CommitThenFail(store, failures=2)
    running = serve(build_service(flaky))  # type: ignore[arg-type]
    try:
        with DBClient(running.address, timeout=10) as db:
            db.wait_ready(timeout=10)
            assert db.dedupes_reports
            db.report("t", [("2024-01-01T00:00:00Z", "loss", "0.5"), ("", "acc", "0.9")])
            assert flaky.failures == 0  # both failures happened and were retried
            assert [(e.name, e.value) for e in db.get("t")] == [("acc", "0.9"), ("loss", "0.5")]
            db.delete("t")  # the trial's report ids go with it: a new report is stored again
            db.report("t", [("", "loss", "0.25")])
            assert [e.value for e in db.get("t")] == ["0.25"]
    finally:
        running.stop(grace=1)


def test_concurrent_copies_of_one_report_are_stored_once(store: ObservationStore) -> None:
    running = serve(build_service(store))
    request = api_pb2.ReportObservationLogRequest(trial_name="t")
    for i in range(50):
        log = request.observation_log.metric_logs.add()
        log.metric.name, log.metric.value = "loss", str(i)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = api_pb2_grpc.DBManagerStub(channel)
            send: Callable[[int], Any] = lambda _: stub.ReportObservationLog(  # noqa: E731
                request, timeout=30, metadata=((REPORT_ID_KEY, "same-report"),)
            )
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(send, range(16)))
        assert [row.value for row in store.query("t")] == [str(i) for i in range(50)]
    finally:
        running.stop(grace=1)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_malformed_report_id_is_invalid_argument(store: ObservationStore) -> None:
    running = serve(build_service(store))
    request = api_pb2.ReportObservationLogRequest(trial_name="t")
    request.observation_log.metric_logs.add().metric.name = "loss"
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = api_pb2_grpc.DBManagerStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.ReportObservationLog(
                    request, timeout=10, metadata=((REPORT_ID_KEY, "x" * 65),)
                )
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert REPORT_ID_KEY in (info.value.details() or "")
        assert store.query("t") == []
    finally:
        running.stop(grace=1)


class KatibLikeServicer(DBManagerServicer):
    """A DB manager that ignores report ids and announces nothing, as Katib's; its first
    report commits and then the reply is lost."""

    def __init__(self, store: ObservationStore) -> None:
        super().__init__(store)
        self.lose_reply = True

    def ReportObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        rows = [
            LogRow(0, log.metric.name, log.metric.value)
            for log in request.observation_log.metric_logs
        ]
        self.store.add(request.trial_name, rows)
        if self.lose_reply:
            self.lose_reply = False
            context.abort(grpc.StatusCode.UNAVAILABLE, "reply lost (simulated)")
        return api_pb2.ReportObservationLogReply()

    def GetObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        reply = api_pb2.GetObservationLogReply()
        for row in self.store.query(request.trial_name):
            log = reply.observation_log.metric_logs.add()
            log.metric.name, log.metric.value = row.metric_name, row.value
        return reply


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_server_without_report_ids_gets_no_ambiguous_resend(store: ObservationStore) -> None:
    servicer = KatibLikeServicer(store)
    spec = ServiceSpec(
        register=api_pb2_grpc.add_DBManagerServicer_to_server,
        servicer=servicer,
        health_names=("", "api.v1.beta1.DBManager"),
    )
    running = serve(spec)
    try:
        with DBClient(running.address, timeout=10, retry_for=5) as db:
            db.wait_ready(timeout=10)
            assert not db.dedupes_reports
            with pytest.raises(Unavailable, match="reply lost"):
                db.report("t", [("", "loss", "0.5")])
            assert [e.value for e in db.get("t")] == ["0.5"]  # stored once, not resent
    finally:
        running.stop(grace=1)


class CancelFirst(DBManagerServicer):
    """Our DB manager, but its first ``cancel`` reports and reads are cancelled unrun, as gRPC
    cancels the calls that reach a server after its graceful stop began."""

    def __init__(self, store: ObservationStore, cancel: int) -> None:
        super().__init__(store)
        self.cancel = {"report": cancel, "read": cancel}

    def _maybe_cancel(self, kind: str, context: grpc.ServicerContext) -> None:
        if self.cancel[kind] > 0:
            self.cancel[kind] -= 1
            context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")

    def ReportObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._maybe_cancel("report", context)
        return super().ReportObservationLog(request, context)

    def GetObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
        if request.trial_name == "t":  # not wait_ready's feature probe
            self._maybe_cancel("read", context)
        return super().GetObservationLog(request, context)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_calls_cancelled_by_a_stopping_server_are_retried(store: ObservationStore) -> None:
    servicer = CancelFirst(store, cancel=2)
    spec = build_service(store)
    running = serve(ServiceSpec(spec.register, servicer, spec.health_names))
    try:
        with DBClient(running.address, timeout=10, retry_for=30) as db:
            db.wait_ready(timeout=10)
            db.report("t", [("", "loss", "0.5")])
            assert [e.value for e in db.get("t")] == ["0.5"]
            assert servicer.cancel == {"report": 0, "read": 0}  # each cancelled twice, retried
    finally:
        running.stop(grace=1)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_cancelled_report_to_a_katib_like_server_is_not_resent(
    store: ObservationStore,
) -> None:
    class CancelledKatibLike(KatibLikeServicer):
        reports = 0

        def ReportObservationLog(self, request: Any, context: grpc.ServicerContext) -> Any:
            self.reports += 1
            context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")

    servicer = CancelledKatibLike(store)
    spec = ServiceSpec(
        api_pb2_grpc.add_DBManagerServicer_to_server, servicer, ("", "api.v1.beta1.DBManager")
    )
    running = serve(spec)
    try:
        with DBClient(running.address, timeout=10, retry_for=30) as db:
            db.wait_ready(timeout=10)
            assert not db.dedupes_reports
            with pytest.raises(Unavailable, match="CANCELLED"):
                db.report("t", [("", "loss", "0.5")])
            assert servicer.reports == 1  # it may have been stored: never sent twice
    finally:
        running.stop(grace=1)


def _db_manager(db_file: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "katib.db.server", "--db", f"sqlite:///{db_file}"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "KATIB_"))}
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_db_manager_restarted_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, how: signal.Signals
) -> None:
    """A real ``katib-db-manager`` is killed while a client reports 300 rows one by one, then
    started again on the same port and database a second later."""
    port, db_file = free_port(), tmp_path / "obs.db"
    server = _db_manager(db_file, port)
    errors: list[BaseException] = []
    reported = threading.Event()
    total = 300

    def reporter() -> None:
        try:
            with DBClient(f"127.0.0.1:{port}", timeout=5, retry_for=120) as db:
                db.wait_ready(timeout=60)
                for i in range(total):
                    db.report("t", [("", "step", str(i))])
                    if i == 50:
                        reported.set()
                    time.sleep(0.005)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
            reported.set()

    thread = threading.Thread(target=reporter)
    thread.start()
    try:
        assert reported.wait(timeout=120)
        server.send_signal(how)
        server.wait(timeout=30)
        time.sleep(1.0)
        server = _db_manager(db_file, port)
        thread.join(timeout=180)
        assert not thread.is_alive()
        assert not errors, errors
        with DBClient(f"127.0.0.1:{port}", timeout=10) as db:
            values = [e.value for e in db.get("t")]
        assert values == [str(i) for i in range(total)]
    finally:
        server.kill()
        server.wait()
        thread.join(timeout=1)


def _backend(db_url: str) -> type:
    scheme = db_url.split(":", 1)[0]
    if scheme == "sqlite":
        from katib.db.sqlite import SqliteStore

        return SqliteStore
    if scheme.startswith("postgres"):
        from katib.db.postgres import PostgresStore

        return PostgresStore
    from katib.db.mysql import MysqlStore

    return MysqlStore


def test_a_version_1_database_is_migrated_in_place(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made before report ids existed gains their table and keeps its rows."""
    backend = _backend(db_url)
    full = backend.migrations
    monkeypatch.setattr(backend, "migrations", full[:1])
    with open_store(db_url, connect_timeout=10) as old:
        assert old.schema_version() == 1
        old.add("t", [LogRow(0, "loss", "old")])
    monkeypatch.setattr(backend, "migrations", full)
    with open_store(db_url, connect_timeout=10) as store:
        assert store.schema_version() == len(full) == 2
        assert store.add("t", [LogRow(1, "loss", "new")], report_id="r1")
        assert not store.add("t", [LogRow(1, "loss", "new")], report_id="r1")
        assert [row.value for row in store.query("t")] == ["old", "new"]
