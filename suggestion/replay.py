"""Replay: a stateful algorithm as a Designer told the finished trials, cached per experiment.

Some algorithms carry state from one call to the next (CMA-ES's mean and covariance, Hyperband's
brackets, a fitted model worth keeping). Katib sends the *whole* trial history on every call, so
that state can always be rebuilt: a :class:`Designer` (cf. OSS Vizier's ``Designer.update`` /
``suggest`` and cmaes's ``tell`` / ``ask``) is told every *finished* trial once, in a canonical
order, and asked for new points. :class:`ReplayAlgorithm` does the bookkeeping:

1. the finished trials of the request are put in canonical order: by completion time (trials
   without one last), then by name;
2. a designer is taken from the process's byte-bounded cache (:func:`katib.api.cache.shared`)
   under a key made of the experiment's name and a fingerprint of its space, objective and
   settings, so it can never serve another experiment (or the same one after an edit);
3. the cached designer is reused only if the trials it was told are a *prefix* of that order,
   each with identical content (same name, point, state, value, labels, metrics, times);
   otherwise a fresh designer is built. Either way it is told the remaining finished trials;
4. :meth:`Designer.ask` gets the count, the pending trials and a generator derived from the
   seed and the history (:meth:`~katib.suggestion.base.Algorithm.rng`).

The contract that makes a cache hit and a fresh process answer identically: **a designer's state
depends only on the experiment, the settings and the sequence of trials told; ask never changes
it.** Randomness in ``ask`` comes from the ``rng`` argument, not from a generator kept across
calls. The echoed ``reply.algorithm`` state (``self.state``) is *not* part of the key: replay
rebuilds what it needs from the trials (their labels and names), which no lost reply can make
stale. Designers report their size through :meth:`Designer.nbytes` (numpy arrays' ``nbytes``
plus what they keep per trial); the cache charges that plus a per-trial overhead for the told
trials it keeps to check the prefix.

A minimal designer (it suggests the best point so far, moved by a random step)::

    class WalkDesigner(Designer):
        def __init__(self, algorithm: Walk) -> None:
            self.space = algorithm.space
            self.best: Point | None = None
            self.best_loss = float("inf")

        def tell(self, trials: Sequence[Trial]) -> None:
            for t in trials:
                if t.is_complete and t.value < self.best_loss:
                    self.best, self.best_loss = t.point, t.value

        def ask(self, count, pending, rng):
            if self.best is None:
                return self.space.sample(rng, count)
            centre = self.space.encode([self.best])[0]
            u = np.clip(centre + 0.05 * rng.standard_normal((count, centre.size)), 0, 1)
            return self.space.decode(u)

    @register
    class Walk(ReplayAlgorithm):
        name = "walk"
        settings_class = WalkSettings

        def designer(self) -> WalkDesigner:
            return WalkDesigner(self)

(``value`` is in the user's direction; use ``self.experiment.direction`` to compare.)
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from katib.api.cache import DICT_ENTRY_BYTES, OBJECT_BYTES, ByteLRU, estimate_bytes, shared
from katib.api.trials import Trial, TrialState
from katib.suggestion.base import Algorithm, SuggestResult
from katib.suggestion.history import History
from katib.suggestion.space import Point

#: What the cache charges per told trial it keeps (a reference plus the trial's own estimate
#: is charged once by the decoded-trial cache; this covers the list slot and prefix bookkeeping).
TOLD_TRIAL_BYTES = 2 * OBJECT_BYTES


class Designer(ABC):
    """The state of a stateful algorithm: told finished trials in order, asked for points.

    State must depend only on the experiment, the settings and the sequence of told trials;
    :meth:`ask` must not change it (see the module docstring).
    """

    @abstractmethod
    def tell(self, trials: Sequence[Trial]) -> None:
        """Update the state with newly finished trials, in canonical order; each told once.

        Finished means any state but pending: failed trials and trials whose point is ``None``
        (they no longer fit the space) are told too, so a designer can count them.
        """

    @abstractmethod
    def ask(
        self, count: int, pending: Sequence[Trial], rng: np.random.Generator
    ) -> list[Point] | SuggestResult:
        """Up to ``count`` new points, diverse against ``pending``; never changes the state."""

    def nbytes(self) -> int:
        """An estimate of the memory this designer holds, for the byte-bounded cache.

        The default counts numpy arrays, containers, strings and numbers among the attributes
        with :func:`katib.api.cache.estimate_bytes`, and other objects (the search space, the
        settings: shared, not owned) as one reference each. Override it when that walk is slow
        (large containers of Python objects) or misses memory the designer owns.
        """
        total = OBJECT_BYTES
        for value in vars(self).values():
            if isinstance(value, _OWNED):
                total += DICT_ENTRY_BYTES + estimate_bytes(value)
            else:
                total += DICT_ENTRY_BYTES
        return total


_OWNED = (np.ndarray, list, tuple, dict, set, frozenset, str, bytes, int, float, bool)


class _Replay:
    """A designer with the trials it was told (to check that they prefix the request's)."""

    __slots__ = ("designer", "told")

    def __init__(self, designer: Designer) -> None:
        self.designer = designer
        self.told: list[Trial] = []

    def matches(self, finished: Sequence[Trial]) -> bool:
        """True if the told trials are a prefix of ``finished`` with identical content."""
        told = self.told
        if len(told) > len(finished):
            return False
        return all(a is b or a == b for a, b in zip(told, finished, strict=False))

    def advance(self, finished: Sequence[Trial]) -> None:
        new = finished[len(self.told) :]
        if new:
            self.designer.tell(new)
            self.told.extend(new)

    def nbytes(self) -> int:
        return self.designer.nbytes() + TOLD_TRIAL_BYTES * len(self.told) + OBJECT_BYTES


_LAST = datetime.max.replace(tzinfo=UTC)


def canonical_order(trials: Sequence[Trial]) -> list[Trial]:
    """Finished trials by completion time (none last; naive times read as UTC), then by name."""

    def key(t: Trial) -> tuple[datetime, str]:
        done = t.completion_time
        if done is None:
            return (_LAST, t.name)
        return (done if done.tzinfo is not None else done.replace(tzinfo=UTC), t.name)

    return sorted((t for t in trials if t.state is not TrialState.PENDING), key=key)


class ReplayAlgorithm(Algorithm):
    """An :class:`~katib.suggestion.base.Algorithm` whose state is a replayed :class:`Designer`.

    Subclasses implement :meth:`designer` (a fresh designer for this experiment and settings);
    :meth:`suggest` is provided. ``cache`` defaults to the process's shared cache.
    """

    #: The cache designers are kept in between calls; ``None`` means :func:`shared`.
    cache: ByteLRU | None = None

    @abstractmethod
    def designer(self) -> Designer:
        """A new designer for this experiment and settings, told nothing yet."""

    def replay_key(self) -> tuple[str, str, bytes]:
        """The cache key: algorithm name, experiment name and a digest of everything else.

        The digest covers the algorithm class, the search space, the direction, the objective
        metric, the budget and the settings (their ``repr``, which frozen dataclasses make
        exact), so an edited experiment never reuses a designer built for the old one.
        """
        cls = type(self)
        info = self.experiment
        described = repr(
            (cls.__module__, cls.__qualname__, info.space.fingerprint, info.direction,
             info.objective_metric, info.max_trial_count, info.parallel_trial_count,
             self.settings)
        )  # fmt: skip
        digest = hashlib.blake2b(described.encode(), digest_size=16).digest()
        return ("replay:" + self.name, self.experiment.name, digest)

    def replayed(self, history: History) -> Designer:
        """The designer told every finished trial of ``history`` (cached when possible).

        It stays in the cache: inspect it, never tell it more trials.
        """
        cache = self.cache if self.cache is not None else shared()
        entry, key = self._replay(history)
        cache.put(key, entry, entry.nbytes())
        return entry.designer

    def _replay(self, history: History) -> tuple[_Replay, tuple[str, str, bytes]]:
        cache = self.cache if self.cache is not None else shared()
        key = self.replay_key()
        finished = canonical_order(history.trials)
        entry = cache.take(key)
        if not isinstance(entry, _Replay) or not entry.matches(finished):
            entry = _Replay(self.designer())
        entry.advance(finished)
        return entry, key

    def suggest(self, history: History, count: int) -> list[Point] | SuggestResult:
        """Replay the history into a designer (cached when it still fits) and ask it."""
        cache = self.cache if self.cache is not None else shared()
        entry, key = self._replay(history)
        try:
            return entry.designer.ask(count, history.pending, self.rng(history, "replay"))
        finally:
            cache.put(key, entry, entry.nbytes())


def told_names(algorithm: ReplayAlgorithm) -> list[str] | None:
    """Names of the trials the cached designer of ``algorithm``'s experiment was told (tests)."""
    cache = algorithm.cache if algorithm.cache is not None else shared()
    entry: Any = cache.get(algorithm.replay_key())
    return None if entry is None else [t.name for t in entry.told]
