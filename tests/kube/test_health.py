"""The health server: /healthz and /readyz follow their probes; anything else is 404."""

from __future__ import annotations

import urllib.error
import urllib.request

from katib.controller.kube.health import HealthServer


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_endpoints_follow_the_probes() -> None:
    state = {"alive": True, "ready": False}
    with HealthServer(
        alive=lambda: state["alive"], ready=lambda: state["ready"], host="127.0.0.1", port=0
    ) as server:
        assert server.port > 0
        assert status(server.port, "/healthz") == 200
        assert status(server.port, "/readyz") == 503
        state["ready"] = True
        assert status(server.port, "/readyz") == 200
        assert status(server.port, "/readyz?verbose") == 200
        state["alive"] = False
        assert status(server.port, "/healthz") == 500
        assert status(server.port, "/metrics") == 404


def test_a_raising_probe_reads_as_unhealthy() -> None:
    def broken() -> bool:
        raise RuntimeError("probe bug")

    with HealthServer(alive=broken, ready=broken, host="127.0.0.1", port=0) as server:
        assert status(server.port, "/healthz") == 500
        assert status(server.port, "/readyz") == 503
