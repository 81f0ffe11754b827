"""The services a run talks to: suggestion, DB manager and early stopping, over gRPC only.

A local run hosts them in this process on a loopback port (:func:`start_local`), with the
observation log in ``<results>/observations.db``; the early-stopping service
(:mod:`katib.earlystopping`) only for an experiment with ``spec.earlyStopping``.
``--suggestion-address`` / ``--db-address`` / ``--early-stopping-address`` point the
controller at services running elsewhere (ours or Katib's) instead.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from katib.api import api_pb2 as pb
from katib.api.server import RunningServer, ServiceSpec, start
from katib.controller import protos
from katib.controller.spec import Experiment
from katib.controller.trials import LogEntry, TrialRecord
from katib.suggestion.client import SuggestionClient

logger = logging.getLogger(__name__)

OBSERVATIONS_DB = "observations.db"
#: gRPC metadata on the controller's own DB calls, so that an in-process DB service can tell its
#: reports from those a trial pushes itself (``report_metrics()``).
CONTROLLER_METADATA = (("x-katib-reporter", "controller"),)
#: How many experiments' trial messages :class:`Suggestions` keeps between requests.
_CACHED_EXPERIMENTS = 64


class PushTracker:
    """Which trials reported observation rows themselves, seen by the in-process DB service.

    With a StdOut or File collector the controller folds the rows it parses as it reports them
    and needs no read-back, unless the trial also pushed rows of its own: then, as in Katib,
    the observation is computed from everything the DB holds for it.
    """

    def __init__(self) -> None:
        self._pushed: set[str] = set()
        self._lock = threading.Lock()

    def observe(self, trial_name: str, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        """The DB service's report observer: note reports without :data:`CONTROLLER_METADATA`."""
        if CONTROLLER_METADATA[0] not in metadata:
            with self._lock:
                self._pushed.add(trial_name)

    def pushed(self, trial_name: str) -> bool:
        """Whether anyone but the controller reported rows for ``trial_name``."""
        with self._lock:
            return trial_name in self._pushed


@dataclass
class Endpoints:
    """Addresses of the services, and the in-process server hosting them (if any).

    ``pushes`` tracks trials' own reports when the DB service is in this process; ``None`` when
    it is remote (then any trial may have pushed).
    """

    suggestion: str
    db: str
    server: RunningServer | None = None
    #: The early-stopping service, ``""`` when the run has none.
    early_stopping: str = ""
    closers: list[object] = field(default_factory=list)
    pushes: PushTracker | None = None

    def stop(self) -> None:
        """Stop the in-process server and close its stores."""
        if self.server is not None:
            self.server.stop(grace=1.0)
            self.server = None
        for item in self.closers:
            item.close()  # type: ignore[attr-defined]
        self.closers.clear()


def start_local(
    results_dir: Path,
    suggestion_address: str | None = None,
    db_address: str | None = None,
    early_stopping_address: str | None = None,
    early_stopping: bool = False,
) -> Endpoints:
    """Serve whatever is not given by address in this process, on a free loopback port; the
    early-stopping service only with ``early_stopping`` (the experiment has
    ``spec.earlyStopping``)."""
    specs: list[ServiceSpec] = []
    closers: list[object] = []
    pushes = None
    if suggestion_address is None:
        from katib.suggestion.server import services

        specs += services()
    if early_stopping and early_stopping_address is None:
        from katib.earlystopping import server as es_server

        es_specs = es_server.services()
        closers += [s.servicer for s in es_specs]
        specs += es_specs
    if db_address is None:
        from katib.db.server import build_service
        from katib.db.store import open_store

        store = open_store(f"sqlite:///{(results_dir / OBSERVATIONS_DB).resolve()}")
        closers.append(store)
        pushes = PushTracker()
        specs.append(build_service(store, on_report=pushes.observe))
    server = start(specs, host="127.0.0.1", port=0) if specs else None
    address = server.address if server else ""
    return Endpoints(
        suggestion=suggestion_address or address,
        db=db_address or address,
        early_stopping=(early_stopping_address or address) if early_stopping else "",
        server=server,
        closers=closers,
        pushes=pushes,
    )


class Suggestions:
    """The suggestion service as the controller uses it: records in, Katib's messages out.

    Builds the requests of Katib's controller (reference 1.3) and calls the service through
    :class:`katib.suggestion.client.SuggestionClient` (deadlines, retries).
    """

    def __init__(self, address: str, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.address = address
        self.client = SuggestionClient(address, cancelled)
        #: Per experiment (least recently asked first): the trial messages of its last request.
        self._trial_cache: OrderedDict[str, dict[str, tuple[TrialRecord, pb.Trial]]] = (
            OrderedDict()
        )

    def validate(self, spec: Experiment) -> None:
        """ValidateAlgorithmSettings for the experiment, without the settings overlay."""
        self.client.validate(protos.experiment(spec))

    def get(
        self,
        spec: Experiment,
        trials: Sequence[TrialRecord],
        count: int,
        overlay: Mapping[str, str],
    ) -> pb.GetSuggestionsReply:
        """GetSuggestions for ``count`` new trials; the reply may hold fewer."""
        request = pb.GetSuggestionsRequest(
            experiment=protos.experiment(spec, overlay),
            trials=self._trials(spec, trials),
            current_request_number=count,
            total_request_number=len(trials) + count,
        )
        return self.client.get_suggestions(request)

    def _trials(self, spec: Experiment, records: Sequence[TrialRecord]) -> list[pb.Trial]:
        """Trial messages, rebuilt only for records that changed since the last request.

        The cache holds the trials of the last request of the :data:`_CACHED_EXPERIMENTS`
        experiments asked about most recently, so it stays bounded while one client serves
        every experiment of an operator (deleted trials and experiments drop out).
        """
        previous = self._trial_cache.pop(spec.name, {})
        current: dict[str, tuple[TrialRecord, pb.Trial]] = {}
        for record in protos.sent_trials(spec, records):
            cached = previous.get(record.name)
            if cached is None or cached[0] is not record:
                cached = (record, protos.trial(spec, record))
            current[record.name] = cached
        self._trial_cache[spec.name] = current
        while len(self._trial_cache) > _CACHED_EXPERIMENTS:
            self._trial_cache.popitem(last=False)
        return [message for _, message in current.values()]

    def close(self) -> None:
        """Close the channel."""
        self.client.close()


class ObservationLog:
    """The DB service as the controller uses it: :class:`LogEntry` in and out."""

    def __init__(self, address: str, pushes: PushTracker | None = None) -> None:
        from katib.db.client import DBClient

        self.client = DBClient(address, metadata=CONTROLLER_METADATA)
        self.pushes = pushes

    def may_hold_pushes(self, trial_name: str) -> bool:
        """Whether the DB may hold rows the trial reported itself (always, for a remote DB)."""
        return self.pushes is None or self.pushes.pushed(trial_name)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the DB manager answers its health check."""
        self.client.wait_ready(timeout)

    def report(self, trial_name: str, entries: Iterable[LogEntry]) -> None:
        """ReportObservationLog; untimed entries get the zero time."""
        self.client.report(trial_name, [(e.time or "", e.name, e.value) for e in entries])

    def entries(self, trial_name: str) -> list[LogEntry]:
        """Every row of the trial, in DB order (time, then report order)."""
        return [
            LogEntry(e.time if e.timed else None, e.name, e.value)
            for e in self.client.get(trial_name)
        ]

    def delete(self, trial_name: str) -> None:
        """Forget a trial's observations (before it is run again)."""
        self.client.delete(trial_name)

    def close(self) -> None:
        """Close the channel."""
        self.client.close()
