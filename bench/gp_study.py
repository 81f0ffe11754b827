"""``katib-bench gp-study``: ``bayesianoptimization`` against Optuna's GPSampler, significance.

    katib-bench gp-study --seeds 10 --budget 100 --cache results/gp-study.json
    katib-bench gp-study --problems branin,hartmann6 --contenders bayesianoptimization,optuna:gp

Every contender runs sequentially (one suggestion per call, the previous one evaluated) through
the harness (:func:`katib.bench.runner.run_one`): ours through the real gRPC service in process,
peers through their ask/tell API, on the same problems and seeds. The table shows the median over
seeds of the regret (best noise-free value so far minus the optimum) at each checkpoint. Per
(problem, checkpoint) cell, one-sided Mann-Whitney U tests compare the first contender with each
other one in both directions; the counts of cells where either is significantly better at
``p < 0.05`` follow, then the counts that survive Holm's correction over all cells (with ``m``
cells about ``0.05 m`` spurious ones are expected per direction without it), as the TPE study
did. ``--cache`` keeps finished runs in a JSON file, so an interrupted study resumes and a
re-run only computes what is missing; runs are saved as they finish. ``--export runs.csv``
writes one row per run (regret at each checkpoint, wall time), small enough to keep beside the
README's figures; ``--report-only --cache runs.csv`` reports from it again.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from katib.bench import peers, problems
from katib.bench.optimizer import Contender, RunSettings
from katib.bench.runner import run_one
from katib.bench.service import Services
from katib.bench.significance import holm, holm_rejects, mark, one_sided

DEFAULT_PROBLEMS = (
    "branin",
    "hartmann3",
    "levy-5d",
    "hartmann6",
    "rosenbrock-5d",
    "styblinski-tang-10d",
    "ackley-10d",
    "levy-10d",
)
DEFAULT_CONTENDERS = ("bayesianoptimization", "optuna:gp", "multivariate-tpe")
CHECKPOINTS = (50, 100)


def _contenders(names: Sequence[str], running: Services) -> dict[str, Contender]:
    found = {c.name: c for c in running.contenders}
    peer_list, notes = peers.peer_contenders([n for n in names if n in peers.PEERS])
    for note in notes:
        print(f"note: {note}", flush=True)
    found.update({c.name: c for c in peer_list})
    return {n: found[n] for n in names if n in found}


def run_study(
    problem_names: Sequence[str],
    contender_names: Sequence[str],
    seeds: Sequence[int],
    budget: int,
    cache_path: Path | None,
) -> dict[str, Any]:
    """Run what the cache lacks; returns ``{key: {"regret": [...], "wall_s": s}}``."""
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.exists():
        cache = json.loads(cache_path.read_text())
    ours = [n for n in contender_names if n not in peers.PEERS]
    with Services(ours) as running:
        contenders = _contenders(contender_names, running)
        for name in problem_names:
            problem = problems.get(name)
            for seed in seeds:
                for label, contender in contenders.items():
                    key = f"{name}/{label}/{seed}/{budget}"
                    if key in cache:
                        continue
                    result = run_one(problem, contender, RunSettings(seed, budget, 1))
                    curve = result.best_curve()
                    optimum = problem.optimum if problem.optimum is not None else 0.0
                    cache[key] = {
                        "regret": [float(v - optimum) for v in curve],
                        "wall_s": result.wall_s,
                        "error": result.error,
                    }
                    print(
                        f"{key}: regret {cache[key]['regret'][-1]:.4g}, "
                        f"{result.wall_s:.1f} s{' ' + result.error if result.error else ''}",
                        flush=True,
                    )
                    if cache_path is not None:
                        cache_path.parent.mkdir(parents=True, exist_ok=True)
                        cache_path.write_text(json.dumps(cache))
    return cache


def _cell(cache: dict[str, Any], key: str, checkpoint: int) -> float | None:
    run = cache.get(key)
    if run is None:
        return None
    if "regret_at" in run:  # read back from an --export CSV
        value = run["regret_at"].get(str(checkpoint))
        return None if value is None else float(value)
    if len(run["regret"]) < checkpoint:
        return None
    return float(run["regret"][checkpoint - 1])


def _trials(run: dict[str, Any]) -> int:
    return int(run["trials"]) if "trials" in run else len(run["regret"])


def export_csv(cache: dict[str, Any], budget: int, path: Path) -> None:
    """One row per run of ``budget`` trials: regret at each checkpoint and the wall time."""
    checkpoints = [c for c in CHECKPOINTS if c <= budget] or [budget]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        head = ["problem", "contender", "seed", "budget", "trials", "wall_s", "error"]
        out.writerow(head + [f"regret@{c}" for c in checkpoints])
        for key in sorted(cache, key=lambda k: (*k.split("/")[:2], int(k.split("/")[2]))):
            name, label, seed, run_budget = key.split("/")
            if int(run_budget) != budget:
                continue
            run = cache[key]
            cells = [_cell(cache, key, c) for c in checkpoints]
            fields = [name, label, seed, budget, _trials(run), f"{run['wall_s']:.3f}"]
            fields.append(run.get("error") or "")
            out.writerow(fields + ["" if v is None else repr(v) for v in cells])


def load_csv(path: Path) -> dict[str, Any]:
    """An :func:`export_csv` file as a cache that :func:`report` reads (checkpoints only)."""
    cache: dict[str, Any] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            key = f"{row['problem']}/{row['contender']}/{row['seed']}/{row['budget']}"
            cache[key] = {
                "regret_at": {
                    k.split("@")[1]: float(v)
                    for k, v in row.items()
                    if k.startswith("regret@") and v
                },
                "trials": int(row["trials"]),
                "wall_s": float(row["wall_s"]),
                "error": row["error"] or None,
            }
    return cache


def load(path: Path) -> dict[str, Any]:
    """A cache: the study's JSON file, or a CSV written by ``--export``."""
    if path.suffix == ".csv":
        return load_csv(path)
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def report(
    cache: dict[str, Any],
    problem_names: Sequence[str],
    contender_names: Sequence[str],
    seeds: Sequence[int],
    budget: int,
    alpha: float = 0.05,
) -> str:
    """The median-regret table (Markdown), the significance summary and every cell's p-values."""
    checkpoints = [c for c in CHECKPOINTS if c <= budget] or [budget]
    head = "| problem | trials | " + " | ".join(contender_names) + " |"
    lines = [head, "|" + "---|" * (len(contender_names) + 2)]
    samples: dict[tuple[str, str, int], np.ndarray] = {}
    for name in problem_names:
        for c in checkpoints:
            row = [name if c == checkpoints[0] else "", str(c)]
            for label in contender_names:
                vals = [_cell(cache, f"{name}/{label}/{s}/{budget}", c) for s in seeds]
                got = np.array([v for v in vals if v is not None])
                samples[(name, label, c)] = got
                row.append(f"{np.median(got):.3g} ({len(got)})" if len(got) else "-")
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("(median regret over seeds; number of seeds in brackets)")
    ours = contender_names[0]
    for rival in contender_names[1:]:
        cells: list[str] = []
        better: list[float] = []  # p that ours has the smaller regrets
        worse: list[float] = []  # p that the rival has
        for name in problem_names:
            for c in checkpoints:
                a, b = samples[(name, ours, c)], samples[(name, rival, c)]
                if len(a) < 3 or len(b) < 3:
                    continue
                cells.append(f"{name}@{c}")
                p_better, p_worse = one_sided(a, b)
                better.append(p_better)
                worse.append(p_worse)
        lines.append("")
        lines.append(
            f"{ours} vs {rival}, one-sided Mann-Whitney U over {len(cells)} cells: {rival} "
            f"better in {sum(p < alpha for p in worse)}, {ours} better in "
            f"{sum(p < alpha for p in better)} (p < {alpha}); after Holm's correction: "
            f"{rival} {holm(worse, alpha)}, {ours} {holm(better, alpha)}"
        )
        lines.append(f"| cell | p ({ours} better) | p ({rival} better) |")
        lines.append("|---|---|---|")
        holm_better, holm_worse = holm_rejects(better, alpha), holm_rejects(worse, alpha)
        for i, cell in enumerate(cells):
            lines.append(
                f"| {cell} | {mark(better[i], holm_better[i], alpha)} "
                f"| {mark(worse[i], holm_worse[i], alpha)} |"
            )
    lines.append(f"(* p < {alpha}; ** also after Holm's correction over the cells)")
    walls: dict[str, list[float]] = {}
    for key, run in cache.items():
        parts = key.split("/")
        label = parts[1]
        if int(parts[3]) == budget and label in contender_names and int(parts[2]) in seeds:
            walls.setdefault(label, []).append(run["wall_s"] / max(_trials(run), 1))
    lines.append(
        "mean wall time per trial (suggestion + evaluation): "
        + ", ".join(f"{k} {1e3 * float(np.mean(v)):.0f} ms" for k, v in walls.items())
    )
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    """Register the ``gp-study`` subcommand on ``katib-bench``'s subparsers."""
    p = sub.add_parser("gp-study", help="bayesianoptimization vs Optuna GPSampler, significance")
    p.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS))
    p.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--cache", type=Path, help="JSON file of finished runs (resumed, extended)")
    p.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="another cache to read (runs by other processes); repeatable",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="print the table from --cache (the JSON file, or a CSV written by --export)",
    )
    p.add_argument("--export", type=Path, help="also write one CSV row per run (checkpoints)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run (or only report) the study."""
    problem_names = [n for n in args.problems.split(",") if n]
    contender_names = [n for n in args.contenders.split(",") if n]
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    if args.cache is not None and args.cache.suffix == ".csv" and not args.report_only:
        raise SystemExit("katib-bench gp-study: a CSV --cache can only be read (--report-only)")
    t0 = time.perf_counter()
    if args.report_only:
        cache = load(args.cache) if args.cache else {}
    else:
        cache = run_study(problem_names, contender_names, seeds, args.budget, args.cache)
    for extra in args.merge:
        cache = {**load(extra), **cache}
    print(report(cache, problem_names, contender_names, seeds, args.budget))
    if args.export is not None:
        export_csv(cache, args.budget, args.export)
    print(f"study time {time.perf_counter() - t0:.0f} s")
    return 0
