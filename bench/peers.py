"""Peer libraries as ask/tell contenders: Optuna, hyperopt, scikit-optimize and cma.

Every peer gets the same problems and seeds as our services; each is wrapped in an
:class:`~katib.bench.optimizer.Optimizer` here and nowhere else. Peers that are not installed are
skipped with a note (:func:`peer_contenders`).

============== ====================================================================
name           what runs
============== ====================================================================
optuna:tpe     ``TPESampler(seed, multivariate=False)`` (``constant_liar`` only when the batch
               exceeds 1; both set explicitly: Optuna 5 defaults to multivariate and liar)
optuna:tpe-mv  the same with ``multivariate=True``
optuna:random  ``RandomSampler(seed)``
optuna:cmaes   ``CmaEsSampler(seed)`` (independent sampling for categoricals) — needs cmaes
optuna:qmc     ``QMCSampler(seed, scramble=True)`` (Sobol)
optuna:gp      ``GPSampler(seed)`` — needs PyTorch
hyperopt:tpe   ``hyperopt.tpe.suggest`` on a ``Trials`` object (Katib's own pattern)
hyperopt:rand  ``hyperopt.rand.suggest``
skopt:gp       ``skopt.Optimizer(base_estimator="GP")``, ``ask(n_points)``/``tell``
cma            ``cma.CMAEvolutionStrategy`` on the unit-cube encoding (x0 = 0.5, sigma0 = 0.3)
============== ====================================================================

Values a peer returns are snapped to the space (ints rounded, steps and lists honoured) before
they are evaluated, so every contender is scored on feasible Katib assignments. Optuna,
hyperopt and skopt sample log-scaled parameters natively; cma searches the encoded space that
our own algorithms use. cma draws from NumPy's global generator (its own design), seeded per run.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from katib.bench.optimizer import Contender, Optimizer, RunSettings
from katib.bench.problems import Problem
from katib.suggestion.space import ParameterSpec, ParameterType, Point, SearchSpace

logger = logging.getLogger(__name__)


def snap(space: SearchSpace, raw: dict[str, Any]) -> Point:
    """A peer's raw values as a feasible point of plain Python values."""
    point: Point = {}
    for spec in space.params:
        value = raw[spec.name]
        if spec.type is ParameterType.CATEGORICAL:
            point[spec.name] = str(value)
        elif spec.type is ParameterType.DOUBLE and spec.step is None:
            assert spec.low is not None and spec.high is not None
            point[spec.name] = min(max(float(value), spec.low), spec.high)
        else:
            point[spec.name] = spec.decode(spec.encode([float(value)]))[0]
    return point


class OptunaOptimizer:
    """An Optuna study driven with ``study.ask(distributions)`` / ``study.tell``."""

    def __init__(self, space: SearchSpace, sampler: Any) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.distributions = {p.name: optuna_distribution(p) for p in space.params}
        self.trials: list[Any] = []

    def ask(self, count: int) -> list[Point]:
        """``count`` new trials."""
        points = []
        for _ in range(count):
            trial = self.study.ask(self.distributions)
            self.trials.append(trial)
            points.append(snap(self.space, trial.params))
        return points

    def tell(self, index: int, value: float | None) -> None:
        """Complete the trial, or fail it."""
        from optuna.trial import TrialState

        if value is None:
            self.study.tell(self.trials[index], state=TrialState.FAIL)
        else:
            self.study.tell(self.trials[index], value)

    def close(self) -> None:
        """In-memory study: nothing to release."""


def optuna_distribution(spec: ParameterSpec) -> Any:
    """The Optuna distribution of ``spec`` (discrete lists as categoricals of floats)."""
    from optuna import distributions as d

    if spec.type is ParameterType.CATEGORICAL:
        return d.CategoricalDistribution(spec.choices)
    if spec.type is ParameterType.DISCRETE:
        return d.CategoricalDistribution(tuple(float(c) for c in spec.choices))
    log = spec.distribution.is_log
    if spec.type is ParameterType.INT:
        return d.IntDistribution(
            int(spec.low or 0),
            int(spec.high or 0),
            log=log,
            step=1 if log else int(spec.step or 1),
        )
    return d.FloatDistribution(
        spec.low or 0.0, spec.high or 0.0, log=log, step=None if log else spec.step
    )


def _optuna(kind: str) -> Callable[[Problem, RunSettings], Optimizer]:
    def make(problem: Problem, run: RunSettings) -> Optimizer:
        import optuna
        from optuna import samplers

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        liar = run.batch > 1
        factories: dict[str, Callable[[], Any]] = {
            "tpe": lambda: samplers.TPESampler(
                seed=run.seed, multivariate=False, constant_liar=liar
            ),
            "tpe-mv": lambda: samplers.TPESampler(
                seed=run.seed, multivariate=True, constant_liar=liar
            ),
            "random": lambda: samplers.RandomSampler(seed=run.seed),
            "cmaes": lambda: samplers.CmaEsSampler(seed=run.seed, warn_independent_sampling=False),
            "qmc": lambda: samplers.QMCSampler(
                seed=run.seed, scramble=True, warn_independent_sampling=False
            ),
            "gp": lambda: samplers.GPSampler(seed=run.seed),
        }
        return OptunaOptimizer(problem.space, factories[kind]())

    return make


class HyperoptOptimizer:
    """hyperopt's ``suggest(new_ids, domain, trials, seed)`` on a ``Trials`` object."""

    def __init__(self, space: SearchSpace, algo: Any, seed: int) -> None:
        import hyperopt

        self.hp = hyperopt
        self.space = space
        self.expr = {p.name: _hyperopt_expr(p) for p in space.params}
        self.domain = hyperopt.Domain(lambda _: 0.0, self.expr)
        self.trials = hyperopt.Trials()
        self.algo = algo
        self.rng = np.random.default_rng(seed)
        self.tids: list[int] = []

    def ask(self, count: int) -> list[Point]:
        """``count`` new trial documents, inserted as NEW (pending) trials."""
        ids = self.trials.new_trial_ids(count)
        self.trials.refresh()
        seed = int(self.rng.integers(2**31 - 1))
        docs = self.algo(ids, self.domain, self.trials, seed)
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()
        points = []
        for doc in docs:
            vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
            points.append(snap(self.space, self.hp.space_eval(self.expr, vals)))
            self.tids.append(doc["tid"])
        return points

    def tell(self, index: int, value: float | None) -> None:
        """Mark the document DONE with its loss (or ERROR)."""
        tid = self.tids[index]
        doc = next(d for d in self.trials._dynamic_trials if d["tid"] == tid)
        if value is None:
            doc["state"] = self.hp.JOB_STATE_ERROR
            doc["result"] = {"status": self.hp.STATUS_FAIL}
        else:
            doc["state"] = self.hp.JOB_STATE_DONE
            doc["result"] = {"loss": float(value), "status": self.hp.STATUS_OK}
        self.trials.refresh()

    def close(self) -> None:
        """In-memory trials: nothing to release."""


def _hyperopt_expr(spec: ParameterSpec) -> Any:
    from hyperopt import hp

    if not spec.is_numeric_range:
        values = (
            spec.choices
            if spec.type is ParameterType.CATEGORICAL
            else tuple(float(c) for c in spec.choices)
        )
        return hp.choice(spec.name, list(values))
    low, high = float(spec.low or 0.0), float(spec.high or 0.0)
    if spec.type is ParameterType.INT:  # widen by half a step so rounding is fair
        low, high = low - 0.4999, high + 0.4999
    if spec.distribution.is_log:
        return hp.loguniform(spec.name, math.log(max(low, 1e-12)), math.log(high))
    return hp.uniform(spec.name, low, high)


def _hyperopt(kind: str) -> Callable[[Problem, RunSettings], Optimizer]:
    def make(problem: Problem, run: RunSettings) -> Optimizer:
        from hyperopt import rand, tpe

        return HyperoptOptimizer(
            problem.space, {"tpe": tpe.suggest, "rand": rand.suggest}[kind], run.seed
        )

    return make


class SkoptOptimizer:
    """``skopt.Optimizer`` with a GP surrogate; batches use its constant-liar ``ask(n)``."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        from skopt import Optimizer as SkOptimizer
        from skopt.space import Categorical, Integer, Real

        dims: list[Any] = []
        for p in space.params:
            prior = "log-uniform" if p.distribution.is_log else "uniform"
            if p.type is ParameterType.DOUBLE:
                dims.append(Real(p.low, p.high, prior=prior, name=p.name))
            elif p.type is ParameterType.INT:
                dims.append(Integer(int(p.low or 0), int(p.high or 0), prior=prior, name=p.name))
            else:
                values = (
                    [float(c) for c in p.choices]
                    if p.type is ParameterType.DISCRETE
                    else list(p.choices)
                )
                dims.append(Categorical(values, name=p.name))
        self.space = space
        self.opt = SkOptimizer(dims, base_estimator="GP", n_initial_points=10, random_state=seed)
        self.asked: list[list[Any]] = []

    def ask(self, count: int) -> list[Point]:
        """``count`` points (``ask(n_points)`` lies about pending ones)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xs = [self.opt.ask()] if count == 1 else self.opt.ask(n_points=count)
        self.asked.extend(xs)
        return [snap(self.space, dict(zip(self.space.names, x, strict=True))) for x in xs]

    def tell(self, index: int, value: float | None) -> None:
        """Tell the value; failed points are simply not told (skopt has no failure state)."""
        if value is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.opt.tell(self.asked[index], float(value))

    def close(self) -> None:
        """Nothing to release."""


class CmaOptimizer:
    """``cma.CMAEvolutionStrategy`` in the unit cube; a generation is told once complete."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        import cma

        self.space = space
        options = {"bounds": [0.0, 1.0], "seed": seed + 1, "verbose": -9}
        self.es = cma.CMAEvolutionStrategy(space.dim * [0.5], 0.3, options)
        self.queue: list[np.ndarray] = []
        self.asked: list[np.ndarray] = []
        self.told: list[tuple[np.ndarray, float]] = []

    def ask(self, count: int) -> list[Point]:
        """The next ``count`` members of the current (or a fresh) population."""
        while len(self.queue) < count:
            self.queue.extend(np.asarray(x, dtype=float) for x in self.es.ask())
        xs, self.queue = self.queue[:count], self.queue[count:]
        self.asked.extend(xs)
        return self.space.decode(np.clip(np.array(xs), 0.0, 1.0))

    def tell(self, index: int, value: float | None) -> None:
        """Collect values; tell cma whenever a full population is in (failures = worst + 1)."""
        if value is None:
            value = max((f for _, f in self.told), default=1e10) + 1.0
        self.told.append((self.asked[index], float(value)))
        size = self.es.popsize
        if len(self.told) >= size:
            batch, self.told = self.told[:size], self.told[size:]
            self.es.tell([x for x, _ in batch], [f for _, f in batch])

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class Peer:
    """A peer contender and the modules it needs."""

    name: str
    requires: tuple[str, ...]
    make: Callable[[Problem, RunSettings], Optimizer]


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        *(
            Peer(f"optuna:{k}", ("optuna",), _optuna(k))
            for k in ("tpe", "tpe-mv", "random", "qmc")
        ),
        Peer("optuna:cmaes", ("optuna", "cmaes"), _optuna("cmaes")),
        Peer("optuna:gp", ("optuna", "torch"), _optuna("gp")),
        Peer("hyperopt:tpe", ("hyperopt",), _hyperopt("tpe")),
        Peer("hyperopt:rand", ("hyperopt",), _hyperopt("rand")),
        Peer("skopt:gp", ("skopt",), lambda pr, run: SkoptOptimizer(pr.space, run.seed)),
        Peer("cma", ("cma",), lambda pr, run: CmaOptimizer(pr.space, run.seed)),
    )
}


def missing(name: str) -> list[str]:
    """Modules peer ``name`` needs that are not installed."""
    return [m for m in PEERS[name].requires if importlib.util.find_spec(m) is None]


def installed() -> list[str]:
    """Names of the peers whose libraries are importable."""
    return [name for name in PEERS if not missing(name)]


def peer_contenders(names: list[str]) -> tuple[list[Contender], list[str]]:
    """Contenders for the installed peers among ``names`` and a note for each one skipped."""
    contenders, notes = [], []
    for name in names:
        if name not in PEERS:
            raise KeyError(f"unknown peer {name!r}; available: {', '.join(PEERS)}")
        lacking = missing(name)
        if lacking:
            notes.append(f"peer {name} skipped: {', '.join(lacking)} not installed")
            continue
        contenders.append(Contender(name, "peer", PEERS[name].make))
    return contenders, notes
