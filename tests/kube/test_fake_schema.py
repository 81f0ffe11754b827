"""OpenAPI v3 admission of custom resources: defaults, pruning and violations with paths."""

from __future__ import annotations

from typing import Any

import pytest

from katib.controller.kube.fake.schema import admit
from katib.controller.kube.fake.selectors import SelectorError, field_selector, label_selector

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "mode": {"type": "string", "default": "fast"},
                "count": {"type": "integer", "minimum": 0, "maximum": 10},
                "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                "name": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
                "tags": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2,
                    "items": {"type": "string"},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "note": {"type": "string", "nullable": True},
                "flag": {"type": "boolean"},
                "size": {
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                    "x-kubernetes-int-or-string": True,
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
    },
}


def test_defaults_are_filled_and_unknown_fields_pruned() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "a", "anything": 1},
        "spec": {"extra": 1, "labels": {"a": "b"}, "template": {"kind": "Job", "deep": {}}},
        "top": 1,
    }
    assert admit(SCHEMA, obj) == []
    assert obj == {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "a", "anything": 1},
        "spec": {"mode": "fast", "labels": {"a": "b"}, "template": {"kind": "Job", "deep": {}}},
    }


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"count": "3"}, "spec.count", "must be of type integer"),
        ({"count": True}, "spec.count", "must be of type integer"),
        ({"count": 11}, "spec.count", "less than or equal to 10"),
        ({"count": -1}, "spec.count", "greater than or equal to 0"),
        ({"ratio": 0}, "spec.ratio", "greater than 0"),
        ({"name": "a"}, "spec.name", "at least 2 chars"),
        ({"name": "abcde"}, "spec.name", "longer than 4"),
        ({"name": "AB"}, "spec.name", "should match"),
        ({"tags": []}, "spec.tags", "at least 1 items"),
        ({"tags": ["a", 1]}, "spec.tags[1]", "must be of type string"),
        ({"labels": {"a": 1}}, "spec.labels.a", "must be of type string"),
        ({"flag": "yes"}, "spec.flag", "must be of type boolean"),
        ({"size": 1.5}, "spec.size", "integer or string"),
        ({"mode": None}, "spec.mode", "must be of type string"),
    ],
)
def test_violations_name_the_field(spec: dict[str, Any], field: str, words: str) -> None:
    violations = admit(SCHEMA, {"metadata": {"name": "a"}, "spec": spec})
    assert [v.field for v in violations][:1] == [field]
    assert words in violations[0].message


def test_nullable_and_required_and_enum() -> None:
    assert admit(SCHEMA, {"spec": {"note": None}}) == []
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"type": {"type": "string", "enum": ["a", "b"]}},
            }
        },
    }
    (missing,) = admit(schema, {"metadata": {}})
    assert missing.field == "spec" and missing.reason == "FieldValueRequired"
    (bad,) = admit(schema, {"spec": {"type": "c"}})
    assert bad.reason == "FieldValueNotSupported" and 'supported values: "a", "b"' in bad.message


def test_selectors() -> None:
    assert label_selector("a in (x,y),b!=z")({"a": "y"})
    assert not label_selector("a in (x,y),b!=z")({"a": "y", "b": "z"})
    assert label_selector("")({})
    with pytest.raises(SelectorError):
        label_selector("a=b c")
    pods = field_selector("status.phase=Running", "pods")
    assert pods({"status": {"phase": "Running"}})
    with pytest.raises(SelectorError, match="not supported"):
        field_selector("status.phase=Running", "jobs")
