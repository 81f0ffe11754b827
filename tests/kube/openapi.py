"""Validate objects against a CRD's ``openAPIV3Schema`` as the API server would.

The CRD dialect differs from JSON Schema in a few keywords; :func:`to_json_schema` translates
them so that the ``jsonschema`` package does the validating:

- ``nullable: true`` adds ``null`` to the type;
- ``x-kubernetes-int-or-string`` becomes ``integer or string``;
- an object with ``properties`` and no ``x-kubernetes-preserve-unknown-fields`` refuses other
  fields, which is what ``kubectl apply`` (strict field validation, the default) reports for a
  field the server would otherwise prune;
- ``format: int32`` / ``int64`` bound the integer; ``format: date-time`` is checked.

:func:`structural_problems` checks the rules the API server applies to a CRD schema before it
accepts the CRD (every node typed, nothing typed inside ``anyOf``/``oneOf``, ...), so a schema
that would be refused at ``kubectl apply`` time fails here first.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import jsonschema

Schema = dict[str, Any]

_INT_BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def to_json_schema(node: Schema) -> Schema:
    """``node``, an OpenAPI v3 CRD schema, as a JSON Schema (2020-12) with the same meaning."""
    out: Schema = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(child) for child in value]
        elif key in ("nullable", "format") or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("type") == "integer" and node.get("format") in _INT_BOUNDS:
        low, high = _INT_BOUNDS[node["format"]]
        out.setdefault("minimum", low)
        out.setdefault("maximum", high)
    if node.get("format") == "date-time":
        out["format"] = "date-time"
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if node.get("type") == "object" and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(_date_time)


def field_path(path: Any) -> str:
    """A jsonschema error path as Kubernetes writes field paths: ``spec.parameters[0].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def validation_errors(schema: Schema, obj: Any) -> list[str]:
    """Every ``field.path: message`` problem of ``obj`` under the CRD schema ``schema``."""
    translated = to_json_schema(schema)
    if "metadata" in translated.get("properties", {}):
        # The API server checks a root's metadata as ObjectMeta, not through the CRD schema.
        translated["properties"]["metadata"] = {"type": "object"}
    validator = jsonschema.Draft202012Validator(translated, format_checker=_FORMATS)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{field_path(error.absolute_path)}: {error.message}" for error in errors]


def crd_schema(crd: Schema, version: str = "v1beta1") -> Schema:
    """The ``openAPIV3Schema`` of ``version`` in the CRD object ``crd``."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd['metadata']['name']} has no version {version}")


def _walk(node: Schema, path: str, in_junctor: bool) -> Iterator[str]:
    typed = "type" in node
    special = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if in_junctor:
        for key in ("type", "description", "default", "additionalProperties", "nullable"):
            if key in node:
                yield f"{path}: {key!r} is not allowed inside a logical junctor"
    elif not typed and not special:
        yield f"{path}: every node needs a type (or x-kubernetes-int-or-string/preserve)"
    if node.get("x-kubernetes-int-or-string") and typed:
        yield f"{path}: x-kubernetes-int-or-string must not set a type"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: properties and additionalProperties are mutually exclusive"
    if typed and node["type"] not in ("object", "array", "string", "integer", "number", "boolean"):
        yield f"{path}: unknown type {node['type']!r}"
    if node.get("type") == "array" and "items" not in node:
        yield f"{path}: an array needs items"
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}", in_junctor)
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]", in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}", in_junctor)
    for junctor in _JUNCTORS:
        children = node.get(junctor, [])
        for child in children if isinstance(children, list) else [children]:
            yield from _walk(child, f"{path}.{junctor}", True)


def structural_problems(schema: Schema) -> list[str]:
    """Ways ``schema`` breaks the API server's structural-schema rules (empty when none)."""
    problems = list(_walk(schema, "<root>", False))
    if schema.get("type") != "object":
        problems.append("<root>: the root must be an object")
    metadata = schema.get("properties", {}).get("metadata", {})
    if set(metadata.get("properties", {})) - {"name", "generateName"}:
        problems.append("<root>.metadata: only name and generateName may be constrained")
    return problems
