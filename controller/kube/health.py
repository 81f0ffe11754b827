"""The controller's liveness and readiness endpoints (port 8081 in the manifests).

``GET /healthz`` answers 200 ``ok`` while ``alive()`` is true (the controller's main loop is
ticking and no component thread has died), else 500; Kubernetes restarts the pod after a few
failures. ``GET /readyz`` answers 200 while ``ready()`` is true, else 503. What "ready" means is
decided by ``katib-controller`` (see :func:`katib.controller.kube.main.readiness`): the
leader is ready once its informers have listed everything; a standby is ready while it is in
contact with the API server and able to take over. Any other path is 404.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class HealthServer:
    """``/healthz`` and ``/readyz`` over HTTP; ``port=0`` picks a free port (see ``.port``)."""

    def __init__(
        self,
        *,
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "0.0.0.0",
        port: int = 8081,
    ) -> None:
        checks = {"/healthz": (alive, 500), "/readyz": (ready, 503)}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health: " + format, *args)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                check = checks.get(path)
                if check is None:
                    self._answer(404, b"not found\n")
                    return
                probe, failure = check
                try:
                    healthy = bool(probe())
                except Exception:
                    log.exception("health: %s check raised", path)
                    healthy = False
                self._answer(200 if healthy else failure, b"ok\n" if healthy else b"not ok\n")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.2,), daemon=True, name="health"
        )

    def start(self) -> HealthServer:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
