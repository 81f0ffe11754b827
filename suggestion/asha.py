"""Asynchronous successive halving, ``asha`` (Li et al. 2020, "A system for massively parallel
hyperparameter tuning", MLSys, Algorithm 2).

Rungs ``k = 0..K`` run resources ``r_l * eta**(k - K)`` with ``K = s_max - s``, ``s_max =
floor(log_eta(r_l / min_resource))`` and ``s`` the minimum early-stopping rate (so the top rung
is ``r_l`` and the bottom one at least ``min_resource * eta**s``). Every suggestion is one call of
the paper's ``get_job``: scanning rungs from the top, promote the best configuration of the top
``floor(|rung k| / eta)`` of rung ``k`` that has not been promoted yet to rung ``k + 1``; if no
rung has one, start a new random configuration at rung 0. ``|rung k|`` counts the trials of rung
``k`` that finished with a value; early-stopped ones count but rank last and failed ones never
count. A worker never waits for a rung to fill, so a request is always filled while the space
has configurations left (a finite space ends the search once every configuration has run and
nothing is left to promote).

State lives in the trials (labels and names, :mod:`katib.suggestion.multifidelity`): the
service is stateless and a restarted process gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from katib.api.settings import setting
from katib.suggestion import multifidelity as mf
from katib.suggestion.base import (
    Algorithm,
    ExperimentInfo,
    Suggestion,
    SuggestResult,
)
from katib.suggestion.history import History, TrialState
from katib.suggestion.space import Point, SearchSpace

#: Config ids: ``c<index>``.
_CONFIG = r"c\d+"


@dataclass(frozen=True)
class ASHASettings(mf.ResourceSettings):
    """Settings of ``asha``: the resource settings plus the minimum early-stopping rate."""

    min_early_stopping_rate: int = setting(
        0, ge=0, doc="s: skip the s lowest rungs (bottom rung min_resource * eta**s)"
    )
    sampler: str = mf.sampler_setting()


class ASHA(Algorithm):
    """Asynchronous successive halving over a resource parameter.

    >>> from katib.suggestion.space import ParameterSpec, ParameterType
    >>> space = SearchSpace((ParameterSpec("lr", ParameterType.DOUBLE, low=0.01, high=0.1),
    ...                      ParameterSpec("epochs", ParameterType.INT, low=1, high=27)))
    >>> settings = ASHASettings(r_l=27, resource_name="epochs", random_state=1)
    >>> algo = ASHA(ExperimentInfo("demo", space), settings)
    >>> [s.point["epochs"] for s in algo.suggest(History("minimize"), 3).suggestions]
    [1, 1, 1]
    """

    name = "asha"
    settings_class = ASHASettings
    reruns_configs = True

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """The resource settings, and a rate that leaves at least one rung."""
        problems = mf.resource_problems(experiment, settings)
        if not problems and settings.min_early_stopping_rate > mf.s_max(settings):
            problems.append(
                f"min_early_stopping_rate ({settings.min_early_stopping_rate}) must not exceed "
                f"s_max = floor(log_eta(r_l / min_resource)) = {mf.s_max(settings)}"
            )
        mf.require(problems)

    @classmethod
    def space_for(cls, experiment: ExperimentInfo, settings: Any) -> SearchSpace:
        """The experiment's space with the resource covering every rung's resource."""
        return mf.widened_space(experiment.space, settings)

    @property
    def resource(self) -> str:
        """The resource parameter's name."""
        return str(self.settings.resource_name)

    def rungs(self) -> list[float]:
        """Resources of rungs ``0..K``, smallest first."""
        return mf.levels(self.settings)[self.settings.min_early_stopping_rate :]

    def suggest(self, history: History, count: int) -> SuggestResult:
        """``count`` jobs: promotions (highest rung first), then new configurations."""
        spec = self.space[self.resource]
        values = [mf.resource_value(spec, r) for r in self.rungs()]
        rungs = self._read(history, values)
        taken = set(history.names)
        out: list[Suggestion] = []
        eta = self.settings.eta
        promoted: set[tuple[int, str]] = set()
        while len(out) < count:
            run = self._promotion(rungs, promoted, eta)
            if run is None:
                break
            k = run.rung + 1
            assert run.trial.point is not None
            point = mf.with_resource(run.trial.point, self.resource, values[k])
            name = mf.trial_name(self.experiment.name, run.config, k, taken)
            out.append(Suggestion(point, mf.labels(run.config, k, run.trial.name), name))
            promoted.add((k, run.config))
        used = [int(c[1:]) for rung in rungs for c in rung]
        first = max(used, default=-1) + 1
        for j, point in enumerate(self._new_configs(history, values[0], count - len(out))):
            config = f"c{first + j}"
            name = mf.trial_name(self.experiment.name, config, 0, taken)
            out.append(Suggestion(point, mf.labels(config, 0, None), name))
        return SuggestResult(out)

    def _read(self, history: History, values: list[int | float]) -> list[dict[str, mf.Run]]:
        """Runs by rung and config; runs at the wrong resource for their rung are dropped."""
        rungs: list[dict[str, mf.Run]] = [{} for _ in values]
        for run in mf.read_runs(history, _CONFIG):
            assert run.trial.point is not None
            if run.rung >= len(values) or not mf.same_resource(
                float(run.trial.point[self.resource]), float(values[run.rung])
            ):
                continue
            rungs[run.rung].setdefault(run.config, run)
        return rungs

    def _promotion(
        self, rungs: list[dict[str, mf.Run]], promoted: set[tuple[int, str]], eta: float
    ) -> mf.Run | None:
        """The paper's ``get_job`` promotion step: the run to promote, or ``None``.

        ``promoted`` holds the (rung, config) promotions already handed out in this batch.
        """
        for k in range(len(rungs) - 2, -1, -1):
            results = sum(
                r.trial.state in (TrialState.SUCCEEDED, TrialState.EARLY_STOPPED)
                and r.trial.value is not None
                for r in rungs[k].values()
            )
            top = int(results / eta + 1e-9)
            for run in mf.ranked(rungs[k].values(), self.experiment.direction)[:top]:
                if run.config not in rungs[k + 1] and (k + 1, run.config) not in promoted:
                    return run
        return None

    def _new_configs(self, history: History, value: int | float, count: int) -> list[Point]:
        """``count`` new configurations at the bottom rung, not run there before, drawn as the
        ``sampler`` setting says (:func:`~katib.suggestion.multifidelity.new_configs`)."""
        if count <= 0:
            return []
        rng = np.random.default_rng([self.stable_seed, len(history)])
        spec = self.space[self.resource]
        values = [float(mf.resource_value(spec, r)) for r in self.rungs()]
        return mf.new_configs(
            self.experiment,
            self.resource,
            self.settings.sampler,
            history,
            values,
            value,
            count,
            rng,
        )
