"""Which generation a trial belongs to: labels, trial names, or the order of the history.

Every suggestion of ``cmaes`` is member ``index`` of generation ``generation`` of restart
``restart``. The service writes that identity twice:

* as labels ``cmaes/restart``, ``cmaes/generation`` and ``cmaes/index`` (our controller and the
  bench pass a trial's labels back in ``Trial.spec.labels``);
* in the trial name, ``<experiment>-r<restart>g<generation>i<index>`` (Katib's controller keeps
  the ``trial_name`` of a reply but puts reply labels on the Trial's metadata, which it does not
  send back). Names are set only while they stay within 63 characters.

A trial with neither (made by another tool, or renamed) is *loose*: loose trials fill the open
generations in order of start time (unset last), then name, and are matched against the draws
of the slot they land in; where no draw matches they are told as injected solutions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from katib.suggestion.history import Trial

RESTART_LABEL = "cmaes/restart"
GENERATION_LABEL = "cmaes/generation"
INDEX_LABEL = "cmaes/index"
#: Longest trial name we set (Kubernetes label values, which Katib copies names into).
MAX_NAME = 63

_NAME = re.compile(r"-r(\d{1,6})g(\d{1,9})i(\d{1,9})$")
_LAST = datetime.max


class Member(NamedTuple):
    """Identity of one suggestion: restart, generation and index within the generation."""

    restart: int
    generation: int
    number: int  # index within the generation (label cmaes/index)


def labels(member: Member) -> dict[str, str]:
    """The labels written on a suggestion."""
    return {
        RESTART_LABEL: str(member.restart),
        GENERATION_LABEL: str(member.generation),
        INDEX_LABEL: str(member.number),
    }


def trial_name(experiment: str, member: Member) -> str | None:
    """``<experiment>-r<r>g<g>i<i>``, or ``None`` when longer than :data:`MAX_NAME`."""
    name = f"{experiment}-r{member.restart}g{member.generation}i{member.number}"
    return name if len(name) <= MAX_NAME else None


def identify(trial: Trial, experiment: str) -> Member | None:
    """The member a trial was suggested as, from its labels, else its name; ``None`` if loose."""
    found = trial.labels
    if found:
        try:
            member = Member(
                int(found[RESTART_LABEL]), int(found[GENERATION_LABEL]), int(found[INDEX_LABEL])
            )
        except (KeyError, ValueError):
            member = None
        if member is not None and min(member) >= 0:
            return member
    if trial.name.startswith(experiment + "-"):
        match = _NAME.search(trial.name)
        if match and match.start() == len(experiment):
            return Member(int(match[1]), int(match[2]), int(match[3]))
    return None


def loose_key(trial: Trial) -> tuple[datetime, str]:
    """Where a loose trial goes in :func:`loose_order`: start time (unset last), then name."""
    start = trial.start_time
    return (_LAST if start is None else start.replace(tzinfo=None), trial.name)


def loose_order(trials: Sequence[Trial]) -> list[Trial]:
    """Loose trials in the order they fill generations: start time (unset last), then name."""
    return sorted(trials, key=loose_key)
