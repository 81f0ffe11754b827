"""The local backend: each trial is a process on this machine.

The primary container's ``command + args`` run as an argv list (the image is ignored; nothing
goes through a shell unless the command itself is ``sh -c``), in the trial's own directory
``<results>/trials/<name>/`` with output in ``trial.log`` there; a multi-fidelity trial also
gets a checkpoint directory and its parent's (:mod:`katib.controller.checkpoints`). Each trial
gets its own session (process group), so stopping a trial stops its children too and a Ctrl-C
in the terminal reaches only the controller. On Linux each trial process also gets SIGTERM
when the controller dies (``PR_SET_PDEATHSIG``), so a SIGKILLed controller leaves no trial
running; children the trial started are not signalled then, and are killed when the experiment
is resumed (:meth:`LocalBackend.recover`, :func:`kill_leftover`).

Metrics go through the shared :class:`~katib.controller.collector.TrialCollector`: the output
pipe feeds a StdOut collector, the metrics file a File collector (tailed on every poll). When a
trial's early-stopping rules are met it gets SIGTERM, SIGKILL after :data:`STOP_GRACE_SECONDS`,
without blocking the loop. Exit code 0 is the Job's ``Complete`` condition, anything else
``Failed``. :data:`LOCAL_CAPABILITIES` declares what this backend runs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from katib.controller import checkpoints, template
from katib.controller.backend import Capabilities, Finished
from katib.controller.collector import Collector, TrialCollector
from katib.controller.spec import CollectorKind, Experiment, TrialTemplate
from katib.controller.trials import MetricValue, TrialRecord
from katib.earlystopping.rules import RuleSet

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 3.0
LOG_NAME = "trial.log"


def check_template(trial_template: TrialTemplate) -> tuple[list[str], list[str]]:
    """What a local run needs of the template (a primary container with a command), and the
    replicas it will not start."""
    at = "spec.trialTemplate"
    try:
        template.container_command(trial_template)
    except template.TemplateError as exc:
        return [f"{at}.trialSpec{exc.path}: {exc.message}"], []
    except ValueError as exc:
        kind = trial_template.trial_spec.get("kind", "")
        return [f"{at}.primaryContainerName: {exc} (trialSpec kind {kind})"], []
    return [], template.ignored_replicas(trial_template)


#: What local processes can run. Kinds whose trials are not one container (a workflow of
#: steps) are refused; every other kind runs its primary container.
LOCAL_CAPABILITIES = Capabilities(
    name="local",
    collector_kinds=frozenset({CollectorKind.STDOUT, CollectorKind.FILE, CollectorKind.PUSH}),
    unsupported_kinds={
        "Workflow": "an Argo Workflow is a graph of steps that only Argo can run",
        "PipelineRun": "a Tekton PipelineRun is a graph of tasks that only Tekton can run",
    },
    config_maps=False,
    early_stopping=True,
    template_check=check_template,
)


@dataclass
class _Running:
    name: str
    popen: subprocess.Popen[bytes]
    log_fd: int
    collector: TrialCollector
    eof: bool = False
    exit_fd: int | None = None
    #: When SIGTERM was sent because the early-stopping rules were met.
    early_stop_since: float | None = None


class LocalBackend:
    """Start, watch and stop trial processes; a :class:`~katib.controller.backend.Backend`."""

    capabilities = LOCAL_CAPABILITIES

    def __init__(
        self,
        spec: Experiment,
        results_dir: Path,
        collector: Collector,
        env: dict[str, str] | None = None,
        experiment_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        # Absolute: trials run in their own directories, so a relative path given to them (the
        # File collector's re-rooted path) would resolve against the wrong one.
        self.results_dir = results_dir.resolve()
        self.collector = collector
        self.command = template.container_command(spec.trial_template)
        self.base_env = dict(os.environ)
        bin_dir = os.path.dirname(sys.executable)
        self.base_env["PATH"] = os.pathsep.join([bin_dir, self.base_env.get("PATH", "")])
        self.base_env.setdefault("PYTHONUNBUFFERED", "1")
        if experiment_dir is not None:
            self.base_env["KATIB_EXPERIMENT_DIR"] = str(experiment_dir)
        self.base_env.update(env or {})
        self._running: dict[str, _Running] = {}
        self._selector = selectors.DefaultSelector()

    @property
    def running(self) -> list[str]:
        """Names of the trials whose processes are being watched."""
        return list(self._running)

    def trial_dir(self, name: str) -> Path:
        """The working directory of trial ``name``."""
        return self.results_dir / "trials" / name

    def recover(self, trial: TrialRecord) -> None:
        """Kill what is left of ``trial``'s process group (see :func:`kill_leftover`)."""
        kill_leftover(trial.extra)

    def start(self, trial: TrialRecord) -> dict[str, Any]:
        """Start ``trial``'s process; returns its pid and the range of its start tick (see
        :func:`boot_tick`) for the record."""
        workdir = self.trial_dir(trial.name)
        workdir.mkdir(parents=True, exist_ok=True)
        values = template.parameter_values(
            self.spec.trial_template, trial.assignment_dict(), trial.name, self.spec.namespace
        )
        env = dict(self.base_env, KATIB_TRIAL_NAME=trial.name)
        for name in checkpoints.ENV_VARS:  # never inherited from the controller's own env
            env.pop(name, None)
        env.update(checkpoints.checkpoint_env(self.results_dir, trial.name, dict(trial.labels)))
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
        collector = self.collector.trial(
            trial.name,
            metrics_file,
            RuleSet(trial.stop_rules or (), trial.stop_semantics),
            warn=_log_writer(log_fd),
        )
        run = self._running[trial.name] = _Running(trial.name, popen, log_fd, collector)
        self._selector.register(stdout, selectors.EVENT_READ, trial.name)
        run.exit_fd = _watch_exit(self._selector, popen.pid, trial.name)
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
        collector = self.spec.metrics_collector
        fs_path = collector.file_system_path
        if collector.kind is not CollectorKind.FILE or fs_path is None:
            return None, lambda text: text
        original = fs_path.path
        local = workdir / original.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        replacements = {original: str(local)}
        directory = os.path.dirname(original)
        if directory not in ("", "/"):
            replacements[directory] = str(local.parent)
        return local, path_rewriter(replacements)

    def poll(self, timeout: float, wake: int | None = None) -> list[Finished]:
        """Wait up to ``timeout`` s for output or exits (or ``wake`` turning readable);
        returns the trials that ended."""
        if any(run.eof and run.exit_fd is None for run in self._running.values()):
            timeout = min(timeout, 0.005)  # output closed: the exit is imminent
        if any(run.early_stop_since is not None for run in self._running.values()):
            timeout = min(timeout, 0.05)  # watching a grace period
        woken = False
        if wake is not None:
            self._selector.register(wake, selectors.EVENT_READ, None)
        try:
            if self._selector.get_map():
                for key, _ in self._selector.select(timeout):
                    if key.data is None:
                        woken = True
                    elif key.fd != self._running[key.data].exit_fd:  # an exit needs no reading
                        self._read(self._running[key.data])
            else:
                time.sleep(timeout)
        finally:
            if wake is not None:
                self._selector.unregister(wake)
        finished = []
        for run in list(self._running.values()):
            run.collector.tick()
            exit_code = run.popen.poll()
            if exit_code is not None:
                early = run.early_stop_since is not None
                finished.append(self._finish(run, exit_code, early_stopped=early))
            elif not woken:
                self._enforce_rules(run)
        return finished

    def _enforce_rules(self, run: _Running) -> None:
        if run.early_stop_since is None:
            if run.collector.early_stop:
                logger.info("trial %s met its early-stopping rules; stopping it", run.name)
                run.early_stop_since = time.monotonic()
                _signal_group(run.popen.pid, signal.SIGTERM)
        elif time.monotonic() - run.early_stop_since >= STOP_GRACE_SECONDS:
            _signal_group(run.popen.pid, signal.SIGKILL)

    def stop(
        self, names: Sequence[str], hurry: Callable[[], bool] | None = None
    ) -> list[Finished]:
        """Stop trials (SIGTERM, then SIGKILL after :data:`STOP_GRACE_SECONDS`, or as soon as
        ``hurry()`` turns true) and collect what they wrote.

        A trial whose process had already exited is not signalled: it comes back with
        ``stopped=False`` and its own exit code, so its result stands.
        """
        runs = [self._running[n] for n in names if n in self._running]
        already = {run.name for run in runs if run.popen.poll() is not None}
        for run in runs:
            if run.name not in already:
                _signal_group(run.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        waiting = [run for run in runs if run.popen.poll() is None]
        while waiting and time.monotonic() < deadline and not (hurry and hurry()):
            time.sleep(0.01)
            waiting = [run for run in waiting if run.popen.poll() is None]
        for run in waiting:
            _signal_group(run.popen.pid, signal.SIGKILL)
        for run in runs:
            run.popen.wait()
        results = []
        for run in runs:
            self._read(run)
            early = run.early_stop_since is not None
            results.append(
                self._finish(
                    run,
                    run.popen.returncode,
                    stopped=run.name not in already and not early,
                    early_stopped=early,
                )
            )
        return results

    def collect(self, finished: Finished) -> tuple[MetricValue, ...]:
        """The observation of a finished trial (see :meth:`Collector.observation`); a trial
        stopped by the controller is not marked as lacking its objective."""
        return self.collector.observation(
            finished.name, finished.collected, mark_missing=not finished.stopped
        )

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
            run.collector.feed_output(chunk)

    def _finish(
        self, run: _Running, exit_code: int, stopped: bool = False, early_stopped: bool = False
    ) -> Finished:
        # Leftovers die with the "pod" before its metrics are collected, so nothing they write
        # or push afterwards can slip past the observation.
        _signal_group(run.popen.pid, signal.SIGKILL)
        self._read(run)
        collected = run.collector.finish()
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
        return Finished(run.name, exit_code, collected, stopped, early_stopped)

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
