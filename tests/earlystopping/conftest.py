"""Fixtures: a real DB service (SQLite) and a real early-stopping service, both on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.server import RunningServer, start
from katib.db.client import DBClient
from katib.db.server import build_service
from katib.db.store import open_store
from katib.earlystopping.rules import SEMANTICS_KEY
from katib.earlystopping.server import services

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def db_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``katib-db-manager``'s service over a fresh SQLite file."""
    path = tmp_path_factory.mktemp("es-db") / "observations.db"
    server = start([build_service(open_store(f"sqlite:///{path}"))], host="127.0.0.1", port=0)
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="session")
def db(db_server: RunningServer) -> Iterator[DBClient]:
    """A client of :func:`db_server`."""
    with DBClient(db_server.address) as client:
        client.wait_ready(timeout=30)
        yield client


@pytest.fixture(scope="session")
def es_server() -> Iterator[RunningServer]:
    """The early-stopping service, in process, on a free loopback port."""
    server = start(services(), host="127.0.0.1", port=0)
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="session")
def es_stub(es_server: RunningServer) -> Iterator[api_pb2_grpc.EarlyStoppingStub]:
    """A real client of :func:`es_server`."""
    with grpc.insecure_channel(es_server.address) as channel:
        yield api_pb2_grpc.EarlyStoppingStub(channel)


@pytest.fixture
def report(db: DBClient) -> Callable[[str, Sequence[object]], str]:
    """Store a curve (one row per step, one second apart) under a unique trial name."""

    def _report(metric: str, values: Sequence[object], prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        db.report(name, [(T0 + timedelta(seconds=i), metric, v) for i, v in enumerate(values)])
        return name

    return _report


def experiment(
    algorithm: str = "medianstop",
    settings: Sequence[tuple[str, str]] = (),
    metric: str = "loss",
    objective: int = pb.MINIMIZE,
    name: str = "es-test",
) -> pb.Experiment:
    """An Experiment message with an objective and early-stopping spec."""
    exp = pb.Experiment(name=name)
    exp.spec.objective.type = objective  # type: ignore[assignment]
    exp.spec.objective.objective_metric_name = metric
    exp.spec.early_stopping.algorithm_name = algorithm
    for key, value in settings:
        exp.spec.early_stopping.algorithm_settings.add(name=key, value=value)
    return exp


def trial(name: str, condition: int = pb.TrialStatus.SUCCEEDED, done: str = "") -> pb.Trial:
    """A Trial message in ``condition`` (completion time ``done``, default: set when finished)."""
    message = pb.Trial(name=name)
    message.status.condition = condition  # type: ignore[assignment]
    finished = condition in (pb.TrialStatus.SUCCEEDED, pb.TrialStatus.EARLYSTOPPED)
    message.status.completion_time = done or ("2026-01-01T01:00:00Z" if finished else "")
    return message


def rules_of(
    stub: api_pb2_grpc.EarlyStoppingStub,
    exp: pb.Experiment,
    trials: Sequence[pb.Trial],
    address: str,
    semantics: str | None = "any",
) -> list[tuple[str, float, int, int]]:
    """Call GetEarlyStoppingRules; the rules as ``(name, value, comparison, start_step)``."""
    request = pb.GetEarlyStoppingRulesRequest(
        experiment=exp, trials=trials, db_manager_address=address
    )
    metadata = [(SEMANTICS_KEY, semantics)] if semantics else None
    reply = stub.GetEarlyStoppingRules(request, timeout=30, metadata=metadata)
    return [
        (r.name, float(r.value), r.comparison, r.start_step) for r in reply.early_stopping_rules
    ]
