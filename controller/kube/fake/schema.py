"""OpenAPI v3 validation, defaulting and pruning for custom resources, as the API server does.

:func:`admit` takes a CRD version's ``openAPIV3Schema`` and an object. It fills ``default``
values, prunes fields the schema does not declare (unless ``x-kubernetes-preserve-unknown-fields``
says to keep them; ``apiVersion``, ``kind`` and ``metadata`` at the root are never pruned), and
returns every violation as a :class:`Violation` whose ``field`` is the dotted path the real
server reports (``spec.parameters[0].feasibleSpace.min``). Supported keywords: ``type``
(object, array, string, integer, number, boolean), ``properties``, ``additionalProperties``,
``items``, ``required``, ``enum``, ``minimum``/``maximum`` (and the boolean ``exclusive…``),
``minLength``/``maxLength``, ``pattern``, ``minItems``/``maxItems``, ``nullable``, ``default``,
``allOf``/``anyOf``/``oneOf`` (validation only), ``x-kubernetes-int-or-string``,
``x-kubernetes-preserve-unknown-fields`` and ``x-kubernetes-embedded-resource``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, NamedTuple

_ROOT_KEEP = ("apiVersion", "kind", "metadata")
_TYPES = {
    "object": "object",
    "array": "array",
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
}


class Violation(NamedTuple):
    """One schema violation: the field path, the Kubernetes cause type and the message."""

    field: str
    reason: str  # FieldValueInvalid | FieldValueRequired | FieldValueNotSupported
    message: str


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) or value is None else str(value)


def _type_ok(schema: dict[str, Any], value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Walker:
    def __init__(self, prune: bool) -> None:
        self.prune = prune
        self.violations: list[Violation] = []

    def bad(self, path: str, value: Any, message: str) -> None:
        self.violations.append(
            Violation(path, "FieldValueInvalid", f"Invalid value: {_shown(value)}: {message}")
        )

    def walk(self, schema: dict[str, Any], value: Any, path: str, root: bool = False) -> None:
        if value is None:
            if not schema.get("nullable"):
                self.bad(path, value, f"{path} in body must be of type {schema.get('type')}")
            return
        if not _type_ok(schema, value):
            kind = "integer or string" if schema.get("x-kubernetes-int-or-string") else None
            self.bad(
                path,
                value,
                f"{path} in body must be of type {kind or _TYPES.get(schema['type'])}: "
                f'"{type(value).__name__}"',
            )
            return
        self.scalar_rules(schema, value, path)
        for keyword in ("allOf", "anyOf", "oneOf"):
            if keyword in schema:
                self.combined(keyword, schema[keyword], value, path)
        if isinstance(value, dict):
            self.object(schema, value, path, root)
        elif isinstance(value, list):
            self.array(schema, value, path)

    def scalar_rules(self, schema: dict[str, Any], value: Any, path: str) -> None:
        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(_shown(v) for v in schema["enum"])
            self.violations.append(
                Violation(
                    path,
                    "FieldValueNotSupported",
                    f"Unsupported value: {_shown(value)}: supported values: {supported}",
                )
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = schema.get("minimum"), schema.get("maximum")
            if low is not None:
                strict = schema.get("exclusiveMinimum") is True
                if value < low or (strict and value == low):
                    word = "greater than" if strict else "greater than or equal to"
                    self.bad(path, value, f"{path} in body should be {word} {low}")
            if high is not None:
                strict = schema.get("exclusiveMaximum") is True
                if value > high or (strict and value == high):
                    word = "less than" if strict else "less than or equal to"
                    self.bad(path, value, f"{path} in body should be {word} {high}")
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.bad(
                    path,
                    value,
                    f"{path} in body should be at least {schema['minLength']} chars long",
                )
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self.bad(
                    path, value, f"{path} in body may not be longer than {schema['maxLength']}"
                )
            if "pattern" in schema and not re.search(schema["pattern"], value):
                self.bad(path, value, f"{path} in body should match '{schema['pattern']}'")

    def combined(self, keyword: str, options: list[dict[str, Any]], value: Any, path: str) -> None:
        passed = 0
        for option in options:
            trial = _Walker(prune=False)
            trial.walk(option, copy.deepcopy(value), path)
            if trial.violations and keyword == "allOf":
                self.violations.extend(trial.violations)
            passed += not trial.violations
        if keyword == "anyOf" and not passed:
            self.bad(path, value, f"{path} in body must match at least one schema in anyOf")
        if keyword == "oneOf" and passed != 1:
            self.bad(path, value, f"{path} in body must match exactly one schema in oneOf")

    def object(self, schema: dict[str, Any], value: dict[str, Any], path: str, root: bool) -> None:
        properties: dict[str, Any] = schema.get("properties", {})
        for name, sub in properties.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name in schema.get("required", ()):
            if name not in value:
                self.violations.append(
                    Violation(_join(path, name), "FieldValueRequired", "Required value")
                )
        extra = schema.get("additionalProperties")
        keep = (
            schema.get("x-kubernetes-preserve-unknown-fields") is True
            or extra is True
            or (root and not properties)
        )
        embedded = schema.get("x-kubernetes-embedded-resource") is True
        for name in list(value):
            sub_path = _join(path, name)
            if name in properties:
                if root and name == "metadata":
                    continue
                self.walk(properties[name], value[name], sub_path)
            elif isinstance(extra, dict):
                self.walk(extra, value[name], sub_path)
            elif (root or embedded) and name in _ROOT_KEEP:
                continue
            elif self.prune and not keep:
                del value[name]

    def array(self, schema: dict[str, Any], value: list[Any], path: str) -> None:
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.bad(
                path, len(value), f"{path} in body should have at least {schema['minItems']} items"
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.bad(
                path, len(value), f"{path} in body should have at most {schema['maxItems']} items"
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                self.walk(items, item, f"{path}[{index}]")


def admit(schema: dict[str, Any], obj: dict[str, Any]) -> list[Violation]:
    """Default and prune ``obj`` in place by ``schema``; return every violation (none: valid)."""
    walker = _Walker(prune=True)
    walker.walk(schema, obj, "", root=True)
    return walker.violations
