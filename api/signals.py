"""SIGINT and SIGTERM as data: recorded by the handler, acted on by the main loop.

Raising ``KeyboardInterrupt`` from a signal handler can be lost: it lands wherever the main
thread happens to be (inside a ``finally``, a gRPC call, a library's ``except Exception``) and
may be swallowed there. :class:`Interrupts` instead records the first signal (a flag) and makes
a pipe readable (``signal.set_wakeup_fd``, written by the C-level handler even while Python is
blocked in ``select``), so the loop's poll wakes at once and the loop stops the run at its next
step. A second signal is counted too: it cuts the trials' stop grace period short.

Why the pipe matters: in a process with other threads (gRPC's event-engine and timer threads,
request threads), the kernel may hand a process-directed SIGTERM to any of them. Only the C-level
handler runs on that thread; the Python handler waits for the main thread to run bytecode. A
main thread asleep in an untimed ``threading.Event.wait()`` never does, so it would sleep
through the signal; a main thread blocked on the pipe is woken by the byte the C handler writes.

>>> with Interrupts() as interrupts:                                    # doctest: +SKIP
...     while not interrupts.received:
...         backend.poll(0.5, wake=interrupts.fileno())
>>> with Interrupts() as interrupts:                                    # doctest: +SKIP
...     signum = interrupts.wait()  # a server: block until SIGINT or SIGTERM
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Record SIGINT/SIGTERM while installed (main thread only; elsewhere it never fires)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.count = 0
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        self._previous: dict[int, Any] = {}
        self._previous_fd: int | None = None
        self._installed = False

    def install(self) -> Interrupts:
        """Install the handlers (no-op outside the main thread)."""
        if threading.current_thread() is not threading.main_thread() or self._installed:
            return self
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._installed = True
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        self.count += 1

    def fileno(self) -> int:
        """A descriptor that turns readable when a signal arrives."""
        return self._read

    def drain(self) -> None:
        """Empty the wake-up pipe, recording a handled signal whose Python handler is pending.

        The pipe holds the number of each signal caught: when another thread caught it, the
        Python handler runs only once the main thread reaches its next check, so the byte is
        what tells that a signal came.
        """
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self._read, 512):
                for signum in data:
                    if signum in HANDLED and self.received is None:
                        self.received = signum

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until SIGINT or SIGTERM arrives (or ``timeout`` seconds pass); the first one.

        Returns at once when one was received before. ``RuntimeError`` when not installed
        (outside the main thread it cannot be), as nothing would ever wake it.
        """
        if not self._installed and self.received is None:
            raise RuntimeError("Interrupts.wait: no handlers installed (main thread only)")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.received is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            select.select([self._read], [], [], remaining)
            self.drain()
        return self.received

    @property
    def exit_code(self) -> int:
        """The shell's code for the first signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.received or signal.SIGINT)

    def uninstall(self) -> None:
        """Restore the previous handlers and close the pipe."""
        if self._installed:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)
            signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
            self._installed = False
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Interrupts:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()
