"""Fixtures of the Kubernetes tests: a real ``katib-db-manager`` on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import EXPERIMENTS, TRIALS
from katib.db.client import DBClient
from katib.db.testing import free_port
from tests.db.test_db_client_retry import _db_manager


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a DB manager (SQLite) shared by a module's tests."""
    port = free_port()
    server = _db_manager(tmp_path_factory.mktemp("db") / "obs.db", port)
    address = f"127.0.0.1:{port}"
    try:
        with DBClient(address, timeout=10) as client:
            client.wait_ready(timeout=60)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=60)


def rows(address: str, trial: str) -> list[tuple[str, str]]:
    """(metric, value) of every row the DB holds for ``trial``."""
    with DBClient(address, timeout=10) as client:
        return [(r.name, r.value) for r in client.get(trial)]


CRDS = Path(__file__).resolve().parents[3] / "manifests" / "base" / "crds"


def register_katib(server: FakeApiServer) -> bool:
    """Serve Katib's kinds with our CRDs' schemas when the manifests are here (validation and
    pruning as a real API server does), else schema-less; whether the CRDs were used."""
    docs = [d for p in sorted(CRDS.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    if any(isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition" for d in docs):
        server.register_crds(docs)
        return True
    for res in (EXPERIMENTS, TRIALS):
        server.register(res)
    return False
