"""The measurement subcommands of ``katib-bench``: service, tpe latency/quality, db, controller.

Each prints one figure (a table) on stdout, progress on stderr (``--quiet`` silences it), and
with ``--out DIR`` also writes the table as ``DIR/<name>.txt`` and every raw measurement as
``DIR/<name>.json``. The measurements themselves live in :mod:`katib.bench.load`,
:mod:`~katib.bench.tpe_latency`, :mod:`~katib.bench.tpe_study`, :mod:`~katib.bench.db_throughput`
and :mod:`~katib.bench.controller_overhead`, importable without the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from katib.bench import cmaes_study, load, tpe_latency, tpe_study
from katib.bench import collector_throughput as cot
from katib.bench import controller_overhead as ctl
from katib.bench import db_throughput as dbt
from katib.bench.service import parse_target
from katib.suggestion import registry

Handler = Callable[[argparse.Namespace], int]


def names(text: str | None, everything: Sequence[str]) -> list[str] | None:
    """``None`` for unset, ``all``/``none`` keywords, else the comma-separated names."""
    if text is None:
        return None
    if text.strip() == "all":
        return list(everything)
    if text.strip() in ("none", ""):
        return []
    return [n.strip() for n in text.split(",") if n.strip()]


def emit(args: argparse.Namespace, name: str, text: str, data: Any) -> int:
    """Print the figure; with ``--out``, write ``<name>.txt`` and ``<name>.json`` too."""
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.txt").write_text(text + "\n")
        (out / f"{name}.json").write_text(json.dumps(data, indent=1, default=_plain) + "\n")
        print(f"written: {out / name}.txt, {out / name}.json", file=sys.stderr)
    return 0


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The command's options, for the JSON file."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def _progress(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(line, file=sys.stderr, flush=True)


def cmd_service(args: argparse.Namespace) -> int:
    """One suggestion service under load: latency per call and throughput."""
    samples = load.run_service_load(
        names(args.algorithms, registry.names()) or [],
        [parse_target(s) for s in args.service or ()],
        history=args.history,
        repeats=args.repeats,
        count=args.count,
        clients=args.clients,
        seconds=args.seconds,
        in_process=args.in_process,
        progress=lambda s: _progress(args, f"{s.algorithm}: {s.median * 1e3:.2f} ms median"),
    )
    text = load.format_load(samples, args.clients)
    data = {"settings": _settings(args), "samples": samples}
    return emit(args, "service", text, data)


def cmd_tpe_latency(args: argparse.Namespace) -> int:
    """Our TPE's GetSuggestions time against Optuna's TPE ask."""
    rows = tpe_latency.run_tpe_latency(
        args.history,
        args.repeats,
        args.count,
        progress=lambda m: _progress(args, f"{m.label}: {m.median * 1e3:.1f} ms median"),
    )
    text = tpe_latency.format_tpe_latency(rows, args.history)
    data = {"settings": _settings(args), "rows": rows}
    return emit(args, "tpe-latency", text, data)


def cmd_tpe_quality(args: argparse.Namespace) -> int:
    """Regret of our TPE, Optuna's TPE and random search; significance tests."""
    ours = names(args.algorithms, tpe_study.OURS)
    peers = names(args.peers, list(tpe_study.PEERS))
    methods = [*(tpe_study.OURS if ours is None else ours)]
    methods += list(tpe_study.PEERS) if peers is None else peers
    problems = names(args.problems, list(tpe_study.PROBLEMS))
    problems = list(tpe_study.PROBLEMS) if problems is None else problems
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    cache, seconds = tpe_study.run_study(
        methods,
        problems,
        seeds,
        args.budget,
        Path(args.cache) if args.cache else None,
        rerun=names(args.rerun, methods) or [],
        progress=lambda p, m: _progress(args, f"  done {p} {m}"),
    )
    tests = tpe_study.significance(cache, problems, methods, seeds, args.budget)
    text = "\n\n".join(
        [
            tpe_study.format_table(cache, problems, methods, seeds, args.budget),
            tpe_study.format_significance(tests, len(seeds)),
            "\n".join(f"{method}: {total:.1f} s" for method, total in seconds.items()),
        ]
    ).rstrip()
    runs = {
        f"{p}/{m}/{s}/{args.budget}": cache[f"{p}/{m}/{s}/{args.budget}"]
        for p in problems
        for m in methods
        for s in seeds
    }
    data = {"settings": _settings(args), "seconds": seconds, "tests": tests, "runs": runs}
    return emit(args, "tpe-quality", text, data)


def cmd_db(args: argparse.Namespace) -> int:
    """Observation-store insert rates and read latency per backend."""
    from katib.db.testing import MissingServerBinariesError

    work = dbt.Workload(singles=args.singles, rows=args.rows, batch=args.batch)
    try:
        results = dbt.run_db(
            names(args.backends, dbt.BACKENDS) or [],
            args.url,
            work,
            durable=not args.fast_servers,
            grpc=args.grpc,
            progress=lambda name: _progress(args, f"done: {name}"),
        )
    except MissingServerBinariesError as exc:
        print(f"katib-bench: error: {exc} (or choose --backends sqlite)", file=sys.stderr)
        return 2
    data = {"settings": _settings(args), "results": results}
    return emit(args, "db", dbt.format_db(results, work), data)


def cmd_controller(args: argparse.Namespace) -> int:
    """Per-trial overhead of a local experiment over bare process spawns."""
    result = ctl.run_overhead(args.trials, args.parallel, args.repeats)
    data = dataclasses.asdict(result) | {"per_trial_ms": result.per_trial_ms}
    return emit(args, "controller", ctl.format_overhead(result), data)


def cmd_collector(args: argparse.Namespace) -> int:
    """Rows per second through the in-pod metrics collector."""
    results = cot.run_collector(args.lines, tuple(names(args.kinds, ("StdOut", "File")) or ()))
    data = [dataclasses.asdict(r) | {"rows_per_s": r.rows_per_s} for r in results]
    return emit(args, "collector", cot.format_collector(results), data)


def _out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="directory for the table (.txt) and raw figures (.json)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the measurement subcommands to ``katib-bench``'s parser."""
    svc = sub.add_parser("service", help="one suggestion service: latency per call, throughput")
    svc.add_argument(
        "--algorithms", default="random", help="ours, comma-separated (default random)"
    )
    svc.add_argument(
        "--service",
        action="append",
        metavar="NAME=[ALGORITHM@]HOST:PORT",
        help="also measure a Katib-compatible suggestion service (repeatable)",
    )
    svc.add_argument("--history", type=int, default=1000, help="trials in the request")
    svc.add_argument("--repeats", type=int, default=200, help="timed sequential calls")
    svc.add_argument("--count", type=int, default=1, help="suggestions per call")
    svc.add_argument("--clients", type=int, default=8, help="concurrent clients (0: skip)")
    svc.add_argument("--seconds", type=float, default=5.0, help="throughput duration")
    svc.add_argument("--in-process", action="store_true", help="host the service in this process")
    _out(svc)
    svc.set_defaults(func=cmd_service)

    tpe = sub.add_parser("tpe", help="our TPE against Optuna's: `tpe quality`, `tpe latency`")
    studies = tpe.add_subparsers(dest="study", required=True)
    lat = studies.add_parser("latency", help="ms per suggestion, ours over gRPC vs Optuna ask")
    lat.add_argument("--history", type=int, default=1000, help="completed trials")
    lat.add_argument("--repeats", type=int, default=30, help="timed calls per method")
    lat.add_argument("--count", type=int, default=1, help="suggestions per GetSuggestions")
    _out(lat)
    lat.set_defaults(func=cmd_tpe_latency)
    qual = studies.add_parser("quality", help="median regret and significance tests")
    qual.add_argument(
        "--algorithms", help=f"ours, comma-separated (default: {','.join(tpe_study.OURS)})"
    )
    qual.add_argument(
        "--peers", help=f"comma-separated or 'none' (default: {','.join(tpe_study.PEERS)})"
    )
    qual.add_argument(
        "--problems",
        help="comma-separated (default: all of " + ",".join(tpe_study.PROBLEMS) + ")",
    )
    qual.add_argument("--budget", type=int, default=200, help="trials per run (default 200)")
    qual.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    qual.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    qual.add_argument("--cache", help="JSON file of runs to reuse and extend")
    qual.add_argument("--rerun", help="methods to recompute despite the cache, comma-separated")
    _out(qual)
    qual.set_defaults(func=cmd_tpe_quality)

    db = sub.add_parser("db", help="observation-store insert rate and read latency")
    db.add_argument("--backends", default=",".join(dbt.BACKENDS), help="comma-separated")
    db.add_argument("--url", action="append", default=[], help="benchmark this database too")
    db.add_argument("--rows", type=int, default=100_000, help="rows inserted in batches")
    db.add_argument("--batch", type=int, default=1_000, help="rows per batch")
    db.add_argument("--singles", type=int, default=2_000, help="one-row reports")
    db.add_argument("--fast-servers", action="store_true", help="fsync off on PG/MariaDB")
    db.add_argument("--grpc", action="store_true", help="also measure through gRPC")
    _out(db)
    db.set_defaults(func=cmd_db)

    con = sub.add_parser("controller", help="per-trial overhead of a local experiment")
    con.add_argument("--trials", type=int, default=200, help="maxTrialCount")
    con.add_argument("--parallel", type=int, default=4, help="parallelTrialCount")
    con.add_argument("--repeats", type=int, default=3, help="runs of each; the best is kept")
    _out(con)
    con.set_defaults(func=cmd_controller)

    col = sub.add_parser("collector", help="rows/s through katib-metrics-collector")
    col.add_argument("--lines", type=int, default=200_000, help="metric lines the trial prints")
    col.add_argument("--kinds", default="StdOut,File", help="collector kinds, comma-separated")
    _out(col)
    col.set_defaults(func=cmd_collector)

    cma = sub.add_parser("cmaes", help="our cmaes against optuna:cmaes and cma (and latency)")
    cmaes_study.add_arguments(cma)
    cma.set_defaults(func=cmaes_study.run)
