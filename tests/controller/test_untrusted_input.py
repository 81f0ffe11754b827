"""Untrusted input at the edges: strict numbers, confined metrics paths, RE2 filters, and trial
output lines that the collector must skip (with a warning) instead of failing on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest

from katib.controller.metrics import JsonParser, MetricStream, TextParser, parse_rfc3339
from katib.controller.trials import LogEntry
from katib.db.records import validate_report
from tests.controller.test_validation import base, collector, problems_of

PATHOLOGICAL = r"(\w+)=((a|a)*$|[0-9.]+)"


def space(doc: dict[str, Any], **values: Any) -> dict[str, Any]:
    doc["spec"]["parameters"][0]["feasibleSpace"].update(values)
    return doc


# -- item 12: numbers as Katib's Go parsers read them --------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"max": "\u0661\u0662"}, "spec.parameters[0].feasibleSpace.max"),  # Arabic-Indic digits
        ({"max": "\uff11\uff12"}, "spec.parameters[0].feasibleSpace.max"),  # full-width digits
        ({"max": "1_000"}, "spec.parameters[0].feasibleSpace.max"),
        ({"min": " 0"}, "spec.parameters[0].feasibleSpace.min"),
        ({"step": "0_1"}, "spec.parameters[0].feasibleSpace.step"),
    ],
)
def test_lenient_numbers_are_rejected(values: dict[str, str], field: str) -> None:
    problems = problems_of(space(base(), **values))
    assert any(p.startswith(f"{field}: must be a number") for p in problems), problems


def test_lenient_int_bounds_and_discrete_values_are_rejected() -> None:
    doc = base()
    doc["spec"]["parameters"][0] = {
        "name": "x",
        "parameterType": "int",
        "feasibleSpace": {"min": "1", "max": "1_000"},
    }
    doc["spec"]["parameters"][1] = {
        "name": "y",
        "parameterType": "discrete",
        "feasibleSpace": {"list": ["1", "\u0662"]},
    }
    problems = problems_of(doc)
    assert any(p.startswith("spec.parameters[0].feasibleSpace.max:") for p in problems)
    assert any(p.startswith("spec.parameters[1].feasibleSpace.list[1]:") for p in problems)


def test_goal_with_foreign_digits_is_rejected() -> None:
    doc = base()
    doc["spec"]["objective"]["goal"] = "\u0660.\u0661"
    assert any(p.startswith("spec.objective.goal:") for p in problems_of(doc))


def test_duplicate_algorithm_settings_with_different_values_are_rejected() -> None:
    doc = base()
    doc["spec"]["algorithm"]["algorithmSettings"] = [
        {"name": "random_state", "value": "7"},
        {"name": "random_state", "value": "8"},
    ]
    problems = problems_of(doc)
    assert any(
        p.startswith("spec.algorithm.algorithmSettings[1].value:") and "'random_state'" in p
        for p in problems
    ), problems


def test_full_width_digits_are_not_a_timestamp() -> None:
    assert parse_rfc3339("\uff12\uff10\uff12\uff14-01-01T00:00:00Z") is None
    (entry,) = TextParser(["loss"]).parse_line("\uff12\uff10\uff12\uff14-01-01T00:00:00Z loss=1")
    assert entry.time is None
    with pytest.raises(Exception, match="not RFC 3339"):
        validate_report("t", [("\uff12\uff10\uff12\uff14-01-01T00:00:00Z", "loss", "1")])


# -- item 6: a File collector path stays in the trial's directory ---------------------------


@pytest.mark.parametrize("path", ["/katib/../../shared.log", "/../m.log", "/a/b/../../../x"])
def test_metrics_path_with_dotdot_is_rejected(path: str) -> None:
    doc = base()
    collector("File", fileSystemPath={"path": path, "kind": "File", "format": "TEXT"})(doc)
    problems = problems_of(doc)
    field = "spec.metricsCollectorSpec.source.fileSystemPath.path"
    assert any(p.startswith(f"{field}: must not contain '..'") for p in problems), problems


# -- item 10: RE2 for user filters ----------------------------------------------------------


@pytest.mark.parametrize("pattern", [r"(?<=x)(\w+)=(\d+)", r"(\w+)=(\d+)\1", r"(?=a)(b)(c)"])
def test_filters_re2_cannot_compile_are_rejected(pattern: str) -> None:
    doc = base()
    collector("StdOut", filter={"metricsFormat": [pattern]})(doc)
    field = "spec.metricsCollectorSpec.source.filter.metricsFormat[0]"
    problems = problems_of(doc)
    assert any(p.startswith(field) and "RE2" in p for p in problems), problems


def test_catastrophic_filter_runs_in_linear_time() -> None:
    """Python's ``re`` needs hours for this line (7 s at 24 characters, doubling per one more);
    RE2 scans it once. Run in a subprocess with a generous deadline so a regression fails
    instead of hanging the suite."""
    script = textwrap.dedent(
        f"""
        from katib.controller.metrics import TextParser
        parser = TextParser(["loss"], [{PATHOLOGICAL!r}])
        line = "loss=" + "a" * 20000 + "!"
        assert parser.parse_line(line) == []
        assert [e.value for e in parser.parse_line("loss=0.5")] == ["0.5"]
        print("done")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


def test_re2_keeps_gos_ascii_classes() -> None:
    assert TextParser(["loss"]).parse_line("loss=\u0661\u0662") == []


# -- item 4: one bad line is skipped with a warning, never fatal -------------------------------

BAD_TEXT_LINES = [
    "0001-01-01T00:00:00+01:00 loss=1",
    "9999-12-31T23:59:59-01:00 loss=2",
    "loss=" + "9" * 70_000,
]
BAD_JSON_LINES = [
    '{"loss": 1, "timestamp": "0001-01-01T00:00:00+01:00"}',
    '{"loss": 2, "timestamp": "9999-12-31T23:59:59-01:00"}',
    '{"loss": 3, "timestamp": 1e300}',
    '{"loss": 4, "timestamp": NaN}',
    '{"loss": "a\\u0000b"}',
    '{"loss": "\\ud800"}',
    '{"loss": ' + "9" * 70_000 + "}",
    '{"loss": "' + "9" * 70_000 + '"}',
    "[" * 100_000 + "]" * 100_000,
]


def _collect(parser: Any, lines: list[str]) -> tuple[list[LogEntry], list[str]]:
    warnings: list[str] = []
    stream = MetricStream(parser, warn=warnings.append)
    stream.feed(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    stream.close()
    return stream.take(), warnings


def test_bad_text_lines_never_reach_the_db() -> None:
    entries, warnings = _collect(TextParser(["loss"]), [*BAD_TEXT_LINES, "loss=0.5"])
    # out-of-range timestamps leave the lines untimed (Katib: zero time); the huge value is
    # skipped with a warning
    assert [(e.time, e.value) for e in entries] == [(None, "1"), (None, "2"), (None, "0.5")]
    assert len(warnings) == 1 and "line 3" in warnings[0] and "70000 bytes" in warnings[0]
    validate_report(
        "t", [(e.time.isoformat() if e.time else "", e.name, e.value) for e in entries]
    )


def test_bad_json_lines_are_skipped_with_a_warning() -> None:
    lines = [*BAD_JSON_LINES, '{"loss": 0.25, "timestamp": "2024-01-01T00:00:00Z"}']
    entries, warnings = _collect(JsonParser(["loss"]), lines)
    assert [e.value for e in entries] == ["1", "2", "3", "4", "0.25"]
    assert [e.time for e in entries[:4]] == [None] * 4
    assert entries[-1].time == datetime(2024, 1, 1, tzinfo=UTC)
    assert len(warnings) == 5, warnings
    for number, warning in zip([5, 6, 7, 8, 9], warnings, strict=True):
        assert f"line {number}:" in warning
    assert all(len(w) < 300 for w in warnings)  # never the whole line
    validate_report("t", [("", e.name, e.value) for e in entries])


def test_warnings_are_capped() -> None:
    entries, warnings = _collect(JsonParser(["loss"]), ["{"] * 500)
    assert entries == []
    assert len(warnings) == 51 and "further" in warnings[-1]


def test_an_endless_line_is_dropped_without_holding_it_in_memory() -> None:
    warnings: list[str] = []
    stream = MetricStream(TextParser(["loss"]), warn=warnings.append)
    stream.feed(b"loss=1\n")
    for _ in range(40):  # 40 MiB without a newline, in 1 MiB chunks
        stream.feed(b"loss=2 " + b"x" * (1 << 20))
        assert len(stream.splitter._partial) <= 2 << 20
    stream.feed(b" tail of the long line\nloss=3\n")
    stream.close()
    assert [e.value for e in stream.take()] == ["1", "3"]
    assert len(warnings) == 1 and "longer than 1048576 bytes" in warnings[0]


def test_a_metric_name_the_db_would_refuse_is_skipped() -> None:
    long_name = "m" * 300
    entries, warnings = _collect(
        JsonParser([long_name, "loss"]), [f'{{"{long_name}": 1, "loss": 2}}']
    )
    assert [(e.name, e.value) for e in entries] == [("loss", "2")]
    assert len(warnings) == 1 and "300 characters" in warnings[0]


def test_metric_names_the_db_cannot_store_are_rejected() -> None:
    doc = base()
    doc["spec"]["objective"]["additionalMetricNames"] = ["m" * 256, "a\x00b"]
    problems = problems_of(doc)
    assert any(p.startswith("spec.objective.additionalMetricNames[0]: ") for p in problems)
    assert any(p.startswith("spec.objective.additionalMetricNames[1]: ") for p in problems)
