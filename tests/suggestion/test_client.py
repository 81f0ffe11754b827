"""The suggestion client's retries: transient gRPC errors are retried with backoff, others not."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api.errors import FailedPrecondition, Unavailable
from katib.suggestion import client as services
from katib.suggestion.client import SuggestionClient


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"fake {self._code.name}"


class Flaky:
    """A GetSuggestions stub failing with ``codes`` in turn, then answering."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.calls = 0

    def __call__(self, request: Any, **kwargs: Any) -> pb.GetSuggestionsReply:
        self.calls += 1
        if self.codes:
            raise FakeRpcError(self.codes.pop(0))
        return pb.GetSuggestionsReply()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(services.time, "sleep", slept.append)
    return slept


def get(stub: Flaky) -> pb.GetSuggestionsReply:
    client = SuggestionClient("127.0.0.1:1")
    client._stub = type("Stub", (), {"GetSuggestions": stub})()  # type: ignore[assignment]
    try:
        return client.get_suggestions(pb.GetSuggestionsRequest(current_request_number=1))
    finally:
        client.close()


def test_transient_errors_are_retried_with_exponential_backoff(sleeps: list[float]) -> None:
    C = grpc.StatusCode
    stub = Flaky(C.UNAVAILABLE, C.DEADLINE_EXCEEDED, C.RESOURCE_EXHAUSTED, C.ABORTED)
    get(stub)
    assert stub.calls == 5
    assert sleeps == [0.5, 1.0, 2.0, 4.0]


def test_retries_stop_after_the_budget(sleeps: list[float]) -> None:
    stub = Flaky(*[grpc.StatusCode.UNAVAILABLE] * 100)
    with pytest.raises(Unavailable, match="UNAVAILABLE"):
        get(stub)
    assert sum(sleeps) <= services.RETRY_SECONDS
    assert max(sleeps) == services.MAX_BACKOFF
    assert stub.calls == len(sleeps) + 1


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INTERNAL,
    ],
)
def test_other_errors_fail_at_once(sleeps: list[float], code: grpc.StatusCode) -> None:
    stub = Flaky(code)
    with pytest.raises(FailedPrecondition, match=code.name):
        get(stub)
    assert (stub.calls, sleeps) == (1, [])


def test_cancelled_by_a_stopping_service_is_retried(sleeps: list[float]) -> None:
    stub = Flaky(grpc.StatusCode.CANCELLED, grpc.StatusCode.CANCELLED)
    get(stub)
    assert (stub.calls, sleeps) == (3, [0.5, 1.0])


def test_a_call_cut_by_close_is_not_retried(sleeps: list[float]) -> None:
    client = SuggestionClient("127.0.0.1:1")

    def cut(request: Any, **kwargs: Any) -> pb.GetSuggestionsReply:
        client.close()  # as another thread closing the client mid-call
        raise FakeRpcError(grpc.StatusCode.CANCELLED)

    client._stub = type("Stub", (), {"GetSuggestions": staticmethod(cut)})()  # type: ignore[assignment]
    with pytest.raises(Unavailable, match="CANCELLED"):
        client.get_suggestions(pb.GetSuggestionsRequest(current_request_number=1))
    assert sleeps == []
