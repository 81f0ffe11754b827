"""The early-stopping algorithms, their typed settings, and the registry.

An algorithm sees decoded trials (:class:`TrialInfo`) and their loss curves, never protobuf:

* :meth:`StoppingAlgorithm.wants` says whose curves to read from the DB;
* :meth:`StoppingAlgorithm.thresholds` turns those curves into ``(steps, loss thresholds)``.

:func:`make_rules` converts thresholds into :class:`~katib.earlystopping.rules.Rule` objects in
the objective's own direction. Settings are frozen dataclasses declared with the shared
:func:`~katib.api.settings.setting`; :func:`parse_settings` reports every problem at once,
in Katib's words where Katib has words for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from katib.api.errors import InvalidArgument
from katib.api.settings import parse_settings as parse_typed
from katib.api.settings import setting
from katib.earlystopping import curves as cv
from katib.earlystopping.rules import Comparison, Rule


class TrialState(StrEnum):
    """A trial's condition, as the early-stopping service sees it."""

    CREATED = "created"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    EARLY_STOPPED = "early_stopped"
    FAILED = "failed"  # failed, killed, metrics unavailable or unknown


COMPLETED = frozenset({TrialState.SUCCEEDED, TrialState.EARLY_STOPPED})


@dataclass(frozen=True)
class TrialInfo:
    """A trial of the request: its name, state and completion time (RFC 3339, may be empty)."""

    name: str
    state: TrialState
    completion_time: str = ""


@dataclass(frozen=True)
class MedianStopSettings:
    """Settings of ``medianstop`` (Katib's names and defaults)."""

    min_trials_required: int = setting(
        3, gt=0, doc="completed trials needed before any rule is returned"
    )
    start_step: int = setting(4, ge=1, doc="first report (1-based) the rule judges")

    MESSAGES: ClassVar[Mapping[str, str]] = {
        "min_trials_required": "min_trials_required must be greater than zero (>0)",
        "start_step": "start_step must be greater or equal than one (>=1)",
    }


@dataclass(frozen=True)
class AshaSettings:
    """Settings of ``asha`` (names as in Optuna's SuccessiveHalvingPruner)."""

    min_resource: int = setting(1, ge=1, doc="step of the first rung")
    reduction_factor: int = setting(
        3, ge=2, doc="eta: rungs at min_resource * eta**k; the top 1/eta go on"
    )
    min_trials_required: int = setting(
        3, gt=0, doc="trials that must have reached a rung before it stops anyone"
    )

    MESSAGES: ClassVar[Mapping[str, str]] = {
        "min_resource": "min_resource must be greater or equal than one (>=1)",
        "reduction_factor": "reduction_factor must be greater or equal than two (>=2)",
        "min_trials_required": "min_trials_required must be greater than zero (>0)",
    }


@dataclass(frozen=True)
class NoSettings:
    """``none`` takes no settings."""

    MESSAGES: ClassVar[Mapping[str, str]] = {}


class StoppingAlgorithm:
    """Base class: turn the curves of some trials into loss thresholds per step."""

    name: ClassVar[str]
    settings_class: ClassVar[type[Any]]

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def wants(self, trial: TrialInfo) -> bool:
        """Whether this trial's curve is needed."""
        return False

    def thresholds(self, curves: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, thresholds)``: loss thresholds, shape ``(m,)`` each, steps increasing."""
        return np.empty(0, dtype=np.int64), np.empty(0)


class MedianStop(StoppingAlgorithm):
    """The median stopping rule of Google Vizier, over completed and early-stopped trials.

    >>> algo = MedianStop(MedianStopSettings(min_trials_required=2, start_step=1))
    >>> steps, limits = algo.thresholds({"a": np.array([1.0, 0.5]), "b": np.array([3.0, 1.0])})
    >>> steps.tolist(), limits.tolist()   # medians of running means (1, 3) and (0.75, 2)
    ([1, 2], [2.0, 1.375])
    """

    name = "medianstop"
    settings_class = MedianStopSettings

    def wants(self, trial: TrialInfo) -> bool:
        return trial.state in COMPLETED

    def thresholds(self, curves: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        completed = [c for c in curves.values() if c.size]
        if len(completed) < self.settings.min_trials_required:
            return super().thresholds(curves)
        return cv.median_thresholds(completed, self.settings.start_step)


class Asha(StoppingAlgorithm):
    """Asynchronous successive halving over every trial that reached a rung (running included).

    >>> algo = Asha(AshaSettings(min_resource=1, reduction_factor=2, min_trials_required=2))
    >>> steps, limits = algo.thresholds({"a": np.array([1.0, 0.5]), "b": np.array([3.0, 1.0])})
    >>> steps.tolist(), limits.tolist()   # rung 1 holds (1, 3), rung 2 holds (0.5, 1)
    ([1, 2], [1.0, 0.5])
    """

    name = "asha"
    settings_class = AshaSettings

    def wants(self, trial: TrialInfo) -> bool:
        return trial.state in COMPLETED or trial.state is TrialState.RUNNING

    def thresholds(self, curves: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        return cv.asha_thresholds(
            list(curves.values()), s.min_resource, s.reduction_factor, s.min_trials_required
        )


class NoStop(StoppingAlgorithm):
    """``none``: never stops a trial (an experiment can name it to switch stopping off)."""

    name = "none"
    settings_class = NoSettings


ALGORITHMS: dict[str, type[StoppingAlgorithm]] = {
    cls.name: cls for cls in (MedianStop, Asha, NoStop)
}
#: What an empty algorithm name means: Katib's service is ``medianstop`` whatever it is asked.
DEFAULT_ALGORITHM = "medianstop"


def get(name: str) -> type[StoppingAlgorithm]:
    """The algorithm class called ``name`` (``InvalidArgument`` in Katib's words if unknown)."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise InvalidArgument(f"unknown algorithm name {name}") from None


def parse_settings(cls: type[Any], pairs: Sequence[tuple[str, str]], algorithm: str) -> Any:
    """Typed settings from ``(name, value)`` pairs; every problem in one ``InvalidArgument``.

    Messages follow Katib's medianstop service: ``unknown setting X for algorithm Y``, the
    setting's own range message, or ``failed to validate X(V): why`` for a value of the wrong
    type. Later pairs with the same name win.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    messages: Mapping[str, str] = getattr(cls, "MESSAGES", {})
    problems: list[str] = []
    for name, value in dict(pairs).items():
        if name not in known:
            problems.append(f"unknown setting {name} for algorithm {algorithm}")
            continue
        try:
            parse_typed(cls, [(name, value)], algorithm)
        except InvalidArgument as exc:
            if name in messages and _is_integer(value):
                problems.append(messages[name])
            else:
                problems.append(f"failed to validate {name}({value}): {exc}")
    if problems:
        raise InvalidArgument(problems)
    return parse_typed(cls, pairs, algorithm)


def make_rules(
    objective: str, maximize: bool, steps: np.ndarray, thresholds: np.ndarray
) -> list[Rule]:
    """Rules in the objective's direction from loss thresholds (see :mod:`.curves`)."""
    steps, thresholds = cv.records(steps, thresholds)
    comparison = Comparison.LESS if maximize else Comparison.GREATER
    return [
        Rule(objective, float(-t) + 0.0 if maximize else float(t), comparison, int(s))
        for s, t in zip(steps, thresholds, strict=True)
    ]


def _is_integer(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return float(text.strip()).is_integer()
