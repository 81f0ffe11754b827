"""Typed algorithm settings, parsed once from Katib's ``(name, value)`` string pairs.

Each algorithm declares a frozen dataclass whose fields use :func:`setting`::

    @dataclass(frozen=True)
    class TPESettings:
        gamma: float = setting(0.25, gt=0, lt=1, doc="quantile of good trials")
        n_ei_candidates: int = setting(24, ge=1, aliases=("n_EI_candidates",))

:func:`parse_settings` converts and range-checks every pair, rejects unknown names and raises one
:class:`~katib.api.errors.InvalidArgument` listing every problem. ``ValidateAlgorithmSettings`` and
``GetSuggestions`` both call it, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, Union

from katib.api.errors import InvalidArgument

T = TypeVar("T")
S = TypeVar("S")

_NONE_WORDS = {"none", "null", ""}
_TRUE_WORDS = {"true", "1", "yes", "on"}
_FALSE_WORDS = {"false", "0", "no", "off"}


def setting(
    default: Any,
    *,
    doc: str = "",
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Iterable[str] | None = None,
    aliases: Iterable[str] = (),
) -> Any:
    """Declare a settings field: its default, valid range or choices, and accepted aliases."""
    meta = {
        "doc": doc,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "choices": tuple(choices) if choices is not None else None,
        "aliases": tuple(aliases),
    }
    return dataclasses.field(default=default, metadata=meta)


def parse_settings(cls: type[T], pairs: Sequence[tuple[str, str]], algorithm: str) -> T:
    """Build ``cls`` from setting pairs; later pairs with the same name win (Katib's overlay)."""
    settings, _ = parse_with_state(cls, None, pairs, algorithm)
    return settings


def parse_with_state(
    settings_class: type[T],
    state_class: type[S] | None,
    pairs: Sequence[tuple[str, str]],
    algorithm: str,
) -> tuple[T, S | None]:
    """Settings and echoed algorithm state, parsed from one list of pairs.

    Katib's controller overlays the state a service echoed in ``reply.algorithm`` onto the
    experiment's settings, so both arrive mixed: each name must belong to the settings class
    or the state class (``None``: no state; the result's state is then ``None``). Unknown
    names and bad values are all reported in one :class:`InvalidArgument`.
    """
    classes, lookup, fields, hints = _declared(settings_class, state_class)  # type: ignore[arg-type]
    problems: list[str] = []
    last = {name: text for name, text in pairs}  # Katib's overlay: the last value wins
    values: list[dict[str, Any]] = [{} for _ in classes]
    for name, text in last.items():
        target = lookup.get(name)
        if target is None:
            known = ", ".join(sorted(lookup)) or "none"
            problems.append(
                f"unknown setting {name!r} for algorithm {algorithm!r} (known settings: {known})"
            )
            continue
        index, field_name = target
        try:
            values[index][field_name] = _convert(
                text, hints[index][field_name], fields[index][field_name].metadata
            )
        except ValueError as exc:
            kind = "setting" if index == 0 else "algorithm state"
            problems.append(f"{kind} {name!r}: {exc}")
    if problems:
        raise InvalidArgument(problems)
    state = state_class(**values[1]) if state_class is not None else None
    return settings_class(**values[0]), state


@functools.lru_cache(maxsize=256)
def _declared(
    settings_class: type[Any], state_class: type[Any] | None
) -> tuple[
    list[type[Any]],
    dict[str, tuple[int, str]],
    list[dict[str, dataclasses.Field[Any]]],
    list[dict[str, Any]],
]:
    """What the classes declare (computed once per pair): names and aliases, fields, types."""
    classes: list[type[Any]] = [settings_class] + ([state_class] if state_class else [])
    lookup: dict[str, tuple[int, str]] = {}
    fields: list[dict[str, dataclasses.Field[Any]]] = []
    hints: list[dict[str, Any]] = []
    for index, cls in enumerate(classes):
        declared = {f.name: f for f in dataclasses.fields(cls)}
        fields.append(declared)
        hints.append(typing.get_type_hints(cls))
        for f in declared.values():
            for name in (f.name, *f.metadata.get("aliases", ())):
                if name in lookup and lookup[name][0] != index:
                    raise TypeError(f"{name!r} is declared as both a setting and a state key")
                lookup[name] = (index, f.name)
    return classes, lookup, fields, hints


def format_state(state: Any) -> list[tuple[str, str]]:
    """A state dataclass as ``(name, value)`` string pairs that :func:`parse_with_state` reads."""
    pairs = []
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if value is None:
            text = "none"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        pairs.append((f.name, text))
    return pairs


def describe_settings(cls: type) -> list[dict[str, Any]]:
    """Name, type, default, range and doc of each setting (for docs and ``--help``)."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        rows.append(
            {"name": f.name, "type": _type_name(hints[f.name]), "default": f.default, **meta}
        )
    return rows


def _convert(text: str, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    base, optional = _unwrap_optional(hint)
    raw = text.strip()
    if optional and raw.lower() in _NONE_WORDS:
        return None
    value: Any
    if base is bool:
        if raw.lower() not in _TRUE_WORDS | _FALSE_WORDS:
            raise ValueError(f"expected true or false, got {text!r}")
        value = raw.lower() in _TRUE_WORDS
    elif base is int:
        value = _parse_int(raw, text)
    elif base is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {text!r}")
    else:
        value = raw
    _check_range(value, meta)
    return value


def _parse_int(raw: str, text: str) -> int:
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)  # accept "1e3" and "5.0"
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None
    if not number.is_integer():
        raise ValueError(f"expected an integer, got {text!r}")
    return int(number)


def _check_range(value: Any, meta: typing.Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    low = ("[", meta["ge"]) if meta.get("ge") is not None else ("(", meta.get("gt"))
    high = ("]", meta["le"]) if meta.get("le") is not None else (")", meta.get("lt"))
    ok = (low[1] is None or (value >= low[1] if low[0] == "[" else value > low[1])) and (
        high[1] is None or (value <= high[1] if high[0] == "]" else value < high[1])
    )
    if not ok:
        lo = "-inf" if low[1] is None else f"{low[1]:g}"
        hi = "inf" if high[1] is None else f"{high[1]:g}"
        raise ValueError(f"must be in {low[0]}{lo}, {hi}{high[0]}, got {value:g}")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(typing.get_args(hint))
    return hint, False


def _type_name(hint: Any) -> str:
    base, optional = _unwrap_optional(hint)
    name = getattr(base, "__name__", str(base))
    return f"{name} | None" if optional else name
