"""SIGINT and SIGTERM reach the main loop whichever thread the kernel hands them to.

A process-directed signal goes to any thread that does not block it; only the C-level handler
runs there, and the Python handler waits for the main thread to run bytecode. A server whose
main thread slept in an untimed ``Event.wait()`` therefore missed a SIGTERM that landed on one
of gRPC's threads (``katib-earlystopping`` did not exit within 60 s under load). These tests
send the signal to a chosen non-main thread, which makes that case certain instead of rare.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from katib.api.signals import Interrupts
from tests.processes import service_process


def _tgkill() -> Callable[[int, int, int], int] | None:
    """glibc's ``tgkill(pid, tid, sig)``: a signal to one thread of another process."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    return getattr(libc, "tgkill", None)


def _signal_other_thread(pid: int, signum: int) -> int:
    """Send ``signum`` to a thread of ``pid`` other than its main thread; that thread's id."""
    tgkill = _tgkill()
    if tgkill is None or not Path(f"/proc/{pid}/task").is_dir():
        pytest.skip("needs Linux's /proc and glibc's tgkill")
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        tid = int(task.name)
        if tid == pid:
            continue
        try:
            blocked = next(
                int(line.split()[1], 16)
                for line in (task / "status").read_text().splitlines()
                if line.startswith("SigBlk:")
            )
        except FileNotFoundError:
            continue  # the thread ended
        if blocked & (1 << (signum - 1)):
            continue
        if tgkill(pid, tid, signum) == 0:
            return tid
    raise AssertionError(f"process {pid} has no other thread that takes signal {signum}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_server_stops_when_another_thread_gets_the_signal(signum: signal.Signals) -> None:
    with service_process("katib.earlystopping.server") as (proc, _address):
        tid = _signal_other_thread(proc.pid, signum)
        assert tid != proc.pid
        assert proc.wait(timeout=60) == 0  # the old server slept here for ever
        assert proc.stderr is not None
        log = proc.stderr.read()
    assert f"received {signum.name}, stopping" in log
    assert "stopped" in log


def test_wait_wakes_for_a_signal_caught_on_another_thread() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with Interrupts() as interrupts:
        sender = threading.Thread(
            target=lambda: signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        )
        sender.start()
        assert interrupts.wait(timeout=60) == signal.SIGTERM
        sender.join(timeout=60)
        assert interrupts.wait(timeout=0) == signal.SIGTERM  # the first one stays
    assert interrupts.count == 1  # the Python handler ran once, on the main thread
    assert signal.getsignal(signal.SIGTERM) == before


def test_wait_times_out_without_a_signal_and_refuses_when_not_installed() -> None:
    with Interrupts() as interrupts:
        assert interrupts.wait(timeout=0.01) is None
    lone = Interrupts()
    with pytest.raises(RuntimeError, match="no handlers installed"):
        lone.wait(timeout=0.01)
    lone.uninstall()


def test_only_sigint_and_sigterm_count() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _: seen.append(signum))
    try:
        with Interrupts() as interrupts:  # a Python handler's signal writes the pipe too
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # delivered before return
            assert interrupts.wait(timeout=0.05) is None
            assert interrupts.count == 0
        assert seen == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)
