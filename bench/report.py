"""Regret, summary tables (console and Markdown), and the CSV / JSON of every trial.

**Regret** of a run after ``t`` trials is ``best_t - f*``: ``best_t`` is the lowest *noise-free*
value among its first ``t`` trials and ``f*`` the problem's known optimum. For tasks whose optimum
is unknown (the scikit-learn problems) ``f*`` is the lowest value any run of that problem reached
in the same results set, so the best run scores 0 and the numbers compare contenders only within
one results set. A run that stopped early (exhausted space) keeps its last regret.

The table gives, per problem and checkpoint budget, the median and inter-quartile range of regret
over seeds, and the **average rank**: at each budget and seed the contenders are ranked by regret
(1 = best, ties share the mean rank) and the ranks are averaged over seeds. The closing summary
averages those ranks over problems.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from katib.bench.problems import Problem
from katib.bench.runner import RunResult

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "problem",
    "algorithm",
    "kind",
    "seed",
    "batch",
    "trial",
    "params",
    "value",
    "true_value",
    "best_so_far",
    "regret",
    "latency_s",
    "history",
)


def reference_values(
    problems: Sequence[Problem], results: Sequence[RunResult]
) -> dict[str, float]:
    """``f*`` per problem: the known optimum, else the best noise-free value in ``results``."""
    refs: dict[str, float] = {}
    for problem in problems:
        if problem.optimum is not None:
            refs[problem.name] = problem.optimum
            continue
        seen = [
            t.true_value
            for r in results
            if r.problem == problem.name
            for t in r.trials
            if t.true_value is not None
        ]
        refs[problem.name] = min(seen) if seen else float("nan")
    return refs


def regret_curves(
    results: Sequence[RunResult], refs: dict[str, float], budget: int
) -> dict[tuple[str, str], np.ndarray]:
    """``(problem, algorithm) -> R``, ``R[s, t]`` the regret of seed ``s`` after ``t + 1`` trials.

    Rows are padded with the last value (exhausted runs) and NaN where no trial has succeeded.
    """
    grouped: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in results:
        if not r.trials:
            continue
        curve = np.full(budget, np.nan)
        best = r.best_curve()[:budget] - refs[r.problem]
        curve[: len(best)] = best
        if len(best) < budget:
            curve[len(best) :] = best[-1]
        grouped.setdefault((r.problem, r.algorithm), []).append(np.maximum(curve, 0.0))
    return {key: np.vstack(rows) for key, rows in grouped.items()}


def checkpoints(budget: int) -> list[int]:
    """Budgets at which the table reports: 10 %, 25 %, 50 % and 100 % of ``budget``."""
    return sorted({max(1, round(budget * f)) for f in (0.1, 0.25, 0.5, 1.0)})


def summarise(
    results: Sequence[RunResult], problems: Sequence[Problem], budget: int
) -> list[dict[str, Any]]:
    """One row per (problem, algorithm, checkpoint): median, q25, q75 regret and average rank."""
    refs = reference_values(problems, results)
    curves = regret_curves(results, refs, budget)
    algorithms = list(dict.fromkeys(r.algorithm for r in results))
    rows = []
    for problem in problems:
        present = [a for a in algorithms if (problem.name, a) in curves]
        for b in checkpoints(budget):
            ranks = _ranks([curves[(problem.name, a)][:, b - 1] for a in present])
            for algorithm, rank in zip(present, ranks, strict=True):
                finals = curves[(problem.name, algorithm)][:, b - 1]
                q25, med, q75 = (
                    np.nanpercentile(finals, [25, 50, 75])
                    if np.isfinite(finals).any()
                    else (np.nan,) * 3
                )
                rows.append(
                    {
                        "problem": problem.name,
                        "algorithm": algorithm,
                        "budget": b,
                        "median": float(med),
                        "q25": float(q25),
                        "q75": float(q75),
                        "rank": rank,
                        "runs": len(finals),
                    }
                )
    return rows


def _ranks(columns: list[np.ndarray]) -> list[float]:
    """Average rank of each contender over the seeds all contenders share (NaN = worst)."""
    if not columns:
        return []
    seeds = min(len(c) for c in columns)
    matrix = np.vstack([c[:seeds] for c in columns])  # (contenders, seeds)
    matrix = np.where(np.isnan(matrix), np.inf, matrix)
    ranks = np.apply_along_axis(rankdata, 0, matrix)
    return [float(x) for x in ranks.mean(axis=1)]


def format_table(
    rows: Sequence[dict[str, Any]], problems: Sequence[Problem], markdown: bool = False
) -> str:
    """The summary as text: one block per problem, then average ranks over problems."""
    lines: list[str] = []
    budgets = sorted({r["budget"] for r in rows})
    algorithms = list(dict.fromkeys(r["algorithm"] for r in rows))
    index = {(r["problem"], r["algorithm"], r["budget"]): r for r in rows}
    header = (
        ["algorithm", *(f"regret @{b}" for b in budgets), f"rank @{budgets[-1]}"]
        if budgets
        else ["algorithm"]
    )
    for problem in problems:
        present = [a for a in algorithms if (problem.name, a, budgets[-1]) in index]
        if not present:
            continue
        ref = (
            f"optimum {problem.optimum:.6g}"
            if problem.optimum is not None
            else "regret vs best value seen in any run"
        )
        title = f"{problem.name} ({problem.space.dim} params, {ref})"
        body = []
        for a in present:
            cells = [_cell(index[(problem.name, a, b)]) for b in budgets]
            body.append([a, *cells, f"{index[(problem.name, a, budgets[-1])]['rank']:.2f}"])
        lines += _block(title, header, body, markdown)
    summary = [[a, *(_mean_rank(rows, a, b) for b in budgets)] for a in algorithms]
    lines += _block(
        "average rank over problems (1 = best)",
        ["algorithm", *(f"rank @{b}" for b in budgets)],
        summary,
        markdown,
    )
    return "\n".join(lines)


def _cell(row: dict[str, Any]) -> str:
    if not np.isfinite(row["median"]):
        return "n/a"
    return f"{row['median']:.3g} [{row['q25']:.3g}, {row['q75']:.3g}]"


def _mean_rank(rows: Sequence[dict[str, Any]], algorithm: str, budget: int) -> str:
    ranks = [r["rank"] for r in rows if r["algorithm"] == algorithm and r["budget"] == budget]
    return f"{np.mean(ranks):.2f}" if ranks else "n/a"


def _block(title: str, header: list[str], body: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return [
            f"**{title}**",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in body),
            "",
        ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [title, fmt.format(*header), *(fmt.format(*row) for row in body), ""]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def trial_rows(results: Sequence[RunResult], refs: dict[str, float]) -> list[dict[str, Any]]:
    """Every trial as a flat row with the columns of :data:`CSV_COLUMNS`."""
    rows = []
    for r in results:
        for t in r.trials:
            regret = None if t.best is None else max(t.best - refs[r.problem], 0.0)
            rows.append(
                {
                    "problem": r.problem,
                    "algorithm": r.algorithm,
                    "kind": r.kind,
                    "seed": r.seed,
                    "batch": r.batch,
                    "trial": t.index,
                    "params": {k: _jsonable(v) for k, v in t.params.items()},
                    "value": t.value,
                    "true_value": t.true_value,
                    "best_so_far": t.best,
                    "regret": regret,
                    "latency_s": t.latency_s,
                    "history": t.history,
                }
            )
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """One line per trial; ``params`` is a JSON object, missing values are empty."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            out = {k: ("" if v is None else v) for k, v in row.items()}
            out["params"] = json.dumps(row["params"], sort_keys=True)
            writer.writerow(out)


def write_json(
    path: Path,
    meta: dict[str, Any],
    results: Sequence[RunResult],
    refs: dict[str, float],
    summary: Sequence[dict[str, Any]],
) -> None:
    """Metadata, the summary rows and every run with its trials."""
    runs = []
    rows = trial_rows(results, refs)
    by_run: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault((row["problem"], row["algorithm"], row["seed"]), []).append(row)
    for r in results:
        trials = [
            {
                k: v
                for k, v in row.items()
                if k not in ("problem", "algorithm", "kind", "seed", "batch")
            }
            for row in by_run.get((r.problem, r.algorithm, r.seed), [])
        ]
        runs.append(
            {
                "problem": r.problem,
                "algorithm": r.algorithm,
                "kind": r.kind,
                "seed": r.seed,
                "batch": r.batch,
                "budget": r.budget,
                "exhausted": r.exhausted,
                "error": r.error,
                "wall_s": r.wall_s,
                "reference": refs.get(r.problem),
                "trials": trials,
            }
        )
    document = {"meta": meta, "summary": list(summary), "runs": runs}
    path.write_text(json.dumps(_clean(document), indent=1, allow_nan=False))


def _clean(value: Any) -> Any:
    """Plain JSON: numpy scalars unwrapped, NaN and infinities as ``null``."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    value = _jsonable(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
