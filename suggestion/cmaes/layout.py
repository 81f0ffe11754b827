"""How a search space maps onto the CMA: Gaussian (numeric) and categorical columns of ``U``.

Doubles, ints and discrete lists are dimensions of the Gaussian; ints, stepped doubles and
discrete lists also get their cell boundaries in the unit cube (``cuts``), which the margin
(:func:`.strategy.apply_margin`) keeps within reach. Categorical parameters are modelled by
categorical distributions. Arrays: ``cuts[j]`` ``(k_j - 1,)`` sorted boundaries of numeric
dimension ``j``; ``reach`` ``(d,)`` per column of ``U``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from katib.suggestion.space import ParameterType, Point, SearchSpace

#: Discretised dimensions with more values than this are treated as continuous (no margin).
MAX_CELLS = 10_000


@dataclass(frozen=True)
class Layout:
    """How the search space maps onto the CMA: numeric dimensions and categorical ones."""

    space: SearchSpace
    numeric: tuple[int, ...]  # columns of U that the Gaussian models
    categorical: tuple[int, ...]  # columns of U modelled by categorical distributions
    arities: tuple[int, ...]  # number of categories of each categorical column
    cuts: tuple[np.ndarray | None, ...]  # cell boundaries of each numeric column (or None)

    @classmethod
    def build(cls, space: SearchSpace) -> Layout:
        """Numeric columns (double, int, discrete) and categorical columns of ``space``."""
        numeric: list[int] = []
        categorical: list[int] = []
        arities: list[int] = []
        cuts: list[np.ndarray | None] = []
        for j, spec in enumerate(space.params):
            if spec.type is ParameterType.CATEGORICAL:
                categorical.append(j)
                arities.append(len(spec.choices))
                continue
            numeric.append(j)
            k = spec.cardinality
            if k is None or k > MAX_CELLS:
                cuts.append(None)
            elif spec.type is ParameterType.DISCRETE:
                cuts.append(np.arange(1, k) / k)
            else:
                values = np.array([float(v) for v in spec.grid()])
                cuts.append(spec.encode((values[:-1] + values[1:]) / 2))
        return cls(space, tuple(numeric), tuple(categorical), tuple(arities), tuple(cuts))

    @property
    def reach(self) -> np.ndarray:
        """Per column of ``U``, how far a draw may lie from a point it decodes to ``(d,)``.

        Continuous: round-off only; discretised: the widest cell; categorical: half a cell.
        """
        reach = np.empty(self.space.dim)
        for j, cuts in zip(self.numeric, self.cuts, strict=True):
            edges = None if cuts is None else np.diff(np.concatenate(([0.0], cuts, [1.0])))
            reach[j] = 1e-6 if edges is None else float(edges.max()) + 1e-9
        for j, k in zip(self.categorical, self.arities, strict=True):
            reach[j] = 0.5 / k + 1e-9
        return reach

    @property
    def continuous(self) -> np.ndarray:
        """Mask over numeric dimensions: true where the dimension is not discretised."""
        return np.array([c is None for c in self.cuts], dtype=bool)

    def unit(self, x: np.ndarray, cats: np.ndarray) -> np.ndarray:
        """Full encoded points ``(k, d)`` from numeric ``x`` ``(k, n)`` and categories."""
        u = np.empty((x.shape[0], self.space.dim))
        u[:, list(self.numeric)] = np.clip(x, 0.0, 1.0)
        for c, (j, k) in enumerate(zip(self.categorical, self.arities, strict=True)):
            u[:, j] = (cats[:, c] + 0.5) / k
        return u

    def split(self, point: Point) -> tuple[np.ndarray, np.ndarray]:
        """A point's numeric coordinates ``(n,)`` and category indices ``(n_cat,)``."""
        u = self.space.encode([point])[0]
        cats = [
            min(int(u[j] * k), k - 1) for j, k in zip(self.categorical, self.arities, strict=True)
        ]
        return u[list(self.numeric)], np.array(cats, dtype=int)
