"""The importable API: run a comparison or a latency sweep and write every output file.

    >>> from katib.bench.harness import compare
    >>> report = compare(algorithms=["random", "sobol"], peers=["optuna:tpe"],
    ...                  problems=["branin"], budget=20, seeds=3, out="results/bench")
    ... # doctest: +SKIP
    >>> print(report.table)  # doctest: +SKIP

Files written to ``out`` by :func:`compare`: ``runs.csv`` and ``runs.json`` (every trial),
``table.txt`` and ``table.md`` (the summary), ``convergence.png`` and ``suggest-latency.png``.
:func:`latency` writes ``latency.csv``, ``latency.json``, ``latency.txt`` and ``latency.png``.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from katib.bench import latency as latency_mode
from katib.bench import peers as peer_lib
from katib.bench import plots, problems, report
from katib.bench.runner import BenchmarkConfig, RunResult, run_benchmark
from katib.bench.service import Services, ServiceTarget, parse_target

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """What :func:`compare` produced."""

    results: list[RunResult]
    summary: list[dict[str, Any]]
    table: str
    markdown: str
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _targets(services: Iterable[str | ServiceTarget]) -> list[ServiceTarget]:
    return [s if isinstance(s, ServiceTarget) else parse_target(s) for s in services]


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def compare(
    algorithms: Sequence[str] = ("random", "sobol"),
    services: Iterable[str | ServiceTarget] = (),
    peers: Sequence[str] = (),
    problems: Sequence[str] = ("branin",),
    budget: int = 30,
    seeds: int | Sequence[int] = 3,
    batch: int = 1,
    asynchronous: bool = False,
    out: str | Path | None = None,
    progress: Callable[[RunResult, int, int], Any] | None = None,
) -> Report:
    """Run every contender on every problem with every seed; write the outputs to ``out``.

    ``algorithms`` are ours (served in process), ``services`` are ``NAME=[ALGORITHM@]HOST:PORT``
    strings or targets, ``peers`` are names from :data:`katib.bench.peers.PEERS` (uninstalled
    ones are skipped with a note). ``seeds`` is a count (0 .. n-1) or explicit seeds.
    """
    chosen = [_problem(name) for name in problems]
    peer_contenders, notes = peer_lib.peer_contenders(list(peers))
    config = BenchmarkConfig(chosen, _seeds(seeds), budget, batch, asynchronous)
    with Services(algorithms, _targets(services)) as running:
        results = run_benchmark(config, [*running.contenders, *peer_contenders], progress)
    for r in results:
        if r.error and not r.trials:
            notes.append(f"{r.algorithm} on {r.problem}: {r.error}")
    notes = list(dict.fromkeys(notes))
    summary = report.summarise(results, chosen, budget)
    result = Report(
        results,
        summary,
        report.format_table(summary, chosen),
        report.format_table(summary, chosen, markdown=True),
        notes,
    )
    if out is not None:
        meta = {
            "problems": {
                p.name: {
                    "kind": p.kind,
                    "dim": p.space.dim,
                    "optimum": p.optimum,
                    "description": p.description,
                }
                for p in chosen
            },
            "contenders": list(dict.fromkeys(r.algorithm for r in results)),
            "seeds": config.seeds,
            "budget": budget,
            "batch": batch,
            "mode": "async" if asynchronous else "batch",
            "notes": notes,
            "python": platform.python_version(),
            "peer_versions": _versions(),
        }
        result.files = write_outputs(Path(out), chosen, results, summary, result, meta)
    return result


def _problem(name: str) -> problems.Problem:
    return problems.get(name)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("optuna", "cmaes", "hyperopt", "scikit-optimize", "cma", "scikit-learn"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def write_outputs(
    out: Path,
    chosen: Sequence[problems.Problem],
    results: Sequence[RunResult],
    summary: Sequence[dict[str, Any]],
    result: Report,
    meta: dict[str, Any],
) -> dict[str, Path]:
    """Write CSV, JSON, tables and plots; returns the paths by kind."""
    out.mkdir(parents=True, exist_ok=True)
    refs = report.reference_values(chosen, results)
    files = {
        "csv": out / "runs.csv",
        "json": out / "runs.json",
        "table": out / "table.txt",
        "markdown": out / "table.md",
        "convergence": out / "convergence.png",
        "latency": out / "suggest-latency.png",
    }
    report.write_csv(files["csv"], report.trial_rows(results, refs))
    report.write_json(files["json"], meta, results, refs, summary)
    notes = "".join(f"note: {n}\n" for n in result.notes)
    files["table"].write_text(result.table + "\n" + notes)
    files["markdown"].write_text(result.markdown + "\n" + notes.replace("note:", "- note:"))
    kinds = {r.algorithm: r.kind for r in results}
    budget = max((r.budget for r in results), default=1)
    curves = report.regret_curves(results, refs, budget)
    title = f"median regret and IQR over {len(meta['seeds'])} seeds (batch {meta['batch']})"
    plots.plot_convergence(files["convergence"], curves, [p.name for p in chosen], kinds, title)
    plots.plot_latency(
        files["latency"],
        plots.latency_by_history(results),
        kinds,
        "suggestion latency during the runs",
    )
    return files


def latency(
    algorithms: Sequence[str] = ("random", "sobol"),
    services: Iterable[str | ServiceTarget] = (),
    problem: str = "mixed",
    sizes: Sequence[int] = latency_mode.SIZES,
    repeats: int = 5,
    count: int = 1,
    out: str | Path | None = None,
    progress: Callable[[latency_mode.LatencySample], object] | None = None,
) -> tuple[list[latency_mode.LatencySample], str]:
    """GetSuggestions time against history size for each service; returns samples and table."""
    chosen = problems.get(problem)
    with Services(algorithms, _targets(services)) as running:
        samples = latency_mode.run_latency(
            running.endpoints, chosen, sizes, repeats, count, progress=progress
        )
    table = latency_mode.format_latency(samples)
    if out is not None:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        with (path / "latency.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["algorithm", "history", "call", "seconds", "error"])
            for s in samples:
                for i, sec in enumerate(s.seconds):
                    writer.writerow([s.algorithm, s.history, i, sec, s.error or ""])
                if s.error:
                    writer.writerow([s.algorithm, s.history, "", "", s.error])
        (path / "latency.json").write_text(
            json.dumps(
                {
                    "problem": problem,
                    "count": count,
                    "repeats": repeats,
                    "samples": [
                        {
                            "algorithm": s.algorithm,
                            "history": s.history,
                            "seconds": list(s.seconds),
                            "error": s.error,
                        }
                        for s in samples
                    ],
                },
                indent=1,
            )
        )
        (path / "latency.txt").write_text(table + "\n")
        kinds = {s.algorithm: "katib" if s.algorithm in algorithms else "service" for s in samples}
        series: dict[str, tuple[list[float], list[float]]] = {}
        for s in samples:
            if not s.error:
                xs, ys = series.setdefault(s.algorithm, ([], []))
                xs.append(float(s.history))
                ys.append(s.median)
        plots.plot_latency(
            path / "latency.png",
            series,
            kinds,
            f"GetSuggestions latency ({problem}, {count} per call)",
        )
    return samples, table
