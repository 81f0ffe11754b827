"""Tree-ensemble surrogates (``RF``, ``ET``, ``GBRT``): scikit-learn models with an uncertainty.

These are the non-GP ``base_estimator`` values Katib's scikit-optimize service offered; like it,
they are fitted on the encoded points and give a mean and a variance per candidate:

* ``RF`` / ``ET``: a random forest / extremely randomised trees (100 trees, at least 3 samples
  per leaf, as scikit-optimize's defaults); the mean and variance over the trees' predictions
  (Hutter et al. 2011, SMAC, section 4.3);
* ``GBRT``: three gradient-boosted quantile regressors at 16 %, 50 % and 84 %; the median is
  the mean and half the 16-84 % range the standard deviation (a normal's one-sigma interval).

scikit-learn is an optional dependency, imported only here and only when one of these is used:
:func:`available` lets the algorithm reject the setting up front when it is missing.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

ESTIMATORS = ("RF", "ET", "GBRT")
_MIN_VAR = 1e-6
_QUANTILES = (0.16, 0.5, 0.84)


def available() -> bool:
    """Whether scikit-learn can be imported."""
    return importlib.util.find_spec("sklearn") is not None


class Ensemble:
    """A fitted tree ensemble over ``U`` with ``predict(z) -> (mean, var)``."""

    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.kind = kind
        self.models: list[Any] = []
        if kind == "GBRT":
            from sklearn.ensemble import GradientBoostingRegressor

            for q in _QUANTILES:
                model = GradientBoostingRegressor(
                    loss="quantile", alpha=q, n_estimators=50, random_state=seed
                )
                self.models.append(model.fit(x, y))
            return
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        cls = RandomForestRegressor if kind == "RF" else ExtraTreesRegressor
        forest = cls(n_estimators=100, min_samples_leaf=3, random_state=seed, n_jobs=1)
        self.models.append(forest.fit(x, y))

    def predict(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance ``(m,)`` at ``z`` ``(m, d)``."""
        if self.kind == "GBRT":
            low, mid, high = (m.predict(z) for m in self.models)
            std = np.maximum(high - low, 0.0) / 2.0
            return mid, np.maximum(std * std, _MIN_VAR)
        per_tree = np.stack([t.predict(z) for t in self.models[0].estimators_])
        return per_tree.mean(axis=0), np.maximum(per_tree.var(axis=0), _MIN_VAR)
