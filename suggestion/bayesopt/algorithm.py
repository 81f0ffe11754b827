"""``bayesianoptimization``: Gaussian-process Bayesian optimisation with Katib's settings.

Each ``GetSuggestions`` rebuilds the model from the request, so the service is stateless:

1. **Start-up.** The first ``n_initial_points`` trials of the experiment (counted over every
   trial, pending and failed ones included, so a parallel first batch is not modelled on
   nothing) come from the experiment's scrambled Sobol sequence (:mod:`katib.suggestion.sobol`),
   as do all points while fewer than two trials have a value.
2. **Model.** Completed trials are encoded into ``U`` (:mod:`katib.suggestion.space`: log,
   normal and log-normal priors become uniform there; ints and steps sit on their cell
   centres), their losses (:meth:`History.losses`: maximised objectives negated, non-finite
   values clipped) standardised, and a GP (:mod:`.gp`, Matérn-5/2 ARD with a categorical
   overlap kernel) fitted by MAP — or, for ``RF``/``ET``/``GBRT``, a tree ensemble
   (:mod:`.ensembles`).
3. **Bounded cost.** Hyper-parameters are fitted on at most :data:`FIT_CAP` trials and the
   posterior conditions on at most :data:`POSTERIOR_CAP`: the best quarter of the cap by loss,
   and a seeded uniform sample of the others. Memory is therefore ``O(cap^2)`` whatever the
   history (about 3 MB for the posterior at 2 000 trials), and a request at 2 000 trials costs
   about what one at 600 does.
4. **Pending and failed trials, batches.** Running trials, start-up points of the same batch and
   each point already chosen in the batch are added to the GP at the posterior mean ("kriging
   believer", Ginsbourger et al. 2010): the mean does not move, the variance at and near them
   collapses, so EI there vanishes and a batch of ``k`` spreads out. Failed trials (failed,
   killed, metrics unavailable; at most the latest :data:`FAILED_CAP`) are added at the worst
   observed loss: a configuration that crashed usually crashes again, and without this a
   deterministic model would propose the same crashing point forever.
5. **Acquisition** (:mod:`.acquisition`) maximised by :mod:`.optimize` over candidates that
   never repeat a tried, pending or chosen point. ``gp_hedge`` (Katib's default) keeps the
   portfolio of EI, PI and LCB (Hoffman et al. 2011) as a portfolio of *starting points*: each
   acquisition's best candidate seeds a local search, and the point with the highest log-EI
   wins. scikit-optimize's GP-Hedge drew one arm with probabilities from gains kept in process
   memory (lost on every restart); a memoryless draw with ``softmax(-mean)`` rewards picked the
   exploitative PI proposal too often and stalled on Hartmann-6 (median regret 0.18 against
   0.005 for EI, 5 seeds at 60 trials), so the arms now only widen the search.

Randomness comes from :meth:`Algorithm.rng` (seed and history), so the same request with
``random_state`` gets the same answer in a fresh process. The fitted hyper-parameters are cached
per experiment, keyed by the experiment's name, its space and a digest of the exact data they
were fitted on; the fit is deterministic, so a hit returns what a fresh fit would.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from katib.api.errors import FailedPrecondition, InvalidArgument
from katib.api.settings import setting
from katib.suggestion.base import Algorithm, ExperimentInfo, draw_distinct
from katib.suggestion.bayesopt import acquisition, ensembles, gp, optimize
from katib.suggestion.bayesopt.acquisition import Acquisition
from katib.suggestion.history import History, Trial, TrialState
from katib.suggestion.sobol import SobolSearch, SobolSettings
from katib.suggestion.space import Point

logger = logging.getLogger(__name__)

FIT_CAP = 160
POSTERIOR_CAP = 600
FAILED_CAP = 100
_MIN_MODEL_TRIALS = 2
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[Any, ...], gp.Params] = OrderedDict()
_cache_lock = threading.Lock()
_threadpools: Any = None


@dataclass(frozen=True)
class BayesOptSettings:
    """Settings of ``bayesianoptimization``: Katib's (scikit-optimize's) names and defaults."""

    base_estimator: str = setting(
        "GP",
        choices=("GP", *ensembles.ESTIMATORS),
        doc="surrogate: GP, or RF / ET / GBRT tree ensembles (need scikit-learn)",
    )
    n_initial_points: int = setting(
        10, ge=0, doc="trials from the scrambled Sobol sequence before the model takes over"
    )
    acq_func: str = setting(
        "gp_hedge",
        choices=("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"),
        doc="acquisition: EI (log-EI), PI, LCB (kappa 1.96) or gp_hedge over the three; "
        "EIps/PIps act as EI/PI",
    )
    acq_optimizer: str = setting(
        "auto",
        choices=("auto", "sampling", "lbfgs"),
        doc="auto: lbfgs for GP, sampling for tree ensembles; sampling: candidates only; "
        "lbfgs: candidates, then L-BFGS-B and coordinate sweeps",
    )
    random_state: int | None = setting(None, ge=0, doc="seed; unset draws fresh entropy")


class BayesianOptimization(Algorithm):
    """GP Bayesian optimisation (Katib's ``bayesianoptimization``) on numpy and scipy.

    >>> from katib.suggestion.space import ParameterSpec, ParameterType, SearchSpace
    >>> space = SearchSpace((ParameterSpec("x", ParameterType.DOUBLE, low=-2, high=0),
    ...                      ParameterSpec("c", ParameterType.CATEGORICAL, choices=("a", "b"))))
    >>> algo = BayesianOptimization(
    ...     ExperimentInfo("demo", space), BayesOptSettings(n_initial_points=4, random_state=1))
    >>> trials = [Trial(f"t{i}", p, TrialState.SUCCEEDED, (p["x"] + 1) ** 2)
    ...           for i, p in enumerate(algo.suggest(History("minimize"), 4))]
    >>> [sorted(p) for p in algo.suggest(History("minimize", trials), 2)]
    [['c', 'x'], ['c', 'x']]
    """

    name = "bayesianoptimization"
    settings_class = BayesOptSettings

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """Tree ensembles need scikit-learn and have no gradients for ``lbfgs``."""
        if settings.base_estimator == "GP":
            return
        if settings.acq_optimizer == "lbfgs":
            raise InvalidArgument(
                f"setting 'acq_optimizer': lbfgs needs base_estimator GP; "
                f"{settings.base_estimator} has no gradients (use auto or sampling)"
            )
        if not ensembles.available():
            raise FailedPrecondition(
                f"setting 'base_estimator': {settings.base_estimator} needs scikit-learn, "
                "which is not installed in this service (pip install scikit-learn)"
            )

    def suggest(self, history: History, count: int) -> list[Point]:
        """``count`` points: Sobol during start-up, then the model's, one at a time."""
        if count <= 0:
            return []
        settings: BayesOptSettings = self.settings
        if len(history.completed) < _MIN_MODEL_TRIALS:
            n_sobol = count
        else:
            n_sobol = min(count, max(0, settings.n_initial_points - len(history)))
        chosen: list[Point] = []
        if n_sobol:
            sobol = SobolSearch(self.experiment, SobolSettings(random_state=self.seed))
            chosen = sobol.suggest(history, n_sobol)
            if len(chosen) < n_sobol or n_sobol == count:
                return chosen
        with single_threaded_blas():
            return chosen + self._model_points(history, chosen, count - len(chosen))

    def _model_points(self, history: History, chosen: list[Point], count: int) -> list[Point]:
        rng = self.rng(history)
        space = self.space
        x = space.encode(history.points(history.completed))
        losses = history.losses()
        spread = float(losses.std())
        y = (losses - losses.mean()) / (spread if spread > 0 else 1.0)
        keep = subsample(y, POSTERIOR_CAP, rng)
        model = self._model(x, y, rng)
        failed = history.failed[-FAILED_CAP:]
        believed = space.encode([*history.points(history.pending), *chosen])
        if len(believed):
            model = condition(model, believed, model.predict(believed)[0])
        if failed:
            worst = np.full(len(failed), float(y.max()))
            model = condition(model, space.encode(history.points(failed)), worst)
        taken = set(optimize.row_keys(space.encode(history.points()))) | set(
            optimize.row_keys(believed)
        )
        incumbents = x[np.argsort(y, kind="stable")[:5]]
        n_sobol = optimize.N_CANDIDATES * (4 if self._mode() == "sampling" else 1)
        cands = optimize.candidates(space, rng, incumbents, n_sobol=n_sobol)
        best = float(y[keep].min())
        rows: list[np.ndarray] = []
        for _ in range(count):
            avoid = np.vstack([believed, *rows]) if len(rows) else believed
            row = self._propose(model, cands, taken, best, avoid)
            if row is None:
                row = self._fallback(history, chosen, rows, rng)
                if row is None:
                    break
            rows.append(row)
            taken.update(optimize.row_keys(row[None, :]))
            model = condition(model, row[None, :], model.predict(row[None, :])[0])
        return space.decode(np.array(rows)) if rows else []

    def _mode(self) -> str:
        mode: str = self.settings.acq_optimizer
        if mode == "auto":
            return "lbfgs" if self.settings.base_estimator == "GP" else "sampling"
        return mode

    def _model(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Any:
        """The fitted surrogate: a GP posterior or a tree ensemble."""
        keep = subsample(y, POSTERIOR_CAP, rng)
        kind = self.settings.base_estimator
        if kind != "GP":
            seed = int(rng.integers(2**31 - 1))
            return _Refit(kind, x[keep], y[keep], seed)
        cat = self.space.view.categorical
        fit_idx = keep if len(keep) <= FIT_CAP else np.sort(subsample(y[keep], FIT_CAP, rng))
        x_fit, y_fit = x[keep][fit_idx], y[keep][fit_idx]
        params = self._fit(x_fit, y_fit, cat)
        return gp.Posterior(x[keep], y[keep], params, cat)

    def _fit(self, x: np.ndarray, y: np.ndarray, cat: np.ndarray) -> gp.Params:
        digest = hashlib.sha1(x.tobytes() + y.tobytes()).hexdigest()
        key = (self.experiment.name, self.space, digest)
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
        params = gp.fit(x, y, cat)
        with _cache_lock:
            _cache[key] = params
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        return params

    def _propose(
        self,
        model: Any,
        cands: np.ndarray,
        taken: set[bytes],
        best: float,
        avoid: np.ndarray,
    ) -> np.ndarray | None:
        """One point by the acquisition (for ``gp_hedge``, log-EI over the portfolio's starts)."""
        kind = acquisition.normalise_kind(self.settings.acq_func)
        local = self._mode() == "lbfgs"
        predicted = model.predict(cands)
        portfolio: tuple[Acquisition, ...] = ()
        if kind == "gp_hedge":
            kind = "EI"
            portfolio = (Acquisition("PI", best), Acquisition("LCB", best))
        found = optimize.maximise(
            self.space,
            model,
            Acquisition(kind, best),
            cands,
            taken,
            local,
            predicted,
            portfolio,
            avoid,
        )
        return None if found is None else found[0]

    def _fallback(
        self,
        history: History,
        chosen: list[Point],
        rows: list[np.ndarray],
        rng: np.random.Generator,
    ) -> np.ndarray | None:
        """A random untried point when every candidate is taken (a nearly exhausted space)."""
        extra = [*chosen, *self.space.decode(np.array(rows))] if rows else list(chosen)
        liars = [Trial(f"_batch{i}", p, TrialState.PENDING) for i, p in enumerate(extra)]
        full = History(history.direction, (*history.trials, *liars))
        found = draw_distinct(self.space, rng, lambda n: self.space.sample(rng, n), 1, full)
        return self.space.encode(found)[0] if found else None


def single_threaded_blas() -> AbstractContextManager[Any]:
    """One BLAS thread while modelling.

    The matrices here are at most a few hundred rows: threads gain nothing, and OpenBLAS's
    idle threads spin between calls, which made a request 10x slower on two shared cores.
    """
    global _threadpools
    if _threadpools is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: without it, BLAS keeps its own thread count
            return nullcontext()
        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1, user_api="blas")  # type: ignore[no-any-return]


def subsample(y: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``cap`` of ``y``: the best quarter, then a uniform sample."""
    n = len(y)
    if n <= cap:
        return np.arange(n)
    order = np.argsort(y, kind="stable")
    n_best = cap // 4
    rest = rng.choice(order[n_best:], size=cap - n_best, replace=False)
    return np.sort(np.concatenate([order[:n_best], rest]))


class _Refit:
    """A tree ensemble that conditions on extra points by refitting (no closed form)."""

    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.kind, self.x, self.y, self.seed = kind, x, y, seed
        self.model = ensembles.Ensemble(kind, x, y, seed)

    def predict(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(z)

    def with_points(self, z: np.ndarray, values: np.ndarray) -> _Refit:
        return _Refit(
            self.kind, np.vstack([self.x, z]), np.concatenate([self.y, values]), self.seed
        )


def condition(model: Any, z: np.ndarray, values: np.ndarray) -> Any:
    """``model`` with observations ``values`` ``(m,)`` at ``z`` ``(m, d)`` (fantasies)."""
    return model.with_points(z, np.asarray(values, dtype=float))
