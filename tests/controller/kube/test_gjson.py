"""The GJSON subset of trial conditions: every condition Katib ships, evaluated by hand."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from katib.controller.kube import gjson
from katib.controller.kube.conditions import Outcome, check_condition, run_outcome
from tests.controller.kube import katib_examples

JOB = {
    "metadata": {"name": "t", "labels": {"app.kubernetes.io/name": "x"}},
    "status": {
        "succeeded": 1,
        "phase": "Succeeded",
        "conditions": [
            {"type": "Failed", "status": "False", "reason": "r0"},
            {"type": "Complete", "status": "True", "reason": "Done", "message": "ok"},
            {"type": "Running", "status": "True", "n": 3},
        ],
    },
}


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("status.phase", "Succeeded"),
        ("status.succeeded", 1),
        ("status.nope", gjson.MISSING),
        ("status.conditions.#", 3),
        ("status.conditions.1.reason", "Done"),
        ("status.conditions.5", gjson.MISSING),
        ("status.conditions.#.type", ["Failed", "Complete", "Running"]),
        ('status.conditions.#(type=="Complete").reason', "Done"),
        ('status.conditions.#(status=="True")#.type', ["Complete", "Running"]),
        ('status.conditions.#(status=="True")#|#', 2),
        ('status.conditions.#(status=="True")#|0.type', "Complete"),
        ('status.conditions.#(status=="True")#.type|1', "Running"),
        ('status.conditions.#(status != "True")#.type', ["Failed"]),
        ("status.conditions.#(n>2).type", "Running"),
        ("status.conditions.#(n>=4)", gjson.MISSING),
        ("status.conditions.#(n==3)#.type", ["Running"]),
        ('status.conditions.#(n!="3")#', []),  # a string never matches a number, even with !=
        ('status.conditions.#(type%"Comp*")#.type', ["Complete"]),
        ('status.conditions.#(type!%"*e*")#.type', ["Running"]),
        ("status.conditions.#(message)#.type", ["Complete"]),
        ('status.conditions.#.type|#(=="Running")', "Running"),
        ("status.c*ons.#", 3),
        ("status.phas?", "Succeeded"),
        (r"metadata.labels.app\.kubernetes\.io/name", "x"),
        ("status.[phase,nope,succeeded]", ["Succeeded", 1]),
        ("status.[@this].#(succeeded==1).phase", "Succeeded"),
        ("status.conditions.@reverse.0.type", "Running"),
        ("metadata.@keys", ["name", "labels"]),
        ('status.conditions.#(type=="Failed")#|#(status=="True")#', []),
    ],
)
def test_paths(path: str, want: Any) -> None:
    assert gjson.get(JOB, path) == want


def test_hostile_paths_are_refused_not_recursed() -> None:
    with pytest.raises(gjson.PathError, match="nests deeper"):
        gjson.compile_path("a." + "#(" * 200 + "x" + ")" * 200)
    with pytest.raises(gjson.PathError, match="longer than"):
        gjson.compile_path("a." * 5000)


@pytest.mark.parametrize(
    "path",
    ["", "a..b", "a.", 'a.#(x=="y"', "a.{b,c}", "a.@unknown", "a.#(x==y)", "a.b(c)", "a\\"],
)
def test_unsupported_syntax_is_refused(path: str) -> None:
    with pytest.raises(gjson.PathError):
        gjson.compile_path(path)
    assert check_condition(path, "spec.trialTemplate.successCondition") is not None


def conditions_of(status: dict[str, Any]) -> dict[str, Any]:
    return {"status": status}


SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'


def test_run_outcome_as_katib() -> None:
    assert run_outcome({"status": {}}, SUCCESS, FAILURE) is None
    assert run_outcome({}, SUCCESS, FAILURE) is None
    assert run_outcome(JOB, SUCCESS, FAILURE) == Outcome(True, "Done", "ok")
    failed = {
        "status": {
            "conditions": [
                {"type": "Complete", "status": "True"},  # failure is checked first
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},
            ]
        }
    }
    outcome = run_outcome(failed, SUCCESS, FAILURE)
    assert outcome == Outcome(False, "BackoffLimitExceeded", "")
    assert outcome is not None and outcome.condition == "Failed"
    # a scalar result does not hold; an object does (Katib's test: status.succeeded == 1)
    assert run_outcome(JOB, "status.succeeded", FAILURE) is None
    assert run_outcome(JOB, "status.[@this].#(succeeded==1)", FAILURE) == Outcome(True)


KATIB_CONDITIONS = [  # every condition in Katib's examples and defaults (read 2025)
    ('status.conditions.#(type=="Complete")#|#(status=="True")#', "Complete", True),
    ('status.conditions.#(type=="Failed")#|#(status=="True")#', "Failed", True),
    ('status.conditions.#(type=="Succeeded")#|#(status=="True")#', "Succeeded", True),
    ('status.conditions.#(type=="Succeeded")#|#(status=="False")#', "Succeeded", False),
    ('status.[@this].#(phase=="Succeeded")#', None, None),
    ('status.[@this].#(phase=="Failed")#', None, None),
    ("status.[@this].#(succeeded==1)", None, None),
]


@pytest.mark.parametrize(("path", "ctype", "true"), KATIB_CONDITIONS)
def test_katib_conditions(path: str, ctype: str | None, true: bool | None) -> None:
    if ctype is not None:
        status = "True" if true else "False"
        other = "False" if true else "True"
        hit = {
            "status": {
                "conditions": [{"type": "X", "status": status}, {"type": ctype, "status": status}]
            }
        }
        miss = {"status": {"conditions": [{"type": ctype, "status": other}]}}
        assert gjson.get(hit, path) == [{"type": ctype, "status": status}]
        assert gjson.get(miss, path) == []
        return
    m = re.search(r'#\((\w+)==("?)(\w+)"?\)', path)
    assert m is not None
    key, quoted, value = m.groups()
    good: Any = value if quoted else int(value)
    assert run_outcome({"status": {key: good}}, path, "status.nope") == Outcome(True)
    bad: Any = "Running" if quoted else 0
    assert run_outcome({"status": {key: bad}}, path, "status.nope") is None


@pytest.mark.skipif(not katib_examples.available(), reason="Katib's examples are not present")
def test_every_condition_in_katib_examples_parses() -> None:
    found = set()
    for _rel, text in katib_examples.files():
        for m in re.finditer(r"^\s*(?:success|failure)Condition:\s*(.+?)\s*$", text, re.M):
            found.add(m.group(1))
    assert len(found) >= 6, found
    for path in found:
        gjson.compile_path(path)
        assert path in {c for c, _, _ in KATIB_CONDITIONS}, path


@pytest.mark.skipif(not katib_examples.MIRROR.is_dir(), reason="Katib's sources are not present")
def test_katib_default_conditions_parse() -> None:
    """Katib's Go defaults (``DefaultJobSuccessCondition`` ...) parse and match ours."""
    text = subprocess.run(
        [
            "git",
            f"--git-dir={katib_examples.MIRROR}",
            "grep",
            "-h",
            "Condition *=",
            "HEAD",
            "--",
            "pkg",
        ],
        capture_output=True,
        text=True,
    ).stdout
    defaults = re.findall(r'Condition\s*=\s*"((?:[^"\\]|\\.)*)"', text)
    defaults = [d for d in defaults if d]
    assert defaults, "no default conditions found in Katib's sources"
    for literal in defaults:
        path = literal.replace('\\"', '"')
        gjson.compile_path(path)
        assert path in {c for c, _, _ in KATIB_CONDITIONS}, path
