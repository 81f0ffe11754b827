"""Real tuning tasks on datasets that ship inside scikit-learn (nothing is downloaded).

Each task minimises ``1 - accuracy`` estimated by 3-fold stratified cross-validation on a fixed
subsample, with every model and split seeded, so an evaluation is deterministic and costs well
under 0.3 s on one core. The optimum is unknown: regret is measured against the best value seen
across all runs of the task in one results set (see :mod:`katib.bench.report`).

scikit-learn is imported only when a task is evaluated, and BLAS/OpenMP pools are limited to one
thread so a benchmark does not fight other processes for cores.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from katib.bench.problems import Evaluation, Problem, categorical, discrete, double, integer
from katib.suggestion.space import Point, SearchSpace

logger = logging.getLogger(__name__)

FOLDS = 3


@cache
def dataset(name: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: a stratified subsample of ``size`` rows of a bundled dataset, standardised."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer}[name]
    x, y = loader(return_X_y=True)
    if size < len(y):
        x, _, y, _ = train_test_split(x, y, train_size=size, stratify=y, random_state=0)
    return StandardScaler().fit_transform(x), y


def cv_error(model: Any, data: tuple[np.ndarray, np.ndarray]) -> float:
    """``1 - mean accuracy`` over :data:`FOLDS` seeded stratified folds, single-threaded."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, *data, cv=folds, n_jobs=None)
    return float(1.0 - np.mean(scores))


def _task(
    name: str, space: SearchSpace, build: Callable[[Point], Any], data: str, size: int, what: str
) -> Problem:
    def objective(point: Point, rng: np.random.Generator) -> Evaluation:
        value = cv_error(build(point), dataset(data, size))
        return Evaluation(value, value)

    return Problem(
        name,
        space,
        objective,
        optimum=None,
        kind="ml",
        description=f"{what}; 1 - {FOLDS}-fold CV accuracy on {size} rows of {data}",
    )


def svc_digits() -> Problem:
    """SVC on digits: C and gamma log-scaled, kernel categorical."""
    from sklearn.svm import SVC

    space = SearchSpace(
        (
            double("C", 1e-2, 1e3, log=True),
            double("gamma", 1e-5, 1e0, log=True),
            categorical("kernel", ("rbf", "poly", "sigmoid")),
        )
    )

    def build(p: Point) -> Any:
        return SVC(C=p["C"], gamma=p["gamma"], kernel=p["kernel"], random_state=0)

    return _task("svc-digits", space, build, "digits", 600, "SVC(C, gamma, kernel)")


def svc_breast_cancer() -> Problem:
    """SVC on breast cancer: C, gamma log-scaled, kernel categorical, polynomial degree int."""
    from sklearn.svm import SVC

    space = SearchSpace(
        (
            double("C", 1e-2, 1e3, log=True),
            double("gamma", 1e-5, 1e0, log=True),
            categorical("kernel", ("rbf", "poly", "sigmoid")),
            integer("degree", 1, 5),
        )
    )

    def build(p: Point) -> Any:
        return SVC(
            C=p["C"], gamma=p["gamma"], kernel=p["kernel"], degree=p["degree"], random_state=0
        )

    return _task(
        "svc-breast-cancer", space, build, "breast_cancer", 569, "SVC(C, gamma, kernel, degree)"
    )


def hgb_breast_cancer() -> Problem:
    """HistGradientBoosting on breast cancer: learning rate log, depth and leaves ints."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    space = SearchSpace(
        (
            double("learning_rate", 1e-3, 1.0, log=True),
            integer("max_depth", 1, 8),
            integer("max_iter", 5, 50),
            integer("min_samples_leaf", 2, 64, log=True),
            double("l2_regularization", 1e-6, 10.0, log=True),
        )
    )

    def build(p: Point) -> Any:
        return HistGradientBoostingClassifier(
            learning_rate=p["learning_rate"],
            max_depth=p["max_depth"],
            max_iter=p["max_iter"],
            min_samples_leaf=p["min_samples_leaf"],
            l2_regularization=p["l2_regularization"],
            early_stopping=False,
            random_state=0,
        )

    return _task(
        "hgb-breast-cancer",
        space,
        build,
        "breast_cancer",
        400,
        "HistGradientBoosting(learning_rate, max_depth, max_iter, ...)",
    )


def mlp_digits() -> Problem:
    """A one-hidden-layer MLP on digits: width int log, alpha/lr log, activation, batch list."""
    from sklearn.neural_network import MLPClassifier

    space = SearchSpace(
        (
            integer("units", 4, 128, log=True),
            double("alpha", 1e-6, 1e-1, log=True),
            double("learning_rate_init", 1e-4, 1e-1, log=True),
            categorical("activation", ("relu", "tanh", "logistic")),
            discrete("batch_size", (16, 32, 64, 128)),
        )
    )

    def build(p: Point) -> Any:
        return MLPClassifier(
            hidden_layer_sizes=(p["units"],),
            alpha=p["alpha"],
            learning_rate_init=p["learning_rate_init"],
            activation=p["activation"],
            batch_size=int(p["batch_size"]),
            max_iter=15,
            random_state=0,
        )

    return _task("mlp-digits", space, build, "digits", 400, "MLPClassifier(units, alpha, ...)")


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "svc-digits": svc_digits,
    "svc-breast-cancer": svc_breast_cancer,
    "hgb-breast-cancer": hgb_breast_cancer,
    "mlp-digits": mlp_digits,
}
