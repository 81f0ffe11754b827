"""SIGINT and SIGTERM as data: recorded by the handler, acted on by the controller's loop.

Raising ``KeyboardInterrupt`` from a signal handler can be lost: it lands wherever the main
thread happens to be (inside a ``finally``, a gRPC call, a library's ``except Exception``) and
may be swallowed there. :class:`Interrupts` instead records the first signal (a flag) and makes
a pipe readable (``signal.set_wakeup_fd``, written by the C-level handler even while Python is
blocked in ``select``), so the loop's poll wakes at once and the loop stops the run at its next
step. A second signal is counted too: it cuts the trials' stop grace period short.

>>> with Interrupts() as interrupts:                                    # doctest: +SKIP
...     while not interrupts.received:
...         backend.poll(0.5, wake=interrupts.fileno())
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
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
        """Empty the wake-up pipe."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass

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
