"""Checkpoint directories for multi-fidelity trials, so a promoted trial can resume its parent.

Hyperband, ASHA and BOHB promote a configuration by suggesting a new trial with the same values
and a larger resource, labelled with its parent (:data:`~katib.suggestion.multifidelity.
PARENT_LABEL`, the parent's trial name). A trial is a process, so without help the promoted
trial trains from scratch. The local backend gives every trial of such a schedule (one labelled
with :data:`~katib.suggestion.multifidelity.CONFIG_LABEL`) a directory of its own for
checkpoints, ``<results>/checkpoints/<trial>/``, created before the trial starts, and names it
in the trial's environment:

============================== ==============================================================
``KATIB_TRIAL_CHECKPOINT_DIR`` where the trial saves its state (for the trials promoted from it)
``KATIB_PARENT_TRIAL_NAME``    the trial it was promoted from, when its labels name one whose
                               checkpoint directory exists
``KATIB_PARENT_CHECKPOINT_DIR`` that trial's checkpoint directory, to resume from (read only by
                               convention: a sibling promoted from the same parent reads it too)
============================== ==============================================================

A trial program that finds a checkpoint there loads it and trains only the resource beyond the
one saved (``examples/train_mlp.py`` shows one way). The labels come from the suggestion
service and the names end up in paths, so both are untrusted: a name must be a valid trial name
(:func:`~katib.controller.replies.trial_name_problem`) and the resolved directory must lie
inside ``<results>/checkpoints/``, else no directory is given and the reason is logged. A
parent whose directory is missing (it never ran here, or it is the trial itself) is no parent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from katib.controller.replies import trial_name_problem
from katib.suggestion.multifidelity import CONFIG_LABEL, PARENT_LABEL

logger = logging.getLogger(__name__)

CHECKPOINT_DIR_ENV = "KATIB_TRIAL_CHECKPOINT_DIR"
PARENT_DIR_ENV = "KATIB_PARENT_CHECKPOINT_DIR"
PARENT_NAME_ENV = "KATIB_PARENT_TRIAL_NAME"
#: Every variable this module may set, in the order of the table above.
ENV_VARS = (CHECKPOINT_DIR_ENV, PARENT_NAME_ENV, PARENT_DIR_ENV)
#: The folder under the results directory that holds one directory per trial.
FOLDER = "checkpoints"


def checkpoint_dir(results_dir: Path, name: str) -> Path | None:
    """``<results>/checkpoints/<name>`` resolved, or ``None`` when ``name`` could leave it."""
    problem = trial_name_problem(name)
    if problem is not None or name in (".", ".."):
        logger.warning("no checkpoint directory for trial %.80r: %s", name, problem or "a dot")
        return None
    root = results_dir.resolve() / FOLDER
    path = (root / name).resolve()
    if path.parent != root:  # a symbolic link planted by a trial program, here or above
        logger.warning("checkpoint directory of trial %.80r leaves %s; not used", name, root)
        return None
    return path


def checkpoint_env(results_dir: Path, name: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The checkpoint variables of trial ``name`` with ``labels``; creates its directory.

    Empty for a trial outside a multi-fidelity schedule (no config label).
    """
    if CONFIG_LABEL not in labels:
        return {}
    own = checkpoint_dir(results_dir, name)
    if own is None:
        return {}
    try:
        own.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in its place
        logger.warning("no checkpoint directory for trial %s: %s", name, exc)
        return {}
    env = {CHECKPOINT_DIR_ENV: str(own)}
    parent = labels.get(PARENT_LABEL)
    if parent is None or parent == name:
        return env
    parent_dir = checkpoint_dir(results_dir, parent)
    if parent_dir is None or not parent_dir.is_dir():
        logger.info("trial %s: parent %.80r has no checkpoint directory here", name, parent)
        return env
    env[PARENT_NAME_ENV] = parent
    env[PARENT_DIR_ENV] = str(parent_dir)
    return env
