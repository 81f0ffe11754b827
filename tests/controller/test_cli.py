"""The ``katib`` CLI as a user runs it, including resuming after the controller is SIGKILLed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from katib.controller.store import ResultsStore
from katib.controller.trials import TrialCondition, TrialRecord
from tests.controller.experiments import container, experiment, write_trial_script

KATIB = [sys.executable, "-m", "katib.controller.cli"]


def katib(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KATIB, *args], capture_output=True, text=True, timeout=timeout)


def write(tmp_path: Path, doc: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def read_trials(results: Path) -> list[TrialRecord]:
    with ResultsStore(results, create=False) as store:
        return store.trials()


def test_run_status_trials(tmp_path: Path) -> None:
    path = write(tmp_path, experiment(write_trial_script(tmp_path), max_trials=3, parallel=2))
    results = tmp_path / "results"
    done = katib("run", str(path), "--results", str(results))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Succeeded (ExperimentMaxTrialsReached)" in done.stdout
    assert "best trials" in done.stdout
    status = katib("status", str(results))
    assert status.returncode == 0
    assert "3 trials: 3 succeeded" in status.stdout
    listing = katib("trials", str(results))
    assert listing.stdout.count("Succeeded") == 3


def test_failed_experiment_exits_non_zero(tmp_path: Path) -> None:
    doc = experiment(write_trial_script(tmp_path), mode="fail", max_trials=2, parallel=1)
    done = katib("run", str(write(tmp_path, doc)), "--results", str(tmp_path / "r"), "--quiet")
    assert done.returncode == 1
    assert "Failed (ExperimentFailed)" in done.stdout


def test_validate_prints_every_problem(tmp_path: Path) -> None:
    doc = experiment("/t.py")
    doc["metadata"]["name"] = "Bad"
    doc["spec"]["parameters"][0]["feasibleSpace"]["step"] = "-1"
    done = katib("validate", str(write(tmp_path, doc)))
    assert done.returncode == 2
    assert "metadata.name" in done.stdout
    assert "spec.parameters[0].feasibleSpace.step" in done.stdout
    ok = katib("validate", str(write(tmp_path, experiment("/t.py"), "ok.yaml")))
    assert ok.returncode == 0 and "valid" in ok.stdout


def test_run_rejects_invalid_yaml_without_running(tmp_path: Path) -> None:
    doc = experiment("/t.py")
    doc["spec"]["parallelTrialCount"] = 0
    done = katib("run", str(write(tmp_path, doc)), "--results", str(tmp_path / "r"))
    assert done.returncode == 2
    assert "spec.parallelTrialCount" in done.stdout
    assert not (tmp_path / "r").exists()


def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path: Path) -> None:
    doc = experiment(write_trial_script(tmp_path), mode="slow", max_trials=6, parallel=2)
    container(doc)["env"] = [{"name": "TRIAL_SLEEP", "value": "0.4"}]
    path = write(tmp_path, doc)
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [*KATIB, "run", str(path), "--results", str(results), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    before: list[TrialRecord] = []
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not (results / "experiment.db").exists():
            continue
        before = read_trials(results)
        done = [t for t in before if t.condition is TrialCondition.SUCCEEDED]
        running = [t for t in before if t.condition is TrialCondition.RUNNING]
        if len(done) >= 2 and running:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_trials(results)  # what the killed controller recorded last
    finished = {t.name: t for t in before if t.condition.completed}
    interrupted = [t for t in before if not t.condition.completed]
    assert len(finished) >= 2 and interrupted

    again = katib("run", str(path), "--results", str(results), "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    after = read_trials(results)
    assert len(after) == 6
    assert all(t.condition is TrialCondition.SUCCEEDED for t in after)
    by_name = {t.name: t for t in after}
    for name, trial in finished.items():
        assert by_name[name] == trial  # untouched: same observation, times, attempts
    for trial in interrupted:  # re-run under the same name with the same assignments
        assert by_name[trial.name].assignments == trial.assignments
        assert by_name[trial.name].attempts == trial.attempts + 1
        if "pid" in trial.extra:
            assert not Path(f"/proc/{trial.extra['pid']}").exists() or _is_zombie(
                trial.extra["pid"]
            )


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _alive_after(pids: list[int], seconds: float = 10.0) -> list[int]:
    """The ``pids`` still running once they all ended or ``seconds`` passed: a SIGKILLed
    process ends when the kernel next schedules it, which on a loaded machine takes a while."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def test_validate_malformed_shapes_exits_2_naming_the_fields(tmp_path: Path) -> None:
    doc = experiment("/t.py")
    doc["metadata"]["labels"] = ["team-a"]
    doc["spec"]["trialTemplate"]["primaryPodLabels"] = "role=master"
    done = katib("validate", str(write(tmp_path, doc)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "metadata.labels: must be a mapping" in done.stdout
    assert "spec.trialTemplate.primaryPodLabels: must be a mapping" in done.stdout
    assert "Traceback" not in done.stderr


def test_status_without_an_experiment_record_exits_2(tmp_path: Path) -> None:
    ResultsStore(tmp_path / "empty").close()  # experiment.db with no experiment row
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "experiment.db").write_text("not a database")
    for directory in ("empty", "junk"):
        for command in ("status", "trials"):
            done = katib(command, str(tmp_path / directory))
            assert done.returncode == 2, done.stdout + done.stderr
            assert "Traceback" not in done.stderr
            assert str(tmp_path / directory) in done.stdout.replace("\n", "")


def written_pairs(pids_dir: Path) -> list[list[int]]:
    """The (trial, child) pid pairs the trials have finished writing (a file is created
    before its content is written, so a half-written one is not counted yet)."""
    pairs = [f.read_text().split() for f in pids_dir.glob("*.pids")]
    return [[int(p) for p in pair] for pair in pairs if len(pair) == 2]


SPAWNER = """
import os, signal, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c",
     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
)
with open(os.path.join(sys.argv[1], os.environ["KATIB_TRIAL_NAME"] + ".pids"), "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_or_143_and_leaves_no_trial_process(tmp_path: Path, sig: int) -> None:
    spawner = tmp_path / "spawner.py"
    spawner.write_text(SPAWNER)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    doc = experiment(spawner, max_trials=4, parallel=2)
    container(doc)["command"] = [sys.executable, str(spawner), str(pids_dir)]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [*KATIB, "run", str(write(tmp_path, doc)), "--results", str(results), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(written_pairs(pids_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [pid for pair in written_pairs(pids_dir) for pid in pair]
    assert len(pids) == 4  # two trials, each with a child that ignores SIGTERM
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, output
    assert "interrupted" in output
    assert _alive_after(pids) == []
    trials = read_trials(results)
    assert [t.condition for t in trials] == [TrialCondition.CREATED] * 2  # re-run on resume


ONCE_SPAWNER = """
import os, subprocess, sys, time
pids_dir = sys.argv[1]
if not os.path.exists(os.path.join(pids_dir, "first-run")):
    print("loss=0.5")
    sys.exit(0)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(os.path.join(pids_dir, os.environ["KATIB_TRIAL_NAME"] + ".pids"), "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
time.sleep(60)
"""


@pytest.mark.parametrize("launcher", ["setpriv", "python"])
def test_trials_die_with_a_sigkilled_controller_and_leftovers_on_resume(
    tmp_path: Path, launcher: str
) -> None:
    """Either way of asking for the kernel's SIGTERM works: util-linux ``setpriv`` when it is
    on the PATH, the Python launcher when it is not (a PATH without /usr/bin hides it)."""
    env = dict(os.environ)
    if launcher == "python":
        env["PATH"] = str(Path(sys.executable).parent)
    elif shutil.which("setpriv") is None:
        pytest.skip("no setpriv on this machine")
    spawner = tmp_path / "spawner.py"
    spawner.write_text(ONCE_SPAWNER)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    (pids_dir / "first-run").touch()
    doc = experiment(spawner, max_trials=2, parallel=2)
    container(doc)["command"] = [sys.executable, str(spawner), str(pids_dir)]
    container(doc)["args"] = ["${trialParameters.x}", "${trialParameters.y}"]
    path, results = write(tmp_path, doc), tmp_path / "results"
    proc = subprocess.Popen(
        [*KATIB, "run", str(path), "--results", str(results), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while len(written_pairs(pids_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pairs = written_pairs(pids_dir)
    assert len(pairs) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def alive(pid: int) -> bool:
        return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)

    deadline = time.monotonic() + 10
    while any(alive(leader) for leader, _ in pairs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(leader) for leader, _ in pairs)  # SIGTERM from the kernel
    assert all(alive(child) for _, child in pairs)  # in the trial's group, not signalled yet
    (pids_dir / "first-run").unlink()
    again = katib("run", str(path), "--results", str(results), "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    assert _alive_after([child for _, child in pairs]) == []  # killed by the resume
