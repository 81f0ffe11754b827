"""Run gRPC services: shared flags, health checking, port 0, message-size limits, clean SIGTERM.

Every console script (``katib-suggestion``, ``katib-db-manager``, ``katib-earlystopping``) adds
the common flags with :func:`add_server_arguments` (``--host``, ``--port``, ``--max-workers``,
``--log-level``, and ``--cache-mib`` for services that cache), builds a :class:`ServiceSpec`
list and calls :func:`serve`; tests use :func:`start` to get a running server in process. The
bound address is logged as ``listening on HOST:PORT`` once the server is SERVING.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from katib.api.cache import DEFAULT_MAX_BYTES, shared
from katib.api.signals import Interrupts

logger = logging.getLogger(__name__)

#: Large enough for a GetSuggestions request carrying 10 000+ trials (Katib uses 2^31 - 1).
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class ServiceSpec:
    """One servicer to host: how to register it and the health names it answers to.

    ``probe``, when given, raises when the service cannot do its work (the DB manager pings its
    database, as Katib's runs ``SELECT 1`` per check). It runs in the background every
    :data:`PROBE_INTERVAL_S` seconds; while it fails or hangs past :data:`PROBE_TIMEOUT_S`, the
    service's health names answer NOT_SERVING (``Check`` and ``Watch`` alike), so a readiness
    probe takes the pod out of rotation, and a hung database never ties up request threads.
    """

    register: Callable[[Any, grpc.Server], None]
    servicer: Any
    health_names: tuple[str, ...]
    probe: Callable[[], None] | None = None


PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 5.0


class _Prober:
    """Publishes the result of one service's probe as the health of its names.

    The probe always runs on the same worker thread (a store keeps one connection per thread),
    never twice at once; the loop waits at most :data:`PROBE_TIMEOUT_S` for an answer.
    """

    def __init__(
        self,
        health_servicer: health.HealthServicer,
        names: Sequence[str],
        probe: Callable[[], None],
    ) -> None:
        self._health, self._names, self._probe = health_servicer, tuple(names), probe
        self._stopped = threading.Event()
        self._asked, self._answered = threading.Event(), threading.Event()
        self._error: Exception | None = None
        self._threads = [
            threading.Thread(target=self._loop, name="health-probe", daemon=True),
            threading.Thread(target=self._work, name="health-probe-call", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._asked.set()  # wakes an idle worker
        self._threads[0].join(timeout=PROBE_TIMEOUT_S + 1)

    def _work(self) -> None:
        while True:
            self._asked.wait()
            self._asked.clear()
            if self._stopped.is_set():
                return
            try:
                self._probe()
                self._error = None
            except Exception as exc:  # any failure means "cannot serve"; the reason is logged
                self._error = exc
            self._answered.set()

    def _loop(self) -> None:
        healthy, busy = True, False
        while not self._stopped.is_set():
            if not busy:  # a hung probe is waited for, never doubled
                self._answered.clear()
                self._asked.set()
            busy = not self._answered.wait(PROBE_TIMEOUT_S)
            if self._stopped.is_set():
                return
            error = TimeoutError(f"no answer in {PROBE_TIMEOUT_S:g} s") if busy else self._error
            if (error is None) != healthy:
                healthy = error is None
                if healthy:
                    logger.info("%s: health probe passes again", self._names[-1])
                else:
                    logger.warning("%s: health probe failed: %s", self._names[-1], error)
                for name in self._names:
                    self._health.set(name, _SERVING if healthy else _NOT_SERVING)
            self._stopped.wait(PROBE_INTERVAL_S)


_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class RunningServer:
    """A started server with its bound port and health servicer."""

    server: grpc.Server
    port: int
    host: str
    health: health.HealthServicer
    probers: Sequence[_Prober] = ()

    @property
    def address(self) -> str:
        """``host:port`` a client can dial."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "[::]", "::") else self.host
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = 5.0) -> None:
        """Mark every service NOT_SERVING, then stop, letting in-flight calls finish."""
        for prober in self.probers:
            prober.stop()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start(
    services: Sequence[ServiceSpec], host: str = "127.0.0.1", port: int = 0, max_workers: int = 16
) -> RunningServer:
    """Start a server hosting ``services``; ``port=0`` binds a free port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=GRPC_OPTIONS,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for spec in services:
        spec.register(spec.servicer, server)
    try:
        bound = server.add_insecure_port(f"{_bracket(host)}:{port}")
    except RuntimeError as exc:  # grpc raises on a failed bind; older versions return 0
        bound = 0
        reason = str(exc)
    else:
        reason = "address unavailable"
    if bound == 0:
        server.stop(None)
        raise OSError(f"cannot listen on {host}:{port}: {reason}")
    server.start()
    health_servicer.set("", _SERVING)
    for spec in services:
        for name in spec.health_names:
            health_servicer.set(name, _SERVING)
    probers = [
        _Prober(health_servicer, spec.health_names, spec.probe) for spec in services if spec.probe
    ]
    for prober in probers:
        prober.start()
    running = RunningServer(
        server=server, port=bound, host=host, health=health_servicer, probers=probers
    )
    logger.info("listening on %s", running.address)
    return running


def run(services: Sequence[ServiceSpec], host: str, port: int, max_workers: int = 16) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully. Returns the process exit code.

    Call from the main thread. The signals are handled from before the server listens, so a
    SIGTERM sent once ``listening on`` is logged always stops it cleanly, whichever of the
    process's threads the kernel hands it to (see :mod:`katib.api.signals`).
    """
    with Interrupts() as interrupts:
        try:
            running = start(services, host=host, port=port, max_workers=max_workers)
        except OSError as exc:
            logger.error("%s", exc)
            return 1
        signum = interrupts.wait()
        logger.info("received %s, stopping", signal.Signals(signum or signal.SIGTERM).name)
        running.stop()
        for spec in services:
            close = getattr(spec.servicer, "close", None)
            if callable(close):  # outgoing channels (the early-stopping service's to the DB)
                close()
    logger.info("stopped")
    return 0


def wait_serving(
    health_stub: health_pb2_grpc.HealthStub, service: str, timeout: float, what: str
) -> None:
    """Block until ``service``'s health check answers SERVING; ``TimeoutError`` otherwise.

    The client side of the health service above, used by every client's ``wait_ready``;
    ``what`` names the server in the error, with the last status or error seen.
    """
    deadline = time.monotonic() + timeout
    request = health_pb2.HealthCheckRequest(service=service)
    last = "no answer"
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            reply = health_stub.Check(request, timeout=min(remaining, 5.0), wait_for_ready=True)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as exc:
            last = f"{exc.code().name}: {exc.details()}"
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    raise TimeoutError(f"{what} not ready after {timeout:g} s: {last}")


def add_server_arguments(
    parser: argparse.ArgumentParser, default_port: int = 6789, cache: bool = False
) -> None:
    """Add the flags every service takes; ``cache`` adds ``--cache-mib``."""
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument(
        "--port",
        type=int,
        default=default_port,
        help=f"port (default {default_port}); 0 picks one",
    )
    parser.add_argument(
        "--max-workers", "--workers", type=int, default=16, help="request threads (default 16)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    if cache:
        parser.add_argument(
            "--cache-mib",
            type=float,
            default=DEFAULT_MAX_BYTES / 2**20,
            help="bound of the per-experiment caches (decoded trials, replayed algorithm state) "
            f"in MiB; 0 disables them (default {DEFAULT_MAX_BYTES >> 20})",
        )


def configure_logging(level: str) -> None:
    """The services' log format, at ``level``."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(services: Sequence[ServiceSpec], args: argparse.Namespace) -> int:
    """:func:`run` with the flags of :func:`add_server_arguments` (sizing the shared cache)."""
    cache_mib = getattr(args, "cache_mib", None)
    if cache_mib is not None:
        if cache_mib < 0:
            logger.error("--cache-mib must be >= 0, got %g", cache_mib)
            return 2
        shared().resize(int(cache_mib * 2**20))
    return run(services, host=args.host, port=args.port, max_workers=args.max_workers)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
