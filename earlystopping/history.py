"""Learning curves read from the DB service (``DBManager.GetObservationLog``) over gRPC.

:class:`CurveReader` returns each trial's objective values in report order (the DB orders rows
by time, then insertion), skipping values that are not numbers (Katib's ``"unavailable"``) so
step ``s`` is the ``s``-th *numeric* report. Curves of finished trials are cached, keyed by DB
address, experiment, trial, metric, state and completion time: a finished trial's log does not
change, so the cache only saves round trips and a fresh process reads the same curves. Running
trials are read on every request.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np

from katib.api.errors import InvalidArgument
from katib.db.client import DBClient
from katib.earlystopping.algorithms import COMPLETED, TrialInfo

logger = logging.getLogger(__name__)

#: Total size of cached curves, in float64 values (8 MB per million).
CACHE_VALUES = 4_000_000
#: Deadline of one GetObservationLog call, seconds.
DB_TIMEOUT_S = 30.0
#: How long transient DB errors are retried before the request answers UNAVAILABLE: short,
#: because the caller (a controller creating a trial) retries the whole request itself.
DB_RETRY_FOR_S = 2.0
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def check_address(address: str) -> str:
    """``address`` if it is ``host:port`` (``[v6]:port`` too), else ``InvalidArgument``."""
    match = _ADDRESS.match(address)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise InvalidArgument(
            f"db_manager_address must be host:port, got {address!r}"
            if address
            else "db_manager_address is empty and the service has no --db-address"
        )
    return address


def numeric_values(values: Iterable[str]) -> list[float]:
    """The values that parse as numbers (NaN dropped), in order."""
    out = []
    for text in values:
        try:
            number = float(text)
        except (TypeError, ValueError):
            continue
        if not math.isnan(number):
            out.append(number)
    return out


class CurveReader:
    """Reads trials' objective curves from DB services, with a bounded cache of finished ones.

    Thread-safe; one channel per DB address, kept open for the life of the reader.
    """

    def __init__(self, cache_values: int = CACHE_VALUES) -> None:
        self._clients: dict[str, DBClient] = {}
        self._cache: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._cached_values = 0
        self._limit = cache_values
        self._lock = threading.Lock()

    def read(
        self, address: str, experiment: str, metric: str, trials: Iterable[TrialInfo]
    ) -> Mapping[str, np.ndarray]:
        """Each trial's numeric ``metric`` values as float64 arrays (shape ``(L,)``), by name."""
        client = self._client(address)
        curves: dict[str, np.ndarray] = {}
        for trial in trials:
            key = (address, experiment, trial.name, metric, trial.state, trial.completion_time)
            cacheable = trial.state in COMPLETED and bool(trial.completion_time)
            cached = self._get(key) if cacheable else None
            if cached is None:
                logs = client.get(trial.name, metric_name=metric)
                cached = np.asarray(numeric_values(e.value for e in logs), dtype=np.float64)
                cached.setflags(write=False)
                if len(cached) < len(logs):
                    logger.info(
                        "trial %s: %d of %d %s values are not numbers; skipped",
                        trial.name,
                        len(logs) - len(cached),
                        len(logs),
                        metric,
                    )
                if cacheable:
                    self._put(key, cached)
            curves[trial.name] = cached
        return curves

    def close(self) -> None:
        """Close every channel."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _client(self, address: str) -> DBClient:
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                if len(self._clients) >= 16:  # addresses come from requests: bound them
                    _, oldest = self._clients.popitem()
                    oldest.close()
                client = self._clients[address] = DBClient(
                    address, timeout=DB_TIMEOUT_S, retry_for=DB_RETRY_FOR_S
                )
            return client

    def _get(self, key: tuple[str, ...]) -> np.ndarray | None:
        with self._lock:
            curve = self._cache.get(key)
            if curve is not None:
                self._cache.move_to_end(key)
            return curve

    def _put(self, key: tuple[str, ...], curve: np.ndarray) -> None:
        with self._lock:
            if key in self._cache or curve.size > self._limit:
                return
            self._cache[key] = curve
            self._cached_values += curve.size
            while self._cached_values > self._limit:
                _, old = self._cache.popitem(last=False)
                self._cached_values -= old.size
