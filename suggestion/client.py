"""``SuggestionClient``: a Suggestion service (ours or Katib's) as its callers see it.

The controller asks a suggestion service for trials through this class, beside
:class:`katib.db.client.DBClient` for the observation log. It speaks Katib's v1beta1 messages
unchanged and adds what Katib's controller leaves to Kubernetes' requeue loop: a deadline on every
call and retries of transient errors with exponential back-off.

>>> with SuggestionClient("127.0.0.1:6789") as client:                    # doctest: +SKIP
...     client.validate(experiment)          # InvalidArgument if the service rejects it
...     reply = client.get_suggestions(request)

Errors come back as the project's taxonomy (:mod:`katib.api.errors`):

==================================================  =======================================
status of the service's answer                      raised
==================================================  =======================================
INVALID_ARGUMENT, UNKNOWN, FAILED_PRECONDITION       ``InvalidArgument`` from ``validate``
  (validation only; UNIMPLEMENTED counts as valid)
UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,  retried for :data:`RETRY_SECONDS`, then
  ABORTED (:data:`TRANSIENT`), CANCELLED               ``Unavailable``
anything else                                        ``FailedPrecondition``
==================================================  =======================================

CANCELLED comes from a service in its graceful stop, which cancels, unrun, the calls that reach
it after the stop began (the suggestion services are stateless, so a retried call is answered
the same); a call cut by this client's own :meth:`SuggestionClient.close` is not retried.
INTERNAL and UNKNOWN from ``GetSuggestions`` are bugs in the service, deterministic for a given
history, so they are not retried. ``cancelled`` (a callable) lets a caller stop the retry wait,
e.g. when the user pressed Ctrl-C: the wait then ends at once with ``Unavailable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar, cast

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import FailedPrecondition, InvalidArgument, Unavailable
from katib.api.server import GRPC_OPTIONS

logger = logging.getLogger(__name__)

DEADLINE_SECONDS = 60.0
#: Codes worth retrying: the service is down, overloaded or slow, not wrong.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
RETRY_SECONDS = 60.0  # waiting between attempts stops after this (plus the calls' own time)
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
_INVALID = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.FAILED_PRECONDITION,
)

Reply = TypeVar("Reply")


def _never() -> bool:
    return False


def _wait(seconds: float, cancelled: Callable[[], bool]) -> None:
    """Sleep ``seconds``, in short naps when ``cancelled`` may cut the wait short."""
    if cancelled is _never:
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while not cancelled() and (left := end - time.monotonic()) > 0:
        time.sleep(min(0.05, left))


def retry(
    call: Callable[[], Reply],
    transient: Callable[[Exception], bool],
    describe: Callable[[Exception], str],
    cancelled: Callable[[], bool] = _never,
) -> Reply:
    """``call()``, again after an error that ``transient`` accepts, with exponential back-off.

    Waits :data:`FIRST_BACKOFF` s, doubling up to :data:`MAX_BACKOFF` s, while the total wait
    stays within :data:`RETRY_SECONDS` and ``cancelled()`` is false; then the last error is
    raised. ``describe`` words an error for the log. Every client of the controller's services
    retries through this one loop.
    """
    delay, waited = FIRST_BACKOFF, 0.0
    while True:
        try:
            return call()
        except Exception as exc:
            if not transient(exc) or waited + delay > RETRY_SECONDS or cancelled():
                raise
            logger.warning("%s; retrying in %.1f s", describe(exc), delay)
            _wait(delay, cancelled)
            waited += delay
            delay = min(delay * 2, MAX_BACKOFF)


def call_with_retry(
    method: Callable[..., Reply],
    request: object,
    what: str,
    cancelled: Callable[[], bool] = _never,
    deadline: float = DEADLINE_SECONDS,
    closed: Callable[[], bool] = _never,
) -> Reply:
    """Call a unary gRPC ``method``; :func:`retry` it on :data:`TRANSIENT` status codes, and
    on CANCELLED unless ``closed()`` (the caller closed the channel itself).

    ``what`` names the service in the log.
    """

    def transient(exc: Exception) -> bool:
        if not isinstance(exc, grpc.RpcError):
            return False
        code = exc.code()
        return code in TRANSIENT or (code == grpc.StatusCode.CANCELLED and not closed())

    def describe(exc: Exception) -> str:
        rpc = cast(grpc.RpcError, exc)  # only transient errors are described
        return f"{what}: {rpc.code().name}: {rpc.details()}"

    return retry(
        lambda: method(request, timeout=deadline, wait_for_ready=True),
        transient,
        describe,
        cancelled,
    )


class SuggestionClient:
    """Call a Suggestion service with deadlines and retries; see the module docstring."""

    def __init__(self, address: str, cancelled: Callable[[], bool] = _never) -> None:
        self.address = address
        self.cancelled = cancelled
        self._channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        self._stub = api_pb2_grpc.SuggestionStub(self._channel)
        self._closed = False

    def validate(self, experiment: pb.Experiment) -> None:
        """ValidateAlgorithmSettings; ``InvalidArgument`` with the service's message if invalid.

        UNIMPLEMENTED counts as valid (as in Katib); unlike Katib, other errors are not.
        """
        request = pb.ValidateAlgorithmSettingsRequest(experiment=experiment)
        try:
            call_with_retry(
                self._stub.ValidateAlgorithmSettings,
                request,
                self._what,
                self.cancelled,
                closed=self._is_closed,
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return
            if code in _INVALID:
                raise InvalidArgument(f"Validation failed: {exc.details()}") from None
            raise _failure("ValidateAlgorithmSettings", exc) from None

    def get_suggestions(self, request: pb.GetSuggestionsRequest) -> pb.GetSuggestionsReply:
        """GetSuggestions; a reply with more assignments than asked for is an error."""
        try:
            reply = call_with_retry(
                self._stub.GetSuggestions,
                request,
                self._what,
                self.cancelled,
                closed=self._is_closed,
            )
        except grpc.RpcError as exc:
            raise _failure("GetSuggestions", exc) from None
        reply = cast(pb.GetSuggestionsReply, reply)
        if len(reply.parameter_assignments) > request.current_request_number:
            raise FailedPrecondition(
                f"GetSuggestions returned {len(reply.parameter_assignments)} assignments "
                f"for a request of {request.current_request_number}"
            )
        return reply

    @property
    def _what(self) -> str:
        return f"suggestion service at {self.address}"

    def _is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the channel (calls in flight fail, and are not retried)."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> SuggestionClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _failure(rpc: str, exc: grpc.RpcError) -> Unavailable | FailedPrecondition:
    message = f"{rpc} failed: {exc.code().name}: {exc.details()}"
    if exc.code() == grpc.StatusCode.CANCELLED:
        return Unavailable(message)
    if exc.code() in TRANSIENT:
        return Unavailable(f"{message} (gave up after retrying for {RETRY_SECONDS:g} s)")
    return FailedPrecondition(message)
