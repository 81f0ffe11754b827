"""The project's error taxonomy: what a service reports to its caller on purpose.

Domain code (algorithms, the settings parser, stores) raises these; it never imports grpc.
:mod:`katib.api.status` holds the one mapping to gRPC status codes, applied by the
``grpc_errors`` decorator every servicer method wears. Nothing else picks a status code.

=====================  ==================  ==============================================
exception              gRPC code           meaning
=====================  ==================  ==============================================
InvalidArgument        INVALID_ARGUMENT    the request or experiment is wrong; fix it
FailedPrecondition     FAILED_PRECONDITION valid, but this algorithm cannot handle it
NotFound               NOT_FOUND           a named thing does not exist
Unavailable            UNAVAILABLE         a dependency is down; retrying may help
DeadlineExceeded       DEADLINE_EXCEEDED   the caller's deadline passed; work was stopped
any other exception    INTERNAL            a bug: logged with its traceback
=====================  ==================  ==============================================
"""

from __future__ import annotations

from collections.abc import Iterable


class KatibError(Exception):
    """Base of every error a service reports to its caller on purpose."""


class InvalidArgument(KatibError):
    """Bad user input. The message names the field and the problem.

    ``problems`` holds every problem found, so callers can report them all at once.
    """

    def __init__(self, message: str | Iterable[str]) -> None:
        problems = [message] if isinstance(message, str) else list(message)
        self.problems: list[str] = problems
        super().__init__("; ".join(problems))


class FailedPrecondition(KatibError):
    """A well-formed request this component cannot serve (e.g. a space an algorithm can't use)."""


class NotFound(KatibError):
    """A named resource does not exist."""


class Unavailable(KatibError):
    """A dependency (database, peer service) cannot be reached right now."""


class DeadlineExceeded(KatibError):
    """The caller's deadline passed before the work was done; the work was abandoned."""
