"""The local backend without the runner: metrics path re-rooting, tailing a metrics file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from katib.controller import local
from katib.controller.collector import Collector
from katib.controller.local import LocalBackend, path_rewriter
from katib.controller.trials import LogEntry, TrialRecord
from katib.controller.validation import load_experiment
from tests.controller.experiments import container, experiment


class Recorder:
    """An observation log that records the values reported to it."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def report(self, trial_name: str, entries: list[LogEntry]) -> None:
        self.seen.extend(e.value for e in entries)

    def entries(self, trial_name: str) -> list[LogEntry]:
        return []

    def delete(self, trial_name: str) -> None:
        pass

    def may_hold_pushes(self, trial_name: str) -> bool:
        return False


REWRITE = path_rewriter({"/katib/mnist.log": "/r/t1/katib/mnist.log", "/katib": "/r/t1/katib"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/katib/mnist.log", "/r/t1/katib/mnist.log"),
        ("--log=/katib/mnist.log", "--log=/r/t1/katib/mnist.log"),
        ("python t.py > /katib/mnist.log 2>&1", "python t.py > /r/t1/katib/mnist.log 2>&1"),
        ("mkdir -p /katib && x", "mkdir -p /r/t1/katib && x"),
        ("--dir=/katib/", "--dir=/r/t1/katib/"),
        ("'/katib/mnist.log'", "'/r/t1/katib/mnist.log'"),
        ("a:/katib/mnist.log,b", "a:/r/t1/katib/mnist.log,b"),
        # other paths that merely contain the directory or the file name stay as they are
        ("/tmp/x/proj/katib/fw.py", "/tmp/x/proj/katib/fw.py"),
        ("/katib/fw.py", "/katib/fw.py"),
        ("/katib/mnist.log.bak", "/katib/mnist.log.bak"),
        ("/katibx", "/katibx"),
        ("/data/katib/mnist.log", "/data/katib/mnist.log"),
    ],
)
def test_path_rewriter_rewrites_whole_tokens_only(text: str, expected: str) -> None:
    assert REWRITE(text) == expected


def test_tmp_metrics_file_does_not_rewrite_other_tmp_paths() -> None:
    rewrite = path_rewriter({"/tmp/metrics.log": "/r/tmp/metrics.log", "/tmp": "/r/tmp"})
    assert rewrite("/tmp/x/train.py") == "/tmp/x/train.py"
    assert rewrite("/tmp/metrics.log") == "/r/tmp/metrics.log"


@pytest.mark.parametrize("how", ["shorter", "replace"])
def test_tail_starts_over_when_the_file_is_truncated_or_replaced(tmp_path: Path, how: str) -> None:
    doc = experiment("/unused.py", max_trials=1, parallel=1, maxFailedTrialCount=1)
    doc["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": "/katib/metrics.log", "kind": "File"}},
    }
    container(doc)["command"] = [sys.executable, "-c", "import time; time.sleep(30)"]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    seen: list[str] = []
    spec = load_experiment(doc, ["random"])
    backend = LocalBackend(spec, tmp_path, Collector(spec, Recorder(seen)))
    trial = TrialRecord(name="t0", index=0, assignments=(("x", "0.1"), ("y", "0.2")))
    backend.start(trial)
    try:
        path = tmp_path / "trials" / "t0" / "katib" / "metrics.log"
        path.write_text("loss=0.900000\n")
        backend.poll(0.01)
        if how == "replace":
            (path.parent / "new").write_text("loss=0.900001\n")
            os.replace(path.parent / "new", path)
        else:
            path.write_text("loss=0.5\n")
        backend.poll(0.01)
    finally:
        backend.close()
    assert seen[-1] == ("0.900001" if how == "replace" else "0.5")


def test_boot_ticks_around_a_spawn_bound_its_start_tick_and_identify_it() -> None:
    """The start tick is read from the clock around the spawn, not from /proc (which blocks
    while the child execs); it must agree with what the kernel reports, and kill_leftover must
    recognise the live process by it and leave an unrelated one alone."""
    for _ in range(20):
        earliest = local.boot_tick()
        child = subprocess.Popen(["sleep", "30"], start_new_session=True)
        latest = local.boot_tick()
        try:
            tick = local.process_start_tick(child.pid)
            assert earliest <= tick <= latest
            other = {"pid": child.pid, "start_tick": latest + 1, "start_tick_max": latest + 5}
            assert not local.kill_leftover(other)  # another process with a recycled pid
            assert child.poll() is None
            started = {"pid": child.pid, "start_tick": earliest, "start_tick_max": latest}
            assert local.kill_leftover(started)
            assert child.wait(timeout=10) == -signal.SIGKILL
        finally:
            child.kill()
            child.wait()
