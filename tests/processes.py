"""Services as users run them: a real process on a free loopback port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def service_process(module: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``python -m module`` on a free port; yield the process and its address.

    The address is read from the server's ``listening on HOST:PORT`` log line; the process is
    killed on exit if it is still running.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        address = None
        for line in proc.stderr:
            match = re.search(r"listening on (\S+)", line)
            if match:
                address = match.group(1)
                break
        assert address, "server did not report its address"
        yield proc, address
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
