"""``katib-metrics-collector`` as a real process against a real ``katib-db-manager``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from katib.controller.kube import collect
from katib.controller.trials import LogEntry
from katib.db.testing import free_port
from tests.controller.kube.conftest import rows


def collector(
    address: str, trial: str, *options: str, script: str = "", command: list[str] | None = None
) -> list[str]:
    argv = [sys.executable, "-m", "katib.controller.kube.collect", "--trial-name", trial]
    argv += ["--db-manager-address", address, "--metric-names", "loss,accuracy", *options, "--"]
    return argv + (command if command is not None else [sys.executable, "-c", script])


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_stdout_rows_reach_the_db_and_output_is_copied(db: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    script = textwrap.dedent(
        """
        import sys
        print("epoch 1 loss=0.9 accuracy=0.1", flush=True)
        sys.stderr.write("warn: loss=0.7\\n"); sys.stderr.flush()
        sys.stdout.write("loss="); sys.stdout.flush()
        sys.stdout.write("0.5\\n")
        print("2024-01-02T03:04:05Z accuracy=0.75")
        sys.stdout.write("loss=0.4")  # no newline at the end
        sys.exit(3)
        """
    )
    done = run(collector(db, "stdout-1", "--termination-log", str(log), script=script))
    assert done.returncode == 3, done.stderr
    assert "epoch 1 loss=0.9 accuracy=0.1\n" in done.stdout
    assert done.stdout.endswith("loss=0.4")
    assert "warn: loss=0.7" in done.stderr
    assert sorted(rows(db, "stdout-1")) == sorted(
        [
            ("loss", "0.9"),
            ("accuracy", "0.1"),
            ("loss", "0.7"),
            ("loss", "0.5"),
            ("accuracy", "0.75"),
            ("loss", "0.4"),
        ]
    )
    assert not log.exists()


@pytest.mark.parametrize("fmt", ["TEXT", "JSON"])
def test_file_collector_tails_the_metrics_file(db: str, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "metrics.log"
    lines = (
        ["loss=0.8", "loss=0.6 accuracy=0.3"]
        if fmt == "TEXT"
        else [json.dumps({"loss": 0.8}), json.dumps({"loss": "0.6", "accuracy": 0.3})]
    )
    script = f"import time\nfor line in {lines!r}:\n"
    script += f"    open({str(path)!r}, 'a').write(line + '\\n'); time.sleep(0.3)\n"
    script += "print('loss=99')  # stdout is not parsed by a File collector\n"
    trial = f"file-{fmt.lower()}"
    opts = ["--kind", "File", "--file-path", str(path), "--format", fmt]
    done = run(collector(db, trial, *opts, script=script))
    assert done.returncode == 0, done.stderr
    assert "loss=99" in done.stdout
    assert sorted(rows(db, trial)) == [("accuracy", "0.3"), ("loss", "0.6"), ("loss", "0.8")]


def test_early_stopping_stops_the_group_and_marks_the_termination_log(
    db: str, tmp_path: Path
) -> None:
    log, pids = tmp_path / "termination-log", tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{grandchild.pid}}")
        for v in (0.9, 0.8, 0.7):
            print(f"loss={{v}}", flush=True)
        time.sleep(600)
        """
    )
    rules = {
        "semantics": "any",
        "rules": [{"name": "loss", "value": "0.5", "comparison": "GREATER", "startStep": 2}],
    }
    argv = collector(
        db,
        "early-1",
        "--stop-rules",
        json.dumps(rules),
        "--termination-log",
        str(log),
        "--grace-seconds",
        "5",
        script=script,
    )
    started = time.monotonic()
    done = run(argv)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    assert log.read_text() == "EarlyStopped"
    assert ("loss", "0.9") in rows(db, "early-1")
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"process {pid} outlived the early stop"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie whose parent is gone is as good as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_is_forwarded_and_the_exit_code_kept(db: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import signal, sys, time
        def bye(*_):
            print("loss=0.25", flush=True); sys.exit(7)
        signal.signal(signal.SIGTERM, bye)
        open({str(ready)!r}, "w").close()
        time.sleep(600)
        """
    )
    proc = subprocess.Popen(
        collector(db, "term-1", script=script), stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7
    assert "loss=0.25" in out
    assert rows(db, "term-1") == [("loss", "0.25")]


def test_killed_child_exits_128_plus_signal(db: str) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert run(collector(db, "killed-1", script=script)).returncode == 128 + signal.SIGKILL


HOSTILE = ["a'b\"c", "$(HOME)", "x\ny", "; echo hi #", "`id`", "--", "*"]


def test_arguments_reach_the_command_verbatim(db: str) -> None:
    command = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    done = run(collector(db, "argv-1", command=[*command, *HOSTILE]))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == HOSTILE


def test_command_not_found_and_not_executable(db: str, tmp_path: Path) -> None:
    missing = run(collector(db, "nf-1", command=[str(tmp_path / "nope")]))
    assert missing.returncode == collect.EXIT_NOT_FOUND
    assert "not found" in missing.stderr
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    denied = run(collector(db, "nx-1", command=[str(plain)]))
    assert denied.returncode == collect.EXIT_CANNOT_EXECUTE


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--stop-rules", "{bad"], "--stop-rules"),
        (["--stop-rules", '{"rules": [{"name": "loss"}]}'], "--stop-rules: rules[0]"),
        (["--stop-rules", '{"semantics": "most"}'], "--stop-rules: semantics"),
        (["--kind", "File"], "--file-path"),
        (["--primary-env", "X"], "--primary-env"),
        (["--kind", "Push"], "--kind"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    options: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        collect.parse(collector("127.0.0.1:1", "bad", *options, script="pass")[3:])
    assert info.value.code == collect.EXIT_USAGE
    assert named in capsys.readouterr().err


def test_missing_separator_or_command(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--trial-name", "t", "--db-manager-address", "a:1", "--metric-names", "loss"]
    with pytest.raises(SystemExit):
        collect.parse(argv)
    assert "after '--'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        collect.parse([*argv, "--"])
    assert "empty" in capsys.readouterr().err


def test_non_primary_node_only_runs_the_command(db: str, tmp_path: Path) -> None:
    argv = collector(
        db,
        "node-1",
        "--primary-env",
        "JOB_COMPLETION_INDEX=0",
        "--primary-env",
        "ROLE=node",
        script="print('loss=0.5'); raise SystemExit(4)",
    )
    env = {**os.environ, "JOB_COMPLETION_INDEX": "1", "ROLE": "node"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 4 and done.stdout == "loss=0.5\n"
    assert rows(db, "node-1") == []
    env["JOB_COMPLETION_INDEX"] = "0"
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 4
    assert rows(db, "node-1") == [("loss", "0.5")]


def test_db_manager_away_loses_rows_but_keeps_the_exit_code() -> None:
    argv = collector(
        f"127.0.0.1:{free_port()}",
        "away-1",
        "--db-retry-for",
        "0.5",
        "--db-timeout",
        "1",
        script="print('loss=0.1'); raise SystemExit(5)",
    )
    done = run(argv)
    assert done.returncode == 5
    assert "1 rows could not be reported" in done.stderr


def test_batches_respect_rows_and_bytes() -> None:
    small = [LogEntry(None, "loss", str(i)) for i in range(25_000)]
    assert [len(b) for b in collect._batches(small)] == [10_000, 10_000, 5_000]
    big = [LogEntry(None, "blob", "x" * 60_000) for _ in range(100)]
    batches = list(collect._batches(big))
    assert sum(len(b) for b in batches) == 100
    assert all(sum(len(e.value) for e in b) <= collect.MAX_REPORT_BYTES for b in batches)
    assert len(batches) == 3


def test_sender_delivers_everything_in_order(db: str) -> None:
    sender = collect.Sender(db, timeout=10, retry_for=30)
    for start in range(0, 12_000, 4_000):
        sender.report(
            "sender-1", [LogEntry(None, "step", str(i)) for i in range(start, start + 4_000)]
        )
    sender.delete("sender-1")
    sender.report("sender-1", [LogEntry(None, "step", "after")])
    assert sender.close(60)
    assert sender.sent_rows == 12_001 and sender.failed_rows == 0
    assert rows(db, "sender-1") == [("step", "after")]


def test_file_rules_apply_after_the_command_closes_its_output(db: str, tmp_path: Path) -> None:
    """A command that closes stdout and stderr and goes on writing its metrics file is still
    tailed, and its rules still stop it."""
    path, log = tmp_path / "metrics.log", tmp_path / "termination-log"
    script = textwrap.dedent(
        f"""
        import os, time
        os.close(1); os.close(2)
        for v in (0.9, 0.8, 0.7):
            with open({str(path)!r}, "a") as f:
                f.write(f"loss={{v}}\\n")
            time.sleep(0.2)
        time.sleep(600)
        """
    )
    rules = {"rules": [{"name": "loss", "value": "0.5", "comparison": "greater", "startStep": 2}]}
    argv = collector(
        db,
        "closed-1",
        "--kind",
        "File",
        "--file-path",
        str(path),
        "--stop-rules",
        json.dumps(rules),
        "--termination-log",
        str(log),
        script=script,
    )
    done = run(argv)
    assert done.returncode == 0, done.stderr
    assert log.read_text() == "EarlyStopped"
    assert ("loss", "0.9") in rows(db, "closed-1")


def test_reap_orphans_spares_the_command() -> None:
    command = subprocess.Popen(["true"])
    orphan = subprocess.Popen(["true"])
    deadline = time.monotonic() + 30
    while not all(_zombie(p.pid) for p in (command, orphan)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert collect.reap_orphans(keep=command.pid) >= 1
    assert not os.path.exists(f"/proc/{orphan.pid}")  # reaped
    assert command.wait(timeout=10) == 0  # its status still ours to read
    orphan.returncode = 0  # already reaped: nothing for Popen to wait for


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
