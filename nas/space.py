"""The search space of a NAS experiment: free-text assignments instead of typed parameters.

NAS experiments have no ``parameters``; their trials carry assignments such as ``architecture``
and ``nn_config`` (ENAS) whose values are JSON texts. :class:`NasSpace` lets the shared service
code (history decoding, reply encoding, de-duplication) treat those texts as points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from katib.suggestion.space import ParameterSpec, Point, SearchSpace


@dataclass(frozen=True)
class NasSpace(SearchSpace):
    """A space whose points are ``{assignment name: text}``; only NAS algorithms sample it."""

    params: tuple[ParameterSpec, ...] = ()

    def __post_init__(self) -> None:
        return None

    @property
    def cardinality(self) -> int | None:
        """Unknown to the shared code: NAS algorithms enumerate their own choices."""
        return None

    def parse(self, assignments: Mapping[str, str]) -> Point:
        """Every assignment, as text."""
        return dict(assignments)

    def format(self, point: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The point's assignments in insertion order."""
        return [(name, str(value)) for name, value in point.items()]

    def key(self, point: Mapping[str, Any]) -> tuple[str, ...]:
        """Assignments sorted by name."""
        return tuple(f"{name}={point[name]}" for name in sorted(point))

    def sample(self, rng: np.random.Generator, n: int) -> list[Point]:
        """Not defined for NAS: the algorithm owns the architecture space."""
        raise NotImplementedError("a NAS space is sampled by its NAS algorithm")
