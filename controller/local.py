"""The local backend: each trial is a process on this machine.

The primary container's ``command + args`` run as an argv list (the image is ignored; nothing
goes through a shell unless the command itself is ``sh -c``), in the trial's own directory
``<results>/trials/<name>/`` with output in ``trial.log`` there. Each trial gets its own session
(process group), so stopping a trial stops its children too and a Ctrl-C in the terminal reaches
only the controller. On Linux each trial process also gets SIGTERM when the controller dies
(``PR_SET_PDEATHSIG``), so a SIGKILLed controller leaves no trial running; children the trial
started are not signalled then, and are killed when the experiment is resumed
(:func:`kill_leftover`).

Metrics are parsed while the trial runs (StdOut from the pipe, File by tailing the file) and
flushed to the DB service every :data:`FLUSH_SECONDS` and at exit. A Push trial reports its own
metrics; its output is only logged, never parsed. Exit code 0 is the Job's
``Complete`` condition, anything else ``Failed``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from katib.controller import template
from katib.controller.metrics import MetricStream, make_parser
from katib.controller.spec import CollectorKind, Experiment
from katib.controller.trials import LogEntry, ObservationSummary, TrialRecord

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
STOP_GRACE_SECONDS = 3.0
LOG_NAME = "trial.log"
Sink = Callable[[str, list[LogEntry]], None]


@dataclass
class _Running:
    name: str
    popen: subprocess.Popen[bytes]
    log_fd: int
    stream: MetricStream
    metrics_file: Path | None
    summary: ObservationSummary
    file_offset: int = 0
    file_inode: int | None = None
    eof: bool = False
    exit_fd: int | None = None
    last_flush: float = field(default_factory=time.monotonic)
    #: Rows already reported from the metrics file, and a digest of them in order.
    file_rows: int = 0
    file_digest: Any = field(default_factory=hashlib.blake2b)


@dataclass(frozen=True)
class Finished:
    """A trial whose process has exited."""

    name: str
    exit_code: int
    #: The observation of every row this backend reported for the trial (what the DB holds for
    #: it) when this backend parsed the metrics (StdOut, File); ``None`` when only the DB has them.
    summary: ObservationSummary | None


class LocalBackend:
    """Start, watch and stop trial processes; stream their metrics into ``sink``."""

    def __init__(
        self,
        spec: Experiment,
        results_dir: Path,
        sink: Sink,
        env: dict[str, str] | None = None,
        experiment_dir: Path | None = None,
        reset: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.results_dir = results_dir
        self.sink = sink
        self.reset = reset
        self.command = template.container_command(spec.trial_template)
        self.base_env = dict(os.environ)
        bin_dir = os.path.dirname(sys.executable)
        self.base_env["PATH"] = os.pathsep.join([bin_dir, self.base_env.get("PATH", "")])
        self.base_env.setdefault("PYTHONUNBUFFERED", "1")
        if experiment_dir is not None:
            self.base_env["KATIB_EXPERIMENT_DIR"] = str(experiment_dir)
        self.base_env.update(env or {})
        self.collector = spec.metrics_collector
        self.metric_names = spec.objective.metric_names
        self._running: dict[str, _Running] = {}
        self._selector = selectors.DefaultSelector()

    @property
    def running(self) -> list[str]:
        """Names of the trials whose processes are being watched."""
        return list(self._running)

    def trial_dir(self, name: str) -> Path:
        """The working directory of trial ``name``."""
        return self.results_dir / "trials" / name

    def start(self, trial: TrialRecord) -> dict[str, int]:
        """Start ``trial``'s process; returns its pid and the range of its start tick (see
        :func:`boot_tick`) for the record."""
        workdir = self.trial_dir(trial.name)
        workdir.mkdir(parents=True, exist_ok=True)
        values = template.parameter_values(
            self.spec.trial_template, trial.assignment_dict(), trial.name, self.spec.namespace
        )
        env = dict(self.base_env, KATIB_TRIAL_NAME=trial.name)
        metrics_file, rewrite = self._metrics_file(workdir)
        argv, env = template.render_command(self.command, values, env, rewrite)
        log_fd = os.open(workdir / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            launch = _launch_argv(argv, workdir, env.get("PATH"))
            forked_after = boot_tick()
            popen = subprocess.Popen(
                launch,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            os.write(log_fd, f"cannot start {argv[0]!r}: {exc}\n".encode())
            os.close(log_fd)
            raise
        stdout = cast(IO[bytes], popen.stdout)  # Popen(stdout=PIPE) guarantees it
        os.set_blocking(stdout.fileno(), False)
        stream = MetricStream(
            make_parser(self.collector, self.metric_names), warn=_log_writer(log_fd)
        )
        summary = ObservationSummary(self.spec.objective)
        self._running[trial.name] = _Running(
            trial.name, popen, log_fd, stream, metrics_file, summary
        )
        self._selector.register(stdout, selectors.EVENT_READ, trial.name)
        self._running[trial.name].exit_fd = _watch_exit(self._selector, popen.pid, trial.name)
        forked_before = boot_tick()
        logger.debug("trial %s started: pid %d argv %s", trial.name, popen.pid, argv)
        return {"pid": popen.pid, "start_tick": forked_after, "start_tick_max": forked_before}

    def _metrics_file(self, workdir: Path) -> tuple[Path | None, Callable[[str], str]]:
        """Re-root a File collector's absolute path into the trial directory.

        Gives each trial its own file, as the metrics volume does in a pod. Only whole tokens
        are rewritten in the command and env: the exact ``fileSystemPath.path`` and its exact
        directory (``/katib`` or ``/katib/``), each standing alone or after ``=``, ``:``, ``,``,
        ``;``, a quote or whitespace (``--log=/katib/m.log``, ``sh -c "... > /katib/m.log"``).
        Other paths under that directory (``/katib/fw.py``, ``/tmp/x`` for a ``/tmp/m.log``)
        are left alone, so a trial must name the metrics file or its directory exactly.
        """
        fs_path = self.collector.file_system_path
        if self.collector.kind is not CollectorKind.FILE or fs_path is None:
            return None, lambda text: text
        original = fs_path.path
        local = workdir / original.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        replacements = {original: str(local)}
        directory = os.path.dirname(original)
        if directory not in ("", "/"):
            replacements[directory] = str(local.parent)
        return local, path_rewriter(replacements)

    def poll(self, timeout: float) -> list[Finished]:
        """Wait up to ``timeout`` s for output or exits; returns the trials that finished."""
        if not self._running:
            time.sleep(timeout)
            return []
        if any(run.eof and run.exit_fd is None for run in self._running.values()):
            timeout = min(timeout, 0.005)  # output closed: the exit is imminent
        if self._selector.get_map():
            for key, _ in self._selector.select(timeout):
                if key.fd != self._running[key.data].exit_fd:  # an exit needs no reading
                    self._read(self._running[key.data])
        else:
            time.sleep(timeout)
        finished = []
        now = time.monotonic()
        for run in list(self._running.values()):
            if run.metrics_file is not None:
                self._tail(run)
            exit_code = run.popen.poll()
            if exit_code is not None:
                finished.append(self._finish(run, exit_code))
            elif now - run.last_flush >= FLUSH_SECONDS:
                self._flush(run)
        return finished

    def stop(self, names: list[str]) -> list[Finished]:
        """Stop trials (SIGTERM, then SIGKILL after a grace period) and collect what they wrote."""
        runs = [self._running[n] for n in names if n in self._running]
        for run in runs:
            _signal_group(run.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for run in runs:
            try:
                run.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(run.popen.pid, signal.SIGKILL)
                run.popen.wait()
        results = []
        for run in runs:
            self._read(run)
            results.append(self._finish(run, run.popen.returncode))
        return results

    def _read(self, run: _Running) -> None:
        stdout = run.popen.stdout
        if stdout is None or run.eof:
            return
        while True:
            try:
                chunk = os.read(stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not chunk:
                run.eof = True
                self._selector.unregister(stdout)
                return
            os.write(run.log_fd, chunk)
            if self.collector.kind is CollectorKind.STDOUT:  # File reads its file, Push the DB
                run.stream.feed(chunk)

    def _tail(self, run: _Running) -> None:
        """Stream what was appended to the metrics file; start over if it was rewritten.

        A file that shrank (truncated) or is a new file (replaced, another inode) is read
        again from the start. A rewrite to the same length or longer cannot be told from an
        append; :meth:`_finish` re-reads the whole file anyway.
        """
        path = run.metrics_file
        if path is None:
            return
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            info = os.fstat(handle.fileno())
            if info.st_ino != run.file_inode or info.st_size < run.file_offset:
                if run.file_offset:
                    logger.debug("trial %s: %s was rewritten; re-reading it", run.name, path)
                run.file_inode, run.file_offset = info.st_ino, 0
                run.stream.restart()
            handle.seek(run.file_offset)
            chunk = handle.read()
        run.file_offset += len(chunk)
        if chunk:
            run.stream.feed(chunk)

    def _collect_file(self, run: _Running) -> None:
        """Parse the whole metrics file once more and make it the trial's observation rows.

        Katib's collector reads the file after training ends; this gives the same final
        observations whatever the trial did to the file while it ran. When the rows streamed
        so far are the start of the final parse (the file was only appended to), only the rest
        is reported; otherwise (a rewrite) the trial's rows are reset and the whole file is
        reported again, which also drops rows the trial pushed itself. Without a ``reset``
        callback the streamed rows are kept and only the rest is added.
        """
        if self.reset is None:
            self._tail(run)
            run.stream.close()
            self._flush(run)
            return
        final = MetricStream(  # lines the stream has warned about are not warned about again
            make_parser(self.collector, self.metric_names),
            warn=_log_writer(run.log_fd),
            quiet_lines=run.stream.lines,
        )
        path = run.metrics_file
        with contextlib.suppress(FileNotFoundError):
            if path is not None:
                final.feed(path.read_bytes())
        final.close()
        run.stream.take()  # superseded by the full parse
        entries = final.take()
        done = run.file_rows
        if done <= len(entries) and _digest(entries[:done]) == run.file_digest.digest():
            self._report(run, entries[done:])
            return
        logger.debug("trial %s: metrics file rewritten; reporting it afresh", run.name)
        self.reset(run.name)
        run.summary = ObservationSummary(self.spec.objective)
        self._report(run, entries)

    def _flush(self, run: _Running) -> None:
        run.last_flush = time.monotonic()
        entries = run.stream.take()
        self._report(run, entries)
        if run.metrics_file is not None:  # counted once the DB holds them
            run.file_rows += len(entries)
            _digest(entries, run.file_digest)

    def _report(self, run: _Running, entries: list[LogEntry]) -> None:
        if entries:
            self.sink(run.name, entries)
            run.summary.add(entries)

    def _finish(self, run: _Running, exit_code: int) -> Finished:
        # Leftovers die with the "pod" before its metrics are collected, so nothing they write
        # or push afterwards can slip past the observation.
        _signal_group(run.popen.pid, signal.SIGKILL)
        self._read(run)
        if run.metrics_file is not None:
            self._collect_file(run)
        else:
            run.stream.close()
            self._flush(run)
        if run.popen.stdout is not None:
            if not run.eof:
                self._selector.unregister(run.popen.stdout)
            run.popen.stdout.close()
        if run.exit_fd is not None:
            self._selector.unregister(run.exit_fd)
            os.close(run.exit_fd)
        os.close(run.log_fd)
        del self._running[run.name]
        logger.debug("trial %s exited with %d", run.name, exit_code)
        parsed = self.collector.kind in (CollectorKind.STDOUT, CollectorKind.FILE)
        return Finished(run.name, exit_code, run.summary if parsed else None)

    def close(self) -> None:
        """Stop every trial still running."""
        self.stop(self.running)
        self._selector.close()


_BEFORE_TOKEN = r"(?:^|(?<=[\s=:,;'\"]))"
_AFTER_TOKEN = r"(?=$|[\s:,;'\"])"


def path_rewriter(replacements: dict[str, str]) -> Callable[[str], str]:
    """Replace each key of ``replacements`` where it is a whole path token in a string.

    A key matches only between token boundaries (start or end of the string, whitespace,
    ``=``, ``:``, ``,``, ``;``, a quote), optionally with one trailing ``/``; it never matches
    as part of a longer path.
    """
    keys = sorted(replacements, key=len, reverse=True)
    pattern = re.compile(
        _BEFORE_TOKEN + "(" + "|".join(re.escape(k) for k in keys) + ")(/?)" + _AFTER_TOKEN
    )

    def rewrite(text: str) -> str:
        return pattern.sub(lambda m: replacements[m.group(1)] + m.group(2), text)

    return rewrite


#: Started in place of each trial's command on Linux where :func:`_setpriv` is missing: asks
#: the kernel to SIGTERM it when the controller's thread exits (``prctl(PR_SET_PDEATHSIG)``),
#: then execs the command in the same process. A launcher, not a ``preexec_fn``: that would
#: force ``fork()`` in a process running gRPC threads (whose fork handlers log a warning per
#: trial) instead of ``vfork``.
_LAUNCHER = """\
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    os._exit(143)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"cannot start {sys.argv[2]!r}: {exc}\\n")
    os._exit(127)
"""


def _launch_argv(argv: list[str], cwd: Path, path: str | None) -> list[str]:
    """``argv`` wrapped by :data:`_LAUNCHER` (Linux only; ``argv`` unchanged elsewhere).

    ``FileNotFoundError`` if ``argv[0]`` is not an executable, as ``Popen`` would raise.
    """
    program = argv[0]
    if os.sep in program:
        found = str(cwd / program) if os.access(cwd / program, os.X_OK) else None
    else:
        found = shutil.which(program, path=path)
    if found is None or os.path.isdir(found):
        raise FileNotFoundError(f"no executable {program!r}")
    if not sys.platform.startswith("linux"):
        return argv
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "TERM", "--", *argv]
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), *argv]


@functools.cache
def _setpriv() -> str | None:
    """util-linux's ``setpriv`` if it supports ``--pdeathsig`` (2.33+), else ``None``.

    Preferred to :data:`_LAUNCHER`: it does the same ``prctl`` + ``exec`` in ~2 ms where a Python
    interpreter takes ~12 ms, which would be most of the controller's per-trial cost. It lacks the
    launcher's check that the controller is still alive after the ``prctl``; a trial orphaned in
    that instant is one :func:`kill_leftover` finds on resume.
    """
    found = shutil.which("setpriv")
    if found is None:
        return None
    try:
        probe = subprocess.run(
            [found, "--pdeathsig", "TERM", "--", "true"], capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if probe.returncode == 0 else None


def _log_writer(log_fd: int) -> Callable[[str], None]:
    """Write the collector's warnings about a trial's output into the trial's log."""

    def write(message: str) -> None:
        with contextlib.suppress(OSError):  # a full disk must not fail the collector
            os.write(log_fd, message.encode("utf-8", "backslashreplace"))

    return write


def _digest(entries: list[LogEntry], into: Any = None) -> bytes:
    """A digest of rows in order (fed into ``into``, a running hashlib digest, if given)."""
    digest = hashlib.blake2b() if into is None else into
    for entry in entries:
        stamp = entry.time.isoformat() if entry.time else ""
        digest.update(f"{stamp}\0{entry.name}\0{entry.value}\n".encode())
    return cast(bytes, digest.digest())


def _watch_exit(selector: selectors.BaseSelector, pid: int, name: str) -> int | None:
    """Register a descriptor that turns readable when process ``pid`` exits (a pidfd, Linux
    5.3+), so the poll wakes at the exit instead of on a timer. ``None`` where the system has
    none or will not watch it: the poll then falls back to its short timer."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    try:
        selector.register(fd, selectors.EVENT_READ, name)
    except (OSError, ValueError):
        os.close(fd)
        return None
    return fd


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


_NS_PER_TICK = 1_000_000_000 // os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 10**7


def boot_tick() -> int:
    """Now, in the unit of a process's start time in ``/proc/<pid>/stat``: clock ticks of
    ``CLOCK_BOOTTIME`` (the kernel stamps a process with that clock when it forks), so two
    readings around a spawn bound the child's start tick without reading ``/proc`` while the
    child is still exec-ing (which blocks for a millisecond or more)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // _NS_PER_TICK


def process_start_tick(pid: int) -> int:
    """The process's start time in clock ticks since boot (Linux), 0 where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def _session_members(sid: int, since_tick: int) -> list[int]:
    """Processes of session ``sid`` (process group ``sid`` too) started at or after a tick."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pgrp, session, start = int(fields[2]), int(fields[3]), int(fields[19])
        if pgrp == sid and session == sid and start >= since_tick:
            members.append(int(entry.name))
    return members


def kill_leftover(started: Mapping[str, Any]) -> bool:
    """Kill the process group of a trial left running by a dead controller.

    ``started`` is what :meth:`LocalBackend.start` returned for it (records from before
    ``start_tick_max`` hold one exact tick). If the pid is alive it must be the same process
    (start tick within ``start_tick`` .. ``start_tick_max``), so a recycled pid is safe. If it
    is gone (the trial died with the controller), what is left of its session, children
    started after it with the same process group, is killed: the kernel does not reuse a pid
    while a process group of that number exists, so such a group is the trial's.
    """
    pid, start_tick = int(started.get("pid", 0)), int(started.get("start_tick", 0))
    if not pid or not start_tick:
        return False
    tick = process_start_tick(pid)
    latest = int(started.get("start_tick_max", start_tick))
    if start_tick <= tick <= latest or (tick == 0 and _session_members(pid, start_tick)):
        logger.info("killing leftover trial process group %d", pid)
        _signal_group(pid, signal.SIGKILL)
        return True
    return False
