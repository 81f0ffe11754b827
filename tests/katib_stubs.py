"""Katib's own published Python stubs (``kubeflow-katib`` wheel), for compatibility tests.

They register the same protobuf symbols as ``katib.api``, so they must run in a separate
interpreter: put :func:`katib_stubs_dir` on that interpreter's ``PYTHONPATH`` and import
``kubeflow.katib.katib_api_pb2`` / ``kubeflow.katib.katib_api_pb2_grpc``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

KATIB_VERSION = "0.19.0"
STUB_FILES = ("kubeflow/katib/katib_api_pb2.py", "kubeflow/katib/katib_api_pb2_grpc.py")
CACHE_ROOT = Path(__file__).resolve().parents[1] / ".cache" / "katib-stubs"


def katib_stubs_dir() -> Path:
    """A directory holding ``kubeflow/katib/katib_api_pb2*.py`` from ``kubeflow-katib``.

    Downloads the wheel once (``pip download --no-deps``) into ``.cache/katib-stubs`` and
    extracts only the two stub modules, with empty ``__init__.py`` files so nothing else of the
    SDK (and none of its dependencies) is imported.
    """
    target = CACHE_ROOT / KATIB_VERSION
    if all((target / name).is_file() for name in STUB_FILES):
        return target
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT) as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", scratch,
             f"kubeflow-katib=={KATIB_VERSION}"],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(scratch).glob("kubeflow_katib-*.whl")
        staging = Path(scratch) / "stubs"
        with zipfile.ZipFile(wheel) as archive:
            for name in STUB_FILES:
                archive.extract(name, staging)
        for package in ("kubeflow", "kubeflow/katib"):
            (staging / package / "__init__.py").write_text("")
        try:
            os.replace(staging, target)
        except OSError:  # another process got there first; fine if its copy is complete
            if not all((target / name).is_file() for name in STUB_FILES):
                raise
    return target


def run_with_katib_stubs(script: str, *args: str, timeout: float = 60) -> str:
    """Run ``script`` in a fresh interpreter that can ``import kubeflow.katib.katib_api_pb2``.

    Returns its stdout; fails the test with the script's output if it exits non-zero.
    """
    env = {**os.environ, "PYTHONPATH": str(katib_stubs_dir())}
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"katib-stub client failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout
