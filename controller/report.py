"""Machine-readable output of ``katib status`` and ``katib trials`` (``-o json|yaml|csv``).

The schema is versioned (``schemaVersion``) and documented in the README ("Machine-readable
output"); fields are only ever added. Every time is RFC 3339 in UTC (``...Z``) or null; every
parameter and metric value is a string, as Katib stores them (``"unavailable"`` for a metric
with no value).

A trial::

    {"name", "index", "condition", "reason", "message",
     "parameters": {name: value},
     "observation": {metric: {"min", "max", "latest"}},
     "objectiveValue": str | null,          # the objective metric under its strategy
     "startTime", "completionTime",         # RFC 3339 or null
     "exitCode": int | null,                # the trial process's exit code once it ended
     "logTail": [str]}                      # last lines of trial.log when Failed, else []

A status: ``{"schemaVersion", "kind": "ExperimentStatus", "name", "condition", "reason",
"message", "startTime", "completionTime", "objective": {"type", "metricName", "goal"},
"counts": {...}, "bestTrial": trial | null}``; a trial list: ``{"schemaVersion", "kind":
"TrialList", "experiment", "trials": [trial]}``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from katib.controller import reconcile as rec
from katib.controller.spec import Experiment
from katib.controller.trials import TrialCondition, TrialRecord

SCHEMA_VERSION = 1
FORMATS = ("table", "json", "yaml")
TRIAL_FORMATS = (*FORMATS, "csv")
#: Lines of a failed trial's log shown (``logTail``), and the bytes read from its end to find them.
TAIL_LINES = 10
_TAIL_BYTES = 16 * 1024
_LINE_CHARS = 400
LOG_NAME = "trial.log"


def log_path(results_dir: Path, trial_name: str) -> Path:
    """Where a trial's output is kept in a results directory."""
    return results_dir / "trials" / trial_name / LOG_NAME


def log_tail(results_dir: Path, trial_name: str, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of the trial's log ([] when there is none).

    Reads at most the last 16 KiB, so a huge log costs nothing; long lines are cut.
    """
    try:
        with log_path(results_dir, trial_name).open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - _TAIL_BYTES, 0))
            data = handle.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").replace("\r", "\n")
    found = [line.rstrip() for line in text.split("\n") if line.strip()]
    if len(data) >= _TAIL_BYTES and found:
        found = found[1:]  # the first line read is probably cut
    shown = found[-lines:] if lines > 0 else []
    return [line if len(line) <= _LINE_CHARS else line[:_LINE_CHARS] + "..." for line in shown]


def rfc3339(moment: datetime | str | None) -> str | None:
    """A time as RFC 3339 UTC with ``Z`` (microseconds when present), or None."""
    if moment is None or moment == "":
        return None
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def trial_document(
    spec: Experiment, trial: TrialRecord, results_dir: Path | None
) -> dict[str, Any]:
    """One trial in the documented schema (``logTail`` empty without a results directory:
    an experiment read from a cluster)."""
    failed = trial.condition is TrialCondition.FAILED
    return {
        "name": trial.name,
        "index": trial.index,
        "condition": trial.condition.value,
        "reason": trial.reason,
        "message": trial.message,
        "parameters": dict(trial.assignments),
        "observation": {
            metric.name: {"min": metric.min, "max": metric.max, "latest": metric.latest}
            for metric in trial.observation
        },
        "objectiveValue": trial.objective_value(spec.objective),
        "startTime": rfc3339(trial.start_time),
        "completionTime": rfc3339(trial.completion_time),
        "exitCode": trial.exit_code,
        "logTail": log_tail(results_dir, trial.name) if failed and results_dir else [],
    }


def trials_document(
    spec: Experiment, trials: Sequence[TrialRecord], results_dir: Path | None
) -> dict[str, Any]:
    """``katib trials -o json|yaml``."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "kind": "TrialList",
        "experiment": spec.name,
        "trials": [trial_document(spec, trial, results_dir) for trial in trials],
    }


def status_document(
    spec: Experiment,
    status: Mapping[str, Any],
    trials: Sequence[TrialRecord],
    results_dir: Path | None,
) -> dict[str, Any]:
    """``katib status -o json|yaml``."""
    counts = rec.Counts.of(trials)
    best_name = status.get("best_trial")
    best = next((t for t in trials if t.name == best_name), None)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "kind": "ExperimentStatus",
        "name": spec.name,
        "condition": status.get("condition", rec.Condition.CREATED.value),
        "reason": status.get("reason", ""),
        "message": status.get("message", ""),
        "startTime": rfc3339(status.get("start_time")),
        "completionTime": rfc3339(status.get("completion_time")),
        "objective": {
            "type": spec.objective.type.value,
            "metricName": spec.objective.objective_metric_name,
            "goal": spec.objective.goal,
        },
        "counts": {
            "trials": counts.trials,
            "pending": counts.pending,
            "running": counts.running,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "killed": counts.killed,
            "earlyStopped": counts.early_stopped,
            "metricsUnavailable": counts.metrics_unavailable,
        },
        "bestTrial": None if best is None else trial_document(spec, best, results_dir),
    }


def dump(document: Mapping[str, Any], fmt: str) -> str:
    """``document`` as JSON (indented, stable key order) or YAML."""
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)


def trials_csv(spec: Experiment, trials: Sequence[TrialRecord]) -> str:
    """``katib trials -o csv``: one row per trial; columns named after the JSON fields
    (``parameters.<name>``, ``observation.<metric>.min|max|latest``); empty for null."""
    params = [p.name for p in spec.parameters]
    metrics = list(spec.objective.metric_names)
    header = [
        "name",
        "index",
        "condition",
        "reason",
        "message",
        "objectiveValue",
        "startTime",
        "completionTime",
        "exitCode",
        *(f"parameters.{p}" for p in params),
        *(f"observation.{m}.{k}" for m in metrics for k in ("min", "max", "latest")),
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for trial in trials:
        values = trial.assignment_dict()
        observed: list[str] = []
        for name in metrics:
            metric = trial.metric(name)
            observed.extend(
                ("", "", "") if metric is None else (metric.min, metric.max, metric.latest)
            )
        writer.writerow(
            [
                trial.name,
                trial.index,
                trial.condition.value,
                trial.reason,
                trial.message,
                trial.objective_value(spec.objective) or "",
                rfc3339(trial.start_time) or "",
                rfc3339(trial.completion_time) or "",
                "" if trial.exit_code is None else trial.exit_code,
                *(values.get(p, "") for p in params),
                *observed,
            ]
        )
    return out.getvalue()
