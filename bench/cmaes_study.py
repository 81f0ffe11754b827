"""Our ``cmaes`` against Optuna's CmaEsSampler and pycma on 5-10-D synthetic problems.

    katib-bench cmaes [--seeds 10] [--seed-start 0] [--budgets 200,500] [--problems ...]
        [--contenders cmaes,cmaes-ipop,cmaes-bipop,optuna:cmaes,cma] [--cache runs.json]
        [--export runs.csv] [--report-only]

Every contender runs sequentially (one suggestion, then its evaluation) on the same problems and
seeds through :func:`katib.bench.runner.run_one`. Ours is called in process
(``Algorithm.suggest`` on the growing history, labels and names passed back as our controller
does) so the study measures the algorithm, not gRPC; ``katib-bench latency`` measures the
service. Peers come from :mod:`katib.bench.peers`: Optuna 5's ``CmaEsSampler`` (Optuna ignores
``restart_strategy`` since 4.4, so it is compared with our ``none``) and ``cma`` (pycma in the
unit cube, no restarts).

The table shows the median over seeds of the regret (best true value so far minus the known
optimum) after each budget. Then, per (problem, budget) cell and for each variant of ours
against each peer, a one-sided Mann-Whitney U test over the seeds (p < 0.05) in each
direction, with the counts after Holm's correction for the number of cells; and the same for
``cmaes-ipop`` / ``cmaes-bipop`` against ``cmaes`` (do restarts help?).

``--cache`` keeps every run (best value after each trial), so a study resumes and more seeds
(``--seed-start``) extend it; ``--export`` writes one CSV row per run (regret after each budget),
and ``--report-only`` reports the seeds asked for from either file without running anything.

``cmaes-uniformcat`` is an ablation: categoricals sampled uniformly, as Katib's and Optuna's
cmaes do (``--problems mixed,mixed-14`` measures what the categorical distributions buy).

Problems: Rosenbrock (5-D, 10-D), a rotated ellipsoid (condition 1e6, 5-D and 10-D, optimum
off-centre), Levy-5D, Ackley-10D and Rastrigin-5D (multimodal; where restarts should pay).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from katib.bench import peers, problems
from katib.bench.optimizer import Contender, RunSettings
from katib.bench.problems import Evaluation, Problem, double
from katib.bench.significance import holm, holm_rejects, mark, one_sided
from katib.suggestion.base import ExperimentInfo
from katib.suggestion.history import Direction, History, Trial, TrialState
from katib.suggestion.space import Point, SearchSpace

DEFAULT_PROBLEMS = (
    "rosenbrock-5d",
    "rosenbrock-10d",
    "ellipsoid-5d",
    "ellipsoid-10d",
    "levy-5d",
    "ackley-10d",
    "rastrigin-5d",
)
OURS = {"cmaes": None, "cmaes-ipop": "ipop", "cmaes-bipop": "bipop", "cmaes-uniformcat": None}


def _box_problem(
    name: str, dim: int, low: float, high: float, fn: Callable[[np.ndarray], float], what: str
) -> Problem:
    space = SearchSpace(tuple(double(f"x{i}", low, high) for i in range(dim)))
    names = space.names

    def objective(point: Point, rng: np.random.Generator) -> Evaluation:
        value = fn(np.array([float(point[n]) for n in names]))
        return Evaluation(value, value)

    return Problem(name, space, objective, optimum=0.0, kind="synthetic", description=what)


def ellipsoid(dim: int) -> Problem:
    """``sum 10^(6 i / (d - 1)) z_i^2`` with ``z = R (x - x*)``, ``R`` a fixed random rotation."""
    rng = np.random.default_rng(dim)
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    shift = rng.uniform(-3, 3, dim)
    scales = 10 ** (6 * np.arange(dim) / (dim - 1))

    def f(x: np.ndarray) -> float:
        z = rotation @ (x - shift)
        return float(scales @ (z * z))

    return _box_problem(
        f"ellipsoid-{dim}d", dim, -5, 5, f, f"rotated ellipsoid, condition 1e6, {dim}-D"
    )


def rastrigin(dim: int) -> Problem:
    """Rastrigin shifted by 1.3 on ``[-5.12, 5.12]^d``: ``10 d + sum z^2 - 10 cos(2 pi z)``."""

    def f(x: np.ndarray) -> float:
        z = x - 1.3
        return float(10 * dim + np.sum(z * z - 10 * np.cos(2 * math.pi * z)))

    return _box_problem(f"rastrigin-{dim}d", dim, -5.12, 5.12, f, f"Rastrigin, {dim}-D")


def get_problem(name: str) -> Problem:
    """A study problem: our ellipsoid and Rastrigin, else one of :mod:`katib.bench.problems`."""
    if name.startswith("ellipsoid-"):
        return ellipsoid(int(name.split("-")[1].rstrip("d")))
    if name.startswith("rastrigin-"):
        return rastrigin(int(name.split("-")[1].rstrip("d")))
    return problems.get(name)


class InProcessCMAES:
    """Our ``cmaes`` called directly; labels and names come back on the trials."""

    def __init__(
        self, problem: Problem, seed: int, restart: str | None, learn_categories: bool = True
    ) -> None:
        from katib.suggestion.cmaes import CMAES, CMAESSettings

        tag = "" if learn_categories else "-uniformcat"
        info = ExperimentInfo(f"study-{problem.name}-s{seed}{tag}", problem.space)
        self.algorithm = CMAES(info, CMAESSettings(restart_strategy=restart, random_state=seed))
        self.algorithm.replayer().learn_categories = learn_categories
        self.trials: list[Trial] = []

    def ask(self, count: int) -> list[Point]:
        """``count`` suggestions; the trials stay pending until told."""
        result = self.algorithm.suggest(History(Direction.MINIMIZE, self.trials), count)
        for s in result.suggestions:
            name = s.name or f"t{len(self.trials)}"
            self.trials.append(Trial(name, s.point, TrialState.PENDING, labels=dict(s.labels)))
        return result.points

    def tell(self, index: int, value: float | None) -> None:
        """Complete (or fail) the ``index``-th trial."""
        old = self.trials[index]
        state = TrialState.FAILED if value is None else TrialState.SUCCEEDED
        self.trials[index] = Trial(old.name, old.point, state, value, labels=old.labels)

    def close(self) -> None:
        """Nothing to release."""


def contender(name: str) -> Contender:
    """Ours (``cmaes``, ``cmaes-ipop``, ``cmaes-bipop``) or a peer of :mod:`katib.bench.peers`."""
    if name in OURS:
        strategy = OURS[name]
        learn = name != "cmaes-uniformcat"
        return Contender(
            name, "katib", lambda pr, run: InProcessCMAES(pr, run.seed, strategy, learn)
        )
    peer = peers.PEERS[name]
    return Contender(name, "peer", peer.make)


def run_cell(problem: str, name: str, seed: int, budget: int) -> dict[str, Any]:
    """One run: best-so-far true values and per-ask latencies."""
    from katib.bench.runner import run_one

    result = run_one(get_problem(problem), contender(name), RunSettings(seed, budget, 1))
    if result.error:
        raise RuntimeError(f"{name} on {problem} seed {seed}: {result.error}")
    return {
        "best": [t.best for t in result.trials],
        "latency": float(np.median([t.latency_s for t in result.trials])),
    }


def regret_table(
    runs: dict[str, Any], probs: list[str], names: list[str], budgets: list[int], seeds: list[int]
) -> dict[tuple[str, str, int], list[float]]:
    """``{(problem, contender, budget): regrets over the seeds that ran}`` from the runs.

    A run is either the study's own (``best``: best true value after each trial) or a row read
    back from ``--export`` (``regret_at``: regret per budget).
    """
    optimum = {p: get_problem(p).optimum or 0.0 for p in probs}
    table: dict[tuple[str, str, int], list[float]] = {}
    for p in probs:
        for n in names:
            for b in budgets:
                values = []
                for seed in seeds:
                    run = runs.get(f"{p}|{n}|{seed}")
                    if run is None:
                        continue
                    if "regret_at" in run:
                        if str(b) in run["regret_at"]:
                            values.append(float(run["regret_at"][str(b)]))
                    elif len(run["best"]) >= b:
                        values.append(run["best"][b - 1] - optimum[p])
                table[(p, n, b)] = values
    return table


def _median_cell(regrets: list[float]) -> str:
    return f"{np.median(regrets):.3g} ({len(regrets)})" if regrets else "-"


def report(
    runs: dict[str, Any],
    probs: list[str],
    names: list[str],
    budgets: list[int],
    seeds: list[int] | None = None,
) -> None:
    """Print the median-regret table, the significance counts and every cell's p-values."""
    if seeds is None:
        seeds = sorted({int(key.split("|")[2]) for key in runs})
    table = regret_table(runs, probs, names, budgets, seeds)
    print("| problem | trials | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for p in probs:
        for b in budgets:
            cells = [_median_cell(table[(p, n, b)]) for n in names]
            print(f"| {p} | {b} | " + " | ".join(cells) + " |")
    print("(median regret over seeds; number of seeds in brackets)")
    pairs = [(o, q) for o in names if o in OURS for q in names if q not in OURS]
    pairs = [(o, q) for o, q in pairs if o != "cmaes-uniformcat"]
    variants = ("cmaes-ipop", "cmaes-bipop")
    pairs += [(o, "cmaes") for o in variants if o in names and "cmaes" in names]
    if "cmaes" in names and "cmaes-uniformcat" in names:
        pairs.append(("cmaes", "cmaes-uniformcat"))
    for ours, other in pairs:
        cells, better, worse = [], [], []
        for p in probs:
            for b in budgets:
                a, c = table[(p, ours, b)], table[(p, other, b)]
                if len(a) < 3 or len(c) < 3:
                    continue
                pb, pw = one_sided(a, c)
                cells.append(f"{p}@{b}")
                better.append(pb)
                worse.append(pw)
        print()
        print(
            f"{ours} vs {other}: better in {sum(p < 0.05 for p in better)} cells "
            f"({holm(better)} after Holm), worse in {sum(p < 0.05 for p in worse)} "
            f"({holm(worse)} after Holm) of {len(better)}"
        )
        print(f"| cell | p ({ours} better) | p ({ours} worse) |")
        print("|---|---|---|")
        holm_better, holm_worse = holm_rejects(better), holm_rejects(worse)
        for i, cell in enumerate(cells):
            print(
                f"| {cell} | {mark(better[i], holm_better[i])} | {mark(worse[i], holm_worse[i])} |"
            )
    print("(* p < 0.05; ** also after Holm's correction over the cells)")
    lat: dict[str, list[float]] = {n: [] for n in names}
    for key, run in runs.items():
        _, name, seed = key.split("|")
        if name in lat and int(seed) in seeds:
            lat[name].append(run["latency"])
    medians = {n: float(np.median(v)) for n, v in lat.items() if v}
    print(
        "median seconds per ask: " + ", ".join(f"{n} {v * 1e3:.2f} ms" for n, v in medians.items())
    )


def export_csv(runs: dict[str, Any], budgets: list[int], path: Path) -> None:
    """One row per run: regret after each budget and the median ms per ask."""
    probs = sorted({key.split("|")[0] for key in runs})
    names = sorted({key.split("|")[1] for key in runs})
    seeds = sorted({int(key.split("|")[2]) for key in runs})
    table = {
        (p, n, seed, b): values[0]
        for p in probs
        for n in names
        for seed in seeds
        for b in budgets
        if (values := regret_table(runs, [p], [n], [b], [seed])[(p, n, b)])
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["problem", "contender", "seed", "ask_ms", *(f"regret@{b}" for b in budgets)])
        for p in probs:
            for n in names:
                for seed in seeds:
                    run = runs.get(f"{p}|{n}|{seed}")
                    if run is None:
                        continue
                    regrets = [table.get((p, n, seed, b)) for b in budgets]
                    out.writerow(
                        [p, n, seed, f"{1e3 * run['latency']:.3f}"]
                        + ["" if v is None else repr(float(v)) for v in regrets]
                    )


def load(path: Path) -> dict[str, Any]:
    """Runs: the study's JSON cache, or a CSV written by ``--export``."""
    if path.suffix != ".csv":
        result: dict[str, Any] = json.loads(path.read_text())
        return result
    runs: dict[str, Any] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            runs[f"{row['problem']}|{row['contender']}|{row['seed']}"] = {
                "regret_at": {
                    k.split("@")[1]: float(v)
                    for k, v in row.items()
                    if k.startswith("regret@") and v
                },
                "latency": float(row["ask_ms"]) / 1e3,
            }
    return runs


def latency(history: int = 1000, calls: int = 200) -> dict[str, float]:
    """Median ms of one ``GetSuggestions`` over loopback gRPC, ``cmaes`` against ``random``.

    The history is ``history`` trials that ``cmaes`` itself suggested (labels and names set,
    values from a 7-parameter mixed problem), so replay follows the normal path; the service
    runs in this process (``katib.api.server.start``); each call asks for one suggestion.
    """
    import grpc

    from katib.api import api_pb2 as pb
    from katib.api import api_pb2_grpc
    from katib.api.server import start
    from katib.bench.service import experiment_to_proto
    from katib.suggestion.server import services

    problem = problems.get("mixed")
    ours = InProcessCMAES(problem, 0, None)
    noise = np.random.default_rng(0)
    while len(ours.trials) < history:
        for point in ours.ask(1):
            ours.tell(len(ours.trials) - 1, problem.evaluate(point, noise).value)
    figures = {}
    server = start(services(["cmaes", "random"]), host="127.0.0.1", port=0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = api_pb2_grpc.SuggestionStub(channel)
            for algorithm in ("random", "cmaes"):
                exp = experiment_to_proto(
                    ours.algorithm.experiment.name, problem.space, algorithm,
                    [("random_state", "0")], budget=history + 1, batch=1,
                )  # fmt: skip
                trials = []
                for t in ours.trials:
                    message = pb.Trial(name=t.name)
                    for name, value in problem.space.format(t.point or {}):
                        message.spec.parameter_assignments.assignments.add(name=name, value=value)
                    message.spec.labels.update(t.labels)
                    message.status.condition = pb.TrialStatus.SUCCEEDED
                    message.status.observation.metrics.add(name="loss", value=repr(t.value))
                    trials.append(message)
                req = pb.GetSuggestionsRequest(
                    experiment=exp, trials=trials, current_request_number=1
                )
                stub.GetSuggestions(req)  # warm: the first call replays the whole history
                seconds = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    stub.GetSuggestions(req)
                    seconds.append(time.perf_counter() - t0)
                figures[algorithm] = 1e3 * float(np.median(seconds))
                figures[algorithm + " p90"] = 1e3 * float(np.quantile(seconds, 0.9))
    finally:
        server.stop(0)
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The study's options (``katib-bench cmaes`` and ``python -m katib.bench.cmaes_study``)."""
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds")
    parser.add_argument("--seed-start", type=int, default=0, help="the first seed")
    parser.add_argument("--budgets", default="200,500")
    parser.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS))
    parser.add_argument("--contenders", default="cmaes,cmaes-ipop,cmaes-bipop,optuna:cmaes,cma")
    parser.add_argument("--cache", type=Path, default=None, help="JSON file of runs to reuse")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report the runs in --cache (its JSON, or a CSV written by --export)",
    )
    parser.add_argument("--export", type=Path, help="also write one CSV row per run")
    parser.add_argument("--latency", action="store_true", help="only measure request latency")


def run(args: argparse.Namespace) -> int:
    """Run (or resume from ``--cache``) the study, or the latency figure, and print it."""
    if args.latency:
        figures = latency()
        print(", ".join(f"{k} {v:.2f} ms" for k, v in figures.items()))
        print(f"load {os.getloadavg()[0]:.1f}")
        return 0
    budgets = [int(b) for b in args.budgets.split(",")]
    probs, names = args.problems.split(","), args.contenders.split(",")
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    if args.cache and args.cache.suffix == ".csv" and not args.report_only:
        raise SystemExit("katib-bench cmaes: a CSV --cache can only be read (--report-only)")
    runs: dict[str, Any] = {}
    if args.cache and args.cache.exists():
        runs = load(args.cache)
    elif args.report_only:
        raise SystemExit("katib-bench cmaes: --report-only needs an existing --cache file")
    start = time.time()
    for p in probs:
        if args.report_only:
            break
        for n in names:
            for seed in seeds:
                key = f"{p}|{n}|{seed}"
                if key in runs and len(runs[key].get("best", ())) >= max(budgets):
                    continue
                runs[key] = run_cell(p, n, seed, max(budgets))
                if args.cache:
                    args.cache.write_text(json.dumps(runs))
        print(f"# {p} done after {time.time() - start:.0f} s, load {os.getloadavg()[0]:.1f}")
    report(runs, probs, names, budgets, seeds)
    if args.export is not None:
        export_csv(runs, budgets, args.export)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m katib.bench.cmaes_study``."""
    parser = argparse.ArgumentParser(
        prog="katib-bench cmaes", description=__doc__.split("\n\n")[0]
    )
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
