"""``katib-controller``: flag errors (exit 2), an unreachable or unprepared cluster (exit 1), and
whole runs against the fake API server with a stand-in operator: health and readiness, SIGTERM
stops the operator and releases the Lease, a standby takes over, a lost Lease exits 1."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from katib.controller.kube.api import KubeApi
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.main import Controller, build_parser, main
from katib.controller.kube.resources import CONFIGMAPS, EXPERIMENTS, LEASES
from tests.kube.standin import StandInOperator

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def write_kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: fake, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: tester, user: {token: secret}}]\n"
        "contexts: [{name: fake, context: {cluster: fake, user: tester}}]\n"
        "current-context: fake\n"
    )
    return path


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        fake.register(EXPERIMENTS)
        yield fake


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class ControllerProcess:
    """``katib-controller`` (with the stand-in operator) as a child process."""

    def __init__(self, kubeconfig: Path, identity: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.kube.standin",
                "--kubeconfig",
                str(kubeconfig),
                "--identity",
                identity,
                "--health-port",
                "0",
                "--health-host",
                "127.0.0.1",
                "--lease-namespace",
                "default",
                "--lease-duration",
                "10",
                "--renew-deadline",
                "5",
                "--retry-period",
                "0.2",
                *extra,
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self.port = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: self.port > 0 or self.proc.poll() is not None)
        assert self.port > 0, "".join(self.lines)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = re.search(r"health on port (\d+)", line)
            if match:
                self.port = int(match.group(1))

    def terminate(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def state(server: FakeApiServer, identity: str) -> str | None:
    obj = server.get(CONFIGMAPS, "default", f"standin-{identity}")
    return None if obj is None else str(obj["data"]["state"])


def holder(server: FakeApiServer) -> str | None:
    lease = server.get(LEASES, "default", "katib-controller")
    return None if lease is None else str(lease["spec"].get("holderIdentity"))


# -- flags and start-up failures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--workers", "0"], "--workers"),
        (["--workers", "many"], "--workers"),
        (["--health-port", "70000"], "--health-port"),
        (["--algorithm-address", "tpe"], "--algorithm-address"),
        (["--algorithm-address", "=host:1"], "--algorithm-address"),
        (["--namespace", "Not_A_Namespace"], "--namespace"),
        (["--suggestion-address", ""], "--suggestion-address"),
        (["--lease-duration", "-1"], "--lease-duration"),
        (["--lease-duration", "5", "--renew-deadline", "6"], "--renew-deadline"),
        (["--frobnicate"], "--frobnicate"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("katib-controller: error:")
    assert err.count("\n") == 1
    assert needle in err


def test_unreachable_cluster_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}")
    assert main(["--kubeconfig", str(config), "--startup-timeout", "0.3"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the API server" in err and str(port) in err


def test_missing_kubeconfig_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kubeconfig", str(tmp_path / "nope")]) == 1
    assert "kubeconfig" in capsys.readouterr().err


def test_missing_crds_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeApiServer() as bare:  # no experiments.kubeflow.org
        config = write_kubeconfig(tmp_path / "config", bare.url)
        assert main(["--kubeconfig", str(config), "--startup-timeout", "2"]) == 1
    assert "install Katib's CRDs" in capsys.readouterr().err


# -- whole runs --------------------------------------------------------------------------------


def test_sigterm_stops_the_operator_then_releases_and_a_standby_takes_over(
    server: FakeApiServer, tmp_path: Path
) -> None:
    config = write_kubeconfig(tmp_path / "config", server.url)
    one = ControllerProcess(config, "one")
    two = None
    try:
        wait_for(lambda: http_status(one.port, "/readyz") == 200)  # standby or leader
        wait_for(lambda: state(server, "one") == "running")  # it leads (no one else runs)
        assert holder(server) == "one"
        assert http_status(one.port, "/readyz") == 200 and http_status(one.port, "/healthz") == 200
        two = ControllerProcess(config, "two")
        wait_for(lambda: http_status(two.port, "/readyz") == 200)  # a ready standby
        assert state(server, "two") is None  # it does not act
        assert one.terminate() == 0
        assert state(server, "one") == "stopped"  # the operator stopped before exit
        wait_for(lambda: state(server, "two") == "running", timeout=8)  # released: no 10 s wait
        assert holder(server) == "two"
        assert two.terminate(signal.SIGINT) == 0
        assert state(server, "two") == "stopped"
        assert holder(server) == ""
    finally:
        one.kill()
        if two is not None:
            two.kill()


def test_without_leader_election_the_operator_runs_at_once(
    server: FakeApiServer, tmp_path: Path
) -> None:
    config = write_kubeconfig(tmp_path / "config", server.url)
    solo = ControllerProcess(config, "solo", "--no-leader-elect")
    try:
        wait_for(lambda: http_status(solo.port, "/readyz") == 200)
        assert state(server, "solo") == "running"
        assert solo.terminate() == 0
        assert state(server, "solo") == "stopped"
        assert holder(server) is None  # no Lease at all
    finally:
        solo.kill()


def controller(server: FakeApiServer, *argv: str) -> tuple[Controller, StandInOperator]:
    args = build_parser().parse_args(
        [
            "--health-port",
            "0",
            "--health-host",
            "127.0.0.1",
            "--lease-namespace",
            "default",
            "--lease-duration",
            "10",
            "--renew-deadline",
            "5",  # a leader beside CPU burners can miss renewals for 1.5 s: keep a margin
            "--retry-period",
            "0.1",
            *argv,
        ]
    )
    api = KubeApi(server.api_client())
    operator = StandInOperator(api, args)
    return Controller(api, operator, args), operator


def run_in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(target()))
    thread.start()
    return thread, result


def test_losing_the_lease_stops_the_operator_and_exits_1(server: FakeApiServer) -> None:
    ctl, operator = controller(server, "--identity", "loser")
    thread, result = run_in_thread(ctl.run)
    try:
        wait_for(operator.has_synced)
        assert ctl.elector is not None
        ctl.elector.try_acquire_or_renew = lambda: False  # type: ignore[method-assign]
        thread.join(30)
    finally:
        ctl.stop.set()
        thread.join(30)
    assert result == [1]
    assert state(server, "loser") == "stopped"


def test_an_operator_crash_exits_1(server: FakeApiServer) -> None:
    ctl, operator = controller(server, "--identity", "crasher", "--no-leader-elect")

    def crash(stop: threading.Event) -> None:
        raise RuntimeError("operator bug")

    operator.run = crash  # type: ignore[method-assign]
    thread, result = run_in_thread(ctl.run)
    thread.join(30)
    assert not thread.is_alive()
    assert result == [1]
    assert not ctl.alive()


def test_flags_become_the_operator_config() -> None:
    pytest.importorskip("katib.controller.kube.config")  # the operator's (branch kop)
    from katib.controller.kube.main import operator_config

    args = build_parser().parse_args(
        [
            "--namespace",
            "kubeflow",
            "--algorithm-address",
            "tpe=tpe.svc:6789",
            "--algorithm-address",
            "cmaes=cma.svc:6789",
            "--db-manager-address",
            "db.svc:6789",
            "--workers",
            "8",
        ]
    )
    config = operator_config(args)
    assert config.namespace == "kubeflow"
    assert dict(config.algorithm_addresses) == {"tpe": "tpe.svc:6789", "cmaes": "cma.svc:6789"}
    assert config.db_address == "db.svc:6789"
    assert config.workers == 8
    defaults = operator_config(build_parser().parse_args([]))
    assert defaults.namespace is None
    assert defaults.suggestion_address == "katib-suggestion.katib-system:6789"


def test_a_standby_stops_cleanly_without_ever_acting(server: FakeApiServer) -> None:
    leader, leader_operator = controller(server, "--identity", "leader")
    standby, standby_operator = controller(server, "--identity", "standby")
    leader_thread, leader_result = run_in_thread(leader.run)
    try:
        wait_for(leader_operator.has_synced)
        standby_thread, standby_result = run_in_thread(standby.run)
        assert standby.elector is not None
        wait_for(standby.elector.in_contact)
        from katib.controller.kube.main import readiness

        assert readiness(standby_operator, standby.elector)  # a ready standby
        standby.stop.set()
        standby_thread.join(30)
        assert standby_result == [0]
        assert state(server, "standby") is None
        assert holder(server) == "leader"
    finally:
        leader.stop.set()
        leader_thread.join(30)
    assert leader_result == [0]
    assert holder(server) == ""
