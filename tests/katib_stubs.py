"""Katib's own published Python stubs, for wire-compatibility tests.

They come from the ``kubeflow-katib`` wheel on PyPI (``kubeflow/katib/katib_api_pb2*.py``). They
register the same proto symbols as ``katib.api``, so they must run in a separate interpreter:
use :func:`run_with_katib_stubs` to run a script with them on ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

KATIB_SDK = "kubeflow-katib==0.19.0"
_CACHE = Path(os.environ.get("KATIB_STUBS_CACHE", Path.home() / ".cache" / "katib-py-stubs"))


def katib_stubs_dir() -> Path:
    """A directory holding ``kubeflow/katib/katib_api_pb2*.py`` (downloaded once, then cached)."""
    target = _CACHE / KATIB_SDK.replace("==", "-")
    grpc_module = target / "kubeflow" / "katib" / "katib_api_pb2_grpc.py"
    if grpc_module.exists():
        return target
    wheels = target / "wheel"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(wheels),
            KATIB_SDK,
        ],
        check=True,
    )
    (wheel,) = wheels.glob("kubeflow_katib-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("katib_api_pb2.py", "katib_api_pb2_grpc.py"):
            archive.extract(f"kubeflow/katib/{name}", target)
    for package in ("kubeflow", "kubeflow/katib"):
        (target / package / "__init__.py").touch()
    return target


def run_with_katib_stubs(script: str, *args: str, timeout: float = 60) -> str:
    """Run ``script`` in a fresh interpreter that can ``import kubeflow.katib.katib_api_pb2``.

    Returns its stdout; raises ``CalledProcessError`` (with stderr) if it fails.
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
