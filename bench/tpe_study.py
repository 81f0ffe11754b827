"""TPE quality: our TPE against Optuna's TPESampler and random search, in process.

``katib-bench tpe quality`` runs every method sequentially (one suggestion at a time, the
previous one evaluated) on the same problems and seeds. Ours (by default ``tpe``,
``multivariate-tpe`` and ``random``; any algorithm of the registry without state) are called
directly: ``Algorithm.suggest`` on the growing history, ``random_state = seed``. The peers
``optuna:tpe`` and ``optuna:tpe-mv`` run through ``ask``/``tell`` with ``TPESampler(seed)`` at
default settings except ``multivariate`` (False / True).

The problems (:data:`PROBLEMS`) are deliberately not the harness's
:mod:`katib.bench.problems`: the README's figures were measured on these boxes (Ackley on the
usual ``[-32.768, 32.768]^10``, where the harness shifts it) and on the study's own mixed-type
toy, so they stay fixed. The synthetic objectives are the functions of
:mod:`katib.bench.synthetic` evaluated one point at a time; no problem is noisy.

The table shows the median over seeds of the regret (best value so far minus the known
optimum) after 50, 100 and 200 trials (those within the budget; else the budget), and the ratio
of ours to Optuna's sampler of the same kind (below 1: ours is better). A second summary counts,
per pair, the (problem, budget) cells where a one-sided Mann-Whitney U test over the seeds
(p < 0.05) finds Optuna (or random search) better than ours, and those where it finds ours
better; with 27 cells about one such cell per direction is expected by chance alone, so the
counts after Holm's correction for the number of cells follow. Use 20 seeds or more for
decisions. A cache file (JSON) keeps every run, so re-running after a change only recomputes
the methods asked for (``rerun``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from katib.api.errors import KatibError
from katib.api.settings import parse_settings
from katib.api.trials import Direction, Trial, TrialState
from katib.bench.peers import optuna_distribution
from katib.bench.significance import holm
from katib.bench.synthetic import FUNCTIONS
from katib.suggestion import registry
from katib.suggestion.base import ExperimentInfo, SuggestResult
from katib.suggestion.history import History
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace

#: Ours by default; any stateless algorithm of the registry may run.
OURS = ("tpe", "multivariate-tpe", "random")
#: Peer name -> whether Optuna's TPESampler is multivariate.
PEERS = {"optuna:tpe": False, "optuna:tpe-mv": True}
#: Our algorithm -> the peer it is compared with (ratios and significance tests).
PAIRS = (("tpe", "optuna:tpe"), ("multivariate-tpe", "optuna:tpe-mv"))
Cache = dict[str, list[float]]
D, INT = ParameterType.DOUBLE, ParameterType.INT
Objective = Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class StudyProblem:
    """A search space, a deterministic objective to minimise and its known minimum."""

    space: SearchSpace
    objective: Objective
    optimum: float


def _synthetic(function: str, box: list[tuple[float, float]], optimum: float) -> StudyProblem:
    """``FUNCTIONS[function]`` over ``box`` (parameters ``x0 .. x{d-1}``)."""
    space = SearchSpace(
        tuple(ParameterSpec(f"x{i}", D, low=lo, high=hi) for i, (lo, hi) in enumerate(box))
    )
    fn = FUNCTIONS[function].fn
    names = space.names

    def objective(point: dict[str, Any]) -> float:
        return float(fn(np.array([[point[n] for n in names]], dtype=float))[0])

    return StudyProblem(space, objective, optimum)


MIXED_SPACE = SearchSpace(
    (
        ParameterSpec("x", D, low=-5, high=5),
        ParameterSpec("lr", D, low=1e-4, high=1.0, distribution=Distribution.LOG_UNIFORM),
        ParameterSpec("y", D, low=0, high=1, step=0.05),
        ParameterSpec("n", INT, low=1, high=32),
        ParameterSpec("units", INT, low=8, high=1024, distribution=Distribution.LOG_UNIFORM),
        ParameterSpec(
            "opt", ParameterType.CATEGORICAL, choices=("sgd", "adam", "rmsprop", "adagrad")
        ),
        ParameterSpec("batch", ParameterType.DISCRETE, choices=("16", "32", "64", "128", "256")),
    )
)
_OPT_OFFSET = {"sgd": 0.6, "adam": 0.0, "rmsprop": 0.3, "adagrad": 1.0}


def mixed(p: dict[str, Any]) -> float:
    """A mixed-type toy with interactions; minimum 0 at x=1, lr=1e-2, y=.35, n=7, units=128,
    opt=adam, batch=64 (the best learning rate is 10^-2.3 with sgd)."""
    lr_term = (math.log10(p["lr"]) + 2 + 0.3 * (p["opt"] == "sgd")) ** 2
    return (
        0.2 * (p["x"] - 1) ** 2
        + lr_term
        + 4 * (p["y"] - 0.35) ** 2
        + ((p["n"] - 7) / 8) ** 2
        + (math.log2(p["units"]) - 7) ** 2 / 4
        + _OPT_OFFSET[p["opt"]]
        + 0.1 * abs(math.log2(float(p["batch"]) / 64))
    )


#: name -> problem, in table order.
PROBLEMS: dict[str, StudyProblem] = {
    "branin-2d": _synthetic("branin", [(-5, 10), (0, 15)], 0.397887357729739),
    "hartmann-3d": _synthetic("hartmann3", [(0, 1)] * 3, -3.86278214782076),
    "hartmann-6d": _synthetic("hartmann6", [(0, 1)] * 6, -3.32236801141551),
    "rosenbrock-5d": _synthetic("rosenbrock", [(-5, 10)] * 5, 0.0),
    "ackley-10d": _synthetic("ackley", [(-32.768, 32.768)] * 10, 0.0),
    "levy-5d": _synthetic("levy", [(-10, 10)] * 5, 0.0),
    "levy-10d": _synthetic("levy", [(-10, 10)] * 10, 0.0),
    "styblinski-10d": _synthetic("styblinski-tang", [(-5, 5)] * 10, -39.16616570377142 * 10),
    "mixed-7d": StudyProblem(MIXED_SPACE, mixed, 0.0),
}


def run_ours(algorithm: str, space: SearchSpace, f: Objective, seed: int, n: int) -> list[float]:
    """Values of ``n`` sequential trials of our (stateless) ``algorithm``."""
    cls = registry.get(algorithm)
    try:
        algo = cls(
            ExperimentInfo("bench", space),
            parse_settings(cls.settings_class, [("random_state", str(seed))], cls.name),
        )
    except KatibError as exc:
        raise ValueError(f"{algorithm} cannot run on this space: {exc}") from None
    trials: list[Trial] = []
    values: list[float] = []
    for i in range(n):
        result = algo.suggest(History(Direction.MINIMIZE, trials), 1)
        points = result.points if isinstance(result, SuggestResult) else result
        if not points:
            raise ValueError(f"{algorithm} suggested nothing after {i} of {n} trials")
        point = points[0]
        values.append(f(point))
        trials.append(Trial(f"t{i}", point, TrialState.SUCCEEDED, values[-1]))
    return values


def run_optuna(
    multivariate: bool, space: SearchSpace, f: Objective, seed: int, n: int
) -> list[float]:
    """Values of ``n`` sequential trials of Optuna's TPESampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p.name: optuna_distribution(p) for p in space.params}
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=multivariate)
    )
    values = []
    for _ in range(n):
        trial = study.ask(dists)
        point = {
            k: float(v) if space[k].type is ParameterType.DISCRETE else v
            for k, v in trial.params.items()
        }
        values.append(f(point))
        study.tell(trial, values[-1])
    return values


def run(method: str, problem: str, seed: int, n: int) -> list[float]:
    """Values of one run of ``method`` (ours or a peer)."""
    chosen = PROBLEMS[problem]
    if method in PEERS:
        return run_optuna(PEERS[method], chosen.space, chosen.objective, seed, n)
    return run_ours(method, chosen.space, chosen.objective, seed, n)


def checkpoints(budget: int) -> list[int]:
    """50, 100 and 200 trials where within ``budget``, else the budget itself."""
    return [c for c in (50, 100, 200) if c <= budget] or [budget]


def run_study(
    methods: Sequence[str],
    problems: Sequence[str],
    seeds: Sequence[int],
    budget: int,
    cache_file: Path | None = None,
    rerun: Sequence[str] = (),
    progress: Callable[[str, str], object] | None = None,
) -> tuple[Cache, dict[str, float]]:
    """Every run not already in the cache; returns the runs and seconds spent per method."""
    known = [n for n in registry.names(include_nas=False) if registry.get(n).state_class is None]
    unknown = [m for m in methods if m not in known and m not in PEERS]
    unknown += [p for p in problems if p not in PROBLEMS]
    if unknown:
        raise ValueError(
            f"unknown {', '.join(map(repr, unknown))}; ours (stateless): {', '.join(known)};"
            f" peers: {', '.join(PEERS)}; problems: {', '.join(PROBLEMS)}"
        )
    if budget < 1 or not seeds:
        raise ValueError("--budget and --seeds must be at least 1")
    cache: Cache = {}
    if cache_file is not None and cache_file.exists():
        cache = json.loads(cache_file.read_text())
    seconds: dict[str, float] = {}
    for problem in problems:
        for method in methods:
            for seed in seeds:
                key = f"{problem}/{method}/{seed}/{budget}"
                if key in cache and method not in rerun:
                    continue
                t0 = time.perf_counter()
                cache[key] = run(method, problem, seed, budget)
                seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t0
            if cache_file is not None:
                cache_file.write_text(json.dumps(cache))
            if progress is not None:
                progress(problem, method)
    return cache, seconds


def regrets(values: Sequence[float], optimum: float, at: Sequence[int]) -> list[float]:
    """Best-so-far regret after each checkpoint."""
    best = np.minimum.accumulate(np.asarray(values))
    return [float(best[min(c, len(best)) - 1] - optimum) for c in at]


def final_regrets(
    cache: Cache, problem: str, method: str, seeds: Sequence[int], budget: int
) -> np.ndarray:
    """Regrets ``(len(seeds), len(checkpoints))`` of one method on one problem."""
    optimum = PROBLEMS[problem].optimum
    at = checkpoints(budget)
    return np.array(
        [regrets(cache[f"{problem}/{method}/{s}/{budget}"], optimum, at) for s in seeds]
    )


def format_table(
    cache: Cache,
    problems: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    budget: int,
) -> str:
    """Median regret per problem, method and checkpoint, with ours/optuna ratios."""
    pairs = [(o, p) for o, p in PAIRS if o in methods and p in methods]
    width = max([14, *(len(m) + 2 for m in methods)])
    head = f"{'problem':<16}{'n':>5}" + "".join(f"{m:>{width}}" for m in methods)
    head += "".join(f"{o + '/opt':>{max(12, len(o) + 6)}}" for o, _ in pairs)
    lines = [
        f"median regret over seeds {seeds[0]}..{seeds[-1]} ({budget} trials, sequential)",
        head,
    ]
    for problem in problems:
        med = {
            m: np.median(final_regrets(cache, problem, m, seeds, budget), axis=0) for m in methods
        }
        for i, c in enumerate(checkpoints(budget)):
            row = f"{problem:<16}{c:>5}" + "".join(
                f"{float(med[m][i]):>{width}.4g}" for m in methods
            )
            row += "".join(
                f"{float(med[o][i]) / max(float(med[p][i]), 1e-12):>{max(12, len(o) + 6)}.2f}"
                for o, p in pairs
            )
            lines.append(row)
    return "\n".join(lines)


@dataclass(frozen=True)
class Comparison:
    """One-sided Mann-Whitney U p-values of ours against one rival, per (problem, budget) cell.

    ``p_rival_better[i]`` tests "ours has larger regrets" in cell ``cells[i]``;
    ``p_ours_better[i]`` the opposite. Cells where both have identical regrets get 1.0.
    """

    ours: str
    rival: str
    cells: tuple[str, ...]
    p_rival_better: tuple[float, ...]
    p_ours_better: tuple[float, ...]


def significance(
    cache: Cache,
    problems: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    budget: int,
) -> list[Comparison]:
    """Ours against Optuna's sampler of the same kind and against random, where both ran."""
    from scipy.stats import mannwhitneyu

    comparisons = []
    for ours, theirs in PAIRS:
        for rival in (theirs, "random"):
            if ours not in methods or rival not in methods:
                continue
            cells: list[str] = []
            p_worse: list[float] = []
            p_better: list[float] = []
            for problem in problems:
                a = final_regrets(cache, problem, ours, seeds, budget)
                b = final_regrets(cache, problem, rival, seeds, budget)
                for i, c in enumerate(checkpoints(budget)):
                    cells.append(f"{problem}@{c}")
                    if np.array_equal(a[:, i], b[:, i]):
                        p_worse.append(1.0)
                        p_better.append(1.0)
                        continue
                    p_worse.append(mannwhitneyu(a[:, i], b[:, i], alternative="greater").pvalue)
                    p_better.append(mannwhitneyu(a[:, i], b[:, i], alternative="less").pvalue)
            comparisons.append(
                Comparison(ours, rival, tuple(cells), tuple(p_worse), tuple(p_better))
            )
    return comparisons


def format_significance(comparisons: Sequence[Comparison], seeds: int, alpha: float = 0.05) -> str:
    """Per comparison, the cells where each side is significantly better at ``alpha``.

    A cell counts as "rival better" when the test that ours has larger regrets rejects, and as
    "ours better" when the opposite one-sided test does; otherwise the difference is within
    seed noise. The counts after Holm's correction over the cells follow.
    """
    lines = [f"one-sided Mann-Whitney U per (problem, budget) cell, p < {alpha}, {seeds} seeds"]
    for c in comparisons:
        n = len(c.cells)
        worse = [
            f"{x} p={p:.3f}" for x, p in zip(c.cells, c.p_rival_better, strict=True) if p < alpha
        ]
        better = sum(p < alpha for p in c.p_ours_better)
        lines.append(
            f"  {c.ours} vs {c.rival}: {c.rival} significantly better in {len(worse)}/{n}"
            f" cells, {c.ours} significantly better in {better}/{n}"
            + (f" ({c.rival} better: {', '.join(worse)})" if worse else "")
            + f"; after Holm's correction over the {n} cells: {c.rival} better in"
            f" {holm(c.p_rival_better, alpha)}, {c.ours} in {holm(c.p_ours_better, alpha)}"
        )
    return "\n".join(lines)
