"""Domain records of the observation log and the validation of a report.

A report is validated as a whole before anything is written: :func:`validate_report` either
returns every row or raises :class:`~katib.api.errors.InvalidArgument` listing each bad entry by
index, so a store never sees a partial batch.

Limits (chosen to fit every backend's column types, and documented for clients):

- trial and metric names: 1-255 characters (``VARCHAR(255)``), no NUL character;
- values: at most :data:`MAX_VALUE_BYTES` (64 KiB) of UTF-8, no NUL character (PostgreSQL
  ``TEXT`` cannot hold one), stored verbatim;
- ``time_stamp``: RFC 3339 (see :mod:`katib.db.timestamps`) or empty. **An empty time stamp is
  stored as the zero time** ``0001-01-01T00:00:00Z`` instead of being skipped as Katib does, so
  metrics printed without timestamps are kept; they sort before every timed entry of the trial.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from katib.api.errors import InvalidArgument
from katib.db.timestamps import ZERO_TIME_US, parse_rfc3339

MAX_NAME_CHARS = 255
MAX_VALUE_BYTES = 64 * 1024
#: Upper bound on problems listed in one error message, so a huge bad batch stays readable.
MAX_REPORTED_PROBLEMS = 20


class LogRow(NamedTuple):
    """One stored observation: when (UTC µs since the epoch), which metric, what value.

    A NamedTuple rather than a dataclass: reads build 100 000s of them and tuples are cheap.
    """

    time_us: int
    metric_name: str
    value: str


def check_name(kind: str, name: str) -> str | None:
    """Return the problem with a trial or metric name, or ``None`` when it is acceptable."""
    if not name:
        return f"{kind} is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"{kind} has {len(name)} characters, more than {MAX_NAME_CHARS}"
    if "\x00" in name:
        return f"{kind} contains a NUL character"
    return None


def check_trial_name(trial_name: str) -> None:
    """Raise ``InvalidArgument`` unless ``trial_name`` is a storable trial name."""
    problem = check_name("trial_name", trial_name)
    if problem:
        raise InvalidArgument(problem)


def parse_time_bound(field: str, text: str) -> int | None:
    """Parse an optional inclusive time bound of a query; empty means unbounded."""
    if not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise InvalidArgument(f"{field}: {exc}") from None


def validate_report(trial_name: str, entries: Iterable[tuple[str, str, str]]) -> list[LogRow]:
    """Validate a whole report of ``(time_stamp, metric_name, value)`` entries.

    Returns the rows to store, in report order. Raises ``InvalidArgument`` naming every bad entry
    (``observation_log.metric_logs[i]: problem``) when any entry is unacceptable.
    """
    check_trial_name(trial_name)
    rows: list[LogRow] = []
    problems: list[str] = []
    for index, (time_stamp, metric_name, value) in enumerate(entries):
        where = f"observation_log.metric_logs[{index}]"
        entry_problems = []
        name_problem = check_name("metric.name", metric_name)
        if name_problem:
            entry_problems.append(name_problem)
        if "\x00" in value:
            entry_problems.append("metric.value contains a NUL character")
        elif len(value) * 4 > MAX_VALUE_BYTES and len(value.encode()) > MAX_VALUE_BYTES:
            entry_problems.append(
                f"metric.value has {len(value.encode())} bytes, more than {MAX_VALUE_BYTES}"
            )
        time_us = ZERO_TIME_US
        if time_stamp:
            try:
                time_us = parse_rfc3339(time_stamp)
            except ValueError as exc:
                entry_problems.append(f"time_stamp: {exc}")
        if entry_problems:
            problems.extend(f"{where}: {problem}" for problem in entry_problems)
            continue
        rows.append(LogRow(time_us, metric_name, value))
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more problems")
        raise InvalidArgument(shown)
    return rows
