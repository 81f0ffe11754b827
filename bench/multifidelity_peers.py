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
trial costs the epochs it ran. A trial's loss after ``e`` epochs is the same curve as ours
(:func:`katib.bench.multifidelity.learning_curve` plus one noise draw per trial). The incumbent
follows the same rule as for ours: among finished trials, the lowest loss at the largest
resource any finished trial reached.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


def run_peer(name: str, seed: int, budget: float, batch: int) -> list[tuple[float, float]]:
    """``(resource spent, regret of the incumbent)`` after each epoch of any worker."""
    from katib.bench import multifidelity as mf

    return drive(make_study(name, seed, batch, mf.R), seed, budget, batch)


def drive(study: Any, seed: int, budget: float, batch: int) -> list[tuple[float, float]]:
    """Train ``batch`` trials at a time in ``study`` until ``budget`` epochs are spent."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from katib.bench import multifidelity as mf

    dists = {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(4)}
    noise = np.random.default_rng([seed, 99])

    def start() -> _Worker:
        trial = study.ask(dists)
        return _Worker(trial, dict(trial.params), float(noise.normal(0, 0.005)))

    workers = [start() for _ in range(batch)]
    spent, curve = 0.0, []
    best: tuple[float, float, float] = (-1.0, math.inf, math.inf)  # (resource, loss, regret)
    while spent < budget:
        for i, w in enumerate(workers):
            w.epochs += 1
            spent += 1
            loss = mf.learning_curve(w.point, w.epochs) + w.noise
            w.trial.report(loss, w.epochs)
            pruned = w.trial.should_prune()
            if pruned or w.epochs >= mf.R:
                if pruned:
                    study.tell(w.trial, state=TrialState.PRUNED)
                else:
                    study.tell(w.trial, loss)
                if (w.epochs, -loss) > (best[0], -best[1]):
                    best = (w.epochs, loss, mf.final_loss(w.point))
                workers[i] = start()
            curve.append((spent, best[2]))
            if spent >= budget:
                break
    return curve
