"""``katib-bench``: every benchmark of katib-py — tuner comparisons and the figures in the README.

    katib-bench list                                  # problems, algorithms, peers, suites
    katib-bench run                                   # smoke suite, about a minute
    katib-bench run --suite standard --out results/bench
    katib-bench run --algorithms random,sobol,tpe --peers optuna:tpe \\
        --problems branin,hartmann6 --budget 100 --seeds 10 --batch 1 --out results/bench
    katib-bench run --algorithms none --service mine=tpe@10.0.0.5:6789 --problems branin
    katib-bench latency --algorithms random,sobol --sizes 10,100,1000 --out results/latency
    katib-bench service --algorithms random,sobol     # a katib-suggestion process under load
    katib-bench tpe quality --seeds 20                # our TPE vs Optuna's: regret, significance
    katib-bench tpe latency                           # our TPE vs Optuna's: ms per suggestion
    katib-bench db --grpc                             # observation store: rows/s, read latency
    katib-bench controller                            # per-trial overhead of a local experiment
    katib-bench collector                             # rows/s through katib-metrics-collector
    katib-bench early-stopping --seeds 10             # trial-steps saved by medianstop and asha
    katib-bench kube --runs 1000:1000,10000:1000      # the Kubernetes operator at scale (fake API)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from katib.bench import (
    commands,
    early_stopping,
    gp_latency,
    gp_study,
    harness,
    kube,
    multifidelity,
    peers,
    problems,
    tpe_study,
)
from katib.bench.latency import LatencySample
from katib.bench.runner import RunResult
from katib.suggestion import registry

logger = logging.getLogger(__name__)


def _progress(result: RunResult, done: int, total: int) -> None:
    if result.error and not result.trials:
        status = f"skipped: {result.error}"
    else:
        best = result.trials[-1].best if result.trials else None
        status = f"best {best:.6g}" if best is not None else "no successful trial"
        status += f" in {len(result.trials)} trials, {result.wall_s:.2f} s"
        status += " (exhausted)" if result.exhausted else ""
        status += f" error: {result.error}" if result.error else ""
    print(
        f"[{done}/{total}] {result.problem} {result.algorithm} seed {result.seed}: {status}",
        file=sys.stderr,
        flush=True,
    )


def cmd_list(args: argparse.Namespace) -> int:
    """Print problems, algorithms, peers and suites."""
    print("problems:")
    for name in problems.names():
        p = problems.get(name)
        optimum = f"optimum {p.optimum:.6g}" if p.optimum is not None else "optimum unknown"
        print(f"  {name:<20} {p.kind:<9} {p.space.dim:>2} params  {optimum:<20} {p.description}")
    print("algorithms (our suggestion service):")
    print("  " + ", ".join(registry.names(include_nas=False)))
    print("peers:")
    for name in peers.PEERS:
        lacking = peers.missing(name)
        print(
            f"  {name:<14} "
            + (f"not installed ({', '.join(lacking)})" if lacking else "installed")
        )
    print("suites:")
    for suite in problems.SUITES.values():
        resolved = problems.suite(suite.name)
        print(
            f"  {suite.name:<9} budget {suite.budget}, {suite.seeds} seeds: "
            + ", ".join(resolved.problems)
        )
    print("problems of `katib-bench tpe quality`:")
    print("  " + ", ".join(tpe_study.PROBLEMS))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run a comparison and print the table."""
    suite = problems.suite(args.suite)
    algorithms = commands.names(args.algorithms, registry.names(include_nas=False))
    chosen_peers = commands.names(args.peers, list(peers.PEERS))
    if chosen_peers is None:
        chosen_peers = list(peers.PEERS) if suite.peers is None else list(suite.peers)
    result = harness.compare(
        algorithms=registry.names(include_nas=False) if algorithms is None else algorithms,
        services=args.service or (),
        peers=chosen_peers,
        problems=commands.names(args.problems, problems.names()) or list(suite.problems),
        budget=args.budget or suite.budget,
        seeds=list(range(args.seed_start, args.seed_start + (args.seeds or suite.seeds))),
        batch=args.batch,
        asynchronous=args.mode == "async",
        out=args.out,
        progress=None if args.quiet else _progress,
    )
    print(result.table)
    for note in result.notes:
        print(f"note: {note}")
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """Run the latency sweep and print its table."""
    algorithms = commands.names(args.algorithms, registry.names(include_nas=False))
    sizes = [int(s) for s in args.sizes.split(",")]

    def progress(sample: LatencySample) -> None:
        if not args.quiet:
            print(
                f"{sample.algorithm} n={sample.history}: {sample.median * 1e3:.2f} ms",
                file=sys.stderr,
                flush=True,
            )

    _, table = harness.latency(
        algorithms=registry.names(include_nas=False) if algorithms is None else algorithms,
        services=args.service or (),
        problem=args.problem,
        sizes=sizes,
        repeats=args.repeats,
        count=args.count,
        out=args.out,
        progress=progress,
    )
    print(table)
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    top = argparse.ArgumentParser(
        prog="katib-bench",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    top.add_argument("--log-level", default="WARNING")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="problems, algorithms, peers and suites").set_defaults(
        func=cmd_list
    )

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--algorithms", help="our algorithms, comma-separated, 'all' (default) or 'none'"
        )
        p.add_argument(
            "--service",
            action="append",
            metavar="NAME=[ALGORITHM@]HOST:PORT",
            help="a Katib-compatible suggestion service (repeatable)",
        )
        p.add_argument("--out", help="directory for CSV, JSON, tables and PNG plots")
        p.add_argument("--quiet", action="store_true", help="no progress lines")

    run = sub.add_parser("run", help="compare contenders on problems")
    common(run)
    run.add_argument("--suite", default="smoke", choices=sorted(problems.SUITES))
    run.add_argument("--problems", help="comma-separated problem names (default: the suite's)")
    run.add_argument(
        "--peers", help="peer libraries, comma-separated, 'all' or 'none' (default: the suite's)"
    )
    run.add_argument("--budget", type=int, help="trials per run (default: the suite's)")
    run.add_argument("--seeds", type=int, help="number of seeds (default: the suite's)")
    run.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    run.add_argument("--batch", type=int, default=1, help="suggestions per call (default 1)")
    run.add_argument(
        "--mode",
        choices=("batch", "async"),
        default="batch",
        help="batch: ask k once all trials are done; async: keep k in flight",
    )
    run.set_defaults(func=cmd_run)

    lat = sub.add_parser("latency", help="GetSuggestions time against history size")
    common(lat)
    lat.add_argument("--problem", default="mixed", help="problem whose space is used")
    lat.add_argument("--sizes", default="10,30,100,300,1000", help="history sizes")
    lat.add_argument("--repeats", type=int, default=5, help="timed calls per size")
    lat.add_argument("--count", type=int, default=1, help="suggestions per call")
    lat.set_defaults(func=cmd_latency)
    commands.register(sub)

    es = sub.add_parser(
        "early-stopping", help="trial-steps and final best with and without early stopping"
    )
    early_stopping.add_arguments(es)
    es.set_defaults(func=early_stopping.run)
    multifidelity.register(sub)
    gp_study.add_parser(sub)
    gp_latency.add_parser(sub)
    kube.register(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (KeyError, ValueError) as exc:
        print(f"katib-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
