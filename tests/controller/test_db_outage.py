"""``katib run --db-address`` rides out a DB manager that is stopped and restarted mid-run
(issue 13 item 9): the reports are retried, none is lost or stored twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from katib.db.client import DBClient
from katib.db.testing import free_port
from tests.controller.experiments import container, experiment
from tests.controller.test_cli import KATIB, read_trials, write
from tests.db.test_db_client_retry import _db_manager

#: Prints ``loss`` and ``step`` for 4 s, so reports keep flowing while the DB is away.
STEADY = textwrap.dedent(
    """
    import sys, time
    x = float(sys.argv[1])
    for step in range(20):
        print(f"step={step} loss={x + step}", flush=True)
        time.sleep(0.2)
    print(f"loss={x}", flush=True)
    """
)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_run_survives_a_db_manager_restart(tmp_path: Path, how: signal.Signals) -> None:
    script = tmp_path / "steady.py"
    script.write_text(STEADY)
    doc = experiment(script, max_trials=2, parallel=2)
    doc["spec"]["objective"]["additionalMetricNames"] = ["step"]
    container(doc)["command"] = [
        sys.executable,
        str(script),
        "${trialParameters.x}",
        "${trialParameters.y}",
    ]
    port, db_file = free_port(), tmp_path / "obs.db"
    address = f"127.0.0.1:{port}"
    server = _db_manager(db_file, port)
    results = tmp_path / "results"
    command = [*KATIB, "run", str(write(tmp_path, doc)), "--results", str(results), "--quiet"]
    run = subprocess.Popen(
        [*command, "--db-address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with DBClient(address, timeout=10) as db:
            db.wait_ready(timeout=60)
            deadline = time.monotonic() + 120
            while not any(db.get(t.name) for t in _trials(results)):  # reports are flowing
                assert time.monotonic() < deadline and run.poll() is None
                time.sleep(0.1)
        server.send_signal(how)
        server.wait(timeout=30)
        time.sleep(1.5)
        server = _db_manager(db_file, port)
        output, _ = run.communicate(timeout=240)
        assert run.returncode == 0, output
        assert "Succeeded" in output
        trials = read_trials(results)
        assert len(trials) == 2
        with DBClient(address, timeout=10) as db:
            for trial in trials:
                steps = [e.value for e in db.get(trial.name, metric_name="step")]
                assert steps == [str(i) for i in range(20)], (trial.name, steps)
                loss = trial.metric("loss")
                assert loss is not None and loss.latest == trial.assignment_dict()["x"]
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        server.kill()
        server.wait()


def _trials(results: Path) -> list:  # type: ignore[type-arg]
    try:
        return read_trials(results)
    except Exception:  # the results database may not exist yet
        return []
