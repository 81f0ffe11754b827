"""Filesystem failures print one line and exit 3, never a traceback, and damage nothing: once the
cause is gone, the same command resumes the experiment (issue 13 item 11).

Read-only and full filesystems are real where this process may mount a tmpfs (root); a full
disk is also simulated everywhere by failing ``os.write`` on trial logs with ENOSPC in the
controller's process, as the kernel would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controller.experiments import container, experiment
from tests.controller.test_cli import katib, write

EXIT_FILESYSTEM = 3
#: A trial with a lot to say: 40 000 lines (about 2.4 MB) ending in its metric.
CHATTY = textwrap.dedent(
    """
    import sys
    x = float(sys.argv[1])
    for i in range(40000):
        print(f"step {i} " + "x" * 50)
    print(f"loss={x}")
    """
)


def chatty_experiment(tmp_path: Path) -> Path:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    doc = experiment(script, max_trials=2, parallel=2)
    container(doc)["command"] = [
        sys.executable,
        str(script),
        "${trialParameters.x}",
        "${trialParameters.y}",
    ]
    return write(tmp_path, doc)


def assert_one_clean_line(done: subprocess.CompletedProcess[str], reason: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_FILESYSTEM, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("katib run:")]
    assert len(errors) == 1 and reason in errors[0], output


def assert_resumes(tmp_path: Path, path: Path, results: Path) -> None:
    done = katib("run", str(path), "--results", str(results), "--quiet", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 trials: 2 succeeded" in done.stdout


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the ENOSPC simulation covers the rest")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


def test_results_under_a_regular_file(tmp_path: Path) -> None:
    path = chatty_experiment(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("keep me")
    done = katib("run", str(path), "--results", str(blocker / "r"), "--quiet")
    assert_one_clean_line(done, "Not a directory")
    assert blocker.read_text() == "keep me"
    for command in ("status", "trials"):
        shown = katib(command, str(blocker / "r"))
        assert shown.returncode != 0 and "Traceback" not in shown.stdout + shown.stderr


def test_read_only_results_directory(tmp_path: Path, tmpfs: Path) -> None:
    path = chatty_experiment(tmp_path)
    remount(tmpfs, "ro")
    done = katib("run", str(path), "--results", str(tmpfs / "r"), "--quiet")
    assert_one_clean_line(done, "Read-only file system")
    remount(tmpfs, "rw,size=100m")
    assert_resumes(tmp_path, path, tmpfs / "r")


def test_full_disk_mid_run(tmp_path: Path, tmpfs: Path) -> None:
    path = chatty_experiment(tmp_path)
    done = katib("run", str(path), "--results", str(tmpfs / "r"), "--quiet", timeout=180)
    assert_one_clean_line(done, "No space left on device")
    status = katib("status", str(tmpfs / "r"))
    assert status.returncode == 0, status.stdout + status.stderr
    remount(tmpfs, "size=100m")
    assert_resumes(tmp_path, path, tmpfs / "r")


SIMULATED_ENOSPC = textwrap.dedent(
    """
    import errno, os, sys
    real_write = os.write
    def write(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.endswith("trial.log") and len(data) > 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)
    os.write = write
    from katib.controller.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_simulated_full_disk_mid_run(tmp_path: Path) -> None:
    path = chatty_experiment(tmp_path)
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-c", SIMULATED_ENOSPC, "run", str(path), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert_one_clean_line(done, "No space left on device")
    assert str(results) in done.stdout
    assert_resumes(tmp_path, path, results)
