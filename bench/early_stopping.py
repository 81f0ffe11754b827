"""Early stopping on learning curves: trial-steps spent and final best, with and without rules.

    katib-bench early-stopping --seeds 10 --trials 40 --parallel 4
    katib-bench early-stopping --rule medianstop --rule medianstop@katib  # Katib's one-rule form
    python -m katib.bench.early_stopping --problems synthetic --rule asha:reduction_factor=4

For each problem and seed, one sequence of configurations is drawn (the same for every rule)
and each configuration's learning curve is computed once. Each rule then replays the
experiment the way our controller runs it: ``--parallel`` trials at a time, one step per trial
per tick; every row goes to a real DB service (``ReportObservationLog`` over gRPC, SQLite); a
new trial gets its rules from a real ``katib-earlystopping`` service (``GetEarlyStoppingRules``
with the ``any`` evaluation) and the running trials' rules are refreshed whenever a trial ends;
each row is judged by :class:`~katib.earlystopping.rules.RuleEvaluator` and a trial whose rule
holds is stopped and recorded EarlyStopped. ``NAME@katib`` asks for Katib's one-rule form
instead, which then behaves as Katib's collector would (a single rule with a best-so-far value
can only hold at its start step). Reported per rule: total trial-steps, the final best
(the best objective value any trial reported, what Katib shows as the optimal trial), the
paired Wilcoxon p-value of the final best against ``none``, and the cost of evaluating rules.

Problems (losses, minimised): ``synthetic`` — exponential learning curves whose final value and
speed depend on two parameters (slow starters can end best), with step noise; ``sgd-digits`` —
scikit-learn's ``SGDClassifier`` trained one epoch per step on the digits data, validation
error per epoch (``alpha``, ``eta0`` log-uniform).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from katib.api import api_pb2 as pb
from katib.api.errors import InvalidArgument
from katib.api.server import RunningServer, start
from katib.db.client import DBClient
from katib.db.server import build_service
from katib.db.store import open_store
from katib.earlystopping.client import EarlyStoppingClient
from katib.earlystopping.rules import Rule, RuleEvaluator, Semantics
from katib.earlystopping.server import services as es_services

logger = logging.getLogger(__name__)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
METRIC = "loss"


@dataclass(frozen=True)
class CurveProblem:
    """A family of learning curves: ``curve(rng)`` draws a configuration and returns its
    losses, shape ``(steps,)``."""

    name: str
    steps: int
    description: str
    curve: Callable[[np.random.Generator], np.ndarray]


def _synthetic(rng: np.random.Generator, steps: int = 27) -> np.ndarray:
    x = rng.uniform(0, 1, 2)
    final = 0.05 + 0.9 * ((x[0] - 0.3) ** 2 + (x[1] - 0.7) ** 2) / 0.58
    tau = 1.0 + 9.0 * x[1]  # the best region (x1 near 0.7) converges slowly
    start = 1.0 + 0.5 * x[0]
    t = np.arange(1, steps + 1)
    return final + (start - final) * np.exp(-t / tau) + rng.normal(0, 0.02, steps)


_DIGITS: dict[str, np.ndarray] = {}


def _sgd_digits(rng: np.random.Generator, steps: int = 27) -> np.ndarray:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    if not _DIGITS:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        x, y = load_digits(return_X_y=True)
        xt, xv, yt, yv = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
        scaler = StandardScaler().fit(xt)
        _DIGITS.update(xt=scaler.transform(xt), xv=scaler.transform(xv), yt=yt, yv=yv)
    d = _DIGITS
    alpha, eta0 = 10 ** rng.uniform(-6, -1), 10 ** rng.uniform(-4, 0)
    model = SGDClassifier(
        loss="log_loss",
        alpha=alpha,
        learning_rate="constant",
        eta0=eta0,
        random_state=int(rng.integers(2**31)),
    )
    classes = np.unique(d["yt"])
    errors = np.empty(steps)
    for epoch in range(steps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(d["xt"], d["yt"], classes=classes)
        errors[epoch] = np.mean(model.predict(d["xv"]) != d["yv"])
    return errors


PROBLEMS = {
    p.name: p
    for p in (
        CurveProblem("synthetic", 27, "exponential curves, 2 parameters, noise 0.02", _synthetic),
        CurveProblem("sgd-digits", 27, "SGDClassifier on digits, validation error", _sgd_digits),
    )
}


@dataclass(frozen=True)
class RuleSpec:
    """An early-stopping algorithm with settings, as given on the command line."""

    algorithm: str
    settings: tuple[tuple[str, str], ...] = ()
    semantics: Semantics = Semantics.ANY

    @property
    def label(self) -> str:
        name = self.algorithm
        if self.semantics is not Semantics.ANY:
            name += f"@{self.semantics}"
        extra = ",".join(f"{k}={v}" for k, v in self.settings)
        return f"{name}:{extra}" if extra else name

    @classmethod
    def parse(cls, text: str) -> RuleSpec:
        """``NAME[@SEMANTICS][:key=value,key=value]``; ``@katib`` asks for Katib's form."""
        name, _, rest = text.partition(":")
        name, _, semantics = name.partition("@")
        try:
            form = Semantics(semantics or "any")
        except ValueError:
            raise ValueError(f"--rule {text!r}: semantics must be any or katib") from None
        pairs = []
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"--rule {text!r}: expected key=value, got {item!r}")
            pairs.append((key.strip(), value.strip()))
        return cls(name.strip(), tuple(pairs), form)


@dataclass
class RunStats:
    """One (problem, rule, seed) replay."""

    problem: str
    rule: str
    seed: int
    trials: int
    steps: int
    stopped: int
    best: float
    rule_calls: int
    rule_call_ms: list[float] = field(default_factory=list)
    eval_rows: int = 0
    eval_s: float = 0.0


@dataclass
class _Running:
    index: int
    name: str
    evaluator: RuleEvaluator
    step: int = 0


class Replay:
    """Replays one experiment's trials under one rule against the DB and rule services."""

    def __init__(self, es_address: str, db: DBClient, db_address: str, parallel: int) -> None:
        self.clients = {
            form: EarlyStoppingClient(es_address, semantics=form) for form in Semantics
        }
        self.db, self.db_address, self.parallel = db, db_address, parallel

    def close(self) -> None:
        """Close the service channels."""
        for client in self.clients.values():
            client.close()

    def run(
        self, problem: str, curves: Sequence[np.ndarray], rule: RuleSpec, seed: int
    ) -> RunStats:
        """Run every curve as a trial; returns the totals."""
        tag = f"{problem}-{rule.label}-s{seed}-{time.time_ns()}".replace(":", "-").replace(
            ",", "-"
        )
        experiment = pb.Experiment(name=tag)
        experiment.spec.objective.type = pb.MINIMIZE
        experiment.spec.objective.objective_metric_name = METRIC
        experiment.spec.early_stopping.algorithm_name = rule.algorithm
        for key, value in rule.settings:
            experiment.spec.early_stopping.algorithm_settings.add(name=key, value=value)
        stats = RunStats(problem, rule.label, seed, len(curves), 0, 0, float("inf"), 0)
        trials: dict[str, pb.Trial] = {}
        running: dict[str, _Running] = {}
        queue = list(range(len(curves)))
        tick = 0
        while queue or running:
            while queue and len(running) < self.parallel:
                index = queue.pop(0)
                name = f"{tag}-{index:03d}"
                trials[name] = pb.Trial(name=name)
                trials[name].status.condition = pb.TrialStatus.RUNNING
                rules = self._rules(experiment, trials, stats, rule.semantics)
                running[name] = _Running(index, name, RuleEvaluator(rules, METRIC, False))
            tick += 1
            ended = False
            for run in list(running.values()):
                curve = curves[run.index]
                observed = float(curve[run.step])
                run.step += 1
                stamp = T0 + timedelta(seconds=tick, microseconds=run.index)
                self.db.report(run.name, [(stamp, METRIC, repr(observed))])
                began = time.perf_counter()
                stop = run.evaluator.add(METRIC, observed)
                stats.eval_s += time.perf_counter() - began
                stats.eval_rows += 1
                stats.steps += 1
                stats.best = observed if observed < stats.best else stats.best
                if stop or run.step == len(curve):
                    status = trials[run.name].status
                    status.condition = (
                        pb.TrialStatus.EARLYSTOPPED if stop else pb.TrialStatus.SUCCEEDED
                    )
                    status.completion_time = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    stats.stopped += int(stop)
                    del running[run.name]
                    ended = True
            if ended and running:  # refresh: rules from the newer history
                rules = self._rules(experiment, trials, stats, rule.semantics)
                for run in running.values():
                    run.evaluator.replace(rules)
        return stats

    def _rules(
        self,
        experiment: pb.Experiment,
        trials: dict[str, pb.Trial],
        stats: RunStats,
        semantics: Semantics,
    ) -> list[Rule]:
        client = self.clients[semantics]
        began = time.perf_counter()
        rules = client.rules(experiment, trials.values(), self.db_address)
        stats.rule_call_ms.append((time.perf_counter() - began) * 1e3)
        stats.rule_calls += 1
        return rules


def _validate(client: EarlyStoppingClient, spec: RuleSpec) -> None:
    try:
        client.validate(spec.algorithm, spec.settings)
    except InvalidArgument as exc:
        raise ValueError(f"--rule {spec.label}: {exc}") from None


def draw_curves(problem: CurveProblem, seed: int, trials: int) -> list[np.ndarray]:
    """The learning curves of one experiment: the same for every rule."""
    rng = np.random.default_rng([seed, 5153])
    return [problem.curve(rng) for _ in range(trials)]


def summarise(runs: Sequence[RunStats], baseline: str = "none") -> list[dict[str, object]]:
    """One row per (problem, rule): means over seeds and the paired test against ``baseline``."""
    from scipy.stats import wilcoxon

    rows: list[dict[str, object]] = []
    by: dict[tuple[str, str], dict[int, RunStats]] = {}
    for run in runs:
        by.setdefault((run.problem, run.rule), {})[run.seed] = run
    for (problem, rule), seeds in by.items():
        base = by.get((problem, baseline), {})
        common = sorted(set(seeds) & set(base))
        steps = [seeds[s].steps for s in sorted(seeds)]
        best = [seeds[s].best for s in sorted(seeds)]
        row: dict[str, object] = {
            "problem": problem,
            "rule": rule,
            "seeds": len(seeds),
            "trial_steps": statistics.fmean(steps),
            "stopped": statistics.fmean(seeds[s].stopped for s in seeds),
            "best_median": statistics.median(best),
            "best_mean": statistics.fmean(best),
            "best_sd": statistics.stdev(best) if len(best) > 1 else 0.0,
            "rule_call_ms": statistics.median(
                [ms for s in seeds.values() for ms in s.rule_call_ms] or [0.0]
            ),
            "eval_us_per_row": 1e6
            * sum(s.eval_s for s in seeds.values())
            / max(1, sum(s.eval_rows for s in seeds.values())),
        }
        if common and rule != baseline:
            diffs = [seeds[s].best - base[s].best for s in common]
            row["steps_saved_x"] = statistics.fmean(base[s].steps for s in common) / max(
                1e-9, statistics.fmean(seeds[s].steps for s in common)
            )
            row["best_diff_mean"] = statistics.fmean(diffs)
            row["same_best"] = sum(d == 0 for d in diffs)
            nonzero = [d for d in diffs if d != 0]
            row["p_wilcoxon"] = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else 1.0
        rows.append(row)
    return rows


def table(rows: Sequence[dict[str, object]]) -> str:
    """A Markdown table of :func:`summarise` rows."""
    head = (
        "| problem | rule | trial-steps | fewer steps | stopped trials | final best, median "
        "(mean ± sd) | vs none: mean diff, p | same best as none | rule call | eval/row |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        saved = f"{r['steps_saved_x']:.2f}x" if "steps_saved_x" in r else "1x"
        versus = (
            f"{r['best_diff_mean']:+.4f}, p = {r['p_wilcoxon']:.2f}" if "p_wilcoxon" in r else "—"
        )
        same = f"{r['same_best']}/{r['seeds']}" if "same_best" in r else "—"
        lines.append(
            f"| {r['problem']} | {r['rule']} | {r['trial_steps']:.0f} | {saved} "
            f"| {r['stopped']:.1f} | {r['best_median']:.4f} ({r['best_mean']:.4f} ± "
            f"{r['best_sd']:.4f}) | {versus} | {same} | {r['rule_call_ms']:.1f} ms "
            f"| {r['eval_us_per_row']:.1f} µs |"
        )
    return head + "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the early-stopping benchmark."""
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated")
    parser.add_argument(
        "--rule",
        action="append",
        metavar="NAME[:k=v,...]",
        help="early-stopping rule (repeatable; default: none, medianstop, asha)",
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--trials", type=int, default=40, help="trials per experiment")
    parser.add_argument("--parallel", type=int, default=4, help="trials running at once")
    parser.add_argument("--out", type=Path, help="directory for runs.json and table.md")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table."""
    names = [n.strip() for n in args.problems.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown:
        raise ValueError(f"unknown problem(s) {', '.join(unknown)}; known: {', '.join(PROBLEMS)}")
    specs = [RuleSpec.parse(t) for t in (args.rule or ["none", "medianstop", "asha"])]
    if "none" not in [s.label for s in specs]:
        specs.insert(0, RuleSpec("none"))
    runs: list[RunStats] = []
    with tempfile.TemporaryDirectory(prefix="katib-es-bench-") as scratch:
        db_server = start([build_service(open_store(f"sqlite:///{scratch}/obs.db"))], port=0)
        es_server: RunningServer = start(es_services(), port=0)
        replay: Replay | None = None
        try:
            with DBClient(db_server.address) as db:
                db.wait_ready(timeout=30)
                replay = Replay(es_server.address, db, db_server.address, args.parallel)
                for spec in specs:
                    _validate(replay.clients[Semantics.ANY], spec)
                for name in names:
                    for seed in range(args.seed_start, args.seed_start + args.seeds):
                        began = time.perf_counter()
                        curves = draw_curves(PROBLEMS[name], seed, args.trials)
                        drawn = time.perf_counter() - began
                        for spec in specs:
                            began = time.perf_counter()
                            stats = replay.run(name, curves, spec, seed)
                            runs.append(stats)
                            print(
                                f"{name} seed {seed} {spec.label}: {stats.steps} steps, "
                                f"{stats.stopped} stopped, best {stats.best:.4f} "
                                f"({time.perf_counter() - began:.1f} s; curves {drawn:.1f} s)",
                                file=sys.stderr,
                                flush=True,
                            )
        finally:
            if replay is not None:
                replay.close()
            es_server.stop(grace=1)
            db_server.stop(grace=1)
    rows = summarise(runs)
    text = table(rows)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "runs.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))
        (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
        (args.out / "table.md").write_text(text + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m katib.bench.early_stopping``."""
    parser = argparse.ArgumentParser(
        prog="katib-bench early-stopping", description=__doc__.split("\n")[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return run(args)
    except ValueError as exc:
        print(f"katib-bench early-stopping: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
