"""Metrics collection: parse a trial's output into observation-log entries as it arrives.

Follows Katib's file collector (reference 4) line by line, so it can stream (9.11):

* TEXT (StdOut and File collectors): a line is examined only if it contains a metric name; an
  optional leading RFC 3339 timestamp stamps it (else it is untimed); each filter regex is
  applied with find-all, group 1 = name, group 2 = value, kept when the name is a wanted metric.
* JSON (File collector): one object per line, ``timestamp`` as an RFC 3339 string or epoch
  seconds (fractions are real fractions of a second); metric values may be strings or numbers.
  Unlike Katib, a malformed line is skipped with a warning instead of discarding the whole file.

Entries are ``LogEntry(time, name, value)`` with ``time`` in UTC or ``None`` when untimed.

Trial output is untrusted. Filters run on RE2 (:mod:`katib.controller.filters`), so no line
takes more than linear time. A timestamp outside years 0001-9999 in UTC, or one with other than
ASCII digits, is not a timestamp (the line is untimed, as Katib's Go parser would leave it).
:class:`MetricStream` drops every entry the DB service would refuse (a value over 64 KiB, a NUL
character, text that is not UTF-8) and every line the parser cannot read, and tells its ``warn``
callback (the trial's log) why, so one bad line never fails a report or the experiment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from katib.controller.filters import compile_filter
from katib.controller.spec import DEFAULT_METRICS_FILTER, FileFormat, MetricsCollectorSpec
from katib.controller.trials import LogEntry
from katib.db import timestamps
from katib.db.records import MAX_VALUE_BYTES, check_name

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Warnings a stream writes before it only counts them (a trial printing garbage in a loop).
MAX_WARNINGS = 50
#: The longest line parsed (1 MiB); longer ones are skipped unread.
MAX_LINE_BYTES = 1 << 20


class BadLine(ValueError):
    """A line of trial output that yields no metrics, with the reason (for the trial's log)."""


def parse_rfc3339(text: str) -> datetime | None:
    """``text`` as a UTC datetime (nanoseconds truncated to microseconds), None if it is not
    an RFC 3339 date-time with ASCII digits between years 0001 and 9999 in UTC."""
    if "T" not in text and "t" not in text:  # the space separator is not RFC 3339 here
        return None
    try:
        return timestamps.to_datetime(timestamps.parse_rfc3339(text))
    except ValueError:
        return None


class TextParser:
    """Katib's TEXT metrics format with the default or custom filters."""

    def __init__(self, metric_names: Iterable[str], filters: Iterable[str] = ()) -> None:
        self.metric_names = tuple(metric_names)
        self.filters = [compile_filter(f) for f in (tuple(filters) or (DEFAULT_METRICS_FILTER,))]

    def parse_line(self, line: str) -> list[LogEntry]:
        """The wanted metrics on one line."""
        if not any(name in line for name in self.metric_names):
            return []
        head, _, rest = line.strip().partition(" ")
        moment = parse_rfc3339(head)
        text = rest if moment is not None else line
        entries = []
        for pattern in self.filters:
            if pattern.groups < 2:
                continue
            for match in pattern.finditer(text):
                name, value = match.group(1).strip(), (match.group(2) or "").strip()
                if name in self.metric_names and value:
                    entries.append(LogEntry(moment, name, value))
        return entries


class JsonParser:
    """One JSON object per line; numbers and strings are both metric values."""

    def __init__(self, metric_names: Iterable[str]) -> None:
        self.metric_names = tuple(metric_names)

    def parse_line(self, line: str) -> list[LogEntry]:
        """The wanted metrics in one JSON line."""
        line = line.strip()
        if not line:
            return []
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:  # also too-long integers, deep nesting
            raise BadLine(f"not JSON ({_short(str(exc))})") from None
        if not isinstance(obj, dict):
            raise BadLine("not a JSON object")
        moment = _json_time(obj.get("timestamp"))
        entries = []
        for name in self.metric_names:
            value = obj.get(name)
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int | float | str):
                entries.append(LogEntry(moment, name, str(value)))
        return entries


def _json_time(value: object) -> datetime | None:
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            moment = _EPOCH + timedelta(seconds=float(value))
        except (OverflowError, ValueError):  # beyond year 9999, or NaN
            return None
        return moment
    return None


def entry_problem(entry: LogEntry) -> str | None:
    """Why the DB service would refuse ``entry`` (see :mod:`katib.db.records`), or None."""
    name_problem = check_name("the metric name", entry.name)
    if name_problem is not None:
        return name_problem
    value = entry.value
    if "\x00" in value:
        return "the value contains a NUL character"
    if len(value) > MAX_VALUE_BYTES // 4:
        try:
            size = len(value.encode())
        except UnicodeEncodeError:
            return "the value is not valid Unicode text"
        if size > MAX_VALUE_BYTES:
            return f"the value has {size} bytes, more than {MAX_VALUE_BYTES}"
    elif not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "the value is not valid Unicode text"
    return None


def _short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a warning, with non-printables escaped."""
    shown = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
    return shown.encode("unicode_escape", "backslashreplace").decode("ascii")


Parser = TextParser | JsonParser


def make_parser(collector: MetricsCollectorSpec, metric_names: Iterable[str]) -> Parser:
    """The parser for a collector spec (StdOut and File TEXT share one)."""
    path = collector.file_system_path
    if path is not None and path.format is FileFormat.JSON:
        return JsonParser(metric_names)
    return TextParser(metric_names, collector.filters)


class LineSplitter:
    """Turn chunks of bytes into complete decoded lines; :meth:`flush` returns the remainder.

    A line longer than :data:`MAX_LINE_BYTES` (binary garbage, a progress bar without newlines)
    is dropped as it grows, so memory stays bounded; :attr:`dropped` counts such lines.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._dropping = False
        self.dropped = 0

    def reset(self) -> None:
        """Forget an incomplete line (the stream starts over)."""
        self._partial = b""
        self._dropping = False

    def feed(self, chunk: bytes) -> list[str]:
        """Complete lines in ``chunk`` (with whatever was left over before)."""
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        if self._dropping and lines:  # the end of an overlong line
            lines = lines[1:]
            self._dropping = False
        if len(self._partial) > MAX_LINE_BYTES:
            if not self._dropping:
                self.dropped += 1
            self._partial, self._dropping = b"", True
        return [line.decode("utf-8", "replace") for line in lines]

    def flush(self) -> list[str]:
        """The last line if the output did not end with a newline."""
        rest, self._partial = self._partial, b""
        dropping, self._dropping = self._dropping, False
        return [rest.decode("utf-8", "replace")] if rest and not dropping else []


Warn = Callable[[str], None]


class MetricStream:
    """A parser over a byte stream: feed chunks, take the entries found so far.

    ``warn`` hears of each line or entry that is skipped (a message ending in a newline), up
    to :data:`MAX_WARNINGS`, then once that the rest are only counted; by default the module
    logger hears them. Lines up to ``quiet_lines`` are skipped without a word (a second parse
    of a file whose first lines were warned about already).
    """

    def __init__(self, parser: Parser, warn: Warn | None = None, quiet_lines: int = 0) -> None:
        self.parser = parser
        self.splitter = LineSplitter()
        self.pending: list[LogEntry] = []
        self.seen: set[str] = set()
        self.warn = warn or (lambda message: logger.warning("%s", message.rstrip()))
        self.lines = 0
        self.skipped = 0
        self.quiet_lines = quiet_lines

    def feed(self, chunk: bytes) -> None:
        """Parse the complete lines of ``chunk``."""
        dropped = self.splitter.dropped
        lines = self.splitter.feed(chunk)
        for _ in range(self.splitter.dropped - dropped):
            self.lines += 1
            self._skip(f"line {self.lines}: longer than {MAX_LINE_BYTES} bytes")
        for line in lines:
            self._parse(line)

    def restart(self) -> None:
        """The source starts over (a rewritten file): drop any incomplete line."""
        self.splitter.reset()

    def close(self) -> None:
        """Parse the final line if it had no newline."""
        for line in self.splitter.flush():
            self._parse(line)

    def take(self) -> list[LogEntry]:
        """Entries parsed since the last call."""
        entries, self.pending = self.pending, []
        return entries

    def _parse(self, line: str) -> None:
        self.lines += 1
        try:
            found = self.parser.parse_line(line)
        except BadLine as exc:
            self._skip(f"line {self.lines}: {exc}: {_short(line)}")
            return
        if not found:
            return
        for entry in found:
            problem = entry_problem(entry)
            if problem is not None:
                self._skip(f"line {self.lines}: metric {entry.name!r}: {problem}")
                continue
            self.pending.append(entry)
            self.seen.add(entry.name)

    def _skip(self, message: str) -> None:
        if self.lines <= self.quiet_lines:
            return
        self.skipped += 1
        if self.skipped <= MAX_WARNINGS:
            self.warn(f"katib metrics collector: skipped {message}\n")
        if self.skipped == MAX_WARNINGS:
            self.warn("katib metrics collector: further skipped lines are not reported\n")
