"""Shared fixtures: real gRPC servers on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from katib.api import api_pb2_grpc
from katib.api.server import RunningServer, start
from katib.suggestion.server import services


@pytest.fixture(scope="session")
def suggestion_server() -> Iterator[RunningServer]:
    """A suggestion server hosting every registered algorithm, on a free loopback port."""
    server = start(services(), host="127.0.0.1", port=0)
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="session")
def suggestion_stub(suggestion_server: RunningServer) -> Iterator[api_pb2_grpc.SuggestionStub]:
    """A real client connected to :func:`suggestion_server`."""
    with grpc.insecure_channel(suggestion_server.address) as channel:
        yield api_pb2_grpc.SuggestionStub(channel)
