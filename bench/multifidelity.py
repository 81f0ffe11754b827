"""Multi-fidelity search against random search at equal total resource, in-process.

    katib-bench multifidelity [--problem synthetic] [--seeds 10] [--budget 60] [--batch 4]
        [--resume-promoted] [--method hyperband --method asha+random --method optuna:hyperband ...]
        [--compare [--versus METHOD]] [--out anytime.png]

``--problem`` picks the learning curve (:mod:`katib.bench.mf_problems`): ``synthetic`` (the
default, below), ``mlp-digits`` (scikit-learn's ``MLPClassifier`` trained epoch by epoch on
digits) or ``mlp-grid`` (a table of 256 such configurations, trained once and cached). Every
problem has a resource ``epochs`` with ``R = r_l`` a power of ``eta = 3``.

The synthetic problem is a learning curve over four continuous parameters and ``epochs``
(``R = r_l = 27``). The loss after ``r`` epochs is

    loss(x, r) = f(x) + (0.1 + 0.9 x3) exp(-3 r / (R (0.15 + x2))) + noise,

with ``f(x) = (branin(x0, x1) - 0.397887) / 30 + 0.3 (x2 - 0.7)^2`` the final loss (minimum 0).
``x2`` sets both the final loss and how fast a configuration learns, ``x3`` only how bad it
starts, so early rankings mislead (as real learning curves do). The noise is Gaussian with
standard deviation 0.005, drawn per trial. A trial at ``r`` epochs costs ``r``; random search
and ``tpe`` run every trial at ``R``.

Each method is driven as a controller with ``--batch`` workers would: ask for the free slots,
finish the batch, repeat (Hyperband and BOHB repeat their brackets: ``iterations = 0``). The
incumbent is the trial with the lowest observed loss among those run at the largest resource
reached so far; its regret is the problem's ``regret`` of its configuration (for ``synthetic``,
``f``: the true final loss). The table shows, per method, the median and quartiles over seeds
of the regret once ``B`` units of resource are spent, at ``B = 10R, 20R, ... , budget * R``.
Optuna's ``HyperbandPruner`` and ``SuccessiveHalvingPruner`` with TPE run on the same problem
with the same accounting (a pruned trial costs the epochs it ran;
:mod:`katib.bench.multifidelity_peers`). ``--out`` writes the anytime plot: median regret with
the quartile band against resource spent.

``hyperband+SAMPLER`` and ``asha+SAMPLER`` set the ``sampler`` setting (``random``, ``tpe``,
``multivariate-tpe``; without a suffix, the algorithm's default); ``bohb+MODEL`` sets BOHB's
``model`` (``largest-rung``, ``all-rungs``). ``--resume-promoted`` charges
a promoted trial of ours only the epochs beyond its parent's, as a trial that resumes from its
parent's checkpoint (``KATIB_PARENT_CHECKPOINT_DIR``) costs. ``--compare`` prints one-sided
Mann-Whitney U p-values of each of ours against each peer at every mark; ``--versus METHOD``
adds that method (one of those run) to the peers.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from katib.api.settings import parse_settings
from katib.api.trials import Trial, TrialState
from katib.bench import mf_problems, multifidelity_peers
from katib.bench.mf_problems import MFProblem
from katib.suggestion import registry
from katib.suggestion.base import ExperimentInfo, SuggestResult
from katib.suggestion.bohb import MODELS as BOHB_MODELS
from katib.suggestion.history import History
from katib.suggestion.multifidelity import PARENT_LABEL, SAMPLERS

#: The synthetic problem's ``R`` and space (the default problem).
SYNTHETIC = mf_problems.synthetic()
R = SYNTHETIC.max_resource
SPACE = SYNTHETIC.space
MULTI_FIDELITY = {
    "hyperband": {"iterations": "0"},
    "bohb": {"iterations": "0"},
    "asha": {},
}
FULL_BUDGET = ("random", "tpe")
#: The setting a ``+suffix`` sets, and its values, per algorithm.
SUFFIXES = {
    "hyperband": ("sampler", SAMPLERS),
    "asha": ("sampler", SAMPLERS),
    "bohb": ("model", BOHB_MODELS),
}


def split_method(method: str) -> tuple[str, str | None]:
    """``hyperband+random`` -> ``("hyperband", "random")``; ``asha`` -> ``("asha", None)``."""
    name, _, sampler = method.partition("+")
    return name, sampler or None


def build(method: str, seed: int, problem: MFProblem = SYNTHETIC) -> Any:
    """The algorithm, built as the service builds it; ``name+value`` sets the ``sampler``
    (``model`` for ``bohb``)."""
    method, sampler = split_method(method)
    cls = registry.get(method)
    pairs = [("random_state", str(seed))]
    if method in MULTI_FIDELITY:
        pairs += [("resource_name", mf_problems.RESOURCE), ("r_l", str(problem.max_resource))]
        pairs += [("eta", "3")]
        pairs += list(MULTI_FIDELITY[method].items())
    if sampler is not None:
        pairs.append((SUFFIXES[method][0], sampler))
    settings: Any = parse_settings(cls.settings_class, pairs, method)
    info = ExperimentInfo(f"bench-{seed}", problem.space)
    if method in FULL_BUDGET:  # the resource is fixed at R for full-budget methods
        info = ExperimentInfo(f"bench-{seed}", problem.config_space)
    cls.check(info, settings)
    return cls(ExperimentInfo(info.name, cls.space_for(info, settings)), settings)


def run(
    method: str,
    seed: int,
    budget: float,
    batch: int,
    resume: bool = False,
    problem: MFProblem = SYNTHETIC,
) -> list[tuple[float, float]]:
    """``(resource spent, regret of the incumbent)`` after each batch.

    With ``resume`` a promoted trial costs only the epochs beyond its parent's (as if it went on
    from the parent's checkpoint), the accounting Optuna's pruners get; without it, all of them.
    """
    ran: dict[str, float] = {}
    algo = build(method, seed, problem)
    noise = np.random.default_rng([seed, 99])
    trials: list[Trial] = []
    spent, curve = 0.0, []
    best: tuple[float, float, float] = (-1.0, math.inf, math.inf)  # (resource, loss, regret)
    while spent < budget:
        result = algo.suggest(History("minimize", trials), batch)
        points = result.points if isinstance(result, SuggestResult) else result
        suggestions = result.suggestions if isinstance(result, SuggestResult) else []
        if not points:
            break
        for i, point in enumerate(points):
            epochs = float(point.get(mf_problems.RESOURCE, problem.max_resource))
            loss = problem.loss(point, epochs, problem.draw_noise(noise))
            name = suggestions[i].name if suggestions else f"t{len(trials)}"
            labels = dict(suggestions[i].labels) if suggestions else {}
            parent = labels.get(PARENT_LABEL, "")
            spent += epochs - (ran.get(parent, 0.0) if resume else 0.0)
            ran[str(name)] = epochs
            trials.append(Trial(str(name), point, TrialState.SUCCEEDED, loss, labels=labels))
            if (epochs, -loss) > (best[0], -best[1]):
                best = (epochs, loss, problem.regret(point))
        curve.append((spent, best[2]))
    return curve


def regret_at(curve: list[tuple[float, float]], budget: float) -> float:
    """The incumbent's regret once ``budget`` is spent (the last point within it)."""
    value = math.inf
    for spent, regret in curve:
        if spent > budget:
            break
        value = regret
    return value


def curve_of(
    method: str,
    seed: int,
    budget: float,
    batch: int,
    resume: bool = False,
    problem: MFProblem = SYNTHETIC,
) -> list[tuple[float, float]]:
    """The anytime curve of one of ours or one of Optuna's pruner peers."""
    if method in multifidelity_peers.PEERS:
        return multifidelity_peers.run_peer(method, seed, budget, batch, problem)
    return run(method, seed, budget, batch, resume, problem)


def on_grid(curve: list[tuple[float, float]], grid: np.ndarray) -> np.ndarray:
    """The incumbent's regret at each resource in ``grid`` (NaN before the first result)."""
    spent = np.array([s for s, _ in curve])
    regret = np.array([r for _, r in curve])
    index = np.searchsorted(spent, grid, side="right") - 1
    out = np.where(index >= 0, regret[np.maximum(index, 0)], np.inf)
    return np.where(np.isfinite(out), out, np.nan)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by ``katib-bench multifidelity`` and ``python -m``)."""
    parser.add_argument(
        "--problem",
        default=mf_problems.names()[0],
        help=f"learning curve to run on: {', '.join(mf_problems.names())} (default synthetic)",
    )
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    parser.add_argument("--budget", type=float, default=60, help="total resource, in units of R")
    parser.add_argument("--batch", type=int, default=4, help="workers (trials per request)")
    parser.add_argument(
        "--method",
        action="append",
        help="repeatable; default: ours, random, tpe and Optuna's pruners (when installed); "
        "hyperband+SAMPLER or asha+SAMPLER sets the sampler of new configurations "
        "(random, tpe, multivariate-tpe), bohb+MODEL BOHB's model (largest-rung, all-rungs)",
    )
    parser.add_argument(
        "--resume-promoted",
        action="store_true",
        help="charge a promoted trial of ours only the epochs beyond its parent's (an ablation)",
    )
    parser.add_argument("--out", type=Path, help="write the anytime plot to this PNG")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also print one-sided Mann-Whitney U p-values of each of ours against each peer",
    )
    parser.add_argument(
        "--versus",
        action="append",
        default=[],
        metavar="METHOD",
        help="repeatable, with --compare: compare the other methods against this one too "
        "(e.g. bohb against --versus hyperband+random)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``katib-bench multifidelity`` to ``katib-bench``'s parser."""
    cmd = sub.add_parser(
        "multifidelity", help="hyperband/bohb/asha vs random, TPE and Optuna's pruners"
    )
    add_arguments(cmd)
    cmd.set_defaults(func=command)


def _methods(requested: list[str] | None) -> list[str]:
    known = [*MULTI_FIDELITY, *FULL_BUDGET, *multifidelity_peers.PEERS]
    if requested:
        for method in requested:
            name, suffix = split_method(method)
            if name not in known or (suffix is not None and name not in SUFFIXES):
                raise ValueError(f"--method: unknown method {method!r}; known: {', '.join(known)}")
            if suffix is not None and suffix not in SUFFIXES[name][1]:
                setting, values = SUFFIXES[name]
                raise ValueError(
                    f"--method {method!r}: unknown {setting}; known: {', '.join(values)}"
                )
        return requested
    if importlib.util.find_spec("optuna") is None:
        print("note: optuna is not installed; its pruner peers are skipped")
        return known[: -len(multifidelity_peers.PEERS)]
    return known


def command(args: argparse.Namespace) -> int:
    """Run every method on every seed, print the table and write the plot."""
    methods = _methods(args.method)
    missing = [m for m in args.versus if m not in methods]
    if missing:
        raise ValueError(f"--versus {missing[0]!r} is not one of the methods run")
    if args.seeds < 1 or not args.budget > 0 or args.batch < 1:
        raise ValueError("--seeds, --budget and --batch must be positive")
    problem = mf_problems.get(args.problem)
    r_max = problem.max_resource
    marks = [m * r_max for m in range(10, int(args.budget) + 1, 10)] or [args.budget * r_max]
    grid = np.linspace(0, args.budget * r_max, 301)[1:]
    named = "" if problem.name == SYNTHETIC.name else f"{problem.name}: "
    print(
        f"{named}median regret [quartiles] over {args.seeds} seeds vs total resource "
        f"(R = {r_max} epochs, eta = 3, {args.batch} workers)"
    )
    print("| method | " + " | ".join(f"{int(m // r_max)}R" for m in marks) + " | time/run |")
    print("|---|" + "---|" * (len(marks) + 1))
    plotted: dict[str, np.ndarray] = {}
    at_marks: dict[str, np.ndarray] = {}
    for method in methods:
        start = time.perf_counter()
        curves = [
            curve_of(method, seed, args.budget * r_max, args.batch, args.resume_promoted, problem)
            for seed in range(args.seeds)
        ]
        elapsed = (time.perf_counter() - start) / args.seeds
        plotted[method] = np.array([on_grid(c, grid) for c in curves])
        cells = []
        at_marks[method] = np.array([[regret_at(c, mark) for c in curves] for mark in marks])
        for values in at_marks[method]:
            q1, q2, q3 = np.quantile(values, [0.25, 0.5, 0.75])
            cells.append(f"{q2:.3g} [{q1:.2g}, {q3:.2g}]")
        print(f"| {method} | " + " | ".join(cells) + f" | {elapsed:.1f} s |", flush=True)
    if args.compare:
        print_comparison(at_marks, marks, r_max, args.versus)
    if args.out is not None:
        from katib.bench.plots import plot_anytime

        kinds = {m: "peer" if m in multifidelity_peers.PEERS else "katib" for m in methods}
        plot_anytime(
            args.out,
            grid / r_max,
            plotted,
            kinds,
            xlabel=f"resource spent (units of R = {r_max} epochs)",
            title=f"{problem.title}, {args.batch} workers, {args.seeds} seeds "
            "(median, quartile band)",
        )
        print(f"wrote {args.out}")
    return 0


def print_comparison(
    at_marks: dict[str, np.ndarray],
    marks: Sequence[float],
    unit: float = R,
    versus: Sequence[str] = (),
) -> None:
    """For each of ours against each peer present (Optuna's, and the ``versus`` methods), at
    each mark: one-sided Mann-Whitney U p-values that ours is lower (better) and that ours is
    higher (worse), over the seeds."""
    from scipy.stats import mannwhitneyu

    is_peer = [m in multifidelity_peers.PEERS or m in versus for m in at_marks]
    ours = [m for m, peer in zip(at_marks, is_peer, strict=True) if not peer]
    peers = [m for m, peer in zip(at_marks, is_peer, strict=True) if peer]
    if not peers:
        return
    print("\none-sided Mann-Whitney U over seeds: p(ours better) / p(ours worse)")
    print("| ours | peer | " + " | ".join(f"{int(m // unit)}R" for m in marks) + " |")
    print("|---|---|" + "---|" * len(marks))
    for mine in ours:
        for peer in peers:
            cells = []
            for a, b in zip(at_marks[mine], at_marks[peer], strict=True):
                better = mannwhitneyu(a, b, alternative="less").pvalue
                worse = mannwhitneyu(a, b, alternative="greater").pvalue
                cells.append(f"{better:.2g} / {worse:.2g}")
            print(f"| {mine} | {peer} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    """``python -m katib.bench.multifidelity``: the same as ``katib-bench multifidelity``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser)
    command(parser.parse_args())


if __name__ == "__main__":
    main()
