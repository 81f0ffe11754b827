"""A run object's outcome by a Trial's ``successCondition`` and ``failureCondition``.

As Katib's trial controller: the failure condition is checked first; a condition holds when
its GJSON result (:mod:`katib.controller.kube.gjson`) is an object or a non-empty array, and
the first such object gives the outcome's ``reason`` and ``message`` (a Job condition's).
Neither holding means the run has not finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from katib.controller.kube import gjson


@dataclass(frozen=True)
class Outcome:
    """A finished run: ``succeeded`` or failed, with the matching condition's words."""

    succeeded: bool
    reason: str = ""
    message: str = ""

    @property
    def condition(self) -> str:
        """``Succeeded`` or ``Failed``, Katib's names for a run object's end."""
        return "Succeeded" if self.succeeded else "Failed"


def check_condition(path: str, field: str) -> str | None:
    """A problem with a condition (``field: message``) or None; for admission."""
    try:
        gjson.compile_path(path)
    except gjson.PathError as exc:
        return f"{field}: {exc}"
    return None


def holds(result: Any) -> Mapping[str, Any] | None:
    """The object a condition's result stands for when it holds (``{}`` for an array whose
    first element is not an object), None when it does not hold."""
    if isinstance(result, Mapping):
        return result
    if isinstance(result, list) and result:
        first = result[0]
        return first if isinstance(first, Mapping) else {}
    return None


def run_outcome(
    obj: Mapping[str, Any], success_condition: str, failure_condition: str
) -> Outcome | None:
    """The outcome of run object ``obj`` (decoded JSON), None while it runs.

    ``gjson.PathError`` if a condition uses syntax outside the supported subset (admission
    refuses such experiments, see :func:`check_condition`).
    """
    for condition, succeeded in ((failure_condition, False), (success_condition, True)):
        found = holds(gjson.get(obj, condition))
        if found is not None:
            return Outcome(succeeded, _text(found.get("reason")), _text(found.get("message")))
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
