"""The algorithm interface: what a researcher implements to add a suggestion algorithm.

An algorithm is a plain object over numpy; it never sees protobuf or gRPC::

    @dataclass(frozen=True)
    class MySettings:
        random_state: int | None = setting(None, ge=0)

    @register
    class MyAlgorithm(Algorithm):
        name = "my-algorithm"
        settings_class = MySettings

        def suggest(self, history: History, count: int) -> list[Point]:
            rng = self.rng(history)
            return self.space.sample(rng, count)

The service builds the algorithm from the experiment (search space, direction, budget) and its
typed settings, and calls :meth:`Algorithm.suggest` with the *whole* trial history on every
request. An algorithm must give the same answer for the same request in a fresh process (use
:meth:`Algorithm.rng`, which derives its stream from the seed and the history); caching across
calls is allowed only as a speed-up.

Stateful algorithms (Hyperband's brackets, CMA-ES's generations, PBT's lineage) return a
:class:`SuggestResult` instead of bare points: each :class:`Suggestion` may carry labels and a
trial name, and ``state`` is an instance of the algorithm's :attr:`Algorithm.state_class`, a
frozen dataclass declared like the settings. The service echoes that state in
``reply.algorithm.algorithm_settings``; Katib's controller (and ours) overlays those pairs onto
the experiment's settings in the next request, where they arrive as :attr:`Algorithm.state`.
State keys are accepted only when declared, so unknown settings are still rejected::

    @dataclass(frozen=True)
    class BracketState:
        bracket: int = setting(0, ge=0, doc="bracket being filled")

    @register
    class Staged(Algorithm):
        name = "staged"
        state_class = BracketState

        def suggest(self, history: History, count: int) -> SuggestResult:
            stage = self.state.bracket
            points = self.space.sample(self.rng(history), count)
            labels = {"staged/bracket": str(stage)}
            return SuggestResult(
                [Suggestion(p, labels) for p in points], BracketState(bracket=stage + 1)
            )

Echoed state is a hint from the last reply, which a different replica or a lost reply can make
stale: an algorithm that must be exact rebuilds its state from the trials (their labels, names
and timestamps), as :mod:`katib.suggestion.replay` shows.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from katib.api.trials import Direction
from katib.suggestion.history import History
from katib.suggestion.space import Point, SearchSpace

if TYPE_CHECKING:
    from katib.nas.config import NasConfig


@dataclass(frozen=True)
class ExperimentInfo:
    """What an algorithm may know about the experiment besides its settings."""

    name: str
    space: SearchSpace
    direction: Direction = Direction.MINIMIZE
    objective_metric: str = ""
    max_trial_count: int | None = None
    parallel_trial_count: int | None = None
    #: Katib's ``nasConfig`` for neural architecture search (``space`` is then a ``NasSpace``).
    nas_config: NasConfig | None = None


@dataclass(frozen=True)
class NoSettings:
    """Settings of an algorithm that takes none."""


@dataclass(frozen=True)
class Suggestion:
    """One new trial: its point, labels to put on the trial, and optionally its name.

    ``name`` is the trial name the controller must use (Katib's ``trial_name``; it must be a
    valid Kubernetes name, unique in the experiment); ``None`` lets the controller choose.
    """

    point: Point
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class SuggestResult:
    """What a stateful algorithm returns: its suggestions and the state to echo.

    ``state`` is an instance of the algorithm's ``state_class`` (``None``: echo the request's
    settings unchanged). Fewer suggestions than requested means the search is exhausted for
    now; zero while no trial is running means it has ended.
    """

    suggestions: Sequence[Suggestion]
    state: Any = None

    @property
    def points(self) -> list[Point]:
        """The suggested points, in order."""
        return [s.point for s in self.suggestions]


class Algorithm(ABC):
    """Base class of every suggestion algorithm.

    Subclasses set :attr:`name` (Katib's algorithm name) and :attr:`settings_class` (a frozen
    dataclass built with :func:`katib.api.settings.setting`), and implement
    :meth:`suggest`. Override :meth:`check` to reject experiments the algorithm cannot handle.
    """

    name: ClassVar[str]
    settings_class: ClassVar[type] = NoSettings
    #: A frozen dataclass of the state this algorithm echoes in ``reply.algorithm`` (declared
    #: with :func:`~katib.api.settings.setting`, like the settings); ``None`` for none.
    state_class: ClassVar[type | None] = None
    #: False for algorithms that ignore objective values (random, grid, sobol).
    uses_objective: ClassVar[bool] = True
    #: True for neural architecture search algorithms, which need ``nasConfig`` instead of
    #: parameters (ENAS, DARTS); every other algorithm rejects a nasConfig experiment.
    nas: ClassVar[bool] = False
    #: True for multi-fidelity algorithms, which run a configuration again with a larger
    #: resource: values recur (all but the resource parameter's), so a finite space is not
    #: used up after one trial per point; the search ends when the schedule does.
    reruns_configs: ClassVar[bool] = False

    def __init__(self, experiment: ExperimentInfo, settings: Any, state: Any = None) -> None:
        self.experiment = experiment
        self.space = experiment.space
        self.settings = settings
        if state is None and self.state_class is not None:
            state = self.state_class()
        #: The echoed state from the request (defaults when absent); ``None`` without a class.
        self.state = state

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """Raise ``InvalidArgument``/``FailedPrecondition`` if the experiment is unusable."""
        return None

    @classmethod
    def space_for(cls, experiment: ExperimentInfo, settings: Any) -> SearchSpace:
        """The space this algorithm's trials live in (called after :meth:`check`).

        The default is the experiment's own space. Multi-fidelity algorithms widen their
        resource parameter to the resources their settings schedule (Katib's Hyperband sets it
        from ``r_l``, whatever range the experiment declares), so trials at those resources
        decode as points of the space.
        """
        return experiment.space

    @abstractmethod
    def suggest(self, history: History, count: int) -> list[Point] | SuggestResult:
        """Return up to ``count`` new points; fewer only when the search space is exhausted.

        Stateless samplers return a list of points; algorithms that label or name their trials,
        or echo state, return a :class:`SuggestResult`.
        """

    def propose(self, history: History, count: int) -> SuggestResult:
        """:meth:`suggest`, with a bare list of points wrapped as a :class:`SuggestResult`."""
        result = self.suggest(history, count) if count > 0 else []
        if isinstance(result, SuggestResult):
            return result
        return SuggestResult([Suggestion(point) for point in result])

    @property
    def seed(self) -> int | None:
        """The user's ``random_state`` setting, if the algorithm has one."""
        return getattr(self.settings, "random_state", None)

    @property
    def stable_seed(self) -> int:
        """The user's seed, or a CRC-32 of the experiment name when none is set."""
        if self.seed is not None:
            return self.seed
        return zlib.crc32(self.experiment.name.encode())

    def rng(
        self, history: History, salt: str = "", seed: int | None = None
    ) -> np.random.Generator:
        """A generator derived from a seed and the history, so restarts repeat answers.

        ``seed`` defaults to the user's ``random_state``; without either, the stream is fresh
        entropy on every call.
        """
        seed = self.seed if seed is None else seed
        if seed is None:
            return np.random.default_rng()
        digest = zlib.crc32(history.sorted_names, zlib.crc32(f"{salt}\n".encode()))
        return np.random.default_rng([seed, len(history), digest])


def draw_distinct(
    space: SearchSpace,
    rng: np.random.Generator,
    draw: Callable[[int], list[Point]],
    count: int,
    history: History,
    max_rounds: int = 20,
    check_continuous: bool = False,
) -> list[Point]:
    """Up to ``count`` points from ``draw``, distinct and not already in ``history``.

    Continuous spaces return ``draw(count)`` unchecked (independent draws collide with
    probability zero) unless ``check_continuous`` is set, as deterministic sequences need. Finite
    spaces reject repeats; when draws keep colliding (a nearly exhausted space) the remaining
    points of spaces up to a million points are enumerated and chosen uniformly, so the result
    is short only when the space is exhausted (or, for larger spaces, after ``max_rounds``
    rounds of collisions).
    """
    if count <= 0:
        return []
    if space.cardinality is None and not check_continuous:
        return draw(count)
    seen = history.taken_keys(space)
    chosen: list[Point] = []
    for _ in range(max_rounds):
        for point in draw(count - len(chosen)):
            key = space.key(point)
            if key not in seen:
                seen.add(key)
                chosen.append(point)
        if len(chosen) == count:
            return chosen
    if space.cardinality is None or space.cardinality > 1_000_000:
        return chosen
    rest = [p for p in enumerate_space(space) if space.key(p) not in seen]
    picks = rng.permutation(len(rest))[: count - len(chosen)]
    return chosen + [rest[i] for i in picks]


def enumerate_space(space: SearchSpace) -> list[Point]:
    """Every point of a finite space, first parameter varying slowest."""
    grids = [p.grid() for p in space.params]
    points: list[Point] = [{}]
    for spec, values in zip(space.params, grids, strict=True):
        points = [{**pt, spec.name: v} for pt in points for v in values]
    return points
