"""``DBClient``: the observation log as the rest of the project sees it.

The controller, the early-stopping service and metrics pushers talk to ``katib-db-manager``
(ours or Katib's) through this class with plain Python values:

>>> with DBClient("127.0.0.1:6789") as db:                                  # doctest: +SKIP
...     db.wait_ready(timeout=10)
...     db.report("trial-1", [(datetime.now(UTC), "loss", 0.25), ("", "accuracy", "0.9")])
...     [entry.value for entry in db.get("trial-1", metric_name="loss")]
['0.25']

Status codes come back as the project's errors: INVALID_ARGUMENT -> ``InvalidArgument``,
NOT_FOUND -> ``NotFound``, UNAVAILABLE and DEADLINE_EXCEEDED -> ``Unavailable``; others are
raised as the original ``grpc.RpcError``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from katib.api import api_pb2, api_pb2_grpc
from katib.api.errors import InvalidArgument, NotFound, Unavailable
from katib.api.server import GRPC_OPTIONS
from katib.db.service import SERVICE_NAME
from katib.db.timestamps import (
    ZERO_TIME_US,
    format_rfc3339,
    from_datetime,
    parse_rfc3339,
    to_datetime,
)

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

    ``timeout`` is the deadline of each call in seconds; ``metadata`` is sent with every call.
    Thread-safe; close it (or use it as a context manager) to release the channel.
    """

    def __init__(
        self, address: str, timeout: float = 30.0, metadata: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.metadata = tuple(metadata)
        self._channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        self._stub = api_pb2_grpc.DBManagerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def report(self, trial_name: str, logs: Iterable[LogTuple]) -> None:
        """Store ``(timestamp, metric_name, value)`` tuples for a trial, all or none.

        ``timestamp`` is a ``datetime``, an RFC 3339 string, or ``None``/``""`` (untimed);
        ``value`` is sent as ``str(value)`` unless it already is a string.
        """
        request = api_pb2.ReportObservationLogRequest(trial_name=trial_name)
        add = request.observation_log.metric_logs.add
        for stamp, name, value in logs:
            log = add()
            log.time_stamp = to_rfc3339(stamp)
            log.metric.name = name
            log.metric.value = value if isinstance(value, str) else str(value)
        self._call(self._stub.ReportObservationLog, request)

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
        """Block until the server's health check answers SERVING; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        last = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"DB manager at {self.address} not ready after {timeout:g} s: {last}"
                )
            try:
                reply = self._health.Check(
                    request, timeout=min(remaining, 5.0), wait_for_ready=True
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> DBClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self.metadata or None)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(details) from exc
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFound(details) from exc
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"{self.address}: {code.name}: {details}") from exc
            raise
