"""The cluster commands of ``katib``: ``submit``, and ``status``/``trials`` with ``--cluster``.

Their options are added to the local CLI's parser here, and the ``kubernetes`` client is imported
only when a cluster command runs, so local commands start as fast as before.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any, Protocol

import yaml
from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CLUSTER = 0, 1, 2, 4


class Command(Protocol):
    """A ``katib`` subcommand handler."""

    def __call__(self, args: argparse.Namespace, console: Console) -> int: ...


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-n",
        "--namespace",
        help="namespace (default: the document's, else the kubeconfig context's, else 'default')",
    )


def add_arguments(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    status: argparse.ArgumentParser,
    trials: argparse.ArgumentParser,
) -> None:
    """``katib submit`` and the ``--cluster`` options of ``status`` and ``trials``."""
    submit = sub.add_parser("submit", help="send an Experiment to a Kubernetes cluster")
    submit.add_argument("file", help="Experiment YAML (kubeflow.org/v1beta1)")
    _cluster_options(submit)
    submit.add_argument(
        "--follow", action="store_true", help="show progress until it Succeeds or Fails"
    )
    submit.add_argument(
        "--poll-seconds", type=float, default=2.0, help="seconds between reads with --follow"
    )
    submit.add_argument("--quiet", action="store_true", help="with --follow: no live progress")
    for command in (status, trials):
        command.add_argument(
            "--cluster", action="store_true", help="read the experiment's CRs from a cluster"
        )
        _cluster_options(command)


def _api(args: argparse.Namespace) -> Any:
    from katib.controller.kube.api import KubeApi

    return KubeApi.from_config(args.kubeconfig, args.context)


def context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    """The namespace the kubeconfig context names (as kubectl uses it), if any."""
    import os

    import kubernetes.config

    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                return f.read().strip() or None
        except OSError:
            return None
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(kubeconfig)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError):
        return None  # from_config reports the kubeconfig's problem
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def _cluster_error(exc: Exception) -> bool:
    from katib.controller.kube.api import ApiError, KubeConfigError

    return isinstance(exc, ApiError | KubeConfigError)


def cluster_command(args: argparse.Namespace, console: Console, which: Command) -> int:
    """``katib status|trials NAME --cluster``: the same output as for a results directory."""
    from katib.api.errors import InvalidArgument
    from katib.controller import cli
    from katib.controller.kube import submit

    try:
        api = _api(args)
        namespace = (
            args.namespace
            or context_namespace(args.kubeconfig, args.context)
            or submit.DEFAULT_NAMESPACE
        )
        try:
            spec, status, trials = submit.read(api, namespace, args.dir)
        finally:
            api.close()
    except InvalidArgument as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        return EXIT_INVALID
    except Exception as exc:
        if not _cluster_error(exc):
            raise
        console.print(f"katib {args.command}: {exc}", style="red", highlight=False)
        return EXIT_CLUSTER
    if which is cli.cmd_status:
        return cli.print_status(args, console, spec, status, trials, None)
    code = cli.print_trials(args, console, spec, trials, None)
    if args.output == "table":
        for line in submit.failure_lines(trials):
            console.print(line, style="red", highlight=False, markup=False, soft_wrap=True)
    return code


def cmd_submit(args: argparse.Namespace, console: Console) -> int:
    """``katib submit FILE``: admit, create or update the CR, optionally follow it."""
    from katib.api.errors import InvalidArgument
    from katib.controller import cli
    from katib.controller.kube import submit
    from katib.controller.validation import load_experiment
    from katib.controller.view import ProgressView

    try:
        raw = yaml.safe_load(Path(args.file).read_text())
    except (OSError, yaml.YAMLError) as exc:
        console.print(f"[red]{args.file}: cannot read the experiment: {exc}[/red]")
        return EXIT_INVALID
    if not isinstance(raw, dict):
        console.print(f"[red]{args.file}: the document must be a Kubernetes object[/red]")
        return EXIT_INVALID
    try:
        api = _api(args)
    except Exception as exc:
        if not _cluster_error(exc):
            raise
        console.print(f"katib submit: {exc}", style="red", highlight=False)
        return EXIT_CLUSTER
    try:
        try:
            namespace = args.namespace or (
                None
                if (raw.get("metadata") or {}).get("namespace")
                else context_namespace(args.kubeconfig, args.context)
            )
            obj, created = submit.submit(api, raw, namespace)
        except InvalidArgument as exc:
            console.print(f"[red]{args.file}: {len(exc.problems)} problem(s)[/red]")
            for problem in exc.problems:
                console.print(f"  - {problem}", highlight=False, markup=False)
            return EXIT_INVALID
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        verb = "created" if created else "updated"
        console.print(f"experiment {namespace}/{name} {verb}", highlight=False)
        if not args.follow:
            return EXIT_OK
        spec = load_experiment(
            {k: v for k, v in obj.items() if k != "status"}, check_algorithm=False
        )
        view = ProgressView(spec, console, None) if not args.quiet else None
        with view if view is not None else contextlib.nullcontext():
            spec, decision, trials = submit.follow(
                api,
                namespace,
                name,
                view if view is not None else (lambda d, t: None),
                poll_seconds=args.poll_seconds,
            )
        cli._print_outcome(console, spec, decision, trials)
        for line in submit.failure_lines(trials):
            console.print(line, style="red", highlight=False, markup=False, soft_wrap=True)
        return EXIT_OK if decision.condition == "Succeeded" else EXIT_FAILED
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the experiment keeps running[/yellow]")
        return 130
    except Exception as exc:
        if not _cluster_error(exc):
            raise
        console.print(f"katib submit: {exc}", style="red", highlight=False)
        return EXIT_CLUSTER
    finally:
        api.close()
