"""Console output for people: live progress while an experiment runs, tables at the end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from katib.controller import reconcile as rec
from katib.controller.report import log_path, log_tail
from katib.controller.spec import Experiment, ObjectiveType
from katib.controller.trials import UNAVAILABLE, TrialCondition, TrialRecord

_STYLE = {
    TrialCondition.SUCCEEDED: "green",
    TrialCondition.FAILED: "red",
    TrialCondition.METRICS_UNAVAILABLE: "yellow",
    TrialCondition.KILLED: "magenta",
    TrialCondition.RUNNING: "cyan",
    TrialCondition.EARLY_STOPPED: "blue",
}


def counts_line(counts: rec.Counts) -> str:
    """``12 trials: 9 succeeded, 3 running, …`` (zero counts left out)."""
    parts = [
        (counts.succeeded, "succeeded"),
        (counts.running, "running"),
        (counts.pending, "pending"),
        (counts.failed, "failed"),
        (counts.metrics_unavailable, "metrics unavailable"),
        (counts.killed, "killed"),
        (counts.early_stopped, "early stopped"),
    ]
    details = ", ".join(f"{n} {label}" for n, label in parts if n)
    return f"{counts.trials} trials" + (f": {details}" if details else "")


def best_line(spec: Experiment, trials: Sequence[TrialRecord], best: str | None) -> str:
    """The best trial so far with its objective value and assignments."""
    if best is None:
        return "best: none yet"
    trial = next(t for t in trials if t.name == best)
    params = ", ".join(f"{k}={v}" for k, v in trial.assignments)
    value = trial.objective_value(spec.objective)
    return f"best: {trial.name} {spec.objective.objective_metric_name}={value} ({params})"


def sort_key(spec: Experiment, trial: TrialRecord) -> tuple[int, float, int]:
    """Best first: by the objective value in its direction, unobserved last, then by index."""
    value = trial.objective_value(spec.objective)
    try:
        number = float(value) if value not in (None, UNAVAILABLE) else float("nan")
    except ValueError:
        number = float("nan")
    if number != number:
        return (1, 0.0, trial.index)
    return (0, -number if spec.objective.type is ObjectiveType.MAXIMIZE else number, trial.index)


def trials_table(
    spec: Experiment, trials: Sequence[TrialRecord], limit: int | None = None, by_best: bool = True
) -> Table:
    """A table of trials, best first (or in creation order), with parameters and metrics."""
    ordered = sorted(trials, key=lambda t: sort_key(spec, t)) if by_best else list(trials)
    if limit is not None:
        ordered = ordered[:limit]
    table = Table(title=f"{spec.name}: " + ("best trials" if by_best else "trials"))
    table.add_column("#", justify="right")
    table.add_column("trial")
    table.add_column("status")
    table.add_column("exit", justify="right")
    for param in spec.parameters:
        table.add_column(param.name, justify="right")
    for metric in spec.objective.metric_names:
        strategy = spec.objective.strategy(metric)
        table.add_column(f"{metric} ({strategy})", justify="right")
    for trial in ordered:
        values = trial.assignment_dict()
        metrics = []
        for name in spec.objective.metric_names:
            observed = trial.metric(name)
            strategy = spec.objective.strategy(name)
            metrics.append(observed.value(strategy) if observed and strategy else "")
        table.add_row(
            str(trial.index),
            trial.name,
            Text(str(trial.condition), style=_STYLE.get(trial.condition, "")),
            "" if trial.exit_code is None else str(trial.exit_code),
            *(values.get(p.name, "") for p in spec.parameters),
            *metrics,
        )
    return table


def failure_lines(results_dir: Path, trial: TrialRecord, lines: int = 5) -> list[str]:
    """Why ``trial`` failed: its exit code, then the last ``lines`` lines of its log."""
    code = "?" if trial.exit_code is None else trial.exit_code
    tail = log_tail(results_dir, trial.name, lines)
    where = log_path(results_dir, trial.name)
    head = f"{trial.name} failed (exit code {code})"
    if not tail:
        return [f"{head}; {where} is empty"]
    return [f"{head}; last lines of {where}:", *(f"  | {line}" for line in tail)]


def print_failures(
    console: Console,
    results_dir: Path,
    trials: Sequence[TrialRecord],
    limit: int | None = None,
    lines: int = 5,
) -> None:
    """Print :func:`failure_lines` for the failed trials (the latest ``limit`` of them)."""
    failed = [t for t in trials if t.condition is TrialCondition.FAILED]
    shown = failed if limit is None else failed[-limit:] if limit > 0 else []
    if len(shown) < len(failed):
        console.print(
            f"{len(failed)} trials failed; the last {len(shown)} (all: katib trials "
            f"{results_dir}):",
            style="red",
            highlight=False,
        )
    for trial in shown:
        for line in failure_lines(results_dir, trial, lines):
            console.print(line, highlight=False, markup=False, soft_wrap=True)


class ProgressView:
    """Progress callback for :class:`~katib.controller.runner.ExperimentRunner`.

    On a terminal: a live panel (counts, best so far, running trials). Elsewhere: one line each
    time the counts change. Either way, each trial that fails gets one line with its exit code
    and the last line of its log (``results_dir/trials/<name>/trial.log``).
    """

    def __init__(
        self, spec: Experiment, console: Console, results_dir: Path | None = None
    ) -> None:
        self.spec = spec
        self.console = console
        self.results_dir = results_dir
        self.live: Live | None = None
        self.started = time.monotonic()
        self._last = ""
        self._failed: set[str] = set()
        self._early: set[str] = set()

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, decision: rec.Decision, trials: list[TrialRecord]) -> None:
        """Show the current state."""
        self._report_failures(trials)
        self._report_early_stops(trials)
        line = counts_line(decision.counts)
        best = best_line(self.spec, trials, decision.best_trial)
        if self.live is not None:
            elapsed = time.monotonic() - self.started
            running = [t.name for t in trials if t.condition is TrialCondition.RUNNING]
            self.live.update(
                Group(
                    Text(
                        f"{self.spec.name} · {decision.condition} · {elapsed:.0f}s", style="bold"
                    ),
                    Text(line),
                    Text(best, style="green"),
                    Text("running: " + (", ".join(running) or "-"), style="cyan"),
                )
            )
        else:
            key = f"{decision.counts.completed}/{decision.counts.trials}/{decision.condition}"
            if key != self._last:
                self._last = key
                self.console.print(f"{line} | {best}", highlight=False, soft_wrap=True)

    def _report_early_stops(self, trials: Sequence[TrialRecord]) -> None:
        """One line per trial its early-stopping rules stopped, with its objective so far."""
        for trial in trials:
            if trial.condition is not TrialCondition.EARLY_STOPPED or trial.name in self._early:
                continue
            self._early.add(trial.name)
            objective = self.spec.objective.objective_metric_name
            value = trial.objective_value(self.spec.objective)
            self.console.print(
                f"trial {trial.name} early stopped ({objective}={value})",
                style=_STYLE[TrialCondition.EARLY_STOPPED],
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    def _report_failures(self, trials: Sequence[TrialRecord]) -> None:
        for trial in trials:
            if trial.condition is not TrialCondition.FAILED or trial.name in self._failed:
                continue
            self._failed.add(trial.name)
            code = "?" if trial.exit_code is None else trial.exit_code
            tail = log_tail(self.results_dir, trial.name, 1) if self.results_dir else []
            last = f": {tail[0]}" if tail else ""
            self.console.print(
                f"trial {trial.name} failed (exit code {code}){last}",
                style="red",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
