"""RFC 3339 timestamps as exact integers: microseconds since 1970-01-01T00:00:00Z.

Every backend stores a log entry's time as one signed 64-bit integer ``time_us`` (UTC
microseconds since the Unix epoch), so ordering and inclusive range filters are exact integer
comparisons on SQLite, PostgreSQL and MySQL alike, with no time-zone or text-collation surprises.

- Input: ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`` (``t``/space also accepted as separator,
  ``z`` as zone). Offsets are applied, so ``2024-01-01T10:00:00.5+02:00`` and
  ``2024-01-01T08:00:00.5Z`` are the same instant. Fractions beyond microseconds are truncated
  (as Katib's MySQL backend does); Python's ``datetime`` cannot hold more anyway.
- Digits are ASCII only: full-width or Arabic-Indic digits are refused, as Go's ``time.Parse``
  does.
- The zero time ``0001-01-01T00:00:00Z`` (:data:`ZERO_TIME_US`) marks entries reported without a
  timestamp. It sorts before every real time.
- Output: UTC, ``Z`` suffix, fraction with trailing zeros removed and omitted when zero (Go's
  ``time.RFC3339Nano`` layout, which Katib clients parse).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

#: ``0001-01-01T00:00:00Z`` (Go's zero ``time.Time``): the time of entries without a timestamp.
ZERO_TIME_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // _ONE_US
#: ``9999-12-31T23:59:59.999999Z``: the latest representable time.
MAX_TIME_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // _ONE_US

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"  # date, time, fraction
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",  # zone: Z or +HH:MM
    re.ASCII,  # digits are 0-9 only, as in Go's time.Parse (not full-width or Arabic-Indic)
)


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 timestamp into UTC microseconds since the epoch.

    Raises ``ValueError`` with a message naming the problem when ``text`` is not a valid
    RFC 3339 date-time with a zone, or lies outside years 0001-9999 once converted to UTC.

    >>> parse_rfc3339("2024-01-01T10:00:00.5+02:00") == parse_rfc3339("2024-01-01T08:00:00.5Z")
    True
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(
            f"timestamp {text!r} is not RFC 3339 (expected e.g. 2024-01-01T08:00:00.5Z "
            "or 2024-01-01T10:00:00+02:00)"
        )
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    offset_s = 0
    if not match.group(8):
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(f"timestamp {text!r} has an invalid UTC offset")
        offset_s = (off_h * 3600 + off_m * 60) * (-1 if match.group(9) == "-" else 1)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"timestamp {text!r} is not a valid date-time: time out of range")
    try:
        days = _days_since_epoch(year, month, day)
    except ValueError as exc:
        raise ValueError(f"timestamp {text!r} is not a valid date-time: {exc}") from None
    fraction = match.group(7) or ""
    micro = int((fraction + "000000")[:6])
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_s
    time_us = seconds * 1_000_000 + micro
    if not ZERO_TIME_US <= time_us <= MAX_TIME_US:
        raise ValueError(f"timestamp {text!r} lies outside years 0001-9999 in UTC")
    return time_us


def format_rfc3339(time_us: int) -> str:
    """Format UTC microseconds since the epoch as RFC 3339 in UTC (``Z``), trimming the fraction.

    >>> format_rfc3339(parse_rfc3339("2024-01-01T10:00:00.500+02:00"))
    '2024-01-01T08:00:00.5Z'
    """
    seconds, micro = divmod(time_us, 1_000_000)
    days, second_of_day = divmod(seconds, 86400)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    text = f"{_date_text(days)}T{hour:02d}:{minute:02d}:{second:02d}"
    if micro:
        text += f".{micro:06d}".rstrip("0")
    return text + "Z"


@functools.lru_cache(maxsize=4096)
def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date (``ValueError`` if the date does not exist)."""
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL


@functools.lru_cache(maxsize=4096)
def _date_text(days: int) -> str:
    """``YYYY-MM-DD`` of the day ``days`` after 1970-01-01."""
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def to_datetime(time_us: int) -> datetime:
    """UTC microseconds since the epoch -> timezone-aware UTC ``datetime``."""
    return EPOCH + timedelta(microseconds=time_us)


def from_datetime(moment: datetime) -> int:
    """``datetime`` -> UTC microseconds since the epoch. A naive ``datetime`` is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _ONE_US
