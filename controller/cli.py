"""``katib``: run, validate and inspect Katib experiments on this machine.

    katib run examples/random.yaml [--results DIR]
    katib validate examples/random.yaml
    katib status results/random-example [-o json|yaml]
    katib trials results/random-example [-o json|yaml|csv]
    katib submit examples/random.yaml [--kubeconfig K] [--context C] [-n NS] [--follow]
    katib status random-example --cluster [-n NS] [-o json|yaml]
    katib trials random-example --cluster [-n NS] [-o json|yaml|csv]

Exit codes: 0 Succeeded (or valid, or submitted), 1 Failed, 2 invalid experiment or usage (or
it cannot run on the chosen backend), 130 interrupted by SIGINT, 143 by SIGTERM, 3 the
filesystem refused (read-only or full disk, a path under a regular file: one line says which
path; the results directory keeps its last consistent state, so fix it and run again), 4 the
cluster could not be reached or refused a request (the kubeconfig, the API server's answer).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from katib.api.errors import InvalidArgument, KatibError
from katib.api.signals import Interrupts
from katib.controller import checks, report
from katib.controller import reconcile as rec
from katib.controller.runner import ExperimentRunner
from katib.controller.spec import Experiment
from katib.controller.store import ResultsStore
from katib.controller.validation import load_experiment
from katib.controller.view import (
    ProgressView,
    best_line,
    counts_line,
    print_failures,
    sort_key,
    trials_table,
)

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_FILESYSTEM = 3
EXIT_CLUSTER = 4
BEST_ROWS = 10
#: Failed trials whose log tails are printed at the end of ``katib run``.
FAILURE_DETAILS = 3


def _read(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"{path}: cannot read the experiment: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: the document must be a Kubernetes object (a mapping)")
    return data


def _print_problems(console: Console, path: str, exc: InvalidArgument) -> None:
    console.print(f"[red]{path}: {len(exc.problems)} problem(s)[/red]", highlight=False)
    for problem in exc.problems:
        console.print(f"  - {problem}", highlight=False, markup=False)


def _admit(raw: dict[str, Any], args: argparse.Namespace) -> Experiment:
    """Katib's admission; the algorithm name is left to a remote suggestion service."""
    return load_experiment(raw, check_algorithm=args.suggestion_address is None)


def _print_report(console: Console, path: str, backend: str, report: checks.Report) -> None:
    for warning in report.warnings:
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]", highlight=False)
    if report.problems:
        console.print(
            f"[red]{path}: accepted by Katib, but {len(report.problems)} problem(s) for a "
            f"{backend} run[/red]",
            highlight=False,
        )
        for problem in report.problems:
            console.print(f"  - {problem}", highlight=False, markup=False)


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    """Katib's admission, then what the backend and the services say about running it."""
    from katib.controller.earlystop import EarlyStopping
    from katib.controller.services import Suggestions, start_local

    try:
        spec = _admit(_read(args.file), args)
    except InvalidArgument as exc:
        _print_problems(console, args.file, exc)
        return EXIT_INVALID
    capabilities = checks.backends()[args.backend]
    report = checks.runnable(
        spec, capabilities, args.suggestion_address, args.early_stopping_address
    )
    try:
        if not any(p.startswith("spec.algorithm.") for p in report.problems):
            endpoints = start_local(
                Path("."), suggestion_address=args.suggestion_address, db_address="unused"
            )
            client = Suggestions(endpoints.suggestion)
            try:
                client.validate(spec)
            finally:
                client.close()
                endpoints.stop()
        if spec.early_stopping is not None and not any(
            p.startswith("spec.earlyStopping.") for p in report.problems
        ):
            endpoints = start_local(
                Path("."),
                suggestion_address="unused",
                db_address="unused",
                early_stopping_address=args.early_stopping_address,
                early_stopping=True,
            )
            early = EarlyStopping(endpoints.early_stopping)
            try:
                early.validate(spec)
            finally:
                early.close()
                endpoints.stop()
    except KatibError as exc:
        report.problems += getattr(exc, "problems", None) or [str(exc)]
    _print_report(console, args.file, args.backend, report)
    if report.problems:
        return EXIT_INVALID
    console.print(
        f"[green]{args.file}: valid[/green] (experiment {spec.name!r}, algorithm "
        f"{spec.algorithm.algorithm_name!r}, {args.backend} backend)",
        highlight=False,
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    """Run (or resume) an experiment and print the best trials.

    The signal handlers stay installed until the process exits: a signal that arrives while
    the run is ending (a second Ctrl-C) is recorded too, never a traceback or a default kill.
    """
    interrupts = Interrupts().install()
    try:
        return _run(args, console, interrupts)
    except KeyboardInterrupt:  # raised by a handler installed before ours (in-process use)
        console.print("[yellow]interrupted[/yellow]", highlight=False)
        return interrupts.exit_code
    finally:
        if threading.current_thread() is threading.main_thread():
            # The run is over: later signals change nothing. Ignored rather than handled, as
            # Python's shutdown restores the default action for handled signals, which would
            # turn a late Ctrl-C into a kill instead of our exit code.
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)


def _run(args: argparse.Namespace, console: Console, interrupts: Interrupts) -> int:
    try:
        raw = _read(args.file)
        spec = _admit(raw, args)
    except InvalidArgument as exc:
        _print_problems(console, args.file, exc)
        return EXIT_INVALID
    report = checks.runnable(
        spec,
        checks.backends()[args.backend],
        args.suggestion_address,
        args.early_stopping_address,
    )
    _print_report(console, args.file, args.backend, report)
    if report.problems:
        return EXIT_INVALID
    results = Path(args.results) if args.results else Path("results") / spec.name
    console.print(
        f"experiment {spec.name!r}: {spec.algorithm.algorithm_name}, results in {results}",
        highlight=False,
    )
    try:
        backend = _backend_factory(args, raw, spec)
    except ValueError as exc:  # an unreadable kubeconfig
        console.print(f"[red]{escape(str(exc))}[/red]", highlight=False)
        return EXIT_INVALID
    view = ProgressView(spec, console, results) if not args.quiet else None
    runner = ExperimentRunner(
        spec,
        raw,
        results,
        experiment_dir=Path(args.file).resolve().parent,
        suggestion_address=args.suggestion_address,
        db_address=args.db_address,
        on_progress=view,
        early_stopping_address=args.early_stopping_address,
        interrupts=interrupts,
        backend=backend,
    )
    try:
        if view is not None:
            with view:
                result = runner.run()
        else:
            result = runner.run()
    except KeyboardInterrupt:
        result = None
    except InvalidArgument as exc:
        _print_problems(console, args.file, exc)
        return EXIT_INVALID
    except KatibError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        return EXIT_FAILED
    except OSError as exc:
        if exc.filename is None:  # os.write says no more than "No space left on device"
            exc.filename = f"{results} (the results directory)"
        raise
    if result is None or interrupts.received is not None:
        console.print(
            f"[yellow]interrupted; run again with --results {results} to resume[/yellow]",
            highlight=False,
        )
        return interrupts.exit_code
    if result.note:
        console.print(result.note, highlight=False)
    _print_outcome(console, spec, result.decision, result.trials)
    print_failures(console, results, result.trials, limit=FAILURE_DETAILS)
    return EXIT_OK if result.succeeded else EXIT_FAILED


def _backend_factory(args: argparse.Namespace, raw: dict[str, Any], spec: Experiment) -> Any:
    """The runner's backend: local processes, or run objects in a cluster."""
    if args.backend != "kubernetes":
        return None
    from katib.controller.kube.api import KubeApi
    from katib.controller.kube.backend import KubernetesBackendFactory

    api = KubeApi.from_config(args.kubeconfig, args.context)
    return KubernetesBackendFactory(api, args.namespace or spec.namespace, raw)


def _print_outcome(
    console: Console, spec: Experiment, decision: rec.Decision, trials: list[Any]
) -> None:
    if trials:
        console.print(trials_table(spec, trials, limit=BEST_ROWS))
    style = "green" if decision.condition is rec.Condition.SUCCEEDED else "red"
    console.print(
        f"[{style}]{spec.name}: {decision.condition} ({decision.reason})[/{style}] "
        f"{decision.message}",
        highlight=False,
    )
    console.print(counts_line(decision.counts), highlight=False)
    console.print(best_line(spec, trials, decision.best_trial), highlight=False)


def _open(directory: str) -> tuple[Experiment, dict[str, Any], list[Any]]:
    """The experiment, status and trials of a results directory; ``InvalidArgument`` if there
    is no readable experiment record in it."""
    try:
        with ResultsStore(Path(directory), create=False) as store:
            raw = store.get("experiment")
            status = store.get("status") or {}
            trials = store.trials()
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise InvalidArgument(f"{directory}: cannot read the results: {exc}") from None
    try:
        algorithm = raw["spec"]["algorithm"]["algorithmName"]
    except (TypeError, KeyError):
        raise InvalidArgument(
            f"{directory}: holds no experiment record; is it a results directory of katib run?"
        ) from None
    return load_experiment(raw, algorithms=[algorithm]), status, trials


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    """Print an experiment's condition, counts and best trial."""
    if args.cluster:
        from katib.controller.kube import cli as kube_cli

        return kube_cli.cluster_command(args, console, cmd_status)
    try:
        spec, status, trials = _open(args.dir)
    except (FileNotFoundError, InvalidArgument) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        return EXIT_INVALID
    return print_status(args, console, spec, status, trials, Path(args.dir))


def print_status(
    args: argparse.Namespace,
    console: Console,
    spec: Experiment,
    status: dict[str, Any],
    trials: list[Any],
    results_dir: Path | None,
) -> int:
    """``katib status`` output for an experiment however it was read."""
    condition = status.get("condition", "Created")
    if args.output != "table":
        document = report.status_document(spec, status, trials, results_dir)
        sys.stdout.write(report.dump(document, args.output))
        return EXIT_FAILED if condition == rec.Condition.FAILED else EXIT_OK
    console.print(
        f"{spec.name}: {condition} ({status.get('reason', '')}) {status.get('message', '')}",
        highlight=False,
    )
    console.print(
        f"started {status.get('start_time') or '-'}, completed "
        f"{status.get('completion_time') or '-'}",
        highlight=False,
    )
    console.print(counts_line(rec.Counts.of(trials)), highlight=False)
    console.print(best_line(spec, trials, status.get("best_trial")), highlight=False)
    return EXIT_FAILED if condition == rec.Condition.FAILED else EXIT_OK


def cmd_trials(args: argparse.Namespace, console: Console) -> int:
    """Print every trial of an experiment."""
    if args.cluster:
        from katib.controller.kube import cli as kube_cli

        return kube_cli.cluster_command(args, console, cmd_trials)
    try:
        spec, _, trials = _open(args.dir)
    except (FileNotFoundError, InvalidArgument) as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        return EXIT_INVALID
    return print_trials(args, console, spec, trials, Path(args.dir))


def print_trials(
    args: argparse.Namespace,
    console: Console,
    spec: Experiment,
    trials: list[Any],
    results_dir: Path | None,
) -> int:
    """``katib trials`` output for an experiment however it was read."""
    if args.output == "table":
        console.print(trials_table(spec, trials, by_best=args.best))
        if results_dir is not None:
            print_failures(console, results_dir, trials)
        return EXIT_OK
    if args.best:
        trials = sorted(trials, key=lambda t: sort_key(spec, t))
    if args.output == "csv":
        sys.stdout.write(report.trials_csv(spec, trials))
    else:
        document = report.trials_document(spec, trials, results_dir)
        sys.stdout.write(report.dump(document, args.output))
    return EXIT_OK


def cmd_submit(args: argparse.Namespace, console: Console) -> int:
    """Send an Experiment to a cluster (``--follow``: and watch it to the end)."""
    from katib.controller.kube import cli as kube_cli

    return kube_cli.cmd_submit(args, console)


def build_parser() -> argparse.ArgumentParser:
    """The ``katib`` argument parser."""
    parser = argparse.ArgumentParser(prog="katib", description="Run Katib experiments locally.")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ...")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or resume an experiment")
    run.add_argument("file", help="Experiment YAML (kubeflow.org/v1beta1)")
    run.add_argument("--results", help="results directory (default results/<experiment name>)")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    for command in (run, validate := sub.add_parser("validate", help="check an Experiment")):
        command.add_argument(
            "--suggestion-address",
            metavar="HOST:PORT",
            help="use this suggestion service instead of an in-process one (it then checks "
            "the algorithm name)",
        )
        command.add_argument(
            "--early-stopping-address",
            metavar="HOST:PORT",
            help="use this early-stopping service for spec.earlyStopping instead of the "
            "in-process one (Katib's EarlyStopping API; it then checks the algorithm name)",
        )
    validate.add_argument("file", help="Experiment YAML")
    validate.add_argument(
        "--backend",
        default="local",
        choices=sorted(checks.backends()),
        help="report what this backend cannot run (default local)",
    )
    run.add_argument(
        "--backend",
        default="local",
        choices=sorted(checks.backends()),
        help="run trials as local processes (default) or as objects in a Kubernetes cluster",
    )
    run.add_argument("--kubeconfig", help="kubeconfig for --backend kubernetes")
    run.add_argument("--context", help="kubeconfig context for --backend kubernetes")
    run.add_argument(
        "-n", "--namespace", help="namespace for --backend kubernetes (default: the experiment's)"
    )
    run.add_argument(
        "--db-address",
        metavar="HOST:PORT",
        help="use this DB manager instead of an in-process one",
    )
    status = sub.add_parser("status", help="show an experiment's status")
    status.add_argument("dir", help="results directory (with --cluster: experiment name)")
    status.add_argument(
        "-o", "--output", choices=report.FORMATS, default="table", help="output format"
    )
    trials = sub.add_parser("trials", help="list an experiment's trials")
    trials.add_argument("dir", help="results directory (with --cluster: experiment name)")
    trials.add_argument("--best", action="store_true", help="best first")
    trials.add_argument(
        "-o", "--output", choices=report.TRIAL_FORMATS, default="table", help="output format"
    )
    from katib.controller.kube import cli as kube_cli

    kube_cli.add_arguments(sub, status, trials)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    handlers = {
        "run": cmd_run,
        "validate": cmd_validate,
        "status": cmd_status,
        "trials": cmd_trials,
        "submit": cmd_submit,
    }
    try:
        return handlers[args.command](args, console)
    except (OSError, sqlite3.OperationalError) as exc:
        console.print(f"katib {args.command}: {describe_filesystem_error(exc)}", style="red")
        return EXIT_FILESYSTEM


def describe_filesystem_error(exc: OSError | sqlite3.OperationalError) -> str:
    """One line for a filesystem failure: what the OS said, and about which path."""
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        paths = [p for p in (exc.filename, exc.filename2) if p is not None]
        where = " -> ".join(str(p) for p in paths)
        return f"{reason}: {where}" if where else reason
    return f"results database: {exc}"


if __name__ == "__main__":
    sys.exit(main())
