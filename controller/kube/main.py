"""``katib-controller``: the Katib operator as a process, in a cluster or against a kubeconfig.

It checks that the API server answers and Katib's CRDs are installed (exit 1 otherwise; exit 2
for bad flags), serves ``/healthz`` and ``/readyz``, and runs the operator. With leader
election (the default) it first campaigns for the Lease ``--lease-namespace/--lease-name``
and runs the operator only while it leads; standbys wait. SIGTERM or SIGINT stops the
operator, then releases the Lease so a standby takes over at once, and exits 0. Losing the
Lease stops the operator and exits 1 (the pod restarts and becomes a standby).

Readiness (``/readyz``): without leader election, ready once the operator's informers have
listed everything. With it, the leader is ready on the same condition, and a standby is ready
while it can read the Lease (it is healthy and able to take over); so a rolling update of the
two-replica Deployment proceeds, and a replica cut off from the API server is not ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from katib.controller.kube.api import (
    ApiError,
    KubeApi,
    KubeConfigError,
    NotFound,
    RetryPolicy,
    Unreachable,
)
from katib.controller.kube.health import HealthServer
from katib.controller.kube.leader import LeaderElector
from katib.controller.kube.resources import EXPERIMENTS

log = logging.getLogger(__name__)

PROG = "katib-controller"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class OperatorLike(Protocol):
    """What ``katib-controller`` runs: :class:`katib.controller.kube.operator.Operator`."""

    def run(self, stop: threading.Event) -> None: ...

    def has_synced(self) -> bool: ...


OperatorFactory = Callable[[KubeApi, argparse.Namespace], OperatorLike]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _checked(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise argparse.ArgumentTypeError(f"{value!r} is not a valid {what}")
        return value

    return check


def _address(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an address (host:port)")
    return value


def _algorithm_address(value: str) -> tuple[str, str]:
    name, sep, address = value.partition("=")
    if not sep or not name.strip() or not address.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=HOST:PORT")
    return name.strip(), _address(address.strip())


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{number} is not in [{low}, {high}]")
        return number

    return check


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{number} is not positive")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``katib-controller``."""
    parser = _Parser(
        prog=PROG,
        description="Run the Katib operator (Experiments, Trials, "
        "Suggestions) against a Kubernetes cluster.",
    )
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: in-cluster service "
        "account, else $KUBECONFIG or ~/.kube/config)",
    )
    cluster.add_argument(
        "--context", metavar="NAME", help="kubeconfig context (default: the current one)"
    )
    cluster.add_argument(
        "--namespace",
        metavar="NAMESPACE",
        type=_checked(_DNS_LABEL, "namespace"),
        help="watch only this namespace (default: all namespaces)",
    )
    services = parser.add_argument_group("services")
    services.add_argument(
        "--suggestion-address",
        metavar="ADDR",
        type=_address,
        help="suggestion service (default: katib-suggestion.katib-system:6789)",
    )
    services.add_argument(
        "--algorithm-address",
        type=_algorithm_address,
        action="append",
        default=[],
        metavar="NAME=ADDR",
        help="a separate suggestion service for one algorithm (repeatable)",
    )
    services.add_argument(
        "--earlystopping-address",
        metavar="ADDR",
        type=_address,
        help="early-stopping service (default: katib-earlystopping.katib-system:6788)",
    )
    services.add_argument(
        "--db-manager-address",
        metavar="ADDR",
        type=_address,
        help="DB manager service (default: katib-db-manager.katib-system:6789)",
    )
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument(
        "--workers",
        metavar="N",
        type=_int_in(1, 256),
        default=4,
        help="reconcile workers (default: 4)",
    )
    runtime.add_argument(
        "--health-port",
        metavar="PORT",
        type=_int_in(0, 65535),
        default=8081,
        help="port of /healthz and /readyz (default: 8081; 0: any free port)",
    )
    runtime.add_argument(
        "--health-host", metavar="HOST", default="0.0.0.0", help="address to serve health on"
    )
    runtime.add_argument(
        "--startup-timeout",
        metavar="SECONDS",
        type=_positive,
        default=30.0,
        help="seconds to wait for the API server at start (default: 30)",
    )
    runtime.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    election = parser.add_argument_group("leader election")
    election.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the operator only while holding the Lease (default: on)",
    )
    election.add_argument(
        "--lease-name",
        metavar="NAME",
        default="katib-controller",
        type=_checked(_DNS_SUBDOMAIN, "lease name"),
    )
    election.add_argument(
        "--lease-namespace",
        metavar="NAMESPACE",
        type=_checked(_DNS_LABEL, "namespace"),
        help="default: $POD_NAMESPACE, the service account's namespace, "
        "--namespace, else 'default'",
    )
    election.add_argument(
        "--identity",
        metavar="NAME",
        help="this replica's name in the Lease (default: HOSTNAME_PID)",
    )
    election.add_argument(
        "--lease-duration",
        metavar="SECONDS",
        type=_positive,
        default=15.0,
        help="seconds a standby waits after the last renewal (default: 15)",
    )
    election.add_argument(
        "--renew-deadline",
        metavar="SECONDS",
        type=_positive,
        default=10.0,
        help="seconds the leader keeps acting without renewing (default: 10)",
    )
    election.add_argument(
        "--retry-period",
        metavar="SECONDS",
        type=_positive,
        default=2.0,
        help="seconds between Lease attempts (default: 2)",
    )
    return parser


def lease_namespace(args: argparse.Namespace) -> str:
    """``--lease-namespace``, else ``$POD_NAMESPACE``, the service account's, ``--namespace``,
    else ``default``."""
    if args.lease_namespace:
        return str(args.lease_namespace)
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            if namespace := handle.read().strip():
                return namespace
    except OSError:
        pass
    return str(args.namespace or "default")


def operator_config(args: argparse.Namespace) -> Any:
    """The :class:`~katib.controller.kube.config.OperatorConfig` for the flags (the flags
    left out keep the config's defaults)."""
    from katib.controller.kube.config import OperatorConfig

    given = {
        "suggestion_address": args.suggestion_address,
        "earlystopping_address": args.earlystopping_address,
        "db_address": args.db_manager_address,
    }
    return OperatorConfig(
        namespace=args.namespace,
        algorithm_addresses=dict(args.algorithm_address),
        workers=args.workers,
        **{key: value for key, value in given.items() if value is not None},
    )


def default_operator(api: KubeApi, args: argparse.Namespace) -> OperatorLike:
    """The real operator (imported here, so this module loads without it)."""
    from katib.controller.kube.operator import Operator

    operator: OperatorLike = Operator(api, operator_config(args))
    return operator


def readiness(operator: OperatorLike, elector: LeaderElector | None) -> bool:
    """``/readyz``: see the module docstring."""
    if elector is None or elector.is_leader():
        return operator.has_synced()
    return elector.in_contact()


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def check_cluster(api: KubeApi, namespace: str | None, timeout: float) -> str | None:
    """``None`` if the API server answers and serves Experiments, else why not."""
    probe = api.with_options(
        retry=RetryPolicy(base=0.2, cap=2.0, deadline=timeout), request_timeout=min(timeout, 10.0)
    )
    host = api.api_client.configuration.host
    try:
        probe.list(EXPERIMENTS, namespace)
    except NotFound:
        return (
            f"{host} does not serve experiments.kubeflow.org/v1beta1: install Katib's CRDs "
            "(kubectl apply -k manifests/)"
        )
    except Unreachable as exc:
        return f"cannot reach the API server at {host}: {exc.message}"
    except ApiError as exc:
        return f"the API server at {host} refused to list experiments: {exc}"
    return None


def main(
    argv: Sequence[str] | None = None, *, operator_factory: OperatorFactory | None = None
) -> int:
    """Run the controller until SIGTERM/SIGINT; the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.leader_elect and not 0 < args.retry_period < args.renew_deadline < args.lease_duration:
        return _fail("--retry-period < --renew-deadline < --lease-duration must hold", 2)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        api = KubeApi.from_config(args.kubeconfig, args.context)
    except KubeConfigError as exc:
        return _fail(str(exc), 1)
    try:
        problem = check_cluster(api, args.namespace, args.startup_timeout)
        if problem is not None:
            return _fail(problem, 1)
        try:
            operator = (operator_factory or default_operator)(api, args)
        except ValueError as exc:
            return _fail(str(exc), 2)
        return Controller(api, operator, args).run()
    finally:
        api.close()


class Controller:
    """The process: health server, optional leader election, the operator thread, signals."""

    def __init__(self, api: KubeApi, operator: OperatorLike, args: argparse.Namespace) -> None:
        self.operator = operator
        self.args = args
        self.stop = threading.Event()  # the process is shutting down
        self.operator_stop = threading.Event()  # the operator must stop acting
        self.operator_thread: threading.Thread | None = None
        self.operator_failed = False
        self.elector: LeaderElector | None = None
        if args.leader_elect:
            self.elector = LeaderElector(
                api,
                name=args.lease_name,
                namespace=lease_namespace(args),
                identity=args.identity or f"{socket.gethostname()}_{os.getpid()}",
                lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline,
                retry_period=args.retry_period,
            )
        self._tick = time.monotonic()

    def alive(self) -> bool:
        """``/healthz``: the main loop ticks and the operator thread has not died."""
        if time.monotonic() - self._tick > 10.0:
            return False
        return not self.operator_failed

    def run(self) -> int:
        """Serve health, run the operator (when leading), wait for a signal; the exit code."""
        try:
            health = HealthServer(
                alive=self.alive,
                ready=lambda: readiness(self.operator, self.elector),
                host=self.args.health_host,
                port=self.args.health_port,
            )
        except OSError as exc:
            return _fail(f"--health-port {self.args.health_port}: {exc.strerror or exc}", 1)
        health.start()
        log.info("health on port %d", health.port)
        self._install_signals()
        elector_thread = None
        lost = threading.Event()
        if self.elector is not None:
            elector = self.elector

            def campaign() -> None:
                if not elector.run(self.stop, self._start_operator, self._stop_operator):
                    lost.set()
                    self.stop.set()

            elector_thread = threading.Thread(target=campaign, name="leader-election")
            elector_thread.start()
        else:
            self._start_operator()
        try:
            while not self.stop.wait(0.5):
                self._tick = time.monotonic()
                if self.operator_failed:
                    break
        finally:
            self.stop.set()
            self._stop_operator()
            if elector_thread is not None:
                elector_thread.join(self.args.lease_duration)  # releases the Lease
            health.stop()
        if lost.is_set():
            return _fail("lost the leader Lease; exiting so a standby takes over", 1)
        if self.operator_failed:
            return _fail("the operator stopped unexpectedly (see the log)", 1)
        log.info("stopped")
        return 0

    def _start_operator(self) -> None:
        self.operator_stop.clear()
        thread = threading.Thread(target=self._run_operator, name="operator")
        self.operator_thread = thread
        thread.start()

    def _run_operator(self) -> None:
        try:
            self.operator.run(self.operator_stop)
        except Exception:
            log.exception("the operator failed")
            self.operator_failed = True
            self.stop.set()
            return
        if not self.operator_stop.is_set():
            log.error("the operator returned without being asked to stop")
            self.operator_failed = True
            self.stop.set()

    def _stop_operator(self) -> None:
        self.operator_stop.set()
        thread = self.operator_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(1.0, self.args.lease_duration))
            if thread.is_alive():
                log.warning("the operator did not stop within %.0fs", self.args.lease_duration)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # tests drive self.stop directly

        def handle(signum: int, frame: Any) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


if __name__ == "__main__":
    sys.exit(main())
