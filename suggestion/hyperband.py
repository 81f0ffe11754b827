"""Hyperband (Li et al. 2018, "Hyperband: a novel bandit-based approach to hyperparameter
optimization", JMLR 18, Algorithm 1), with Katib's settings and state keys.

With ``R = r_l / min_resource`` and ``s_max = floor(log_eta(R))``, one iteration runs the
brackets ``s = s_max, ..., 0``. Bracket ``s`` starts ``n = ceil((s_max + 1) eta**s / (s + 1))``
random configurations at resource ``r_l eta**-s`` and runs successive halving: rung ``i`` holds
``n_i = floor(n eta**-i)`` configurations at resource ``r_l eta**(i - s)``, the best ``n_i`` of
rung ``i - 1`` (Algorithm 1, lines 3-9). For ``R = 81, eta = 3`` (the paper's Table 1)::

    s=4: 81@1  27@3  9@9  3@27  1@81      s=3: 34@3  11@9  3@27  1@81
    s=2: 15@9   5@27 1@81                 s=1:  8@27  2@81           s=0: 5@81

Unlike Katib's implementation (KATIB_REFERENCE 2.5), bracket sizes are Hyperband's own, not the
request size or ``parallelTrialCount``; a request of any size is filled from the first bracket
with work to hand out: promotions once a rung has finished, else new configurations, else the
next bracket (brackets run side by side, as in parallel Hyperband implementations). Fewer are
returned only while every remaining rung waits for running trials; none once every bracket is
done and nothing runs, which ends the search. Failed, killed, metrics-unavailable and
early-stopped trials finish their rung but are never promoted; a rung promotes
``min(n_i, successes)`` configurations. A promoted trial has its parent's values with a larger
resource, and labels (and a name) naming its configuration, rung and parent.

State is rebuilt from the trials on every call (:mod:`katib.suggestion.multifidelity`). Katib's
state keys (``s_max, b_l, r, n, current_s, current_i, evaluating_trials``) are echoed in
``reply.algorithm`` so Katib's controller and UI see the familiar values; they are a summary of
the rebuilt schedule and are never trusted as input. ``current_s = -1`` means every bracket is
done, as in Katib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from katib.api.settings import setting
from katib.suggestion import multifidelity as mf
from katib.suggestion.base import (
    Algorithm,
    ExperimentInfo,
    Suggestion,
    SuggestResult,
)
from katib.suggestion.history import History
from katib.suggestion.space import Point, SearchSpace

#: Config ids: ``b<bracket>c<index in bracket>``.
_CONFIG = r"b\d+c\d+"


@dataclass(frozen=True)
class BracketSettings(mf.ResourceSettings):
    """The schedule's settings, shared by ``hyperband`` and ``bohb``."""

    iterations: int = setting(
        1, ge=0, doc="passes over the s_max + 1 brackets; 0 repeats them until maxTrialCount"
    )


@dataclass(frozen=True)
class HyperbandSettings(BracketSettings):
    """Settings of ``hyperband`` (Katib's ``r_l``, ``resource_name``, ``eta``; and ours)."""

    sampler: str = mf.sampler_setting()


@dataclass(frozen=True)
class HyperbandState:
    """Katib's Hyperband state keys, echoed as a summary (defaults: Katib's "unset" values)."""

    s_max: int = setting(-1, ge=-1, doc="largest bracket index")
    b_l: float = setting(-1.0, doc="budget of one bracket, (s_max + 1) * r_l")
    r: float = setting(-1.0, doc="smallest resource of bracket current_s")
    n: int = setting(-1, ge=-1, doc="configurations of bracket current_s")
    current_s: int = setting(-2, ge=-2, doc="first unfinished bracket; -1: all done")
    current_i: int = setting(-1, ge=-1, doc="highest rung started in bracket current_s")
    evaluating_trials: int = setting(0, ge=0, doc="trials of the schedule still running")


@dataclass(frozen=True)
class Bracket:
    """One bracket: its global index, ``s``, rung sizes ``n_i`` and resources ``r_i``."""

    index: int
    s: int
    sizes: tuple[int, ...]
    resources: tuple[float, ...]


def bracket(settings: mf.ResourceSettings, index: int) -> Bracket:
    """The ``index``-th bracket: iteration ``index // (s_max + 1)``, ``s`` counting down."""
    top = mf.s_max(settings)
    s = top - index % (top + 1)
    eta = settings.eta
    if float(eta).is_integer():  # exact integer arithmetic, as in the paper's tables
        e = int(eta)
        n = -(-(top + 1) * e**s // (s + 1))
        sizes = tuple(n // e**i for i in range(s + 1))
    else:
        n = math.ceil((top + 1) * eta**s / (s + 1) - 1e-9)
        sizes = tuple(max(math.floor(n * eta**-i + 1e-9), 1) for i in range(s + 1))
    resources = tuple(mf.levels(settings)[top - s :])
    return Bracket(index, s, sizes, resources)


def schedule(settings: mf.ResourceSettings) -> list[Bracket]:
    """The brackets of one iteration, ``s = s_max`` first."""
    return [bracket(settings, g) for g in range(mf.s_max(settings) + 1)]


class Hyperband(Algorithm):
    """Hyperband over a resource parameter; configurations drawn from the prior.

    >>> from katib.suggestion.space import ParameterSpec, ParameterType
    >>> space = SearchSpace((ParameterSpec("lr", ParameterType.DOUBLE, low=0.01, high=0.1),
    ...                      ParameterSpec("epochs", ParameterType.INT, low=1, high=1)))
    >>> settings = HyperbandSettings(r_l=9, resource_name="epochs", random_state=1)
    >>> algo = Hyperband(ExperimentInfo("demo", Hyperband.space_for(
    ...     ExperimentInfo("demo", space), settings)), settings)
    >>> result = algo.suggest(History("minimize"), 12)
    >>> [s.point["epochs"] for s in result.suggestions]
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3]
    >>> result.suggestions[0].name, result.suggestions[0].labels["multifidelity/rung"]
    ('demo-b0c0-r0', '0')
    """

    name = "hyperband"
    settings_class: ClassVar[type] = HyperbandSettings
    state_class = HyperbandState
    reruns_configs = True

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """Katib's checks on ``r_l``, ``resource_name`` and ``eta`` (not its parallelism rule)."""
        mf.require(mf.resource_problems(experiment, settings))

    @classmethod
    def space_for(cls, experiment: ExperimentInfo, settings: Any) -> SearchSpace:
        """The experiment's space with the resource covering every scheduled resource."""
        return mf.widened_space(experiment.space, settings)

    @property
    def resource(self) -> str:
        """The resource parameter's name."""
        name = self.settings.resource_name
        assert name is not None
        return str(name)

    def suggest(self, history: History, count: int) -> SuggestResult:
        """Up to ``count`` trials of the schedule: promotions first, then new configurations."""
        settings: HyperbandSettings = self.settings
        per_iteration = mf.s_max(settings) + 1
        last = settings.iterations * per_iteration if settings.iterations else None
        by_bracket = self._read(history)
        taken = set(history.names)
        out: list[Suggestion] = []
        first_open: tuple[Bracket, int] | None = None
        index, idle = 0, 0
        while len(out) < count and (last is None or index < last):
            if idle > per_iteration:
                break  # a finite space has no configuration left at any resource
            plan = bracket(settings, index)
            before = len(out)
            done, rung = self._work(history, plan, by_bracket.get(index, {}), count, out, taken)
            if not done and first_open is None:
                first_open = (plan, rung)
            fresh = index > max(by_bracket, default=-1)
            idle = idle + 1 if fresh and len(out) == before else 0
            index += 1
        while first_open is None and (last is None or index < last):
            plan = bracket(settings, index)  # the request is full: find the next open bracket
            done, rung = self._work(history, plan, by_bracket.get(index, {}), 0, out, taken)
            if not done:
                first_open = (plan, rung)
            index += 1
        return SuggestResult(out, self._state(out, first_open, by_bracket))

    def _read(self, history: History) -> dict[int, dict[int, dict[str, mf.Run]]]:
        """Schedule runs by bracket, rung and config; runs at the wrong resource are dropped."""
        spec = self.space[self.resource]
        out: dict[int, dict[int, dict[str, mf.Run]]] = {}
        for run in mf.read_runs(history, _CONFIG):
            index = int(run.config[1:].partition("c")[0])
            plan = bracket(self.settings, index)
            if run.rung > plan.s:
                continue
            assert run.trial.point is not None
            expected = mf.resource_value(spec, plan.resources[run.rung])
            if not mf.same_resource(float(run.trial.point[self.resource]), float(expected)):
                continue
            rungs = out.setdefault(index, {})
            rungs.setdefault(run.rung, {}).setdefault(run.config, run)
        return out

    def _work(
        self,
        history: History,
        plan: Bracket,
        rungs: dict[int, dict[str, mf.Run]],
        count: int,
        out: list[Suggestion],
        taken: set[str],
    ) -> tuple[bool, int]:
        """Append up to ``count - len(out)`` trials of one bracket to ``out``.

        Returns whether the bracket is done and the highest rung it has started.
        """
        spec = self.space[self.resource]
        started = 0
        issued = rungs.get(0, {})
        want = min(plan.sizes[0] - len(issued), count - len(out))
        new: list[Point] = []
        if want > 0:
            used = {int(c.partition("c")[2]) for c in issued}
            value = mf.resource_value(spec, plan.resources[0])
            new = self._new_configs(history, plan, value, want, out)
            free = (i for i in range(len(used) + len(new) + 1) if i not in used)
            for point, idx in zip(new, free, strict=False):
                config = f"b{plan.index}c{idx}"
                name = mf.trial_name(self.experiment.name, config, 0, taken)
                out.append(Suggestion(point, mf.labels(config, 0, None), name))
        exhausted = len(new) < want
        complete = (
            not new
            and (len(issued) >= plan.sizes[0] or exhausted)
            and all(r.finished for r in issued.values())
        )
        for i in range(1, plan.s + 1):
            if not complete:
                return False, started
            below, here = rungs.get(i - 1, {}), rungs.get(i, {})
            target = min(plan.sizes[i], sum(r.promotable for r in below.values()))
            ranked = mf.ranked(below.values(), self.experiment.direction)
            picks = [r for r in ranked if r.config not in here]  # best first, not yet promoted
            room = max(target - len(here), 0)
            handed = picks[: max(min(room, count - len(out)), 0)]
            value = mf.resource_value(spec, plan.resources[i])
            for run in handed:
                assert run.trial.point is not None
                point = mf.with_resource(run.trial.point, self.resource, value)
                name = mf.trial_name(self.experiment.name, run.config, i, taken)
                out.append(Suggestion(point, mf.labels(run.config, i, run.trial.name), name))
            if here or handed:
                started = i
            complete = (
                not handed and len(here) >= target and all(r.finished for r in here.values())
            )
        return complete, started

    def _new_configs(
        self,
        history: History,
        plan: Bracket,
        value: int | float,
        count: int,
        batch: Sequence[Suggestion],
    ) -> list[Point]:
        """``count`` configurations at resource ``value``, distinct from those already run there.

        Drawn as the ``sampler`` setting says (:func:`~katib.suggestion.multifidelity.
        new_configs`); :class:`~katib.suggestion.bohb.BOHB` overrides this with its model.
        """
        rng = np.random.default_rng([self.stable_seed, plan.index, len(history)])
        spec = self.space[self.resource]
        values = [float(mf.resource_value(spec, r)) for r in mf.levels(self.settings)]
        return mf.new_configs(
            self.experiment,
            self.resource,
            self.sampler,
            history,
            values,
            value,
            count,
            rng,
            batch,
        )

    @property
    def sampler(self) -> str:
        """How new configurations are drawn: the ``sampler`` setting."""
        return str(self.settings.sampler)

    def _state(
        self,
        out: Sequence[Suggestion],
        first_open: tuple[Bracket, int] | None,
        by_bracket: dict[int, dict[int, dict[str, mf.Run]]],
    ) -> HyperbandState:
        """Katib's state keys summarising the schedule after this reply."""
        settings: HyperbandSettings = self.settings
        assert settings.r_l is not None
        top = mf.s_max(settings)
        running = sum(
            not run.finished
            for rungs in by_bracket.values()
            for runs in rungs.values()
            for run in runs.values()
        )
        if first_open is None:
            return HyperbandState(
                s_max=top, b_l=(top + 1) * settings.r_l, current_s=-1, evaluating_trials=running
            )
        plan, rung = first_open
        return HyperbandState(
            s_max=top,
            b_l=(top + 1) * settings.r_l,
            r=plan.resources[0],
            n=plan.sizes[0],
            current_s=plan.s,
            current_i=rung,
            evaluating_trials=running + len(out),
        )
