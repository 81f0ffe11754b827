"""The error taxonomy's one mapping to gRPC codes, and the shared server flags."""

from __future__ import annotations

import argparse

import grpc
import pytest

from katib.api import errors
from katib.api.cache import DEFAULT_MAX_BYTES, shared
from katib.api.server import add_server_arguments, serve
from katib.api.status import check_deadline, grpc_errors, status_code


class Narrower(errors.InvalidArgument):
    """A subclass takes its nearest listed ancestor's code."""


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (Narrower("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.KatibError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_has_one_code(error: errors.KatibError, code: grpc.StatusCode) -> None:
    assert status_code(error) is code


class Context:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float | None:
        return self.remaining

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError(details)


def test_decorator_aborts_with_the_mapped_code_and_internal_for_bugs() -> None:
    class Servicer:
        @grpc_errors
        def Bad(self, request: object, context: object) -> None:
            raise errors.InvalidArgument(["a: wrong", "b: wrong"])

        @grpc_errors
        def Bug(self, request: object, context: object) -> None:
            raise KeyError("oops")

    context = Context(None)
    with pytest.raises(RuntimeError):
        Servicer().Bad(None, context)
    assert context.aborted == (grpc.StatusCode.INVALID_ARGUMENT, "a: wrong; b: wrong")
    with pytest.raises(RuntimeError):
        Servicer().Bug(None, context)
    assert context.aborted is not None and context.aborted[0] is grpc.StatusCode.INTERNAL


def test_check_deadline() -> None:
    check_deadline(None, "x")
    check_deadline(Context(None), "x")  # type: ignore[arg-type]
    check_deadline(Context(1.0), "x")  # type: ignore[arg-type]
    with pytest.raises(errors.DeadlineExceeded, match="while decoding"):
        check_deadline(Context(0.0), "decoding")  # type: ignore[arg-type]


def test_common_flags() -> None:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser, default_port=1234, cache=True)
    args = parser.parse_args(["--workers", "3"])
    assert (args.host, args.port, args.max_workers, args.log_level) == ("0.0.0.0", 1234, 3, "INFO")
    assert args.cache_mib * 2**20 == DEFAULT_MAX_BYTES
    plain = argparse.ArgumentParser()
    add_server_arguments(plain)
    assert not hasattr(plain.parse_args([]), "cache_mib")


def test_negative_cache_bound_is_refused() -> None:
    args = argparse.Namespace(cache_mib=-1.0, host="127.0.0.1", port=0, max_workers=1)
    assert serve([], args) == 2
    assert shared().max_bytes == DEFAULT_MAX_BYTES
