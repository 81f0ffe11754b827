"""BOHB (Falkner et al. 2018, "BOHB: robust and efficient hyperparameter optimization at scale",
ICML, Algorithm 2): Hyperband's schedule with new configurations from a density model.

Brackets, rungs, promotions and state are :class:`~katib.suggestion.hyperband.Hyperband`'s; only
the new configurations of a bracket's first rung differ:

1. The model is fitted on the largest resource with at least ``min_points_in_model + 2``
   successful observations (``N_min = d + 1`` by default, ``d`` the number of configuration
   parameters); until one exists, configurations are random (section 4.1). With ``model =
   all-rungs`` (not the paper's) it is fitted instead on every configuration tried, ranked by
   the rung it reached and then its value there, once that many have a result.
2. A fraction ``random_fraction`` of configurations is always random (``rho = 1/3``).
3. The best ``max(N_min, top_n_percent% of n)`` observations form the good group and the worst
   ``max(N_min, (100 - top_n_percent)% of n)`` the bad group (eq. 1 and section 4.1); running
   trials at that resource and this batch's picks join the bad group (constant liar, as our
   TPE, so a batch spreads out). ``l(x)`` and ``g(x)`` are multivariate Parzen estimators over
   the configuration space, the product kernels of ``multivariate-tpe``
   (:mod:`katib.suggestion.parzen`).
4. ``num_samples`` candidates are drawn from ``l`` with bandwidths widened by
   ``bandwidth_factor`` (``b_w = 3``) and the one maximising ``l(x) / g(x)`` is taken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from katib.api.settings import setting
from katib.suggestion import multifidelity as mf
from katib.suggestion import parzen
from katib.suggestion.base import Suggestion, draw_distinct
from katib.suggestion.history import History, Trial, TrialState
from katib.suggestion.hyperband import Bracket, BracketSettings, Hyperband
from katib.suggestion.space import Point, SearchSpace

#: Weight of the prior kernel in ``l`` and ``g``, relative to one observation.
_PRIOR_WEIGHT = 1.0
#: Values of the ``model`` setting.
MODELS = ("largest-rung", "all-rungs")


@dataclass(frozen=True)
class BOHBSettings(BracketSettings):
    """Settings of ``bohb``: Hyperband's plus the model's (hpbandster's names and defaults)."""

    random_fraction: float = setting(
        1 / 3, ge=0, le=1, doc="fraction of new configurations drawn at random"
    )
    top_n_percent: float = setting(15.0, gt=0, lt=100, doc="percentage in the good group")
    num_samples: int = setting(64, ge=1, doc="candidates drawn from l(x) per configuration")
    min_points_in_model: int | None = setting(
        None, ge=1, doc="observations needed at a resource (+2); unset: d + 1"
    )
    bandwidth_factor: float = setting(
        3.0, gt=0, doc="widening of l(x)'s bandwidths when drawing candidates"
    )
    model: str = setting(
        "largest-rung",
        choices=MODELS,
        doc="data of the model: largest-rung (the paper's: observations at the largest "
        "resource with enough of them) or all-rungs (every configuration, ranked by the rung "
        "it reached, then its value there, as the tpe samplers of hyperband and asha)",
    )


@dataclass(frozen=True)
class Observations:
    """What the model is fitted on: configurations ``u`` ``(n, d)`` and ``losses`` ``(n,)``
    observed at ``resource`` (``None``: at every rung), and the configurations still running
    (``pending``: the liars of the bad group)."""

    resource: float | None
    u: np.ndarray
    losses: np.ndarray
    pending: list[Point]


class BOHB(Hyperband):
    """Hyperband whose new configurations come from a Parzen-estimator model (BOHB).

    >>> from katib.suggestion.base import ExperimentInfo
    >>> from katib.suggestion.space import ParameterSpec, ParameterType
    >>> space = SearchSpace((ParameterSpec("lr", ParameterType.DOUBLE, low=0.01, high=0.1),
    ...                      ParameterSpec("epochs", ParameterType.INT, low=1, high=9)))
    >>> algo = BOHB(ExperimentInfo("demo", space),
    ...             BOHBSettings(r_l=9, resource_name="epochs", random_state=1))
    >>> len(algo.suggest(History("minimize"), 4).suggestions)
    4
    """

    name = "bohb"
    settings_class = BOHBSettings

    @property
    def sampler(self) -> str:
        """Until its model applies (and for the random fraction), BOHB draws from the prior."""
        return "random"

    def model_data(
        self, history: History, batch: Sequence[Suggestion] = ()
    ) -> Observations | None:
        """The model's data (step 1), or ``None`` while there is not enough of it.

        ``largest-rung``: the observations at the largest resource with ``min_points_in_model
        + 2`` of them, and the trials running there and this batch's picks there as pending.
        ``all-rungs``: every configuration (:func:`~katib.suggestion.multifidelity.
        lineage_model`) once that many have a result; configurations running their first rung
        and this batch's new ones are pending.
        """
        settings: BOHBSettings = self.settings
        space = mf.config_space(self.space, self.resource)
        need = (settings.min_points_in_model or space.dim + 1) + 2
        spec = self.space[self.resource]
        values = [float(mf.resource_value(spec, level)) for level in mf.levels(settings)]
        if settings.model == "all-rungs":
            model = mf.lineage_model(history, space, self.resource, values)
            if len(model.completed) < need:
                return None
            known = model.taken_keys(space)
            new = [{k: s.point[k] for k in space.names} for s in batch]
            pending = [p for p in new if space.key(p) not in known]
            done = History(model.direction, model.completed)
            pending += [t.point for t in model.pending if t.point is not None]
            return Observations(None, space.encode(done.points()), done.losses(), pending)
        found = mf.model_rung(history, self.resource, values, need)
        if found is None:
            return None
        value, there = found
        done_trials = [
            t for t in there.trials if t.state is TrialState.SUCCEEDED and t.value is not None
        ]
        sub = History(history.direction, done_trials)
        pending = [
            {k: t.point[k] for k in space.names}
            for t in mf.at_resource(history, self.resource, value, batch).trials
            if t.state is TrialState.PENDING and t.point is not None
        ]
        return Observations(value, space.encode(sub.points()), sub.losses(), pending)

    def _new_configs(
        self,
        history: History,
        plan: Bracket,
        value: int | float,
        count: int,
        batch: Sequence[Suggestion],
    ) -> list[Point]:
        """Model-based configurations (a ``random_fraction`` of them random), distinct."""
        settings: BOHBSettings = self.settings
        data = self.model_data(history, batch)
        if data is None:
            return super()._new_configs(history, plan, value, count, batch)
        space = mf.config_space(self.space, self.resource)
        rng = np.random.default_rng([self.stable_seed, plan.index, len(history), 1])
        same = mf.at_resource(history, self.resource, value, batch)
        taken = same.taken_keys(space) if space.cardinality is not None else None
        liars = space.encode(data.pending)
        out: list[Point] = []
        for _ in range(count):
            point = None
            if rng.random() >= settings.random_fraction:
                point = self._model_point(space, data, liars, rng, taken)
            if point is None:
                extra = [Trial(f"_new{i}", p, TrialState.PENDING) for i, p in enumerate(out)]
                history_now = History(history.direction, (*same.trials, *extra))
                drawn = draw_distinct(space, rng, lambda n: space.sample(rng, n), 1, history_now)
                if not drawn:
                    break
                point = drawn[0]
            out.append(point)
            if taken is not None:
                taken.add(space.key(point))
            liars = np.vstack([liars, space.encode([point])])
        return [mf.with_resource(c, self.resource, value) for c in out]

    def _model_point(
        self,
        space: SearchSpace,
        data: Observations,
        liars: np.ndarray,
        rng: np.random.Generator,
        taken: set[tuple[str, ...]] | None,
    ) -> Point | None:
        """The candidate maximising ``l(x) / g(x)`` (steps 3-4), or ``None`` if all are taken."""
        settings: BOHBSettings = self.settings
        n = len(data.losses)
        floor = settings.min_points_in_model or space.dim + 1
        n_good = max(floor, math.floor(settings.top_n_percent * n / 100))
        n_bad = max(floor, math.floor((100 - settings.top_n_percent) * n / 100))
        order = np.argsort(data.losses, kind="stable")
        good = data.u[order[:n_good]]
        bad = np.vstack([data.u[order[::-1][:n_bad]], liars])
        layout = parzen.Layout.of(space)
        l_est = parzen.fit(layout, good, np.ones(len(good)), _PRIOR_WEIGHT)
        g_est = parzen.fit(layout, bad, np.ones(len(bad)), _PRIOR_WEIGHT)
        wide = l_est._replace(sigmas=np.minimum(l_est.sigmas * settings.bandwidth_factor, 1.0))
        raw = parzen.sample(wide, layout, rng, settings.num_samples, joint=True)
        cells = parzen.snap(space, layout, raw)
        score = parzen.log_pdf(l_est, layout, cells, True) - parzen.log_pdf(
            g_est, layout, cells, True
        )
        for i in np.argsort(-score, kind="stable"):
            point = space.decode(cells.u[i][None, :])[0]
            if taken is None or space.key(point) not in taken:
                return point
        return None
