"""The ``api.v1.beta1.DBManager`` gRPC servicer: protobuf at the edge, the store behind it.

Semantics (Katib's, minus its quirks; see ``KATIB_REFERENCE.md`` §5 and §9 item 11):

- ``ReportObservationLog`` validates the whole report first (:func:`validate_report`) and writes
  it in one transaction; one bad entry => INVALID_ARGUMENT naming the entry, nothing written. An
  empty report is a no-op. Entries with an empty ``time_stamp`` are kept at the zero time.
- ``GetObservationLog`` filters by metric name and inclusive RFC 3339 bounds, orders by time then
  insertion, and returns UTC RFC 3339 times. An unknown trial gives an empty log.
- ``DeleteObservationLog`` removes every row of the trial (unknown trial: no-op).

Idempotent reports (an extension Katib's clients need not know about): a report that carries
call metadata ``x-katib-report-id: <1-64 printable ASCII characters>`` is stored once however
many times it arrives, so a client may resend a report whose reply it lost. Every reply carries
the initial metadata ``x-katib-report-ids: 1`` so a client can tell that resending is safe here
(Katib's DB manager ignores the id and sends no such header).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc

from katib.api import api_pb2, api_pb2_grpc
from katib.api.errors import InvalidArgument
from katib.api.status import grpc_errors
from katib.db.records import check_trial_name, parse_time_bound, validate_report
from katib.db.store import ObservationStore
from katib.db.timestamps import format_rfc3339

logger = logging.getLogger(__name__)

SERVICE_NAME = "api.v1.beta1.DBManager"
#: Call metadata naming a report, and the reply header saying reports are deduplicated by it.
REPORT_ID_KEY = "x-katib-report-id"
REPORT_IDS_ACK = ("x-katib-report-ids", "1")
MAX_REPORT_ID_CHARS = 64
#: Names the health service answers SERVING for (Katib's probes use "" and the Health name).
HEALTH_NAMES = ("", "grpc.health.v1.Health", SERVICE_NAME)


#: Called after each stored report with the trial name and the call's gRPC metadata.
ReportObserver = Callable[[str, Sequence[tuple[str, str | bytes]]], None]


class DBManagerServicer(api_pb2_grpc.DBManagerServicer):
    """Serves the observation log kept in ``store`` (shared by every worker thread).

    ``on_report``, when given, hears of every report once it is stored (a host embedding the
    service, such as the local controller, uses it to see who reports for which trial).
    """

    def __init__(self, store: ObservationStore, on_report: ReportObserver | None = None) -> None:
        self.store = store
        self.on_report = on_report

    @grpc_errors
    def ReportObservationLog(
        self, request: api_pb2.ReportObservationLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.ReportObservationLogReply:
        """Store every entry of the report, or none of them (once per report id)."""
        context.send_initial_metadata((REPORT_IDS_ACK,))
        metadata = tuple(context.invocation_metadata() or ())
        report_id = _report_id(metadata)
        entries = (
            (log.time_stamp, log.metric.name, log.metric.value)
            for log in request.observation_log.metric_logs
        )
        rows = validate_report(request.trial_name, entries)
        if not self.store.add(request.trial_name, rows, report_id):
            logger.info("report %s for trial %s was stored before", report_id, request.trial_name)
            return api_pb2.ReportObservationLogReply()
        logger.debug("stored %d rows for trial %s", len(rows), request.trial_name)
        if self.on_report is not None:
            self.on_report(request.trial_name, metadata)
        return api_pb2.ReportObservationLogReply()

    @grpc_errors
    def GetObservationLog(
        self, request: api_pb2.GetObservationLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetObservationLogReply:
        """The trial's log, optionally for one metric and between two inclusive times."""
        context.send_initial_metadata((REPORT_IDS_ACK,))
        check_trial_name(request.trial_name)
        start = parse_time_bound("start_time", request.start_time)
        end = parse_time_bound("end_time", request.end_time)
        rows = self.store.query(request.trial_name, request.metric_name, start, end)
        reply = api_pb2.GetObservationLogReply()
        add = reply.observation_log.metric_logs.add
        for row in rows:  # add() + assignment is several times faster than nested constructors
            log = add()
            log.time_stamp = format_rfc3339(row.time_us)
            log.metric.name = row.metric_name
            log.metric.value = row.value
        return reply

    @grpc_errors
    def DeleteObservationLog(
        self, request: api_pb2.DeleteObservationLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.DeleteObservationLogReply:
        """Remove every row of the trial."""
        context.send_initial_metadata((REPORT_IDS_ACK,))
        check_trial_name(request.trial_name)
        removed = self.store.delete(request.trial_name)
        logger.debug("deleted %d rows of trial %s", removed, request.trial_name)
        return api_pb2.DeleteObservationLogReply()


def _report_id(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The report's ``x-katib-report-id``, None without one; ``InvalidArgument`` if malformed."""
    for key, value in metadata:
        if key != REPORT_ID_KEY:
            continue
        if (
            not isinstance(value, str)
            or not 0 < len(value) <= MAX_REPORT_ID_CHARS
            or not value.isascii()
            or not value.isprintable()
        ):
            raise InvalidArgument(
                f"metadata {REPORT_ID_KEY}: must be 1-{MAX_REPORT_ID_CHARS} printable ASCII "
                f"characters, got {value!r:.80}"
            )
        return value
    return None
