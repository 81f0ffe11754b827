"""``katib-controller`` as users run it (the console script, the real operator) against the fake
cluster with real suggestion and DB services: an Experiment runs to the end, /readyz follows the
informers, SIGTERM exits 0 and leaves the Lease free."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.resources import EXPERIMENTS, LEASES, TRIALS
from tests.kube.cluster import NAMESPACE, api_for, completed, experiment, fake_cluster, wait_for


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def holder(server: FakeApiServer) -> str | None:
    lease = server.get(LEASES, "default", "katib-controller")
    return None if lease is None else str(lease["spec"].get("holderIdentity"))


def test_katib_controller_runs_an_experiment_and_stops_on_sigterm(
    services: tuple[str, str], workdir: Path, tmp_path: Path
) -> None:
    suggestion, db = services
    with fake_cluster(workdir) as server:
        config = tmp_path / "kubeconfig"
        config.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: '{server.url}'}}}}]\n"
            "users: [{name: tester, user: {token: secret}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: tester}}]\n"
            "current-context: fake\n"
        )
        script = Path(sys.executable).parent / "katib-controller"
        proc = subprocess.Popen(
            [
                str(script),
                "--kubeconfig",
                str(config),
                "--namespace",
                NAMESPACE,
                "--suggestion-address",
                suggestion,
                "--db-manager-address",
                db,
                "--workers",
                "2",
                "--health-port",
                "0",
                "--health-host",
                "127.0.0.1",
                "--lease-namespace",
                "default",
                "--identity",
                "e2e",
                "--lease-duration",
                "10",
                "--renew-deadline",
                "5",
                "--retry-period",
                "0.5",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines: list[str] = []
        port: list[int] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if match := re.search(r"health on port (\d+)", line):
                    port.append(int(match.group(1)))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_for(lambda: port or proc.poll() is not None, "the health port", 60)
            assert port, "".join(lines)
            wait_for(lambda: http_status(port[0], "/readyz") == 200, "readiness", 60)
            assert http_status(port[0], "/healthz") == 200
            wait_for(lambda: holder(server) == "e2e", "leadership", 60)
            wait_for(lambda: http_status(port[0], "/readyz") == 200, "synced informers", 60)
            api_for(server).create(EXPERIMENTS, NAMESPACE, experiment("via-cli", max_trials=3))
            exp = wait_for(lambda: completed(server, "via-cli"), "the experiment to end")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, "".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        reader.join(10)
        trials = server.objects(TRIALS, NAMESPACE)
        lease = server.get(LEASES, "default", "katib-controller")
    assert exp["status"]["trialsSucceeded"] == 3, exp["status"]
    assert len(trials) == 3
    assert lease is not None and lease["spec"]["holderIdentity"] == ""
