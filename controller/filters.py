"""User-supplied metric filters, compiled with RE2 (linear time, Katib's own syntax).

Katib's collector is written in Go, whose ``regexp`` package is RE2: no backreferences, no
look-around, matching time linear in the input. A filter such as ``(\\w+)=((a|a)*$|[0-9.]+)``
that backtracks exponentially in Python's ``re`` is an ordinary linear scan here, so one line of
trial output cannot stall the collector. RE2 also gives Go's meaning to ``\\d``, ``\\w`` and
``\\s`` (ASCII only), so Arabic-Indic digits are not read as a number, as in Katib.

:func:`compile_filter` raises :class:`FilterError` with RE2's reason for a pattern RE2 rejects;
validation reports it against the field (``...metricsFormat[i]``).
"""

from __future__ import annotations

from typing import Any

import re2

__all__ = ["FilterError", "compile_filter"]


class FilterError(ValueError):
    """A metrics filter that RE2 cannot compile."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the reason is in the exception; do not print to stderr
    return options


_OPTIONS = _options()


def compile_filter(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (an object with ``groups`` and ``finditer``).

    >>> compile_filter(r"(\\w+)=([0-9.]+)").groups
    2
    """
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise FilterError(f"RE2 (Katib's regex syntax) rejects it: {reason}") from None
