"""Algorithm registry: Katib algorithm name -> :class:`~katib.suggestion.base.Algorithm` class.

Built-in algorithms are imported lazily, so a service that hosts only ``random`` never imports
scipy's optimisers or torch. Third-party algorithms register either with the :func:`register`
decorator (imported before the server starts) or through the ``katib.suggestion`` entry-point
group of their package (``name = "module:Class"``), which ``katib-suggestion`` discovers.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from katib.api.errors import InvalidArgument
from katib.suggestion.base import Algorithm

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "katib.suggestion"

_BUILTIN: dict[str, str] = {
    "random": "katib.suggestion.random_search:RandomSearch",
    "sobol": "katib.suggestion.sobol:SobolSearch",
    "grid": "katib.suggestion.grid:GridSearch",
    "tpe": "katib.suggestion.tpe:TPE",
    "multivariate-tpe": "katib.suggestion.tpe:MultivariateTPE",
    "hyperband": "katib.suggestion.hyperband:Hyperband",
    "bohb": "katib.suggestion.bohb:BOHB",
    "asha": "katib.suggestion.asha:ASHA",
    "cmaes": "katib.suggestion.cmaes:CMAES",
    "bayesianoptimization": "katib.suggestion.bayesopt.algorithm:BayesianOptimization",
    "enas": "katib.nas.enas.algorithm:ENAS",
    "darts": "katib.nas.darts.algorithm:DARTS",
}
_registered: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not getattr(cls, "name", ""):
        raise TypeError(f"{cls.__qualname__} must define a non-empty `name`")
    _registered[cls.name] = cls
    return cls


def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def builtin_names() -> list[str]:
    """The algorithms this package ships, sorted (no plugins, nothing registered at run time)."""
    return sorted(_BUILTIN)


def names(*, include_nas: bool = True) -> list[str]:
    """Every algorithm name this installation can serve, sorted.

    ``include_nas=False`` leaves out neural architecture search algorithms (``enas``,
    ``darts``), which need a ``nasConfig`` instead of parameters.
    """
    every = sorted({*_BUILTIN, *_plugins(), *_registered})
    return every if include_nas else [n for n in every if not get(n).nas]


def get(name: str) -> type[Algorithm]:
    """The class for ``name``; ``InvalidArgument`` naming the known algorithms otherwise."""
    if name in _registered:
        return _registered[name]
    target = _BUILTIN.get(name) or _plugins().get(name)
    if target is None:
        raise InvalidArgument(f"unknown algorithm name {name!r}; available: {', '.join(names())}")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(f"{target} is not an Algorithm subclass")
    _registered[name] = cls
    return cls
