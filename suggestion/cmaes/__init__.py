"""``cmaes``: CMA-ES with margin, restarts, and a state rebuilt from the trial history.

The standard (mu/mu_w, lambda)-CMA-ES (:mod:`.strategy`: cumulative step-size adaptation,
rank-one and rank-mu updates with active negative weights) searches the encoded unit cube that
every algorithm shares. Bounds are handled by resampling: each member tries up to
:data:`~.replay.ATTEMPTS` draws for one inside the cube (then the first draw is clipped).

* **Integers, stepped doubles and discrete lists** are dimensions of the Gaussian whose samples
  are rounded to cells; the margin of Hamano et al. (2022) keeps the probability of leaving the
  current cell at ``1 / (n lambda)`` at least, so these dimensions never freeze.
* **Categorical parameters** get their own categorical distribution per parameter, updated
  from the same ranking (CatCMA-style, with a probability floor as the margin); Katib's and
  Optuna's cmaes sample them at random instead. ``katib-bench`` measures it on the mixed
  problems.
* **Restarts** (``restart_strategy``): ``ipop`` doubles the population after each run that
  meets a termination criterion (TolFun, TolX, NoEffectAxis/Coord, ConditionCov, TolUpSigma);
  ``bipop`` interleaves small-population runs with smaller step sizes.
* **State**: nothing is kept between calls except a cache. Suggestions are labelled and named
  with their restart, generation and index (:mod:`.members`), and every draw is regenerated
  from ``(random_state, restart, generation, index)``, so a fresh process, any replica or a
  restarted controller rebuilds the same distribution (:mod:`.replay`). Requests made while a
  generation is running are served from its distribution (extra members); failed members are
  replaced by later ones. The echoed ``reply.algorithm`` state (``cmaes_restart``,
  ``cmaes_generation``, ``cmaes_population``, ``cmaes_sigma``) is informative only.

Usage (Katib's ``algorithm`` block)::

    algorithm:
      algorithmName: cmaes
      algorithmSettings:
        - {name: sigma, value: "0.2"}
        - {name: restart_strategy, value: ipop}
        - {name: random_state, value: "7"}
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

from katib.api.cache import ByteLRU, shared
from katib.api.errors import InvalidArgument
from katib.api.settings import setting
from katib.suggestion.base import (
    Algorithm,
    ExperimentInfo,
    Suggestion,
    SuggestResult,
    draw_distinct,
)
from katib.suggestion.cmaes import members as ids
from katib.suggestion.cmaes.layout import Layout
from katib.suggestion.cmaes.replay import Replayed, Replayer
from katib.suggestion.history import History
from katib.suggestion.space import ParameterType, Point

#: Katib's (Optuna service's) message for spaces with fewer than two numeric parameters.
KATIB_MESSAGE = "cmaes only supports two or more dimensional continuous search space."


@dataclass(frozen=True)
class CMAESSettings:
    """Settings of ``cmaes``: Katib's three, plus the population size."""

    sigma: float = setting(
        1 / 6,
        gt=0,
        le=1,
        doc="initial step size in the unit cube every parameter is encoded into "
        "(1/6: a sixth of each range, as Optuna's default)",
    )
    restart_strategy: str | None = setting(
        None,
        choices=("ipop", "bipop"),
        doc="none (default), ipop (double the population at each restart) or bipop",
    )
    population_size: int | None = setting(
        None, ge=2, doc="lambda of the first run; default 4 + floor(3 ln n)"
    )
    random_state: int | None = setting(
        None, ge=0, doc="seed; unset: a CRC-32 of the experiment name (draws must replay)"
    )


@dataclass(frozen=True)
class CMAESState:
    """Echoed in ``reply.algorithm`` for people and dashboards; never read back."""

    cmaes_restart: int = setting(0, ge=0, doc="restart of the open generation")
    cmaes_generation: int = setting(0, ge=0, doc="open generation within its run")
    cmaes_population: int = setting(0, ge=0, doc="lambda of the current run")
    cmaes_sigma: float = setting(0.0, ge=0, doc="step size of the current run")


class CMAES(Algorithm):
    """CMA-ES with margin and IPOP/BIPOP restarts, replayed from the history on every call.

    >>> from katib.suggestion.space import ParameterSpec, SearchSpace
    >>> space = SearchSpace((ParameterSpec("x", ParameterType.DOUBLE, low=-1, high=1),
    ...                      ParameterSpec("n", ParameterType.INT, low=1, high=9)))
    >>> algo = CMAES(ExperimentInfo("demo", space), CMAESSettings(random_state=1))
    >>> [s.labels["cmaes/index"] for s in algo.suggest(History("minimize"), 2).suggestions]
    ['0', '1']
    """

    name = "cmaes"
    settings_class = CMAESSettings
    state_class = CMAESState
    #: Where replays are cached between calls; ``None``: the process's shared byte-bounded
    #: cache (:func:`katib.api.cache.shared`, sized by ``katib-suggestion --cache-mib``).
    cache: ClassVar[ByteLRU | None] = None
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()
    _layouts: ClassVar[OrderedDict[tuple[str, str, bytes], Layout]] = OrderedDict()

    @classmethod
    def check(cls, experiment: ExperimentInfo, settings: Any) -> None:
        """Katib's rule: at least two double or int parameters."""
        numeric = [
            p.name
            for p in experiment.space.params
            if p.type in (ParameterType.DOUBLE, ParameterType.INT)
        ]
        if len(numeric) < 2:
            found = ", ".join(numeric) or "none"
            raise InvalidArgument(
                f"{KATIB_MESSAGE} cmaes needs at least two double or int parameters; "
                f"this experiment has {len(numeric)} ({found})"
            )

    def replayer(self) -> Replayer:
        """The replayer for this experiment and settings (built once per instance)."""
        cached: Replayer | None = self.__dict__.get("_replayer")
        if cached is not None:
            return cached
        key = self._cache_key()
        with self._cache_lock:
            layout = self._layouts.get(key)
        if layout is None:
            layout = Layout.build(self.space)
            with self._cache_lock:
                self._layouts[key] = layout
                while len(self._layouts) > 64:
                    self._layouts.popitem(last=False)
        s = self.settings
        self.__dict__["_replayer"] = cached = Replayer(
            layout,
            self.stable_seed,
            s.sigma,
            s.restart_strategy,
            s.population_size,
            self.experiment.name,
        )
        return cached

    def replayed(self, history: History, use_cache: bool = True) -> Replayed:
        """The history replayed (from the cached replay of this experiment when it fits)."""
        replayer = self.replayer()
        key = self._cache_key()
        resume = None
        store = self.cache if self.cache is not None else shared()
        if use_cache:
            hit = store.get(key)
            resume = hit if isinstance(hit, Replayed) else None
        result = replayer.replay(history, resume)
        if use_cache:
            store.put(key, result, result.nbytes())
        return result

    def suggest(self, history: History, count: int) -> SuggestResult:
        """``count`` members of the open generation (fewer only when the space is full)."""
        replayer = self.replayer()
        result = self.replayed(history)
        run, members = result.run, result.members
        if self.space.cardinality is None:  # repeats have probability zero: check pending
            taken = {self.space.key(t.point) for t in history.pending if t.point is not None}
        else:
            taken = history.taken_keys(self.space)
        names = set(history.names)
        index = max(members) + 1 if members else 0
        out: list[Suggestion] = []
        while len(out) < count:
            member = ids.Member(run.restart, run.state.generation, index)
            index += 1
            name = ids.trial_name(self.experiment.name, member)
            if name is not None and name in names:
                continue
            draw = replayer.draw(
                run.state, member, taken, lambda m=member: self._free_point(m, taken, history)
            )
            if draw is None:
                break
            taken.add(self.space.key(draw.point))
            out.append(Suggestion(draw.point, ids.labels(member), name))
        state = CMAESState(
            cmaes_restart=run.restart,
            cmaes_generation=run.state.generation,
            cmaes_population=run.lam,
            cmaes_sigma=float(run.state.sigma),
        )
        return SuggestResult(out, state)

    def _free_point(
        self, member: ids.Member, taken: set[tuple[str, ...]], history: History
    ) -> Point | None:
        """A uniformly random point not yet taken (for a converged discrete search)."""
        rng = self.rng(history, f"cmaes-free-{tuple(member)}", self.stable_seed)

        def draw(k: int) -> list[Point]:
            return [p for p in self.space.sample(rng, k) if self.space.key(p) not in taken]

        found = draw_distinct(self.space, rng, draw, 1, history, check_continuous=True)
        found = [p for p in found if self.space.key(p) not in taken]
        return found[0] if found else None

    def _cache_key(self) -> tuple[str, str, bytes]:
        cached: tuple[str, str, bytes] | None = self.__dict__.get("_key")
        if cached is not None:
            return cached
        described = repr((self.space, self.experiment.direction, self.settings, self.stable_seed))
        digest = hashlib.blake2b(described.encode(), digest_size=16).digest()
        self.__dict__["_key"] = key = ("replay:cmaes", self.experiment.name, digest)
        return key

    @classmethod
    def clear_cache(cls) -> None:
        """Forget every cached replay (tests use it to compare cold and warm answers)."""
        (cls.cache if cls.cache is not None else shared()).clear()
