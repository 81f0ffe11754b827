"""Multi-fidelity benchmark problems: learning curves over a search space with a resource.

A :class:`MFProblem` is what ``katib-bench multifidelity`` runs every method on. Its ``space``
holds the configuration parameters plus the int resource ``epochs`` (``1 .. max_resource``, with
``max_resource`` a power of ``eta = 3`` so that every rung of Hyperband fits). A trial at ``r``
epochs reports ``loss(point, r, trial_noise)``, where ``trial_noise`` is drawn once per trial by
``draw_noise(rng)``; the quality of a configuration is ``regret(point)``: its true loss after
``max_resource`` epochs minus the best achievable (or best known) one. Cost is counted in epochs.

=============== ============================================================================
name            what a trial trains
=============== ============================================================================
``synthetic``   nothing: a closed-form curve over four continuous parameters (the default)
``mlp-digits``  scikit-learn's ``MLPClassifier`` on the digits data, epoch by epoch
                (:mod:`katib.bench.mf_sklearn`); four continuous and int parameters
``mlp-grid``    the same model on a fixed grid of 256 configurations whose curves are trained
                once and cached on disk, looked up afterwards (a tabular benchmark)
=============== ============================================================================

Problems are built lazily by name (:func:`get`), so listing them never imports scikit-learn::

    >>> problem = get("synthetic")
    >>> problem.max_resource, problem.space.names
    (27, ['x0', 'x1', 'x2', 'x3', 'epochs'])
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from katib.suggestion.space import ParameterSpec, ParameterType, Point, SearchSpace

#: The name of the resource parameter of every problem.
RESOURCE = "epochs"


@dataclass(frozen=True)
class MFProblem:
    """A learning-curve problem; see the module docstring."""

    name: str
    #: The configuration parameters and the resource ``epochs`` (int, ``1 .. max_resource``).
    space: SearchSpace
    max_resource: int
    #: Noise-free loss of ``point`` after ``epochs`` epochs.
    curve: Callable[[Point, float], float] = field(repr=False)
    #: True final loss of ``point`` minus the best achievable or best known one.
    regret: Callable[[Point], float] = field(repr=False)
    #: Title of the anytime plot.
    title: str = ""
    #: One trial's noise, drawn once when the trial starts (0 for deterministic problems).
    draw_noise: Callable[[np.random.Generator], float] = field(default=lambda rng: 0.0, repr=False)
    #: A configuration whose regret is 0 (computed on demand: it may train a reference sample).
    best: Callable[[], Point] | None = field(default=None, repr=False)

    def loss(self, point: Point, epochs: float, trial_noise: float) -> float:
        """What a trial of ``point`` reports after ``epochs`` epochs."""
        return self.curve(point, epochs) + trial_noise

    @property
    def config_space(self) -> SearchSpace:
        """The space without the resource (what full-budget methods search)."""
        return SearchSpace(tuple(p for p in self.space.params if p.name != RESOURCE))


def resource_param(max_resource: int) -> ParameterSpec:
    """The resource parameter ``epochs``, an int in ``[1, max_resource]``."""
    return ParameterSpec(RESOURCE, ParameterType.INT, low=1, high=max_resource)


# -- synthetic ---------------------------------------------------------------------------------

SYNTHETIC_R = 27


def final_loss(p: Point) -> float:
    """``f(x)``: the synthetic loss after training to convergence; 0 at the optimum."""
    x1, x2 = 15 * p["x0"] - 5, 15 * p["x1"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    branin = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10
    return (branin - 0.397887) / 30 + 0.3 * (p["x2"] - 0.7) ** 2


def learning_curve(p: Point, epochs: float) -> float:
    """The synthetic noiseless loss after ``epochs`` epochs."""
    early = (0.1 + 0.9 * p["x3"]) * math.exp(-3 * epochs / (SYNTHETIC_R * (0.15 + p["x2"])))
    return final_loss(p) + early


def synthetic() -> MFProblem:
    """The closed-form curve of :mod:`katib.bench.multifidelity`'s docstring."""
    params = (ParameterSpec(f"x{i}", ParameterType.DOUBLE, low=0, high=1) for i in range(4))
    return MFProblem(
        "synthetic",
        SearchSpace((*params, resource_param(SYNTHETIC_R))),
        SYNTHETIC_R,
        learning_curve,
        final_loss,
        title="synthetic learning curve",
        draw_noise=lambda rng: float(rng.normal(0, 0.005)),
        best=lambda: {"x0": (math.pi + 5) / 15, "x1": 2.275 / 15, "x2": 0.7, "x3": 0.0},
    )


# -- registry ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where precomputed curves and reference optima are kept: ``$KATIB_BENCH_CACHE``, else
    ``$XDG_CACHE_HOME/katib-bench``, else ``~/.cache/katib-bench``."""
    if os.environ.get("KATIB_BENCH_CACHE"):
        return Path(os.environ["KATIB_BENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "katib-bench"


def _sklearn_problem(name: str) -> Callable[[], MFProblem]:
    def make() -> MFProblem:
        from katib.bench import mf_sklearn

        maker: Callable[[], MFProblem] = getattr(mf_sklearn, name)
        return maker()

    return make


#: Problem name -> a function that builds it.
PROBLEMS: dict[str, Callable[[], MFProblem]] = {
    "synthetic": synthetic,
    "mlp-digits": _sklearn_problem("mlp_digits"),
    "mlp-grid": _sklearn_problem("mlp_grid"),
}


def names() -> list[str]:
    """Every problem name; the first is the default."""
    return list(PROBLEMS)


def get(name: str) -> MFProblem:
    """Build the problem called ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in PROBLEMS:
        raise ValueError(f"--problem: unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
    return PROBLEMS[name]()


def config_key(space: SearchSpace, point: Point) -> tuple[Any, ...]:
    """The configuration of ``point`` as a hashable tuple (the resource left out), with each
    value normalised to its type (so ``16`` and ``16.0`` of a discrete parameter are one key)."""
    key: list[Any] = []
    for p in space.params:
        if p.name == RESOURCE:
            continue
        value = point[p.name]
        if p.type is ParameterType.CATEGORICAL:
            key.append(str(value))
        elif p.type is ParameterType.INT:
            key.append(round(float(value)))
        else:
            key.append(float(value))
    return tuple(key)


def as_epochs(epochs: float, max_resource: int) -> int:
    """A resource value as a whole number of epochs in ``[1, max_resource]``."""
    whole = round(float(epochs))
    if not 1 <= whole <= max_resource:
        raise ValueError(f"epochs: {epochs!r} is outside [1, {max_resource}]")
    return whole


def check_curve(values: np.ndarray) -> np.ndarray:
    """``values`` as a float64 array, refusing non-finite losses (a broken cache or model)."""
    out = np.asarray(values, dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError("learning curve: non-finite loss")
    return out
