"""Metrics collection: parse a trial's output into observation-log entries as it arrives.

Follows Katib's file collector (reference 4) line by line, so it can stream (9.11):

* TEXT (StdOut and File collectors): a line is examined only if it contains a metric name; an
  optional leading RFC 3339 timestamp stamps it (else it is untimed); each filter regex is
  applied with find-all, group 1 = name, group 2 = value, kept when the name is a wanted metric.
* JSON (File collector): one object per line, ``timestamp`` as an RFC 3339 string or epoch
  seconds (fractions are real fractions of a second); metric values may be strings or numbers.
  Unlike Katib, a malformed line is skipped with a warning instead of discarding the whole file.

Entries are ``LogEntry(time, name, value)`` with ``time`` in UTC or ``None`` when untimed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from katib.controller.spec import DEFAULT_METRICS_FILTER, FileFormat, MetricsCollectorSpec
from katib.controller.trials import LogEntry

logger = logging.getLogger(__name__)

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_rfc3339(text: str) -> datetime | None:
    """``text`` as a UTC datetime (nanoseconds truncated to microseconds), None if not RFC 3339."""
    match = _RFC3339.match(text)
    if not match:
        return None
    date, clock, fraction, zone = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}.{micros}{zone}")
    except ValueError:
        return None
    return moment.astimezone(UTC)


class TextParser:
    """Katib's TEXT metrics format with the default or custom filters."""

    def __init__(self, metric_names: Iterable[str], filters: Iterable[str] = ()) -> None:
        self.metric_names = tuple(metric_names)
        self.filters = [re.compile(f) for f in (tuple(filters) or (DEFAULT_METRICS_FILTER,))]

    def parse_line(self, line: str) -> list[LogEntry]:
        """The wanted metrics on one line."""
        if not any(name in line for name in self.metric_names):
            return []
        head, _, rest = line.strip().partition(" ")
        moment = parse_rfc3339(head)
        text = rest if moment is not None else line
        entries = []
        for pattern in self.filters:
            for match in pattern.finditer(text):
                if match.re.groups < 2:
                    continue
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
        except json.JSONDecodeError as exc:
            logger.warning("skipping a metrics line that is not JSON (%s): %.80s", exc, line)
            return []
        if not isinstance(obj, dict):
            logger.warning("skipping a metrics line that is not a JSON object: %.80s", line)
            return []
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
            return _EPOCH + timedelta(seconds=float(value))
        except OverflowError:
            return None
    return None


Parser = TextParser | JsonParser


def make_parser(collector: MetricsCollectorSpec, metric_names: Iterable[str]) -> Parser:
    """The parser for a collector spec (StdOut and File TEXT share one)."""
    path = collector.file_system_path
    if path is not None and path.format is FileFormat.JSON:
        return JsonParser(metric_names)
    return TextParser(metric_names, collector.filters)


class LineSplitter:
    """Turn chunks of bytes into complete decoded lines; :meth:`flush` returns the remainder."""

    def __init__(self) -> None:
        self._partial = b""

    def reset(self) -> None:
        """Forget an incomplete line (the stream starts over)."""
        self._partial = b""

    def feed(self, chunk: bytes) -> list[str]:
        """Complete lines in ``chunk`` (with whatever was left over before)."""
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def flush(self) -> list[str]:
        """The last line if the output did not end with a newline."""
        rest, self._partial = self._partial, b""
        return [rest.decode("utf-8", "replace")] if rest else []


class MetricStream:
    """A parser over a byte stream: feed chunks, take the entries found so far."""

    def __init__(self, parser: Parser) -> None:
        self.parser = parser
        self.splitter = LineSplitter()
        self.pending: list[LogEntry] = []
        self.seen: set[str] = set()

    def feed(self, chunk: bytes) -> None:
        """Parse the complete lines of ``chunk``."""
        for line in self.splitter.feed(chunk):
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
        found = self.parser.parse_line(line)
        if found:
            self.pending.extend(found)
            self.seen.update(entry.name for entry in found)
