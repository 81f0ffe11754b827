"""Katib's ``examples/v1beta1`` Experiments, read from a checkout or the bare mirror if present."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

EXAMPLES_DIR = Path(os.environ.get("KATIB_EXAMPLES", "/tmp/katib-ex/examples/v1beta1"))
MIRROR = Path(os.environ.get("KATIB_MIRROR", "/work/.mirror/kubeflow+katib/repo"))
PREFIX = "examples/v1beta1/"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={MIRROR}", *args], check=True, capture_output=True, text=True
    ).stdout


def available() -> bool:
    """Whether Katib's examples can be read on this machine."""
    return EXAMPLES_DIR.is_dir() or (MIRROR / "HEAD").is_file()


def files() -> Iterator[tuple[str, str]]:
    """(path under examples/v1beta1, text) for every YAML example."""
    if EXAMPLES_DIR.is_dir():
        for path in sorted(EXAMPLES_DIR.rglob("*.yaml")):
            yield str(path.relative_to(EXAMPLES_DIR)), path.read_text()
        return
    for name in _git("ls-tree", "-r", "--name-only", "HEAD", PREFIX).split():
        if name.endswith(".yaml"):
            yield name[len(PREFIX) :], _git("show", f"HEAD:{name}")


def experiments() -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, document) for every Experiment among the examples."""
    for rel, text in files():
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "Experiment":
                yield rel, doc
