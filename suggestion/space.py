"""Search spaces: typed parameter specs and the one encoder to the unit hypercube.

Every algorithm works on the same representation. A point is a ``dict`` from parameter name to a
plain Python value (``float`` for double and discrete, ``int`` for int, ``str`` for categorical).
The encoder maps points to ``U``, an ``(n, d)`` float64 array in ``[0, 1]`` with one column per
parameter, in spec order:

* numeric parameters are first warped (``ln`` for the log distributions), then mapped through the
  CDF of their prior over the bounds: linear for uniform, a truncated normal with
  ``mu = (min + max) / 2`` and ``sigma = (max - min) / 6`` (in the warped space) for the normal
  ones. Uniform sampling in ``U`` therefore samples the declared distribution, never outside
  ``[min, max]``;
* ints and stepped doubles are widened by half a step on each side before the CDF, so rounding
  gives every grid value a fair share of ``[0, 1]``;
* discrete and categorical parameters use the index of the value: value ``i`` of ``k`` owns the
  cell ``[i / k, (i + 1) / k)``. Algorithms that want one-hot encodings build them from
  :attr:`ParameterSpec.cardinality`.

The decoder clips to ``[0, 1]`` and rounds to the nearest feasible value, so any ``U`` decodes to a
valid point.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from functools import cached_property
from typing import Any

import numpy as np

from katib.api.errors import InvalidArgument

Point = dict[str, Any]

#: Most values a stepped parameter may have (beyond this, floats cannot tell them apart).
_MAX_STEPS = 2**53


class ParameterType(StrEnum):
    """Katib's parameter types."""

    DOUBLE = "double"
    INT = "int"
    DISCRETE = "discrete"
    CATEGORICAL = "categorical"


class Distribution(StrEnum):
    """Prior distribution of a numeric parameter over ``[min, max]``."""

    UNIFORM = "uniform"
    LOG_UNIFORM = "logUniform"
    NORMAL = "normal"
    LOG_NORMAL = "logNormal"

    @property
    def is_log(self) -> bool:
        """Whether values are warped by ``ln`` before the prior applies."""
        return self in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL)

    @property
    def is_normal(self) -> bool:
        """Whether the prior is a (truncated) normal."""
        return self in (Distribution.NORMAL, Distribution.LOG_NORMAL)


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter of a search space, validated at construction.

    Numeric parameters (double, int) use ``low``/``high``/``step``/``distribution``; discrete and
    categorical parameters use ``choices`` (the strings as written in the experiment; discrete
    ones must be numbers and are kept sorted by value).

    >>> ParameterSpec("lr", ParameterType.DOUBLE, low=1e-4, high=1e-1,
    ...               distribution=Distribution.LOG_UNIFORM).cardinality is None
    True
    """

    name: str
    type: ParameterType
    low: float | None = None
    high: float | None = None
    step: float | None = None
    distribution: Distribution = Distribution.UNIFORM
    choices: tuple[str, ...] = ()
    #: Exact decimal text of ``low`` and ``step`` (as written by the user, else ``repr``).
    _low_text: str = field(default="", repr=False, compare=False)
    _step_text: str = field(default="", repr=False, compare=False)
    _lookup: dict[Any, int] = field(default_factory=dict, repr=False, compare=False)
    _n_steps: int | None = field(default=None, repr=False, compare=False)
    _accept: tuple[float, float] = field(default=(0.0, 0.0), repr=False, compare=False)
    _values: dict[int, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise InvalidArgument(problems)
        if self.type is ParameterType.INT and self.step is None:
            object.__setattr__(self, "step", 1.0)
        if self.step is not None and self.low is not None:
            self._init_steps()
        if self.low is not None and self.high is not None:
            # History values may carry rounding noise; accept them a hair outside the bounds.
            slack = 1e-9 * max(self.high - self.low, abs(self.low), abs(self.high), 1e-300)
            object.__setattr__(self, "_accept", (self.low - slack, self.high + slack))
        if self.type is ParameterType.DISCRETE:
            ordered = tuple(sorted(self.choices, key=float))
            object.__setattr__(self, "choices", ordered)
        # Lookup tables: parsing thousands of trials per request must stay cheap.
        object.__setattr__(self, "_lookup", {c: i for i, c in enumerate(self.choices)})
        if self.type is ParameterType.DISCRETE:
            self._lookup.update({float(c): i for i, c in enumerate(self.choices)})

    def _init_steps(self) -> None:
        """Count the grid values exactly, in decimal, so no value lands past ``max``."""
        assert self.low is not None and self.high is not None and self.step is not None
        low = _decimal(self._low_text, self.low)
        step = _decimal(self._step_text, self.step)
        object.__setattr__(self, "_low_text", str(low))
        object.__setattr__(self, "_step_text", str(step))
        with localcontext() as ctx:
            ctx.prec = 60
            n = int(((Decimal(repr(self.high)) - low) / step).to_integral_value(ROUND_FLOOR))
        while n > 0 and self.value_at(n) > self.high:
            n -= 1
        object.__setattr__(self, "_n_steps", max(n, 0))
        if n >= 1 and not (
            self.value_at(0) < self.value_at(1) and self.value_at(n - 1) < self.value_at(n)
        ):
            raise InvalidArgument(
                f"parameter {self.name!r}: step ({self.step:g}) is below the floating-point "
                "resolution of the range"
            )

    def _problems(self) -> list[str]:
        where = f"parameter {self.name!r}"
        if not self.name:
            return ["parameter name must not be empty"]
        if self.type in (ParameterType.DISCRETE, ParameterType.CATEGORICAL):
            return self._list_problems(where)
        problems: list[str] = []
        if self.choices:
            problems.append(f"{where}: a {self.type.value} parameter takes min/max, not a list")
        if self.low is None or self.high is None:
            return [*problems, f"{where}: min and max are required for {self.type.value}"]
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return [*problems, f"{where}: min and max must be finite numbers"]
        if self.low > self.high:
            problems.append(f"{where}: min ({self.low:g}) must not exceed max ({self.high:g})")
        elif not math.isfinite(self.high - self.low):
            problems.append(f"{where}: the range from min to max is too large")
        if self.type is ParameterType.INT:
            for label, value in (("min", self.low), ("max", self.high), ("step", self.step)):
                if value is not None and value != int(value):
                    problems.append(f"{where}: {label} ({value:g}) must be an integer")
                elif value is not None and abs(value) >= _MAX_STEPS:
                    problems.append(
                        f"{where}: {label} ({value:g}) must be below 2^53 in magnitude"
                    )
        if self.step is not None and not (math.isfinite(self.step) and self.step > 0):
            problems.append(f"{where}: step ({self.step:g}) must be a positive number")
        elif self.step is not None and (self.high - self.low) / self.step > _MAX_STEPS:
            problems.append(
                f"{where}: step ({self.step:g}) gives more than 2^53 values; use a larger step"
            )
        if self.distribution.is_log and self.low <= 0:
            problems.append(
                f"{where}: min ({self.low:g}) must be positive for distribution "
                f"{self.distribution.value}"
            )
        return problems

    def _list_problems(self, where: str) -> list[str]:
        problems = []
        if self.low is not None or self.high is not None or self.step is not None:
            problems.append(
                f"{where}: a {self.type.value} parameter takes a list, not min/max/step"
            )
        if self.distribution is not Distribution.UNIFORM:
            problems.append(f"{where}: distribution applies only to double and int parameters")
        if not self.choices:
            problems.append(f"{where}: list must not be empty")
        elif len(set(self.choices)) != len(self.choices):
            problems.append(f"{where}: list has duplicate values")
        if self.type is ParameterType.DISCRETE:
            bad = [c for c in self.choices if _parse_float(c) is None]
            if bad:
                problems.append(f"{where}: discrete values must be numbers, got {bad[0]!r}")
            elif len({float(c) for c in self.choices}) != len(self.choices):
                problems.append(f"{where}: list has duplicate values")
        return problems

    @classmethod
    def from_strings(
        cls,
        name: str,
        type: ParameterType,
        *,
        low: str = "",
        high: str = "",
        step: str = "",
        choices: Sequence[str] = (),
        distribution: Distribution = Distribution.UNIFORM,
    ) -> ParameterSpec:
        """A spec from the strings of a Katib ``feasibleSpace``; reports every problem."""
        problems = []
        numbers: dict[str, float | None] = {}
        for label, text in (("min", low), ("max", high), ("step", step)):
            numbers[label] = None if text.strip() == "" else _parse_float(text)
            if text.strip() and numbers[label] is None:
                problems.append(f"parameter {name!r}: {label} {text!r} is not a finite number")
        if problems:
            raise InvalidArgument(problems)
        return cls(
            name,
            type,
            low=numbers["min"],
            high=numbers["max"],
            step=numbers["step"],
            distribution=distribution,
            choices=tuple(choices),
            _low_text=low.strip(),
            _step_text=step.strip(),
        )

    # -- shape -----------------------------------------------------------------------------

    @property
    def is_numeric_range(self) -> bool:
        """True for double and int parameters (min/max); false for list parameters."""
        return self.type is ParameterType.DOUBLE or self.type is ParameterType.INT

    @property
    def n_steps(self) -> int | None:
        """Index of the last grid value ``low + n_steps * step``, or ``None`` if continuous."""
        return self._n_steps

    def value_at(self, k: int) -> Any:
        """The ``k``-th feasible value of a finite parameter (exact decimal arithmetic)."""
        if not self.is_numeric_range:
            return self._value_of_index(k)
        cached = self._values.get(k)
        if cached is not None:
            return cached
        exact = Decimal(self._low_text) + k * Decimal(self._step_text)
        assert self.low is not None and self.high is not None
        value = (
            int(exact)
            if self.type is ParameterType.INT
            else min(max(float(exact), self.low), self.high)
        )
        if len(self._values) < 100_000:
            self._values[k] = value
        return value

    @property
    def cardinality(self) -> int | None:
        """Number of feasible values, or ``None`` for a continuous double."""
        if not self.is_numeric_range:
            return len(self.choices)
        n = self.n_steps
        return None if n is None else n + 1

    def grid(self) -> list[Any]:
        """Every feasible value in increasing order (finite parameters only)."""
        if not self.is_numeric_range:
            return [self._value_of_index(i) for i in range(len(self.choices))]
        n = self.n_steps
        if n is None:
            raise InvalidArgument(
                f"parameter {self.name!r}: a double parameter needs a step to be enumerated"
            )
        return [self.value_at(k) for k in range(n + 1)]

    # -- encoding --------------------------------------------------------------------------

    def encode(self, values: Sequence[Any]) -> np.ndarray:
        """Map feasible values to ``[0, 1]`` (shape ``(n,)``)."""
        if not self.is_numeric_range:
            k = len(self.choices)
            idx = np.array([self.index_of(v) for v in values], dtype=float)
            return (idx + 0.5) / k
        x = np.asarray(values, dtype=float)
        a, b = self._warped_bounds()
        if b <= a:
            return np.full(x.shape, 0.5)
        t = np.log(np.maximum(x, 1e-300)) if self.distribution.is_log else x
        return np.clip(self._cdf(t, a, b), 0.0, 1.0)

    def decode(self, u: np.ndarray) -> list[Any]:
        """Map ``u`` (shape ``(n,)``, clipped to ``[0, 1]``) to feasible values."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        if not self.is_numeric_range:
            k = len(self.choices)
            idx = np.minimum(np.floor(u * k), k - 1).astype(int)
            return [self._value_of_index(int(i)) for i in idx]
        assert self.low is not None and self.high is not None
        a, b = self._warped_bounds()
        t = self._inverse_cdf(u, a, b) if b > a else np.full(u.shape, a)
        x = np.exp(t) if self.distribution.is_log else t
        if self.step is None:
            # exp(log(min)) can land a few ulps off the bound: print bounds exactly.
            x = np.clip(x, self.low, self.high)
            tol = 1e-12 * max(self.high - self.low, abs(self.low), abs(self.high))
            x = np.where(x - self.low <= tol, self.low, x)
            x = np.where(self.high - x <= tol, self.high, x)
            return [float(v) for v in x]
        return self._snap(np.rint((x - self.low) / self.step))

    def snap(self, u: np.ndarray) -> np.ndarray:
        """``encode(decode(u))`` without building Python values: ``u`` ``(n,)`` rounded to the
        encoded positions of feasible values (cell centres for lists, the encoded grid value for
        ints and stepped doubles, ``u`` clipped for continuous doubles)."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        if not self.is_numeric_range:
            k = len(self.choices)
            return (np.minimum(np.floor(u * k), k - 1) + 0.5) / k
        if self.step is None:
            return u
        assert self.low is not None and self.n_steps is not None
        a, b = self._warped_bounds()
        if b <= a:
            return np.full(u.shape, 0.5)
        t = self._inverse_cdf(u, a, b)
        x = np.exp(t) if self.distribution.is_log else t
        steps = np.clip(np.rint((x - self.low) / self.step), 0, self.n_steps)
        value = np.asarray(self.low + steps * self.step, dtype=float)
        warped = np.log(np.maximum(value, 1e-300)) if self.distribution.is_log else value
        return np.asarray(np.clip(self._cdf(warped, a, b), 0.0, 1.0))

    def snapped_grid(self, limit: int) -> np.ndarray | None:
        """Encoded positions of every feasible value in increasing order, shape ``(k,)``, or
        ``None`` for a continuous double or more than ``limit`` values."""
        k = self.cardinality
        if k is None or k > limit:
            return None
        if not self.is_numeric_range:
            return (np.arange(k) + 0.5) / k
        return self.encode([float(v) for v in self.grid()])

    def _snap(self, k: np.ndarray) -> list[Any]:
        assert self.n_steps is not None
        return [self.value_at(int(i)) for i in np.clip(k, 0, self.n_steps)]

    def _warped_bounds(self) -> tuple[float, float]:
        assert self.low is not None and self.high is not None
        lo, hi = self.low, self.high
        if self.step is not None:
            assert self.n_steps is not None
            hi = float(self.value_at(self.n_steps)) + self.step / 2
            lo = lo - self.step / 2
            if self.distribution.is_log and lo <= 0:
                lo = self.low
        if self.distribution.is_log:
            return math.log(lo), math.log(hi)
        return lo, hi

    def _normal_params(self) -> tuple[float, float]:
        assert self.low is not None and self.high is not None
        warp: Callable[[float], float] = math.log if self.distribution.is_log else float
        lo, hi = warp(self.low), warp(self.high)
        return (lo + hi) / 2, max((hi - lo) / 6, 1e-12)

    def _cdf(self, t: np.ndarray, a: float, b: float) -> np.ndarray:
        if not self.distribution.is_normal:
            return (t - a) / (b - a)
        from scipy.special import ndtr

        mu, sigma = self._normal_params()
        fa, fb = ndtr((a - mu) / sigma), ndtr((b - mu) / sigma)
        return np.asarray((ndtr((t - mu) / sigma) - fa) / (fb - fa))

    def _inverse_cdf(self, u: np.ndarray, a: float, b: float) -> np.ndarray:
        if not self.distribution.is_normal:
            return (1 - u) * a + u * b
        from scipy.special import ndtr, ndtri

        mu, sigma = self._normal_params()
        fa, fb = ndtr((a - mu) / sigma), ndtr((b - mu) / sigma)
        p = np.clip(fa + u * (fb - fa), 1e-300, 1 - 1e-16)
        return np.asarray(np.clip(mu + sigma * ndtri(p), a, b))

    # -- values ----------------------------------------------------------------------------

    def _value_of_index(self, i: int) -> Any:
        choice = self.choices[i]
        return float(choice) if self.type is ParameterType.DISCRETE else choice

    def index_of(self, value: Any) -> int:
        """Index of a list value in :attr:`choices`; ``ValueError`` if absent."""
        found = self._lookup.get(value)
        if found is not None:
            return found
        if self.type is ParameterType.CATEGORICAL:
            return self.choices.index(str(value))
        target = float(value)
        for i, choice in enumerate(self.choices):
            if math.isclose(float(choice), target, rel_tol=1e-9, abs_tol=1e-12):
                return i
        raise ValueError(f"{value!r} is not in the list of parameter {self.name!r}")

    def parse(self, text: str) -> Any:
        """Parse an assignment string (as Katib stores it) into a feasible value.

        Raises ``ValueError`` when the text is not a value of this parameter.
        """
        if not self.is_numeric_range:
            return self._value_of_index(self.index_of(text))
        number = _parse_float(text)
        if number is None:
            raise ValueError(f"{text!r} is not a number for parameter {self.name!r}")
        assert self.low is not None and self.high is not None
        accept_low, accept_high = self._accept
        if not accept_low <= number <= accept_high:
            raise ValueError(f"{text!r} is outside [min, max] of parameter {self.name!r}")
        if self.type is ParameterType.INT:
            try:
                return int(text)
            except ValueError:
                if number != int(number):
                    raise ValueError(
                        f"{text!r} is not an integer for parameter {self.name!r}"
                    ) from None
                return int(number)
        if self.step is not None and self.n_steps is not None:
            # Snap float artefacts such as 0.019999999999999997 onto the grid value 0.02.
            k = min(max(round((number - self.low) / self.step), 0), self.n_steps)
            nearest = self.value_at(k)
            if abs(nearest - number) <= 1e-9 * self.step:
                return nearest
        return min(max(number, self.low), self.high)

    def format(self, value: Any) -> str:
        """The assignment string for a value: shortest round-trip form, list values verbatim."""
        if not self.is_numeric_range:
            return self.choices[self.index_of(value)]
        if self.type is ParameterType.INT:
            return str(int(value))
        return repr(float(value))


@dataclass(frozen=True)
class SearchSpace:
    """An ordered collection of uniquely named parameters.

    >>> space = SearchSpace((ParameterSpec("x", ParameterType.INT, low=1, high=3),
    ...                      ParameterSpec("c", ParameterType.CATEGORICAL, choices=("a", "b"))))
    >>> space.decode(np.array([[0.0, 0.99]]))
    [{'x': 1, 'c': 'b'}]
    """

    params: tuple[ParameterSpec, ...]

    def __post_init__(self) -> None:
        if not self.params:
            raise InvalidArgument("the search space has no parameters")
        counts = Counter(p.name for p in self.params)
        dupes = sorted(name for name, n in counts.items() if n > 1)
        if dupes:
            raise InvalidArgument(f"parameter names must be unique; repeated: {', '.join(dupes)}")

    @cached_property
    def names(self) -> list[str]:
        """Parameter names in spec order (the column order of ``U``); do not mutate."""
        return [p.name for p in self.params]

    @cached_property
    def fingerprint(self) -> bytes:
        """A digest of every parameter's definition (for cache keys), computed once."""
        return hashlib.blake2b(repr(self.params).encode(), digest_size=16).digest()

    @cached_property
    def _index(self) -> dict[str, int]:
        return {p.name: i for i, p in enumerate(self.params)}

    @property
    def dim(self) -> int:
        """Number of parameters (columns of ``U``)."""
        return len(self.params)

    @property
    def cardinality(self) -> int | None:
        """Number of distinct points, or ``None`` if any parameter is continuous."""
        total = 1
        for p in self.params:
            c = p.cardinality
            if c is None:
                return None
            total *= c
        return total

    def __getitem__(self, name: str) -> ParameterSpec:
        return self.params[self._index[name]]

    def encode(self, points: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Points to ``U`` of shape ``(len(points), dim)``."""
        if not points:
            return np.empty((0, self.dim))
        return np.column_stack([p.encode([pt[p.name] for pt in points]) for p in self.params])

    def decode(self, u: np.ndarray) -> list[Point]:
        """``U`` of shape ``(n, dim)`` to feasible points (clipped and rounded)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        columns = [p.decode(u[:, j]) for j, p in enumerate(self.params)]
        return [dict(zip(self.names, row, strict=True)) for row in zip(*columns, strict=True)]

    @cached_property
    def view(self) -> SpaceView:
        """The vectorised view of this space (built once)."""
        return SpaceView.of(self)

    def snap(self, u: np.ndarray) -> np.ndarray:
        """``encode(decode(u))`` for ``u`` ``(n, dim)``, vectorised per column."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.clip(u, 0.0, 1.0)
        for j in self.view.discrete:
            out[:, j] = self.params[j].snap(u[:, j])
        return out

    def sample(self, rng: np.random.Generator, n: int) -> list[Point]:
        """``n`` independent draws from the parameters' prior distributions."""
        return self.decode(rng.random((n, self.dim)))

    def parse(self, assignments: Mapping[str, str]) -> Point:
        """Assignment strings to a point; ``ValueError`` if a parameter is missing or invalid."""
        try:
            return {p.name: p.parse(assignments[p.name]) for p in self.params}
        except KeyError:
            missing = [n for n in self.names if n not in assignments]
            raise ValueError(f"missing parameters: {', '.join(missing)}") from None

    def format(self, point: Mapping[str, Any]) -> list[tuple[str, str]]:
        """A point as ``(name, value string)`` pairs in spec order."""
        return [(p.name, p.format(point[p.name])) for p in self.params]

    def key(self, point: Mapping[str, Any]) -> tuple[str, ...]:
        """A canonical, hashable identity for de-duplicating points."""
        return tuple(p.format(point[p.name]) for p in self.params)


@dataclass(frozen=True)
class SpaceView:
    """A search space as arrays over the columns of ``U`` (shape ``(dim,)`` each).

    ``continuous``: double without a step (any value in ``[0, 1]`` decodes to itself);
    ``categorical``: unordered list columns; ``discrete``: indices of every column that rounds
    (ints, stepped doubles, discrete and categorical lists); ``n_values``: number of feasible
    values of a column (0 when continuous, or above 2^31).
    """

    continuous: np.ndarray  # (dim,) bool
    categorical: np.ndarray  # (dim,) bool
    discrete: np.ndarray  # (k,) int column indices
    n_values: np.ndarray  # (dim,) int

    @classmethod
    def of(cls, space: SearchSpace) -> SpaceView:
        """The view of ``space``."""
        cont = np.array([p.cardinality is None for p in space.params], dtype=bool)
        cat = np.array([p.type is ParameterType.CATEGORICAL for p in space.params], dtype=bool)
        n_values = np.array(
            [min(p.cardinality or 0, 2**31 - 1) for p in space.params], dtype=np.int64
        )
        return cls(cont, cat, np.flatnonzero(~cont), n_values)


def _decimal(text: str, fallback: float) -> Decimal:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return Decimal(repr(fallback))
    return value if value.is_finite() and float(value) == fallback else Decimal(repr(fallback))


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
