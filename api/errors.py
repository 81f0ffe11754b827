"""The project's error taxonomy and its single mapping to gRPC status codes.

Services raise these from domain code; :func:`grpc_errors` (used by every servicer) turns them
into status codes. Nothing else in the project picks a status code.

=====================  ==================  ==============================================
exception              gRPC code           meaning
=====================  ==================  ==============================================
InvalidArgument        INVALID_ARGUMENT    the request or experiment is wrong; fix it
FailedPrecondition     FAILED_PRECONDITION valid, but this algorithm cannot handle it
NotFound               NOT_FOUND           a named thing does not exist
Unavailable            UNAVAILABLE         a dependency is down; retrying may help
any other exception    INTERNAL            a bug: logged with its traceback
=====================  ==================  ==============================================
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc

logger = logging.getLogger(__name__)


class KatibError(Exception):
    """Base of every error a service reports to its caller on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(KatibError):
    """Bad user input. The message names the field and the problem.

    ``problems`` holds every problem found, so callers can report them all at once.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str | Iterable[str]) -> None:
        problems = [message] if isinstance(message, str) else list(message)
        self.problems: list[str] = problems
        super().__init__("; ".join(problems))


class FailedPrecondition(KatibError):
    """A well-formed request this component cannot serve (e.g. a space an algorithm can't use)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(KatibError):
    """A named resource does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class Unavailable(KatibError):
    """A dependency (database, peer service) cannot be reached right now."""

    code = grpc.StatusCode.UNAVAILABLE


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
            logger.info("%s rejected: %s: %s", method.__name__, exc.code.name, exc)
            context.abort(exc.code, str(exc))
        except Exception as exc:
            logger.exception("%s failed unexpectedly", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]
