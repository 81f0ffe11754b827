"""``katib-metrics-collector``: the metrics collector of a trial pod, wrapped around its command.

The operator (:func:`katib.controller.kube.render.run_object`) rewrites the primary container's
command to::

    katib-metrics-collector --trial-name T --db-manager-address HOST:PORT --metric-names a,b \\
        [--objective-type minimize|maximize] [--kind StdOut|File] [--file-path P] \\
        [--format TEXT|JSON] [--filter RE ...] [--stop-rules JSON] \\
        [--termination-log /dev/termination-log] [--primary-env NAME=VALUE] -- COMMAND ARGS...

and the collector then:

* runs ``COMMAND ARGS`` itself (no shell) in its own process group, copying its stdout and
  stderr through to the container's, and forwarding SIGTERM, SIGINT and SIGHUP to the group;
* parses the output (StdOut) or tails the metrics file (File) with the same
  :class:`~katib.controller.collector.TrialCollector` as local runs, so parsing, filters, file
  rewrites and early-stopping rules behave exactly as there;
* reports rows to the DB manager from a sender thread (the output is never held up by the DB),
  through :class:`~katib.db.client.DBClient`, whose report ids make a retried report store its
  rows once;
* when the ``--stop-rules`` hold, writes ``EarlyStopped`` to the termination message file,
  stops the command's process group (SIGTERM, SIGKILL after ``--grace-seconds``) and exits 0,
  so the Job completes and the operator marks the Trial EarlyStopped from the container's
  termination message.

With ``--primary-env NAME=VALUE`` (repeatable) the collector only collects when every such
environment variable has its value (a TrainJob's nodes all run the trainer command; the render
passes the pod's labels in through the downward API, so only the pod matching
``primaryPodLabels`` reports); elsewhere it replaces itself with the command.

As a container's PID 1, the collector also reaps the processes the command orphans.

Exit status: the command's own; ``128 + N`` when it was killed by signal ``N``; 0 after an
early stop; 127 when the command does not exist and 126 when it cannot be executed (as a shell
would); 2 for bad options. Rows the DB manager could not take within ``--db-retry-for`` seconds
are lost with an error on stderr; the exit status stays the command's.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from katib.controller.collector import Collector, TrialCollector
from katib.controller.kube.render import (
    DEFAULT_TERMINATION_LOG,
    EARLY_STOPPED_MESSAGE,
    RenderError,
    parse_rules,
)
from katib.controller.metrics import MAX_LINE_BYTES
from katib.controller.spec import (
    AlgorithmSpec,
    CollectorKind,
    Experiment,
    FileFormat,
    FileSystemPath,
    MetricsCollectorSpec,
    MetricStrategy,
    Objective,
    ObjectiveType,
    TrialTemplate,
    default_strategy,
)
from katib.controller.trials import LogEntry
from katib.db.client import DBClient
from katib.earlystopping.rules import RuleSet

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
#: Seconds between looks at the metrics file and the child when no output arrives.
TICK_SECONDS = 0.2
#: Seconds to keep reading output after the command exited (grandchildren may hold the pipes).
DRAIN_SECONDS = 2.0
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Options:
    """The collector's options (see the module docstring)."""

    trial_name: str
    db_address: str
    spec: Experiment
    rules: RuleSet
    command: tuple[str, ...]
    termination_log: Path
    metrics_file: Path | None
    grace_seconds: float
    db_timeout: float
    db_retry_for: float
    primary_env: tuple[tuple[str, str], ...]


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(
        prog="katib-metrics-collector",
        description="Run a trial's command, report its metrics to the Katib DB manager.",
        usage="%(prog)s --trial-name T --db-manager-address A --metric-names a,b [options] "
        "-- COMMAND [ARGS...]",
    )
    p.add_argument("--trial-name", required=True)
    p.add_argument("--db-manager-address", required=True, help="host:port of katib-db-manager")
    p.add_argument("--metric-names", required=True, help="objective first, comma-separated")
    p.add_argument(
        "--objective-type", choices=[t.value for t in ObjectiveType], default="minimize"
    )
    p.add_argument("--kind", choices=["StdOut", "File"], default="StdOut")
    p.add_argument("--file-path", help="the metrics file (File collector)")
    p.add_argument("--format", choices=[f.value for f in FileFormat], default="TEXT")
    p.add_argument("--filter", action="append", default=[], help="a metricsFormat regex")
    p.add_argument("--stop-rules", help='{"semantics": "any", "rules": [EarlyStoppingRule...]}')
    p.add_argument("--termination-log", default=DEFAULT_TERMINATION_LOG)
    p.add_argument(
        "--primary-env",
        action="append",
        default=[],
        help="NAME=VALUE: collect only where this env var matches (repeatable: all must)",
    )
    p.add_argument("--grace-seconds", type=float, default=10.0, help="SIGTERM to SIGKILL")
    p.add_argument("--db-timeout", type=float, default=10.0, help="seconds per DB call")
    p.add_argument("--db-retry-for", type=float, default=60.0, help="seconds of DB retries")
    return p


def parse(argv: Sequence[str]) -> Options:
    """Options from the command line; ``SystemExit(2)`` with a message naming the option."""
    argv = list(argv)
    if "--" not in argv:
        parser().error("give the command to run after '--'")
    split = argv.index("--")
    command = tuple(argv[split + 1 :])
    p = parser()
    args = p.parse_args(argv[:split])
    if not command:
        p.error("the command after '--' is empty")
    names = tuple(n.strip() for n in args.metric_names.split(","))
    if not all(names):
        p.error(f"--metric-names: empty name in {args.metric_names!r}")
    kind = CollectorKind(args.kind)
    if kind is CollectorKind.FILE and not args.file_path:
        p.error("--file-path is required with --kind File")
    rules = RuleSet()
    if args.stop_rules:
        try:
            data = json.loads(args.stop_rules)
            if not isinstance(data, dict):
                raise RenderError("--stop-rules", "must be a JSON object")
            rules = parse_rules(
                data.get("rules", []),
                data.get("semantics", "any"),
                "--stop-rules: rules",
                "--stop-rules: semantics",
            )
        except ValueError as exc:  # json errors and RenderError
            p.error(f"--stop-rules: {exc}" if not isinstance(exc, RenderError) else str(exc))
    primary_env = []
    for item in args.primary_env:
        name, eq, value = item.partition("=")
        if not eq or not name:
            p.error(f"--primary-env must be NAME=VALUE, got {item!r}")
        primary_env.append((name, value))
    for option in ("grace_seconds", "db_timeout", "db_retry_for"):
        if getattr(args, option) < 0:
            p.error(f"--{option.replace('_', '-')} must not be negative")
    otype = ObjectiveType(args.objective_type)
    objective = Objective(
        type=otype,
        objective_metric_name=names[0],
        additional_metric_names=names[1:],
        metric_strategies=tuple(MetricStrategy(n, default_strategy(otype)) for n in names),
    )
    path = args.file_path if kind is CollectorKind.FILE else None
    collector = MetricsCollectorSpec(
        kind=kind,
        file_system_path=FileSystemPath(path, "File", FileFormat(args.format)) if path else None,
        filters=tuple(args.filter),
    )
    spec = Experiment(  # what TrialCollector reads: the objective and the collector
        name=args.trial_name,
        namespace="",
        objective=objective,
        algorithm=AlgorithmSpec(""),
        parameters=(),
        trial_template=TrialTemplate({}, (), "", "", ""),
        metrics_collector=collector,
    )
    return Options(
        trial_name=args.trial_name,
        db_address=args.db_manager_address,
        spec=spec,
        rules=rules,
        command=command,
        termination_log=Path(args.termination_log),
        metrics_file=Path(path) if path else None,
        grace_seconds=args.grace_seconds,
        db_timeout=args.db_timeout,
        db_retry_for=args.db_retry_for,
        primary_env=tuple(primary_env),
    )


#: Rows and bytes (names and values) in one report: under the 4 MiB gRPC message limit that
#: Katib's own DB manager keeps.
MAX_REPORT_ROWS = 10_000
MAX_REPORT_BYTES = 2 << 20


class Sender:
    """The observation log as :class:`TrialCollector` sees it, writing from a thread.

    ``report`` and ``delete`` queue the call and return at once; the thread makes them in
    order through one :class:`DBClient`, merging reports queued meanwhile (while the DB is
    slow, the next report carries everything since) and splitting them to at most
    :data:`MAX_REPORT_ROWS` rows and :data:`MAX_REPORT_BYTES`. A call that fails for good
    (the DB manager away for longer than ``retry_for``) is logged and its rows are lost;
    later calls are still tried.
    """

    def __init__(self, address: str, timeout: float, retry_for: float) -> None:
        self.client = DBClient(address, timeout=timeout, retry_for=retry_for)
        self.sent_rows = 0
        self.failed_rows = 0
        self.reports = 0
        self._ops: collections.deque[tuple[str, str, list[LogEntry]]] = collections.deque()
        self._closed = False
        self._changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="db-sender", daemon=True)
        self.thread.start()

    def report(self, trial_name: str, entries: Iterable[LogEntry]) -> None:
        """Queue rows for the DB."""
        self._put(("report", trial_name, list(entries)))

    def delete(self, trial_name: str) -> None:
        """Queue the deletion of the trial's rows (a rewritten metrics file)."""
        self._put(("delete", trial_name, []))

    def entries(self, trial_name: str) -> list[LogEntry]:
        """Not needed by a collector that never folds pushed rows."""
        raise NotImplementedError("the in-pod collector never reads rows back")

    def may_hold_pushes(self, trial_name: str) -> bool:
        """The in-pod collector's trial does not push rows of its own."""
        return False

    def close(self, timeout: float) -> bool:
        """Send what is queued (for up to ``timeout`` s); whether everything went."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self.thread.join(timeout)
        done = not self.thread.is_alive()
        if done:
            self.client.close()
        return done

    def _put(self, op: tuple[str, str, list[LogEntry]]) -> None:
        with self._changed:
            self._ops.append(op)
            self._changed.notify()

    def _next(self) -> tuple[str, str, list[LogEntry]] | None:
        with self._changed:
            while not self._ops and not self._closed:
                self._changed.wait()
            if not self._ops:
                return None
            verb, trial, entries = self._ops.popleft()
            while verb == "report" and self._ops and self._ops[0][:2] == (verb, trial):
                entries = entries + self._ops.popleft()[2]
            return verb, trial, entries

    def _run(self) -> None:
        while (op := self._next()) is not None:
            verb, trial, entries = op
            for batch in [entries] if verb == "delete" else _batches(entries):
                try:
                    if verb == "delete":
                        self.client.delete(trial)
                    else:
                        self.client.report(trial, ((e.time, e.name, e.value) for e in batch))
                        self.sent_rows += len(batch)
                        self.reports += 1
                except Exception as exc:  # every failure of the call, whatever the client raised
                    self.failed_rows += len(batch) if verb == "report" else 0
                    logger.error("katib-metrics-collector: lost a %s of %s: %s", verb, trial, exc)


def _batches(entries: list[LogEntry]) -> Iterator[list[LogEntry]]:
    """``entries`` in reports of at most :data:`MAX_REPORT_ROWS` rows and
    :data:`MAX_REPORT_BYTES` bytes (a row over the byte limit goes alone)."""
    batch: list[LogEntry] = []
    size = 0
    for entry in entries:
        row = len(entry.name) + len(entry.value) + 32
        if batch and (len(batch) >= MAX_REPORT_ROWS or size + row > MAX_REPORT_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += row
    if batch:
        yield batch


class Child:
    """The trial's command in its own process group (stdin inherited), its output read
    through pipes."""

    def __init__(self, command: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the command's process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)

    def stop(self, grace: float) -> None:
        """SIGTERM the group, SIGKILL it if the command is still there after ``grace`` s."""
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()


def exit_status(returncode: int) -> int:
    """A shell's exit status for a child's return code (``128 + N`` for signal ``N``)."""
    return 128 - returncode if returncode < 0 else returncode


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        except OSError:  # our stdout closed: keep collecting, stop copying
            return
        view = view[written:]


class _Lines:
    """Hands complete lines of one pipe to the collector, so stdout and stderr never mix
    within a line; an unterminated line over :data:`MAX_LINE_BYTES` goes as it is (the
    collector's stream drops it as overlong)."""

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, chunk: bytes) -> bytes:
        """The complete lines so far (with what was held back before)."""
        data = self.partial + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) <= MAX_LINE_BYTES:
            self.partial = data
            return b""
        if cut == 0:
            self.partial = b""
            return data
        self.partial = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        """The unterminated rest, as a line (the pipe has ended)."""
        rest, self.partial = self.partial, b""
        return rest + b"\n" if rest else b""


def run(options: Options) -> int:
    """Run the command under collection; the exit status (see the module docstring)."""
    sender = Sender(options.db_address, options.db_timeout, options.db_retry_for)
    collector = Collector(options.spec, sender)

    def warn(message: str) -> None:
        _write_all(2, message.encode("utf-8", "replace"))

    trial = collector.trial(options.trial_name, options.metrics_file, options.rules, warn)
    pending: list[int] = []
    child: Child | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child is None:
            pending.append(signum)
        else:
            child.signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        try:
            child = Child(options.command)
        except FileNotFoundError as exc:
            warn(f"katib-metrics-collector: {options.command[0]}: not found ({exc.strerror})\n")
            return EXIT_NOT_FOUND
        except (PermissionError, OSError) as exc:
            warn(f"katib-metrics-collector: {options.command[0]}: cannot execute ({exc})\n")
            return EXIT_CANNOT_EXECUTE
        for signum in pending:
            child.signal(signum)
        early = _pump(child, trial, options)
        trial.finish()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not sender.close(options.db_retry_for + options.db_timeout):
            warn("katib-metrics-collector: the DB manager did not take every row in time\n")
    if sender.failed_rows:
        warn(f"katib-metrics-collector: {sender.failed_rows} rows could not be reported\n")
    if early:
        return 0
    return exit_status(child.proc.returncode)


def _pump(child: Child, trial: TrialCollector, options: Options) -> bool:
    """Copy and parse the command's output until it exits; whether its rules stopped it."""
    proc = child.proc
    assert proc.stdout is not None and proc.stderr is not None  # piped in Child
    selector = selectors.DefaultSelector()
    lines = {}
    for stream, out_fd in ((proc.stdout, 1), (proc.stderr, 2)):
        os.set_blocking(stream.fileno(), False)
        selector.register(stream.fileno(), selectors.EVENT_READ, out_fd)
        lines[stream.fileno()] = _Lines()
    early = False
    drain_until: float | None = None
    while True:
        # Until the command exits (its pipes may close first: a metrics file is still tailed
        # and rules still apply), then until its output ends or DRAIN_SECONDS have passed.
        if drain_until is None and proc.poll() is not None:
            drain_until = time.monotonic() + DRAIN_SECONDS
        if drain_until is not None and (not selector.get_map() or time.monotonic() > drain_until):
            break
        if not selector.get_map():
            time.sleep(TICK_SECONDS)
        for key, _ in selector.select(TICK_SECONDS) if selector.get_map() else ():
            fd = key.fileobj
            assert isinstance(fd, int)
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                selector.unregister(fd)
                trial.feed_output(lines[fd].flush())
                continue
            _write_all(key.data, chunk)
            trial.feed_output(lines[fd].feed(chunk))
        trial.tick()
        if os.getpid() == 1:  # the container's init: orphans of the command come to us
            reap_orphans(keep=proc.pid)
        if trial.early_stop and not early:
            early = True
            _mark_early_stopped(options.termination_log)
            child.stop(options.grace_seconds)
    for fd, split in lines.items():
        trial.feed_output(split.flush())
        with contextlib.suppress(KeyError):
            selector.unregister(fd)
    selector.close()
    if proc.poll() is None:
        proc.wait()
    return early


def reap_orphans(keep: int) -> int:
    """Reap exited children other than ``keep`` (the command, which ``Popen`` waits for).

    As a container's PID 1 the collector inherits every process the command orphans; without
    this their zombies would pile up while the trial runs. Children are read from
    ``/proc/self/task/*/children``, so the command's own exit status is never taken.
    Returns how many were reaped.
    """
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as handle:
                pids.update(int(p) for p in handle.read().split())
        except (OSError, ValueError):
            continue
    reaped = 0
    for pid in pids - {keep}:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        reaped += done != 0
    return reaped


def _mark_early_stopped(path: Path) -> None:
    try:
        path.write_text(EARLY_STOPPED_MESSAGE)
    except OSError as exc:
        logger.error("katib-metrics-collector: cannot write %s: %s", path, exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``katib-metrics-collector``."""
    options = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if any(os.environ.get(name) != value for name, value in options.primary_env):
        try:  # not the primary pod: just be the command
            os.execvp(options.command[0], list(options.command))
        except FileNotFoundError:
            return EXIT_NOT_FOUND
        except OSError:
            return EXIT_CANNOT_EXECUTE
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
