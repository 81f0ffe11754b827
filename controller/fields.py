"""Typed readers over untyped YAML that record problems with their field paths.

:class:`Problems` collects messages such as
``spec.parameters[1].feasibleSpace.min: must be a number, got 'abc'``; the readers return
``None`` (or a default) after recording a problem, so parsing continues and every problem is
reported at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: A decimal number as Go's ``strconv.ParseFloat`` reads one, less hex floats and inf/NaN:
#: ASCII digits only (no Arabic-Indic or full-width digits), no ``_``, no surrounding spaces.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
#: An integer as Go's ``strconv.Atoi`` reads one.
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


_SPECIAL = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity", "nan"})


def go_float(text: str) -> float | None:
    """``text`` as Go's ``strconv.ParseFloat`` would read it (less hex floats), else ``None``.

    Python's ``float`` also takes ``1_000``, surrounding spaces and non-ASCII digits
    (``'١٢'``); Katib's controller, which folds metric values with Go, rejects them, so an
    observation's min and max must not count them as numbers either.
    """
    if _DECIMAL.fullmatch(text) is None and text.lower() not in _SPECIAL:
        return None
    return float(text)


class Problems:
    """An ordered list of ``path: message`` problems."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        """Record one problem at ``path``."""
        self.items.append(f"{path}: {message}")

    def __bool__(self) -> bool:
        return bool(self.items)


def mapping(
    problems: Problems, obj: Mapping[str, Any], key: str, path: str, required: bool = False
) -> dict[str, Any] | None:
    """``obj[key]`` as a dict; a problem if it is missing (when required) or not a mapping."""
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(path, "is required")
        return None
    if not isinstance(value, Mapping):
        problems.add(path, f"must be a mapping, got {type(value).__name__}")
        return None
    return dict(value)


def sequence(problems: Problems, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    """``obj[key]`` as a list (empty when missing)."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(path, f"must be a list, got {type(value).__name__}")
        return []
    return value


def string(
    problems: Problems,
    obj: Mapping[str, Any],
    key: str,
    path: str,
    required: bool = False,
    scalar: bool = False,
) -> str:
    """``obj[key]`` as a string ('' when missing); ``scalar`` also accepts numbers."""
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(path, "is required")
        return ""
    if scalar and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        problems.add(path, f"must be a string, got {value!r}")
        return ""
    if required and not value:
        problems.add(path, "must not be empty")
    return value


def integer(problems: Problems, obj: Mapping[str, Any], key: str, path: str) -> int | None:
    """``obj[key]`` as an int, None when missing."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(path, f"must be an integer, got {value!r}")
        return None
    return value


def boolean(problems: Problems, obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    """``obj[key]`` as a bool, None when missing; strings such as ``"false"`` are refused.

    Kubernetes takes only a YAML boolean here; ``bool("false")`` would read as true.
    """
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        problems.add(path, f"must be true or false (a YAML boolean, unquoted), got {value!r}")
        return None
    return value


def number(text: str | float) -> float | None:
    """``text`` as a finite float, None if it is not a plain decimal number.

    Stricter than ``float()``, as Katib's Go parsers are: ``'١٢'``, ``'1_000'``, ``' 1'``,
    ``'inf'`` and ``'nan'`` are not numbers. A YAML number (int or float) is taken as it is.
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        value = float(text) if not isinstance(text, int) or abs(text) < 2**1023 else math.inf
    elif isinstance(text, str) and _DECIMAL.fullmatch(text):
        value = float(text)
    else:
        return None
    return value if math.isfinite(value) else None


def whole(text: str) -> int | None:
    """``text`` as an int, None if it is not a plain integer literal (ASCII digits, optional
    sign, no ``_`` and no spaces; at most 4300 digits, Python's conversion limit)."""
    if not isinstance(text, str) or not _INTEGER.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def unknown_keys(
    problems: Problems, obj: Mapping[str, Any], known: Iterable[str], path: str
) -> None:
    """Report keys of ``obj`` that are not in ``known`` (typos such as ``maxTrialCounts``)."""
    allowed = set(known)
    for key in obj:
        if key not in allowed:
            prefix = f"{path}." if path else ""
            problems.add(
                f"{prefix}{key}",
                f"unknown field; expected one of {', '.join(sorted(allowed))}",
            )
