"""In-pod metrics collector: rows per second through ``katib-metrics-collector``.

``katib-bench collector`` runs ``katib-metrics-collector`` as a process over a child that prints
``lines`` lines of ``epoch=i loss=…`` (StdOut) or writes them to a metrics file (File), with a
``katib-db-manager`` service on loopback (SQLite in a temporary directory) taking the rows.
The wall time runs from starting the collector to its exit, so parsing, copying the output
through and the last report to the DB are all in it; every row is then read back and counted.
The baseline is the same child with its output read by the bench and nothing else.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: The child: ``lines`` metric lines written in large chunks (to stdout or to a file).
CHILD = """
import sys
n, path = int(sys.argv[1]), sys.argv[2]
out = open(path, "w") if path != "-" else sys.stdout
step = 1000
for start in range(0, n, step):
    chunk = range(start, min(n, start + step))
    out.write("".join(f"epoch={i} loss={1.0 / (i + 1):.6f}\\n" for i in chunk))
out.flush()
"""


@dataclass(frozen=True)
class CollectorResult:
    """One run: ``rows`` read back from the DB, wall seconds with and without the collector."""

    kind: str
    lines: int
    rows: int
    wall_s: float
    baseline_s: float

    @property
    def rows_per_s(self) -> float:
        """Rows reported per second of collector wall time."""
        return self.rows / self.wall_s if self.wall_s else 0.0


def _child(lines: int, path: str) -> list[str]:
    return [sys.executable, "-c", CHILD, str(lines), path]


def run_one(kind: str, lines: int, address: str, workdir: Path, trial: str) -> CollectorResult:
    """Time one collector run and its baseline."""
    from katib.db.client import DBClient

    path = str(workdir / f"{trial}.log") if kind == "File" else "-"
    started = time.perf_counter()
    subprocess.run(_child(lines, path), stdout=subprocess.DEVNULL, check=True)
    baseline = time.perf_counter() - started
    options = ["--trial-name", trial, "--db-manager-address", address]
    options += ["--metric-names", "loss,epoch", "--kind", kind]
    if kind == "File":
        options += ["--file-path", path]
        Path(path).unlink()
    argv = [sys.executable, "-m", "katib.controller.kube.collect", *options, "--"]
    started = time.perf_counter()
    subprocess.run([*argv, *_child(lines, path)], stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    with DBClient(address, timeout=120) as client:
        rows = len(client.get(trial))
    return CollectorResult(kind, lines, rows, wall, baseline)


def run_collector(
    lines: int, kinds: tuple[str, ...] = ("StdOut", "File")
) -> list[CollectorResult]:
    """Every kind against one loopback DB manager."""
    from katib.api.server import start
    from katib.db.client import DBClient
    from katib.db.server import build_service
    from katib.db.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        store = open_store(f"sqlite:///{workdir / 'obs.db'}")
        server = start([build_service(store)], host="127.0.0.1", port=0)
        try:
            with DBClient(server.address, timeout=30) as client:
                client.wait_ready(30)
            return [
                run_one(kind, lines, server.address, workdir, f"bench-{kind.lower()}")
                for kind in kinds
            ]
        finally:
            server.stop(grace=1)
            store.close()


def format_collector(results: list[CollectorResult]) -> str:
    """A table of the results."""
    out = [f"{'kind':<8}{'lines':>10}{'rows':>10}{'wall s':>9}{'rows/s':>10}{'bare s':>8}"]
    for r in results:
        out.append(
            f"{r.kind:<8}{r.lines:>10}{r.rows:>10}{r.wall_s:>9.2f}{r.rows_per_s:>10.0f}"
            f"{r.baseline_s:>8.2f}"
        )
    return "\n".join(out)
