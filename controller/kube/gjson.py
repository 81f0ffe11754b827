"""The part of GJSON path syntax (github.com/tidwall/gjson) that Katib's trial conditions use.

Katib evaluates ``successCondition`` and ``failureCondition`` with GJSON over the run object's
JSON; a condition holds when the result is an object or a non-empty array. Supported here:

* keys separated by ``.`` (``\\`` escapes the next character, so ``app\\.kubernetes\\.io``
  is one key); ``*`` and ``?`` wildcards match the first key that fits; a number indexes
  an array;
* ``#``: an array's length at the end of a path, else the rest of the path mapped over
  its elements (``items.#.name``);
* queries ``#(key op value)`` (first match) and ``#(key op value)#`` (every match), with
  ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``%`` (glob like) and ``!%``; the key is
  itself a path (empty for the element itself, ``#(=="x")``), a query without an operator
  tests that the key exists; values are JSON literals (``"str"``, numbers, ``true``,
  ``false``, ``null``); as in GJSON a value of another type never matches, even with ``!=``;
* ``|`` pipes: the rest of the path applies to the result as a whole, where ``.`` after
  ``#`` or ``#(...)#`` maps it over each element;
* multipaths ``[path,path]`` (an array of the values that exist) and the modifiers
  ``@this``, ``@reverse``, ``@flatten``, ``@keys`` and ``@values``.

Everything else is a :class:`PathError` at :func:`compile_path` time, so a condition that
would silently never hold is refused when the experiment is admitted.

>>> get({"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
...     'status.conditions.#(type=="Complete")#|#(status=="True")#')
[{'type': 'Complete', 'status': 'True'}]
"""

from __future__ import annotations

import fnmatch
import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class PathError(ValueError):
    """A path outside the supported syntax; the message gives the position."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: The result of a path that selects nothing (GJSON's non-existent result).
MISSING: Any = _Missing()

MAX_PATH_CHARS = 4096
MAX_NESTING = 32
_OPS = ("==", "!=", "<=", ">=", "!%", "<", ">", "%", "=")
_MODIFIERS = ("this", "reverse", "flatten", "keys", "values")
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Query:
    """``#(key op value)``: ``op`` is empty for an existence test."""

    key: tuple[Component, ...]
    op: str
    value: Any

    def matches(self, element: Any) -> bool:
        """Whether one array element matches."""
        found = _eval(element, self.key)
        if not self.op:
            return found is not MISSING
        if found is MISSING:
            return False
        return _compare(found, self.op, self.value)


@dataclass(frozen=True)
class Component:
    """One step of a path; ``pipe``: it was reached through ``|`` rather than ``.``."""

    kind: str  # "key" | "count" | "query" | "multi" | "modifier"
    pipe: bool = False
    key: str = ""
    wildcard: bool = False
    query: Query | None = None
    all: bool = False
    paths: tuple[tuple[Component, ...], ...] = ()


def get(document: Any, path: str) -> Any:
    """The value ``path`` selects in ``document`` (decoded JSON), or :data:`MISSING`."""
    return _eval(document, compile_path(path))


@functools.lru_cache(maxsize=256)
def compile_path(path: str) -> tuple[Component, ...]:
    """Parse ``path`` once; :class:`PathError` if it uses unsupported syntax."""
    if not path:
        raise PathError("the path is empty")
    if len(path) > MAX_PATH_CHARS:
        raise PathError(f"the path is longer than {MAX_PATH_CHARS} characters")
    depth = 0
    for ch in path:  # a bound on the parser's recursion (quoted brackets count too: harmless)
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if depth > MAX_NESTING:
            raise PathError(f"the path nests deeper than {MAX_NESTING} levels")
    parser = _Parser(path)
    components = parser.path(stop="")
    if parser.pos != len(path):
        raise PathError(f"unexpected {path[parser.pos]!r} at position {parser.pos} of {path!r}")
    return components


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> PathError:
        return PathError(f"{message} at position {self.pos} of {self.text!r}")

    def path(self, stop: str) -> tuple[Component, ...]:
        """Components up to the end or a character in ``stop`` at nesting depth 0."""
        out: list[Component] = []
        pipe = False
        while True:
            out.append(self.component(pipe, stop))
            if self.pos >= len(self.text) or self.text[self.pos] in stop:
                return tuple(out)
            sep = self.text[self.pos]
            if sep not in ".|":
                raise self.error(f"expected '.' or '|', got {sep!r}")
            pipe = sep == "|"
            self.pos += 1
            if self.pos >= len(self.text):
                raise self.error("the path ends with a separator")

    def component(self, pipe: bool, stop: str) -> Component:
        text = self.text
        if text.startswith("#(", self.pos):
            self.pos += 2
            query = self.query()
            every = text.startswith("#", self.pos)
            if every:
                self.pos += 1
            return Component("query", pipe, query=query, all=every)
        if text.startswith("#", self.pos) and self._ends_at(self.pos + 1, stop):
            self.pos += 1
            return Component("count", pipe)
        if text.startswith("[", self.pos):
            self.pos += 1
            paths = []
            while True:
                if text.startswith("]", self.pos):
                    break
                paths.append(self.path(stop=",]"))
                if text.startswith(",", self.pos):
                    self.pos += 1
            self.pos += 1
            return Component("multi", pipe, paths=tuple(paths))
        if text.startswith("{", self.pos):
            raise self.error("object multipaths {...} are not supported")
        if text.startswith("@", self.pos):
            self.pos += 1
            start = self.pos
            name = self.key(stop + ":")[0]
            if name not in _MODIFIERS:
                self.pos = start
                raise self.error(f"unsupported modifier @{name}")
            if text.startswith(":", self.pos):
                raise self.error("modifier arguments are not supported")
            return Component("modifier", pipe, key=name)
        key, wildcard = self.key(stop)
        if not key:
            raise self.error("empty key")
        return Component("key", pipe, key=key, wildcard=wildcard)

    def _ends_at(self, pos: int, stop: str) -> bool:
        return pos >= len(self.text) or self.text[pos] in ".|" + stop

    def key(self, stop: str) -> tuple[str, bool]:
        """A key up to a separator; escapes resolved; wildcards kept as fnmatch patterns."""
        out: list[str] = []
        wildcard = False
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= len(text):
                    raise self.error("a path cannot end with '\\'")
                out.append(re.escape(text[self.pos + 1]) if wildcard else text[self.pos + 1])
                self.pos += 2
                continue
            if ch in ".|" or ch in stop or ch in "()#[]{}":
                if ch in "()[]{}" and ch not in stop:
                    raise self.error(f"unexpected {ch!r} in a key")
                if ch == "#" and ch not in stop:
                    raise self.error("'#' must start a component")
                break
            if ch in "*?" and not wildcard:
                wildcard = True
                out = [re.escape(c) for c in out]
            if wildcard and ch not in "*?":
                out.append(re.escape(ch))
            elif wildcard:
                out.append(".*" if ch == "*" else ".")
            else:
                out.append(ch)
            self.pos += 1
        return "".join(out), wildcard

    def query(self) -> Query:
        """The inside of ``#(...)``, up to and including ``)``."""
        start = self.pos
        text = self.text
        closes = (i for i, depth in _unquoted(text, start) if depth == 0 and text[i] == ")")
        end = next(closes, None)
        if end is None:
            raise self.error("unclosed '#('")
        inner = text[start:end]
        self.pos = end + 1
        key_text, op, value_text = _split_query(inner)
        key: tuple[Component, ...] = ()
        if key_text:
            try:
                key = compile_path(key_text)
            except PathError as exc:
                raise PathError(f"in the query {inner!r}: {exc}") from None
        value: Any = None
        if op:
            value = _literal(value_text, inner)
        return Query(key, "==" if op == "=" else op, value)


def _split_query(inner: str) -> tuple[str, str, str]:
    """``key``, ``op``, ``value`` of a query's inside, the operator found outside quotes and
    outside nested parentheses."""
    for i, depth in _unquoted(inner):
        if depth == 0:
            for op in _OPS:
                if inner.startswith(op, i):
                    return inner[:i].strip(), op, inner[i + len(op) :].strip()
    return inner.strip(), "", ""


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, int]]:
    """``(index, depth)`` of each character of ``text`` from ``start`` outside quoted strings,
    ``depth`` counting the parentheses still open before it; a backslash escapes the next
    character (it and its escapee are skipped)."""
    depth, quoted, i = 0, False, start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        else:
            yield i, depth
            depth += (ch == "(") - (ch == ")")
        i += 1


def _literal(text: str, inner: str) -> Any:
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except ValueError:
            raise PathError(f"in the query {inner!r}: bad string {text}") from None
        if not isinstance(value, str):
            raise PathError(f"in the query {inner!r}: bad string {text}")
        return value
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _NUMBER.match(text):
        return float(text)
    raise PathError(
        f'in the query {inner!r}: {text!r} is not a JSON literal (quote strings: "...")'
    )


def _compare(found: Any, op: str, value: Any) -> bool:
    if isinstance(value, str):
        if not isinstance(found, str):
            return False
        if op in ("%", "!%"):
            like = fnmatch.fnmatchcase(found, value)
            return like if op == "%" else not like
        return _ordered(found, op, value)
    if isinstance(value, bool):
        if not isinstance(found, bool):
            return False
        return found == value if op == "==" else found != value if op == "!=" else False
    if isinstance(value, float):
        if isinstance(found, bool) or not isinstance(found, int | float):
            return False
        if math.isnan(float(found)):
            return False
        return _ordered(float(found), op, value)
    if value is None:
        return (found is None) == (op == "==") if op in ("==", "!=") else False
    return False


def _ordered(a: Any, op: str, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    return False


def _eval(value: Any, comps: tuple[Component, ...]) -> Any:
    for i, comp in enumerate(comps):
        if value is MISSING:
            return MISSING
        rest = comps[i + 1 :]
        if comp.kind == "key":
            value = _lookup(value, comp)
        elif comp.kind == "count":
            if not isinstance(value, list):
                return MISSING
            if not rest or rest[0].pipe:
                value = len(value)
            else:
                return _map(value, rest)
        elif comp.kind == "query":
            if not isinstance(value, list):
                return MISSING
            query = comp.query
            assert query is not None  # set by the parser for every query component
            if not comp.all:
                value = next((e for e in value if query.matches(e)), MISSING)
            else:
                matches = [e for e in value if query.matches(e)]
                if rest and not rest[0].pipe:
                    return _map(matches, rest)
                value = matches
        elif comp.kind == "multi":
            results = (_eval(value, p) for p in comp.paths)
            value = [r for r in results if r is not MISSING]
        else:
            value = _modify(value, comp.key)
    return value


def _map(items: list[Any], rest: tuple[Component, ...]) -> Any:
    """Map the path up to the next pipe over ``items``, then apply what follows the pipe."""
    end = next((j for j, c in enumerate(rest) if c.pipe), len(rest))
    mapped = [r for r in (_eval(e, rest[:end]) for e in items) if r is not MISSING]
    return _eval(mapped, rest[end:]) if end < len(rest) else mapped


def _lookup(value: Any, comp: Component) -> Any:
    if isinstance(value, Mapping):
        if not comp.wildcard:
            return value.get(comp.key, MISSING)
        pattern = re.compile(comp.key, re.DOTALL)
        for key, item in value.items():
            if pattern.fullmatch(str(key)):
                return item
        return MISSING
    if isinstance(value, list) and not comp.wildcard and comp.key.isdigit():
        index = int(comp.key)
        return value[index] if index < len(value) else MISSING
    return MISSING


def _modify(value: Any, name: str) -> Any:
    if name == "this":
        return value
    if name == "reverse":
        if isinstance(value, list):
            return value[::-1]
        if isinstance(value, Mapping):
            return dict(reversed(list(value.items())))
        return value
    if name == "flatten":
        if not isinstance(value, list):
            return value
        return [x for item in value for x in (item if isinstance(item, list) else [item])]
    if name == "keys":
        return list(value.keys()) if isinstance(value, Mapping) else MISSING
    return list(value.values()) if isinstance(value, Mapping) else MISSING
