"""Run gRPC services: health checking, port 0, message-size limits and a clean SIGTERM.

Every console script (``katib-suggestion``, ``katib-db-manager``, ``katib-earlystopping``) builds a
:class:`ServiceSpec` list and calls :func:`run`; tests use :func:`start` to get a running server in
process. The bound address is logged as ``listening on HOST:PORT`` once the server is SERVING.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

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

    ``probe``, when given, runs on every health ``Check`` of those names and raises when the
    service cannot do its work (the DB manager pings its database, as Katib's runs ``SELECT
    1``): the answer is then NOT_SERVING, so a readiness probe takes the pod out of rotation.
    """

    register: Callable[[Any, grpc.Server], None]
    servicer: Any
    health_names: tuple[str, ...]
    probe: Callable[[], None] | None = None


_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _ProbingHealth(health.HealthServicer):
    """The standard health servicer, with a live probe behind some service names."""

    def __init__(self, probes: dict[str, Callable[[], None]]) -> None:
        super().__init__(experimental_non_blocking=True)
        self._probes = probes

    def Check(self, request: Any, context: Any) -> Any:
        reply = super().Check(request, context)
        probe = self._probes.get(request.service)
        if probe is None or reply.status != health_pb2.HealthCheckResponse.SERVING:
            return reply
        try:
            probe()
        except Exception as exc:  # any failure means "cannot serve", with the reason logged
            logger.warning("health check of %r failed: %s", request.service, exc)
            return health_pb2.HealthCheckResponse(
                status=health_pb2.HealthCheckResponse.NOT_SERVING
            )
        return reply


@dataclass
class RunningServer:
    """A started server with its bound port and health servicer."""

    server: grpc.Server
    port: int
    host: str
    health: health.HealthServicer

    @property
    def address(self) -> str:
        """``host:port`` a client can dial."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "[::]", "::") else self.host
        return f"{host}:{self.port}"

    def stop(self, grace: float | None = 5.0) -> None:
        """Mark every service NOT_SERVING, then stop, letting in-flight calls finish."""
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
    probes = {name: spec.probe for spec in services if spec.probe for name in spec.health_names}
    health_servicer = _ProbingHealth(probes)
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
    serving = health_pb2.HealthCheckResponse.SERVING
    health_servicer.set("", serving)
    for spec in services:
        for name in spec.health_names:
            health_servicer.set(name, serving)
    running = RunningServer(server=server, port=bound, host=host, health=health_servicer)
    logger.info("listening on %s", running.address)
    return running


def run(services: Sequence[ServiceSpec], host: str, port: int, max_workers: int = 16) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully. Returns the process exit code."""
    try:
        running = start(services, host=host, port=port, max_workers=max_workers)
    except OSError as exc:
        logger.error("%s", exc)
        return 1
    stopped = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stopped.wait()
    running.stop()
    logger.info("stopped")
    return 0


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
