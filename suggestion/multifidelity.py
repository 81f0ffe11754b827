"""What ``hyperband``, ``bohb`` and ``asha`` share: the resource parameter, rungs and lineage.

A multi-fidelity algorithm evaluates configurations at increasing *resources* (epochs, trees,
data fraction): the experiment names one parameter as the resource (``resource_name``) and the
algorithm sets it; every other parameter is the configuration. A *rung* is one resource level;
a config *promoted* to a higher rung is run again with the same values and a larger resource.

Resources follow Katib's Hyperband (and Li et al. 2018, section 3): with maximum resource
``r_l`` (``R``), reduction factor ``eta`` and ``min_resource`` (the unit, default 1), there are
``s_max + 1`` levels, ``s_max = floor(log_eta(r_l / min_resource))``, and level ``k`` (counted
down from the top) runs ``r_l * eta**-k``. Int resources are rounded down, as Katib does.

The schedule is rebuilt from the request on every call. Each trial carries its identity twice:
in labels (``multifidelity/config``, ``multifidelity/rung``, ``multifidelity/parent``: what
our controller sends back in ``Trial.labels``) and in its name (``<experiment>-<config>-r<rung>``,
which Katib's controller keeps but whose labels it does not send back). A trial whose resource
value is not its rung's resource (the settings changed) is not part of the schedule.
"""

from __future__ import annotations

import math
import re
import threading
import weakref
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from katib.api.errors import InvalidArgument
from katib.api.settings import setting
from katib.suggestion.base import ExperimentInfo, Suggestion, draw_distinct
from katib.suggestion.history import Direction, History, Trial, TrialState
from katib.suggestion.space import ParameterSpec, ParameterType, Point, SearchSpace

#: Label keys on every trial a multi-fidelity algorithm suggests.
CONFIG_LABEL = "multifidelity/config"
RUNG_LABEL = "multifidelity/rung"
PARENT_LABEL = "multifidelity/parent"
#: Kubernetes limits on a label value and on names that become Job and Pod labels.
_MAX_LABEL = 63
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
#: Relative tolerance when comparing resource values and powers of eta.
_TOL = 1e-9


@dataclass(frozen=True)
class ResourceSettings:
    """Settings every multi-fidelity algorithm takes (Katib's Hyperband names)."""

    r_l: float | None = setting(None, doc="maximum resource R (required)")
    resource_name: str | None = setting(
        None, doc="the parameter the algorithm sets to each rung's resource (required)"
    )
    eta: float = setting(3.0, gt=1, doc="reduction factor: keep the best 1/eta of each rung")
    min_resource: float = setting(
        1.0, gt=0, doc="smallest resource unit; s_max = floor(log_eta(r_l / min_resource))"
    )
    random_state: int | None = setting(
        None, ge=0, doc="seed; unset: a CRC-32 of the experiment name"
    )


#: Values of the ``sampler`` setting of ``hyperband`` and ``asha``.
SAMPLERS = ("random", "tpe", "multivariate-tpe")


def sampler_setting() -> Any:
    """The ``sampler`` setting: how ``hyperband`` and ``asha`` draw new configurations.

    The default, ``multivariate-tpe``: see the multi-fidelity benchmark in the README.
    """
    return setting(
        "multivariate-tpe",
        choices=SAMPLERS,
        doc="new configurations: random (the prior), or TPE, independent or multivariate, "
        "fitted on every configuration tried, ranked by the rung it reached, then its value "
        "there (from d + 3 results on; d: configuration parameters)",
    )


def resource_problems(experiment: ExperimentInfo, settings: ResourceSettings) -> list[str]:
    """Everything wrong with the resource settings, in Katib's words where Katib has them."""
    if settings.r_l is None or not settings.resource_name:
        return ["r_l and resource_name must be set."]
    problems = []
    if settings.r_l <= 0:
        problems.append(f"r_l must be a positive float number. (got {settings.r_l:g})")
    elif settings.r_l < settings.min_resource * (1 - _TOL):
        problems.append(
            f"r_l ({settings.r_l:g}) must not be less than min_resource "
            f"({settings.min_resource:g})"
        )
    names = experiment.space.names
    if settings.resource_name not in names:
        problems.append(
            "value of resource_name setting must be in parameters. "
            f"({settings.resource_name!r} is not one of {', '.join(names)})"
        )
        return problems
    spec = experiment.space[settings.resource_name]
    if not spec.is_numeric_range:
        problems.append(
            f"resource_name {settings.resource_name!r} must name an int or double parameter, "
            f"not a {spec.type.value} one"
        )
    if len(names) == 1:
        problems.append(
            f"the search space has no parameter besides the resource {settings.resource_name!r}"
        )
    if not problems and spec.type is ParameterType.INT:
        low = levels(settings)[0]
        if math.floor(low * (1 + _TOL)) < 1:
            problems.append(
                f"resource_name {settings.resource_name!r} is an int parameter but the "
                f"smallest resource is {low:g}; raise min_resource to 1 or more"
            )
    return problems


def s_max(settings: ResourceSettings) -> int:
    """``floor(log_eta(r_l / min_resource))``, exact for powers of ``eta``."""
    assert settings.r_l is not None
    ratio = settings.r_l / settings.min_resource
    s = 0
    while settings.eta ** (s + 1) <= ratio * (1 + _TOL):
        s += 1
    return s


def levels(settings: ResourceSettings) -> list[float]:
    """Resources of the ``s_max + 1`` levels, smallest first: ``r_l * eta**-k``."""
    assert settings.r_l is not None
    top = s_max(settings)
    return [settings.r_l * settings.eta ** -(top - k) for k in range(top + 1)]


def resource_value(spec: ParameterSpec, resource: float) -> int | float:
    """The assignment for a resource: rounded down for ints, 12 significant digits else."""
    if spec.type is ParameterType.INT:
        return max(math.floor(resource * (1 + _TOL)), 1)
    return float(f"{resource:.12g}")


def widened_space(space: SearchSpace, settings: ResourceSettings) -> SearchSpace:
    """``space`` with the resource parameter covering every scheduled resource.

    The declared range and step of the resource are kept only as far as they are wider: Katib's
    own example declares ``num-epochs`` as ``[1, 1]`` and runs it at 1 and 2.
    """
    assert settings.resource_name is not None
    spec = space[settings.resource_name]
    assert spec.low is not None and spec.high is not None
    values = [resource_value(spec, r) for r in levels(settings)]
    low, high = min(spec.low, *values), max(spec.high, *values)
    plain_step = spec.step is None or (spec.type is ParameterType.INT and spec.step == 1)
    if (low, high) == (spec.low, spec.high) and plain_step:
        return space
    wide = ParameterSpec(spec.name, spec.type, low=low, high=high)
    return SearchSpace(tuple(wide if p.name == spec.name else p for p in space.params))


def same_resource(a: float, b: float) -> bool:
    """Whether two resource values are equal up to rounding."""
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-12)


@dataclass(frozen=True)
class Run:
    """One trial of a configuration at a rung, as read back from the request."""

    trial: Trial
    config: str
    rung: int

    @property
    def finished(self) -> bool:
        """No longer pending (succeeded, early-stopped, failed or without metrics)."""
        return self.trial.state is not TrialState.PENDING

    @property
    def promotable(self) -> bool:
        """Succeeded with a value: early-stopped runs did not reach the rung's resource."""
        return self.trial.state is TrialState.SUCCEEDED and self.trial.value is not None


def read_runs(history: History, config_pattern: str) -> list[Run]:
    """Every trial that carries a config id matching ``config_pattern`` and a rung.

    Labels win; trials without them (Katib's controller does not send labels back) are read
    from their names. Trials without a point in the space are skipped.
    """
    name_re = re.compile(rf"-({config_pattern})-r(\d+)(?:-\d+)?$")
    config_re = re.compile(rf"^(?:{config_pattern})$")
    runs = []
    for trial in history.trials:
        if trial.point is None:
            continue
        config, rung = trial.labels.get(CONFIG_LABEL), trial.labels.get(RUNG_LABEL)
        if config is None or rung is None:
            match = name_re.search(trial.name)
            if match is None:
                continue
            config, rung = match.group(1), match.group(2)
        if config_re.match(config) and rung.isdigit():
            runs.append(Run(trial, config, int(rung)))
    return runs


def loss(trial: Trial, direction: Direction) -> float:
    """The trial's value as a loss to minimise (``inf`` when it has none or it is NaN)."""
    if trial.value is None or math.isnan(trial.value):
        return math.inf
    return -trial.value if direction is Direction.MAXIMIZE else trial.value


def ranked(runs: Iterable[Run], direction: Direction) -> list[Run]:
    """Promotable runs best first; ties keep the order given."""
    return sorted((r for r in runs if r.promotable), key=lambda r: loss(r.trial, direction))


def labels(config: str, rung: int, parent: str | None) -> dict[str, str]:
    """The labels of a suggested trial (the parent only when it is a valid label value)."""
    out = {CONFIG_LABEL: config, RUNG_LABEL: str(rung)}
    if parent is not None and len(parent) <= _MAX_LABEL and _LABEL_VALUE.match(parent):
        out[PARENT_LABEL] = parent
    return out


def trial_name(experiment: str, config: str, rung: int, taken: set[str]) -> str:
    """``<experiment>-<config>-r<rung>``, at most 63 characters, not in ``taken``.

    Long experiment names are shortened with a CRC-32 so the name stays unique; a name already
    taken (by a trial outside the schedule) gets a ``-2``, ``-3``… suffix.
    """
    suffix = f"-{config}-r{rung}"
    prefix = experiment
    if len(prefix) + len(suffix) + 3 > _MAX_LABEL:
        digest = f"{zlib.crc32(experiment.encode()):08x}"
        prefix = experiment[: _MAX_LABEL - len(suffix) - len(digest) - 4].rstrip("-.")
        prefix = f"{prefix}-{digest}"
    name = prefix + suffix
    extra = 2
    while name in taken:
        name = f"{prefix}{suffix}-{extra}"
        extra += 1
    taken.add(name)
    return name


def with_resource(point: Point, name: str, value: int | float) -> Point:
    """A copy of ``point`` with the resource parameter set to ``value``."""
    return {**point, name: value}


def at_resource(
    history: History, resource_name: str, value: float, batch: Sequence[Suggestion] = ()
) -> History:
    """Trials run at resource ``value``, plus this batch's suggestions there (as pending).

    Precomputed keys are dropped: de-duplication against this history compares configurations
    (:func:`config_space` keys), not whole points.
    """
    trials = [
        Trial(t.name, t.point, t.state, t.value)
        for t in history.trials
        if t.point is not None and same_resource(float(t.point[resource_name]), float(value))
    ]
    trials += [
        Trial(f"_batch{i}", s.point, TrialState.PENDING)
        for i, s in enumerate(batch)
        if same_resource(float(s.point[resource_name]), float(value))
    ]
    return History(history.direction, trials)


def config_space(space: SearchSpace, resource_name: str) -> SearchSpace:
    """The space without the resource parameter: what models of configurations see."""
    return SearchSpace(tuple(p for p in space.params if p.name != resource_name))


def require(problems: Sequence[str]) -> None:
    """Raise one :class:`InvalidArgument` listing ``problems``, if there are any."""
    if problems:
        raise InvalidArgument(list(problems))


def model_rung(
    history: History, resource_name: str, values: Sequence[float], need: int
) -> tuple[float, History] | None:
    """The largest resource in ``values`` with at least ``need`` successful trials, and every
    trial run there (``None`` while no resource has that many).

    The data BOHB fits its model on (Falkner et al. 2018, section 4.1); the ``tpe`` samplers of
    Hyperband and ASHA fit on every configuration instead (:func:`lineage_model`).
    """
    for value in sorted(values, reverse=True):
        there = at_resource(history, resource_name, value)
        done = sum(t.state is TrialState.SUCCEEDED and t.value is not None for t in there.trials)
        if done >= need:
            return float(value), there
    return None


#: :func:`lineage_model` results per request history (dropped with it): Hyperband draws new
#: configurations for several brackets in one request, each from the same model.
_LINEAGE: weakref.WeakKeyDictionary[History, dict[tuple[Any, ...], History]] = (
    weakref.WeakKeyDictionary()
)
_LINEAGE_LOCK = threading.Lock()


def lineage_model(
    history: History, space: SearchSpace, resource_name: str, values: Sequence[float]
) -> History:
    """One trial per configuration, ranked by how far it got: what the ``tpe`` samplers fit.

    A configuration's data point is its result at the largest resource in ``values`` where it
    finished with a value. Losses are shifted by depth so that every configuration that reached
    a higher level ranks above every one that stopped lower, and within a level the observed
    losses order them (Optuna's TPE ranks pruned trials the same way: by the step reached, then
    the value there). An early-stopped run ranks below the completed ones of its level and above
    those that only reached the level under it. So the good group is the configurations the
    schedule promoted furthest, and every configuration tried so far is in the model, not only
    those of one rung. Configurations with no result yet (their bottom-rung trials still running)
    are pending; returned points hold only ``space``'s parameters. Built once per ``history``
    and arguments; the result is shared, so callers must not change it.
    """
    key = (space, resource_name, tuple(sorted(float(v) for v in values)))
    with _LINEAGE_LOCK:
        model = _LINEAGE.get(history, {}).get(key)
    if model is None:
        model = _build_lineage(history, space, resource_name, key[2])
        with _LINEAGE_LOCK:
            _LINEAGE.setdefault(history, {})[key] = model
    return model


def _build_lineage(
    history: History, space: SearchSpace, resource_name: str, values: Sequence[float]
) -> History:
    """:func:`lineage_model` without the memo (``values`` sorted)."""
    depth_of = {v: k for k, v in enumerate(values)}
    best: dict[tuple[str, ...], tuple[float, float, Point]] = {}
    running: dict[tuple[str, ...], Point] = {}
    for trial in history.trials:
        if trial.point is None:
            continue
        level = next(
            (
                k
                for v, k in depth_of.items()
                if same_resource(float(trial.point[resource_name]), v)
            ),
            None,
        )
        if level is None:
            continue
        config = {name: trial.point[name] for name in space.names}
        key = space.key(config)
        if trial.state is TrialState.PENDING:
            running.setdefault(key, config)
            continue
        if not trial.is_complete:
            continue
        value = loss(trial, history.direction)
        depth = level - 0.5 if trial.state is TrialState.EARLY_STOPPED else float(level)
        if key not in best or (depth, -value) > (best[key][0], -best[key][1]):
            best[key] = (depth, value, config)
    finite = [v for _, v, _ in best.values() if math.isfinite(v)]
    spread = (max(finite) - min(finite)) if finite else 0.0
    gap = 2 * spread + 1.0
    top = max((d for d, _, _ in best.values()), default=0.0)
    trials = []
    for i, (depth, value, config) in enumerate(best.values()):
        shifted = value if math.isfinite(value) else (max(finite, default=0.0) + spread + 0.5)
        trials.append(Trial(f"_m{i}", config, TrialState.SUCCEEDED, shifted + (top - depth) * gap))
    waiting = [config for key, config in running.items() if key not in best]
    trials += [
        Trial(f"_m{len(best) + i}", config, TrialState.PENDING) for i, config in enumerate(waiting)
    ]
    return History(Direction.MINIMIZE, trials)


def new_configs(
    experiment: ExperimentInfo,
    resource: str,
    sampler: str,
    history: History,
    values: Sequence[float],
    value: int | float,
    count: int,
    rng: np.random.Generator,
    batch: Sequence[Suggestion] = (),
) -> list[Point]:
    """``count`` new configurations at resource ``value`` (fewer if a finite space runs out),
    distinct from those run there, drawn by ``sampler`` (one of :data:`SAMPLERS`).

    ``random`` draws from the prior. ``tpe`` and ``multivariate-tpe`` fit our TPE
    (:mod:`katib.suggestion.tpe`, with no start-up phase) on every configuration tried, ranked by
    the level in ``values`` it reached and then by its loss there (:func:`lineage_model`);
    configurations still running at their first level and this batch are its pending liars, so
    a batch spreads out. Until ``d + 3`` configurations have a result, and for whatever TPE
    cannot place in a finite space, the prior.
    """
    space = config_space(experiment.space, resource)
    same = at_resource(history, resource, value, batch)
    out: list[Point] = []
    if sampler != "random" and count > 0:
        model = lineage_model(history, space, resource, values)
        if len(model.completed) >= space.dim + 3:
            out = _tpe_configs(experiment, sampler, space, model, same, count, rng)
    if len(out) < count:
        extra = [Trial(f"_new{i}", p, TrialState.PENDING) for i, p in enumerate(out)]
        taken = History(history.direction, (*same.trials, *extra))
        out += draw_distinct(space, rng, lambda n: space.sample(rng, n), count - len(out), taken)
    return [with_resource(c, resource, value) for c in out]


def _tpe_configs(
    experiment: ExperimentInfo,
    sampler: str,
    space: SearchSpace,
    model: History,
    same: History,
    count: int,
    rng: np.random.Generator,
) -> list[Point]:
    """Up to ``count`` TPE picks fitted on ``model`` (a :func:`lineage_model`), none already run
    at ``same``'s resource.

    ``same``'s pending trials whose configuration is not in ``model`` are added as liars.
    """
    from katib.suggestion.tpe import TPE, MultivariateTPE, TPESettings

    cls = MultivariateTPE if sampler == "multivariate-tpe" else TPE
    names = space.names
    known = model.taken_keys(space)
    trials = list(model.trials)
    for i, t in enumerate(same.trials):
        if t.state is TrialState.PENDING and t.point is not None:
            config = {k: t.point[k] for k in names}
            if space.key(config) not in known:
                trials.append(Trial(f"_p{i}", config, TrialState.PENDING))
    tpe_settings = TPESettings(n_startup_trials=0, random_state=int(rng.integers(2**31)))
    algo = cls(ExperimentInfo(experiment.name, space), tpe_settings)
    picks = algo.suggest(History(model.direction, trials), count)
    if space.cardinality is None:
        return picks
    taken = same.taken_keys(space)
    return [p for p in picks if space.key(p) not in taken]
