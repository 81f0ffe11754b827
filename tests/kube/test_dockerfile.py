"""The Dockerfile's build works from the context ``.dockerignore`` leaves.

No container runtime runs on the development machines, so the image is not built here. What
the build depends on is checked instead: the build context is assembled as Docker would (every
file under the repository not matched by ``.dockerignore``), the paths the Dockerfile copies
exist in it, and the ``pip install .`` step's wheel, built from that context, carries every
package and every console script the manifests run.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "exceptions are not handled here"
    return patterns


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule for these patterns: a path or any of its parents matches one."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def build_context(target: Path) -> list[str]:
    """Copy the Docker build context into ``target``; the relative paths copied."""
    patterns = ignore_patterns()
    copied = []
    for directory, subdirs, files in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if base == "." else base + "/"
        subdirs[:] = sorted(d for d in subdirs if not ignored(prefix + d, patterns))
        for name in sorted(files):
            relative = prefix + name
            if ignored(relative, patterns):
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target / relative)
            copied.append(relative)
    return copied


def test_ignore_rules_keep_sources_and_drop_the_rest() -> None:
    patterns = ignore_patterns()
    for kept in ("pyproject.toml", "README.md", "api/api_pb2.py", "examples/train_digits.py"):
        assert not ignored(kept, patterns), kept
    for dropped in (".git/HEAD", ".venv/bin/python", "db/__pycache__/x.pyc", "tests/conftest.py"):
        assert ignored(dropped, patterns), dropped


def test_copied_paths_exist_in_the_context(tmp_path: Path) -> None:
    copied = set(build_context(tmp_path))
    for source in re.findall(r"^COPY (?!--from)(\S+) \S+$", DOCKERFILE, re.MULTILINE):
        assert source == "." or any(p.startswith(source.rstrip("/") + "/") for p in copied)


def offline_build_problem() -> str | None:
    """Why this interpreter cannot build the wheel without fetching build tools, if it cannot
    (setuptools 70.1 builds wheels itself; older ones need the ``wheel`` package)."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed"
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    if (major, minor) < (69, 0):
        return f"setuptools {version} is older than pyproject's build requirement (>=69)"
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {version} needs the wheel package to build wheels"
    return None


def test_pip_install_step_builds_every_package_and_script(tmp_path: Path) -> None:
    problem = offline_build_problem()
    if problem is not None:
        pytest.skip(problem)
    context = tmp_path / "context"
    build_context(context)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, "-q", "-w", str(tmp_path / "wheel"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("katib_py-*.whl")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    for package in project["tool"]["setuptools"]["packages"]:
        assert package.replace(".", "/") + "/__init__.py" in names, package
    for script in project["project"]["scripts"]:
        assert re.search(rf"^{re.escape(script)} = ", scripts, re.MULTILINE), script
    assert "katib/api/api.proto" in names
