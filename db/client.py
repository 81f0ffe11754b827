"""``DBClient``: the observation log as the rest of the project sees it.

The controller, the early-stopping service and metrics pushers talk to ``katib-db-manager``
(ours or Katib's) through this class with plain Python values:

>>> with DBClient("127.0.0.1:6789") as db:                                  # doctest: +SKIP
...     db.wait_ready(timeout=10)
...     db.report("trial-1", [(datetime.now(UTC), "loss", 0.25), ("", "accuracy", "0.9")])
...     [entry.value for entry in db.get("trial-1", metric_name="loss")]
['0.25']

Status codes come back as the project's errors: INVALID_ARGUMENT -> ``InvalidArgument``,
NOT_FOUND -> ``NotFound``, UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED -> ``Unavailable``;
others are raised as the original ``grpc.RpcError``.

Transient errors are retried. UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED (a server in its
graceful stop cancels the calls that reach it after the stop began, without running them; this
client never cancels its own, except by :meth:`DBClient.close`) are tried again with
exponential back-off (0.1 s doubling to 5 s, jittered) for up to ``retry_for`` seconds in all
(default 60, as the controller's suggestion client), then raised as ``Unavailable``. Reads and
deletes are idempotent and always retried. A report is retried without ever storing its rows
twice:

- every report carries a fresh id (call metadata ``x-katib-report-id``); a DB manager that
  announces ``x-katib-report-ids: 1`` in its replies (ours) stores each id once, so a report
  whose reply was lost after its rows were committed can be resent safely;
- to a server that has not announced it (Katib's own DB manager), a report is resent only when
  gRPC failed to connect at all, so the request never left this process; any other failure is
  raised, since the rows may be stored already.

:meth:`wait_ready` learns which kind of server it talks to, so the first report is covered too.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from katib.api import api_pb2, api_pb2_grpc
from katib.api.errors import InvalidArgument, NotFound, Unavailable
from katib.api.server import GRPC_OPTIONS, wait_serving
from katib.db.service import REPORT_ID_KEY, REPORT_IDS_ACK, SERVICE_NAME
from katib.db.timestamps import (
    ZERO_TIME_US,
    format_rfc3339,
    from_datetime,
    parse_rfc3339,
    to_datetime,
)

logger = logging.getLogger(__name__)

#: Seconds a call keeps being retried after transient errors, by default.
DEFAULT_RETRY_FOR = 60.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0
_TRANSIENT = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)
#: gRPC's words for a call that failed before any connection existed (nothing was sent).
_NOT_CONNECTED = ("failed to connect to all addresses", "Failed to connect to remote host")
#: Reconnect quickly after the server comes back (gRPC's default back-off reaches 120 s).
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)
#: A trial name no controller creates (Katib's names are DNS labels): the feature probe's query.
_PROBE_TRIAL = "katib-db-client.probe"

#: ``0001-01-01T00:00:00Z``: the time of entries reported without a timestamp.
ZERO_TIME = to_datetime(ZERO_TIME_US)

Timestamp = datetime | str | None
LogTuple = tuple[Timestamp, str, Any]


@dataclass(frozen=True, slots=True)
class MetricLogEntry:
    """One observation read back: ``time`` is timezone-aware UTC (:data:`ZERO_TIME` if untimed)."""

    time: datetime
    name: str
    value: str

    @property
    def timed(self) -> bool:
        """Whether the entry was reported with a timestamp."""
        return self.time != ZERO_TIME


def to_rfc3339(moment: Timestamp) -> str:
    """A report or query time as RFC 3339: datetimes in UTC (naive ones are taken as UTC),
    strings unchanged, ``None`` as empty."""
    if moment is None:
        return ""
    if isinstance(moment, datetime):
        return format_rfc3339(from_datetime(moment))
    return moment


class DBClient:
    """A client of the ``DBManager`` service at ``address`` (``host:port``).

    ``timeout`` is the deadline of each attempt in seconds; ``retry_for`` bounds the time spent
    retrying transient errors (0 disables retries); ``metadata`` is sent with every call.
    Thread-safe; close it (or use it as a context manager) to release the channel.
    """

    def __init__(
        self,
        address: str,
        timeout: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
        retry_for: float = DEFAULT_RETRY_FOR,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.retry_for = retry_for
        self.metadata = tuple(metadata)
        #: Whether the server stores each report id once (learnt from its replies).
        self.dedupes_reports = False
        options = [*GRPC_OPTIONS, *_CHANNEL_OPTIONS]
        self._channel = grpc.insecure_channel(address, options=options)
        self._stub = api_pb2_grpc.DBManagerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._closed = False  # calls cut by close() fail CANCELLED: never retried

    def report(self, trial_name: str, logs: Iterable[LogTuple]) -> None:
        """Store ``(timestamp, metric_name, value)`` tuples for a trial, all or none.

        ``timestamp`` is a ``datetime``, an RFC 3339 string, or ``None``/``""`` (untimed);
        ``value`` is sent as ``str(value)`` unless it already is a string. Resent after a
        transient error only where that cannot store the rows twice (see the module notes).
        """
        request = api_pb2.ReportObservationLogRequest(trial_name=trial_name)
        add = request.observation_log.metric_logs.add
        for stamp, name, value in logs:
            log = add()
            log.time_stamp = to_rfc3339(stamp)
            log.metric.name = name
            log.metric.value = value if isinstance(value, str) else str(value)
        report_id = ((REPORT_ID_KEY, uuid.uuid4().hex),)
        self._call(
            self._stub.ReportObservationLog,
            request,
            extra=report_id,
            resend_safe=lambda: self.dedupes_reports,
        )

    def get(
        self,
        trial_name: str,
        metric_name: str = "",
        start: Timestamp = None,
        end: Timestamp = None,
    ) -> list[MetricLogEntry]:
        """A trial's observations ordered by time (then report order), optionally for one metric
        and between ``start`` and ``end`` (inclusive). An unknown trial gives ``[]``."""
        request = api_pb2.GetObservationLogRequest(
            trial_name=trial_name,
            metric_name=metric_name,
            start_time=to_rfc3339(start),
            end_time=to_rfc3339(end),
        )
        reply = self._call(self._stub.GetObservationLog, request)
        return [
            MetricLogEntry(
                time=to_datetime(parse_rfc3339(log.time_stamp)) if log.time_stamp else ZERO_TIME,
                name=log.metric.name,
                value=log.metric.value,
            )
            for log in reply.observation_log.metric_logs
        ]

    def delete(self, trial_name: str) -> None:
        """Remove every observation of a trial."""
        request = api_pb2.DeleteObservationLogRequest(trial_name=trial_name)
        self._call(self._stub.DeleteObservationLog, request)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the server's health check answers SERVING and a read succeeds;
        ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        wait_serving(self._health, SERVICE_NAME, timeout, f"DB manager at {self.address}")
        self._probe(max(deadline - time.monotonic(), 1.0))

    def close(self) -> None:
        """Close the channel (calls in flight on other threads fail at once)."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> DBClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _probe(self, timeout: float) -> None:
        """Learn whether the server deduplicates reports (a read of a trial nobody has)."""
        request = api_pb2.GetObservationLogRequest(trial_name=_PROBE_TRIAL)
        try:
            self._call(self._stub.GetObservationLog, request, retry_for=timeout)
        except (InvalidArgument, NotFound, Unavailable, grpc.RpcError) as exc:
            logger.debug("DB manager %s: feature probe failed: %s", self.address, exc)

    def _call(
        self,
        method: Any,
        request: Any,
        extra: tuple[tuple[str, str], ...] = (),
        resend_safe: Callable[[], bool] = lambda: True,
        retry_for: float | None = None,
    ) -> Any:
        """Call ``method``, retrying transient errors with back-off (see the module notes)."""
        metadata = (*self.metadata, *extra) or None
        budget = self.retry_for if retry_for is None else retry_for
        deadline = time.monotonic() + budget
        delay, attempts = FIRST_BACKOFF, 0
        while True:
            attempts += 1
            try:
                reply, call = method.with_call(request, timeout=self.timeout, metadata=metadata)
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                remaining = deadline - time.monotonic()
                never_sent = any(words in details for words in _NOT_CONNECTED)
                retry = code in _TRANSIENT and remaining > 0 and not self._closed
                if retry and (never_sent or resend_safe()):
                    pause = min(delay * random.uniform(0.5, 1.0), remaining)
                    logger.warning(
                        "DB manager %s: %s (%s); retrying in %.2f s",
                        self.address,
                        code.name,
                        details,
                        pause,
                    )
                    time.sleep(pause)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                error = _error(self.address, exc, attempts)
                if error is exc:
                    raise
                raise error from exc
            self._learn(call)
            return reply

    def _learn(self, call: Any) -> None:
        try:
            headers = call.initial_metadata() or ()
        except Exception:  # a call object without headers: nothing to learn
            return
        if REPORT_IDS_ACK in tuple(headers):
            self.dedupes_reports = True


def _error(address: str, exc: grpc.RpcError, attempts: int) -> Exception:
    """The project's error for a final gRPC failure."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code in _TRANSIENT:
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        return Unavailable(f"{address}: {code.name}: {details}{tries}")
    return exc
