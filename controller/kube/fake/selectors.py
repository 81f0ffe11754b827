"""Label and field selectors as the API server parses and applies them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a`` (exists),
``!a`` (does not exist), joined by commas (all must hold). Field selectors: ``metadata.name`` and
``metadata.namespace`` for every resource, plus ``status.phase`` and ``spec.nodeName`` for pods,
with ``=``, ``==`` and ``!=``. A malformed selector raises :class:`SelectorError`, which the
server answers with 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Requirement = Callable[[Mapping[str, str]], bool]

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\((.*)\)\s*$")
_FIELDS_ALL = ("metadata.name", "metadata.namespace")
_FIELDS_EXTRA = {"pods": ("status.phase", "spec.nodeName")}


class SelectorError(ValueError):
    """A selector the API server would reject; the message names the offending term."""


def _split_terms(selector: str) -> list[str]:
    """Split on the commas that are not inside a ``( … )`` value set."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term.strip() for term in terms if term.strip()]


def _key(key: str, term: str) -> str:
    if not _NAME.match(key):
        raise SelectorError(f"invalid label key {key!r} in selector term {term!r}")
    return key


def _value(value: str, term: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r} in selector term {term!r}")
    return value


def _requirement(term: str) -> Requirement:
    match = _SET.match(term)
    if match:
        key, operator, raw = _key(match.group(1), term), match.group(2), match.group(3)
        values = frozenset(_value(v.strip(), term) for v in raw.split(","))
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for operator in ("!=", "==", "="):
        if operator in term:
            raw_key, _, raw_value = term.partition(operator)
            key, value = _key(raw_key.strip(), term), _value(raw_value.strip(), term)
            if operator == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = _key(term[1:].strip(), term)
        return lambda labels: key not in labels
    key = _key(term, term)
    return lambda labels: key in labels


def label_selector(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over an object's labels; an empty or missing selector matches everything."""
    requirements = [_requirement(term) for term in _split_terms(selector or "")]
    return lambda labels: all(requirement(labels) for requirement in requirements)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return "" if node is None else str(node)


def field_selector(selector: str | None, plural: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a whole object; only the fields the real server indexes are allowed."""
    allowed = _FIELDS_ALL + _FIELDS_EXTRA.get(plural, ())
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_terms(selector or ""):
        for operator in ("!=", "==", "="):
            if operator in term:
                path, _, value = (part.strip() for part in term.partition(operator))
                break
        else:
            raise SelectorError(f"invalid field selector term {term!r}: expected field=value")
        if path not in allowed:
            raise SelectorError(
                f'field label not supported: "{path}" (supported for {plural}: '
                f"{', '.join(allowed)})"
            )
        checks.append(_field_check(path, value, equal=operator != "!="))
    return lambda obj: all(check(obj) for check in checks)


def _field_check(path: str, value: str, *, equal: bool) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: (_field_value(obj, path) == value) == equal
