"""The single mapping from the error taxonomy (:mod:`katib.api.errors`) to gRPC status codes.

Every servicer method wears :func:`grpc_errors`; a long computation calls :func:`check_deadline`
between phases so work whose caller has given up stops (DEADLINE_EXCEEDED) instead of running
on for minutes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from katib.api.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    KatibError,
    NotFound,
    Unavailable,
)

logger = logging.getLogger(__name__)

#: The error taxonomy's gRPC codes (subclasses take their nearest listed ancestor's code).
STATUS_CODES: dict[type[KatibError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_code(error: KatibError) -> grpc.StatusCode:
    """The gRPC code for ``error`` (INTERNAL for a ``KatibError`` outside the taxonomy)."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)  # type: ignore[call-overload]
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def check_deadline(context: grpc.ServicerContext | None, doing: str) -> None:
    """Raise :class:`DeadlineExceeded` if the caller's deadline has passed.

    Call it at safe points (between decoding, modelling and encoding). Without a deadline, or
    without a context (in-process use), it does nothing.
    """
    if context is None:
        return
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded(f"deadline exceeded while {doing}; the work was stopped")


F = TypeVar("F", bound=Callable[..., Any])


def grpc_errors(method: F) -> F:
    """Decorate a servicer method so project errors become gRPC status codes.

    ``KatibError`` subclasses abort with their code and message; anything else is logged with its
    traceback and aborts with INTERNAL, so one bad request never takes the server down.
    """

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except KatibError as exc:
            code = status_code(exc)
            logger.info("%s rejected: %s: %s", method.__name__, code.name, exc)
            context.abort(code, str(exc))
        except Exception as exc:
            logger.exception("%s failed unexpectedly", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]
