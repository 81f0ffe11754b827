"""Metrics collection shared by every backend: parse, stream into the DB, fold, enforce rules.

A backend hands a trial's bytes to a :class:`TrialCollector` (StdOut: the output pipe, or a
pod's log; File: the metrics file it tails) and the collector does the rest, as Katib's
metrics-collector sidecar does:

* parses lines as they arrive (:mod:`katib.controller.metrics`) and reports the rows to the DB
  service every :data:`FLUSH_SECONDS` and at the end;
* folds the rows it reported into the trial's observation (min, max, latest per metric), so
  the controller needs no read-back unless the trial also pushed rows of its own;
* evaluates the trial's early-stopping rules on every row
  (:class:`~katib.earlystopping.rules.RuleEvaluator`, in the form the service answered in);
  once they say stop, :attr:`TrialCollector.early_stop` turns true and the backend stops the
  trial. :meth:`Collector.refresh_rules` swaps fresher rules into a running trial;
* at the end of a File trial, parses the whole file once more, so the final observation is
  what the file holds whatever the trial did to it while it ran.

A Push trial reports its own rows; its output is never parsed and its rules are not enforced
(as in Katib, whose rule enforcement lives in the File/StdOut collector).
:meth:`Collector.observation` turns what was collected into the trial's observation.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from katib.controller.metrics import MetricStream, Warn, make_parser
from katib.controller.spec import CollectorKind, Experiment, ObjectiveType
from katib.controller.trials import UNAVAILABLE, LogEntry, MetricValue, ObservationSummary
from katib.earlystopping.rules import RuleEvaluator, RuleSet

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
NO_RULES = RuleSet()


class Observations(Protocol):
    """The observation log as the collector uses it (the DB service, behind a client)."""

    def report(self, trial_name: str, entries: Iterable[LogEntry]) -> None:
        """Append rows for a trial."""
        ...

    def entries(self, trial_name: str) -> list[LogEntry]:
        """Every row of a trial in DB order."""
        ...

    def delete(self, trial_name: str) -> None:
        """Forget a trial's rows."""
        ...

    def may_hold_pushes(self, trial_name: str) -> bool:
        """Whether the DB may hold rows the trial reported itself."""
        ...


@dataclass(frozen=True)
class Collected:
    """What a collector knows of a finished trial: the fold of every row it reported (what the
    DB holds for the trial), or ``None`` when only the DB has the rows (Push)."""

    summary: ObservationSummary | None


class TrialCollector:
    """One trial's collection; see the module docstring. Not thread-safe."""

    def __init__(
        self,
        owner: Collector,
        name: str,
        metrics_file: Path | None = None,
        rules: RuleSet = NO_RULES,
        warn: Warn | None = None,
    ) -> None:
        self.owner = owner
        self.warn = warn
        self.name = name
        self.metrics_file = metrics_file
        spec = owner.spec
        self.kind = spec.metrics_collector.kind
        self.stream = MetricStream(
            make_parser(spec.metrics_collector, spec.objective.metric_names), warn=warn
        )
        self.summary = ObservationSummary(spec.objective)
        maximize = spec.objective.type is ObjectiveType.MAXIMIZE
        enforce = self.kind in (CollectorKind.STDOUT, CollectorKind.FILE)
        self.enforce = enforce
        self.rules = RuleEvaluator(
            rules.rules if enforce else (),
            spec.objective.objective_metric_name,
            maximize,
            rules.semantics,
        )
        self.last_flush = time.monotonic()
        self._buffer: list[LogEntry] = []
        self._file_offset = 0
        self._file_inode: int | None = None
        #: Rows already reported from the metrics file, and a digest of them in order.
        self._file_rows = 0
        self._file_digest: Any = hashlib.blake2b()

    @property
    def early_stop(self) -> bool:
        """Whether the trial's early-stopping rules say it must stop."""
        return self.rules.stop

    def refresh_rules(self, rules: RuleSet) -> None:
        """Evaluate the rest of the trial's rows with ``rules`` (counts and best are kept)."""
        if self.enforce and not self.rules.stop:
            self.rules.replace(rules.rules, rules.semantics)

    def feed_output(self, chunk: bytes) -> None:
        """The trial's output (stdout and stderr): parsed by a StdOut collector only."""
        if self.kind is CollectorKind.STDOUT:
            self.stream.feed(chunk)
            self._drain()

    def tick(self) -> None:
        """Between reads: tail the metrics file, flush rows every :data:`FLUSH_SECONDS`."""
        if self.metrics_file is not None:
            self._tail()
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Report the rows parsed since the last flush."""
        self.last_flush = time.monotonic()
        entries, self._buffer = self._buffer, []
        self._report(entries)
        if self.metrics_file is not None:  # counted once the DB holds them
            self._file_rows += len(entries)
            _digest(entries, self._file_digest)

    def finish(self) -> Collected:
        """The trial's output is complete: report the rest and return what was collected."""
        if self.owner._live.get(self.name) is self:
            del self.owner._live[self.name]
        if self.metrics_file is not None:
            self._collect_file()
        else:
            self.stream.close()
            self._drain()
            self.flush()
        parsed = self.kind in (CollectorKind.STDOUT, CollectorKind.FILE)
        return Collected(self.summary if parsed else None)

    def _drain(self) -> None:
        entries = self.stream.take()
        if entries:
            self._buffer.extend(entries)
            for entry in entries:
                if self.rules.add(entry.name, entry.value):
                    break

    def _tail(self) -> None:
        """Stream what was appended to the metrics file; start over if it was rewritten.

        A file that shrank (truncated) or is a new file (replaced, another inode) is read
        again from the start. A rewrite to the same length or longer cannot be told from an
        append; :meth:`_collect_file` re-reads the whole file anyway.
        """
        path = self.metrics_file
        if path is None:
            return
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            info = _fstat(handle.fileno())
            if info[0] != self._file_inode or info[1] < self._file_offset:
                if self._file_offset:
                    logger.debug("trial %s: %s was rewritten; re-reading it", self.name, path)
                self._file_inode, self._file_offset = info[0], 0
                self.stream.restart()
            handle.seek(self._file_offset)
            chunk = handle.read()
        self._file_offset += len(chunk)
        if chunk:
            self.stream.feed(chunk)
            self._drain()

    def _collect_file(self) -> None:
        """Parse the whole metrics file once more and make it the trial's observation rows.

        Katib's collector reads the file after training ends; this gives the same final
        observations whatever the trial did to the file while it ran. When the rows streamed
        so far are the start of the final parse (the file was only appended to), only the rest
        is reported; otherwise (a rewrite) the trial's rows are reset and the whole file is
        reported again, which also drops rows the trial pushed itself.
        """
        self._tail()
        self._buffer.clear()  # superseded by the full parse
        self.stream.take()
        final = MetricStream(  # lines the stream has warned about are not warned about again
            make_parser(self.owner.spec.metrics_collector, self.owner.names),
            warn=self.warn,
            quiet_lines=self.stream.lines,
        )
        with contextlib.suppress(FileNotFoundError):
            if self.metrics_file is not None:
                final.feed(self.metrics_file.read_bytes())
        final.close()
        entries = final.take()
        done = self._file_rows
        if done <= len(entries) and _digest(entries[:done]) == self._file_digest.digest():
            self._report(entries[done:])
            return
        logger.debug("trial %s: metrics file rewritten; reporting it afresh", self.name)
        self.owner.log.delete(self.name)
        self.summary = ObservationSummary(self.owner.spec.objective)
        self._report(entries)

    def _report(self, entries: list[LogEntry]) -> None:
        if entries:
            self.owner.log.report(self.name, entries)
            self.summary.add(entries)


class Collector:
    """The experiment's metrics collection: a :class:`TrialCollector` per trial, and the final
    observation of each. ``log`` is the DB service (:class:`Observations`)."""

    def __init__(self, spec: Experiment, log: Observations) -> None:
        self.spec = spec
        self.log = log
        self.names = spec.objective.metric_names
        self._live: dict[str, TrialCollector] = {}

    def trial(
        self,
        name: str,
        metrics_file: Path | None = None,
        rules: RuleSet = NO_RULES,
        warn: Warn | None = None,
    ) -> TrialCollector:
        """A collector for one trial's run; ``warn`` hears of skipped output lines (the
        trial's log, for the local backend). It stays known to :meth:`refresh_rules` until
        its :meth:`TrialCollector.finish`."""
        collector = TrialCollector(self, name, metrics_file, rules, warn)
        self._live[name] = collector
        return collector

    def refresh_rules(self, name: str, rules: RuleSet) -> bool:
        """Give a running trial fresher rules; ``False`` if it is not collecting any more."""
        collector = self._live.get(name)
        if collector is None:
            return False
        collector.refresh_rules(rules)
        return True

    def observation(
        self, name: str, collected: Collected, mark_missing: bool = True
    ) -> tuple[MetricValue, ...]:
        """The trial's observation. With ``mark_missing`` (a trial that ran to its end), an
        ``unavailable`` objective row is reported when the trial produced none (Katib's rule
        for Push trials, applied to every kind)."""
        summary = collected.summary
        if summary is None or self.log.may_hold_pushes(name):
            # Rows the trial reported itself: the DB holds the whole record.
            summary = ObservationSummary(self.spec.objective)
            summary.add(self.log.entries(name))
        objective = self.spec.objective.objective_metric_name
        if mark_missing and objective not in summary.names:
            missing = LogEntry(None, objective, UNAVAILABLE)
            self.log.report(name, [missing])
            summary.add([missing])
        return summary.observation()


def _fstat(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_ino, info.st_size


def _digest(entries: list[LogEntry], into: Any = None) -> bytes:
    """A digest of rows in order (fed into ``into``, a running hashlib digest, if given)."""
    digest = hashlib.blake2b() if into is None else into
    for entry in entries:
        stamp = entry.time.isoformat() if entry.time else ""
        digest.update(f"{stamp}\0{entry.name}\0{entry.value}\n".encode())
    return cast(bytes, digest.digest())
