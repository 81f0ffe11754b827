"""Optuna's pruner-based multi-fidelity search as peers of ``katib-bench multifidelity``.

============================ ===========================================================
name                         what runs
============================ ===========================================================
``optuna:hyperband``         ``TPESampler`` + ``HyperbandPruner(min_resource=1,
                             max_resource=max_resource, reduction_factor=3)``
``optuna:sha``               ``TPESampler`` + ``SuccessiveHalvingPruner(min_resource=1,
                             reduction_factor=3)`` (rungs at 1, 3, 9 epochs, as ours)
============================ ===========================================================

The sampler is set as :mod:`katib.bench.peers` sets ``optuna:tpe``: ``TPESampler(seed,
multivariate=False, constant_liar=batch > 1)``. The study is named after the seed, because
``HyperbandPruner`` assigns trials to brackets by hashing the study name with the trial number.

Optuna's pruners stop a trial that keeps training, where ours restart a promoted configuration
from scratch (as Katib does: a trial is a process). So the peers are driven the way a pruner is
used: ``--batch`` workers each train one trial an epoch at a time, reporting the loss after every
epoch (``trial.report``) and asking ``trial.should_prune()``; a worker whose trial is pruned or
reaches ``R`` epochs tells the study and asks for a new trial. Each epoch costs 1, so a pruned
trial costs the epochs it ran. A trial's loss after ``e`` epochs is the same problem's as ours
(:meth:`katib.bench.mf_problems.MFProblem.loss`, with one noise draw per trial), and the study
searches the same space (:func:`distributions`: double -> ``FloatDistribution``, int ->
``IntDistribution``, both log when the parameter is log-uniform; discrete and categorical ->
``CategoricalDistribution`` of the values). The incumbent follows the same rule as for ours:
among finished trials, the lowest loss at the largest resource any finished trial reached.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from katib.bench import mf_problems
from katib.bench.mf_problems import MFProblem
from katib.suggestion.space import Distribution, ParameterType, SearchSpace

#: Peer name -> the pruner it uses.
PEERS = ("optuna:hyperband", "optuna:sha")


def make_study(name: str, seed: int, batch: int, max_resource: int) -> Any:
    """The Optuna study of peer ``name``: TPE plus its pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=False, constant_liar=batch > 1)
    pruner: Any
    if name == "optuna:hyperband":
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max_resource, reduction_factor=3
        )
    elif name == "optuna:sha":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    else:
        raise KeyError(f"unknown multi-fidelity peer {name!r}; known: {', '.join(PEERS)}")
    return optuna.create_study(
        study_name=f"bench-{seed}", direction="minimize", sampler=sampler, pruner=pruner
    )


@dataclass
class _Worker:
    """One worker's trial in progress: the Optuna trial, its values and epochs run."""

    trial: Any
    point: dict[str, Any]
    noise: float
    epochs: int = 0
    losses: list[float] = field(default_factory=list)


def distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna's distributions of ``space`` (its resource parameter left out)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for p in space.params:
        if p.name == mf_problems.RESOURCE:
            continue
        if p.distribution not in (Distribution.UNIFORM, Distribution.LOG_UNIFORM):
            raise ValueError(f"{p.name}: Optuna has no {p.distribution} distribution")
        log = p.distribution is Distribution.LOG_UNIFORM
        if p.type is ParameterType.DOUBLE:
            assert p.low is not None and p.high is not None
            step = None if log else p.step
            out[p.name] = FloatDistribution(float(p.low), float(p.high), log=log, step=step)
        elif p.type is ParameterType.INT:
            assert p.low is not None and p.high is not None
            step = 1 if log else int(p.step or 1)
            out[p.name] = IntDistribution(int(p.low), int(p.high), log=log, step=step)
        elif p.type is ParameterType.DISCRETE:
            out[p.name] = CategoricalDistribution(tuple(float(c) for c in p.choices))
        else:
            out[p.name] = CategoricalDistribution(p.choices)
    return out


def run_peer(
    name: str, seed: int, budget: float, batch: int, problem: MFProblem | None = None
) -> list[tuple[float, float]]:
    """``(resource spent, regret of the incumbent)`` after each epoch of any worker."""
    problem = problem or mf_problems.synthetic()
    study = make_study(name, seed, batch, problem.max_resource)
    return drive(study, seed, budget, batch, problem)


def drive(
    study: Any, seed: int, budget: float, batch: int, problem: MFProblem | None = None
) -> list[tuple[float, float]]:
    """Train ``batch`` trials at a time in ``study`` until ``budget`` epochs are spent."""
    from optuna.trial import TrialState

    problem = problem or mf_problems.synthetic()
    dists = distributions(problem.space)
    noise = np.random.default_rng([seed, 99])

    def start() -> _Worker:
        trial = study.ask(dists)
        return _Worker(trial, dict(trial.params), problem.draw_noise(noise))

    workers = [start() for _ in range(batch)]
    spent, curve = 0.0, []
    best: tuple[float, float, float] = (-1.0, math.inf, math.inf)  # (resource, loss, regret)
    while spent < budget:
        for i, w in enumerate(workers):
            w.epochs += 1
            spent += 1
            loss = problem.loss(w.point, w.epochs, w.noise)
            w.trial.report(loss, w.epochs)
            pruned = w.trial.should_prune()
            if pruned or w.epochs >= problem.max_resource:
                if pruned:
                    study.tell(w.trial, state=TrialState.PRUNED)
                else:
                    study.tell(w.trial, loss)
                if (w.epochs, -loss) > (best[0], -best[1]):
                    best = (w.epochs, loss, problem.regret(w.point))
                workers[i] = start()
            curve.append((spent, best[2]))
            if spent >= budget:
                break
    return curve
