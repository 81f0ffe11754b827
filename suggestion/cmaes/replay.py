"""Rebuild the CMA-ES runs from the trial history, generation by generation.

The distribution is a deterministic function of the history: every suggestion is member
``(restart, generation, index)`` (:mod:`.members`) and its draw is regenerated from a stream
seeded with ``(seed, restart, generation, index)``, so telling a generation again reproduces the
same update bit for bit in any process.

Generation rules:

* the *core* of a generation is its first ``lambda`` members by index that did not fail
  (failed, killed and metrics-unavailable trials are replaced by the generation's later
  members, as Optuna does: a configuration that crashed has no value to rank);
* a generation is told once every core member has a value. Until then it is the *open*
  generation: new requests get further members of it, drawn from the same distribution, so
  parallel trials never wait and never duplicate pending points;
* once told, a core never changes (completed trials stay completed), so the extra members that
  finish later are evaluated but never told, and later replays agree with earlier ones;
* after each generation the restart strategy checks the termination criteria
  (:func:`.strategy.should_stop`); a restart starts a new run with ``restart + 1``.

Arrays: ``x`` ``(lam, n)`` told samples, ``losses`` ``(lam,)``; see :mod:`.strategy`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import is_

import numpy as np

from katib.suggestion.cmaes import strategy
from katib.suggestion.cmaes.layout import Layout
from katib.suggestion.cmaes.members import Member, identify, loose_key, loose_order
from katib.suggestion.history import History, Trial, TrialState
from katib.suggestion.space import Point

#: Draws tried per member for a feasible point not already taken (then a random free point).
ATTEMPTS = 64


@dataclass(frozen=True)
class Draw:
    """One member's sample: what the CMA is told and the point that was suggested."""

    x: np.ndarray  # (n,) unwidened sample, continuous dimensions repaired into [0, 1]
    cats: np.ndarray  # (n_cat,)
    point: Point
    injected: bool = False


@dataclass(frozen=True)
class Run:
    """One CMA-ES run (the initial one or a restart) and the budget bookkeeping of BIPOP."""

    restart: int
    lam: int
    sigma0: float
    state: strategy.State
    large: bool  # BIPOP regime (IPOP and the first run count as large)
    large_count: int  # large-regime runs so far, this one included
    budget_large: int  # evaluations told in large-regime runs before this one
    budget_small: int


@dataclass
class Replayed:
    """The outcome of a replay: the current run, its open generation and the members so far."""

    run: Run
    members: dict[int, Trial]  # the open generation's members by index
    #: Each told generation: its (restart, generation), core names and core losses.
    told: list[tuple[tuple[int, int], tuple[str, ...], tuple[float, ...]]] = field(
        default_factory=list
    )
    loose_used: int = 0
    #: Loose trials consumed by the told generations (the open one may have taken more).
    loose_told: int = 0
    stops: list[str] = field(default_factory=list)
    #: The trials the told generations were built from (each generation's members up to its
    #: last core index, loose ones included), the loose ones in order, and per generation the
    #: last core index and how many labelled members lay at or below it: a later request whose
    #: history still holds these very objects, and no new one among them, resumes in O(n).
    told_objects: list[Trial] = field(default_factory=list, repr=False)
    told_loose: list[Trial] = field(default_factory=list, repr=False)
    told_shape: list[tuple[tuple[int, int], int, int]] = field(default_factory=list, repr=False)
    #: The grouping of the history this replay was made from (reused by the next request).
    grouping: Grouping | None = field(default=None, repr=False)
    #: False when the told generations were accepted by name and value only (the ``told_*``
    #: fields may then hold other objects than ``grouping``'s).
    exact: bool = field(default=True, repr=False)

    def nbytes(self) -> int:
        """Approximate memory (for the byte-bounded cache)."""
        counted = len(self.told) + len(self.members)
        if self.grouping is not None:
            counted += 2 * len(self.grouping.idents)
        return self.run.state.nbytes() + 200 * counted + 1024


@dataclass(frozen=True)
class Grouping:
    """A history's trials grouped by generation; never changed once built, so a cached replay
    and the requests that reuse it can share it.

    ``trials`` is the :attr:`History.trials` tuple it was built from; ``grouped`` maps each
    (restart, generation) to its labelled members by index (the first trial of each identity
    wins), ``loose`` lists the unlabelled trials in :func:`.members.loose_order`, and
    ``idents`` remembers each trial's identity by ``id()`` (kept with the trial, to check
    ``is``).
    """

    trials: tuple[Trial, ...]
    grouped: dict[tuple[int, int], dict[int, Trial]]
    loose: list[Trial]
    idents: dict[int, tuple[Trial, Member | None]]


class Replayer:
    """Replays a history into CMA-ES runs and draws new members; stateless between calls.

    ``settings`` carries ``sigma``, ``restart_strategy`` and ``population_size``; ``seed`` is
    the stable seed of the experiment.
    """

    def __init__(
        self,
        layout: Layout,
        seed: int,
        sigma0: float,
        restart_strategy: str | None,
        population: int | None,
        experiment: str,
    ) -> None:
        self.layout = layout
        self.seed = seed
        self.sigma0 = sigma0
        self.restart_strategy = restart_strategy
        n = len(layout.numeric)
        self.n = n
        self.lam0 = population or strategy.default_population(n)
        self.experiment = experiment
        self.continuous = layout.continuous
        self.reach = layout.reach
        #: Ablation switch for benchmarks: False keeps categorical distributions uniform (as
        #: Katib's and Optuna's cmaes sample categoricals at random).
        self.learn_categories = True

    # -- runs --------------------------------------------------------------------------------

    def first_run(self) -> Run:
        """The initial run: mean at the centre of the cube, ``sigma``, default population."""
        return Run(
            0,
            self.lam0,
            self.sigma0,
            self._state(self.lam0, np.full(self.n, 0.5), self.sigma0),
            large=True,
            large_count=1,
            budget_large=0,
            budget_small=0,
        )

    def next_run(self, run: Run, generations: int) -> Run:
        """The restart after ``run`` (which told ``generations`` generations).

        IPOP doubles the population at each restart (Auger and Hansen 2005). BIPOP (Hansen
        2009) alternates between that large-population regime and a small one with
        ``lam = floor(lam0 (lam_large / (2 lam0))^(u^2))`` and ``sigma = sigma0 10^(-2u)``
        for ``u ~ U(0, 1)``, choosing the regime that used fewer evaluations so far (the first
        restart is large). New runs start from a uniformly random mean.
        """
        rng = np.random.default_rng([self.seed, 1, run.restart + 1])
        mean = rng.random(self.n)
        used = run.lam * generations
        budget_large = run.budget_large + (used if run.large else 0)
        budget_small = run.budget_small + (0 if run.large else used)
        large_count, sigma = run.large_count, self.sigma0
        if self.restart_strategy == "bipop" and run.restart >= 1 and budget_small < budget_large:
            u = rng.random()
            lam_large = self.lam0 * 2**large_count
            lam = max(self.lam0, int(self.lam0 * (lam_large / (2 * self.lam0)) ** (u * u)))
            sigma, large = self.sigma0 * 10 ** (-2 * u), False
        else:
            large_count += 1
            lam, large = self.lam0 * 2 ** (large_count - 1), True
        return Run(
            run.restart + 1,
            lam,
            sigma,
            self._state(lam, mean, sigma),
            large,
            large_count,
            budget_large,
            budget_small,
        )

    def _state(self, lam: int, mean: np.ndarray, sigma: float) -> strategy.State:
        params = strategy.Params.build(self.n, lam)
        state = strategy.State.initial(params, mean, sigma, self.layout.arities)
        return strategy.apply_margin(state, self.layout.cuts)[0]

    # -- draws -------------------------------------------------------------------------------

    def stream(self, member: Member) -> tuple[np.ndarray, np.ndarray]:
        """Standard normals ``(ATTEMPTS, n)`` and uniforms ``(ATTEMPTS, n_cat)`` of a member."""
        rng = np.random.default_rng([self.seed, 0, *member])
        return rng.standard_normal((ATTEMPTS, self.n)), rng.random(
            (ATTEMPTS, len(self.layout.arities))
        )

    def candidates(self, state: strategy.State, member: Member) -> tuple[np.ndarray, ...]:
        """A member's attempts: told ``x``, evaluated ``u`` ``(ATTEMPTS, d)``, feasibility."""
        z, uniforms = self.stream(member)
        x = state.candidates(z)
        scale = strategy.apply_margin(state, self.layout.cuts)[1]
        x_eval = state.mean + (x - state.mean) * scale
        cont = self.continuous
        feasible = np.all((x_eval[:, cont] >= 0) & (x_eval[:, cont] <= 1), axis=1)
        cats = (
            np.column_stack(
                [
                    np.minimum(
                        np.searchsorted(np.cumsum(q), uniforms[:, c], side="right"), q.size - 1
                    )
                    for c, q in enumerate(state.probs)
                ]
            )
            if state.probs
            else np.zeros((ATTEMPTS, 0), dtype=int)
        )
        repaired = x.copy()
        repaired[:, cont] = np.clip(x[:, cont], 0.0, 1.0)
        return repaired, cats, self.layout.unit(x_eval, cats), feasible

    def draw(
        self,
        state: strategy.State,
        member: Member,
        taken: set[tuple[str, ...]],
        fallback: Callable[[], Point | None],
    ) -> Draw | None:
        """A new member: its first feasible attempt whose point is not taken.

        When every attempt is infeasible the first is repaired (clipped); when every attempt is
        taken, ``fallback`` supplies a free point (told as injected); ``None`` if there is none.
        """
        x, cats, u, feasible = self.candidates(state, member)
        space = self.layout.space
        order = [*np.flatnonzero(feasible), *np.flatnonzero(~feasible)]
        for a in order:
            point = space.decode(u[a : a + 1])[0]
            if space.key(point) not in taken:
                return Draw(x[a], cats[a], point)
        free = fallback()
        if free is None:
            return None
        nx, nc = self.layout.split(free)
        return Draw(nx, nc, free, injected=True)

    def recover(self, state: strategy.State, member: Member, trial: Trial) -> Draw:
        """The draw that produced ``trial``'s point, or the point itself as an injection."""
        assert trial.point is not None
        space = self.layout.space
        key = trial.key if trial.key is not None else space.key(trial.point)
        x, cats, u, feasible = self.candidates(state, member)
        near = np.all(np.abs(u - space.encode([trial.point])[0]) <= self.reach, axis=1)
        order = [*np.flatnonzero(feasible & near), *np.flatnonzero(~feasible & near)]
        for a in order:
            if space.key(space.decode(u[a : a + 1])[0]) == key:
                return Draw(x[a], cats[a], trial.point)
        nx, nc = self.layout.split(trial.point)
        return Draw(nx, nc, trial.point, injected=True)

    # -- replay ------------------------------------------------------------------------------

    def replay(self, history: History, resume: Replayed | None = None) -> Replayed:
        """Tell every complete generation of ``history``; reuse ``resume``'s work if it fits.

        ``resume`` (a cached earlier replay of the same experiment) is used only when each of
        the generations it told has the same core now, checked name by name and value by
        value; otherwise the replay starts from the first run. Either path gives the same
        result.
        """
        losses = _Losses(history)
        previous = resume.grouping if resume is not None else None
        grouping, prefix = self.group(history.trials, previous)
        grouped, loose, idents = grouping.grouped, grouping.loose, grouping.idents
        exact = resume is not None and (
            (prefix is not None and _tail_fits(resume, grouping, prefix))
            or _same_objects(resume, idents, grouped, loose)
        )
        if resume is not None and (exact or self._verify(resume, grouped, loose, losses)):
            result = Replayed(
                resume.run,
                {},
                told=list(resume.told),
                loose_used=resume.loose_told,
                loose_told=resume.loose_told,
                stops=list(resume.stops),
                told_objects=list(resume.told_objects),
                told_loose=list(resume.told_loose),
                told_shape=list(resume.told_shape),
                grouping=grouping,
                exact=exact,
            )
        else:
            result = Replayed(self.first_run(), {}, grouping=grouping)
        while True:
            run = result.run
            key = (run.restart, run.state.generation)
            labelled = grouped.get(key, {})
            members = dict(labelled)  # _core adds loose trials: the grouping stays as built
            core, used = _core(members, loose, result.loose_used, run.lam)
            result.loose_used += used
            if len(core) < run.lam or any(t.state is TrialState.PENDING for _, t in core):
                result.members = members
                return result
            told_losses = np.array([losses[t.name] for _, t in core])
            draws = [self.recover(run.state, Member(*key, i), t) for i, t in core]
            state = strategy.tell(
                run.state,
                np.array([d.x for d in draws]),
                told_losses,
                np.array([d.cats for d in draws])
                if self.layout.arities and self.learn_categories
                else None,
                np.array([d.injected for d in draws]),
            )
            state, _ = strategy.apply_margin(state, self.layout.cuts)
            names = tuple(t.name for _, t in core)
            result.told.append((key, names, tuple(told_losses.tolist())))
            result.loose_told = result.loose_used
            last = core[-1][0]
            result.told_objects.extend(t for i, t in members.items() if i <= last)
            result.told_shape.append((key, last, sum(1 for i in labelled if i <= last)))
            result.told_loose = loose[: result.loose_used]
            reason = (
                strategy.should_stop(state, run.sigma0, told_losses)
                if self.restart_strategy
                else None
            )
            if reason is not None:
                result.stops.append(reason)
                result.run = self.next_run(run, state.generation)
            else:
                result.run = replace(run, state=state)

    def group(
        self, trials: tuple[Trial, ...], previous: Grouping | None
    ) -> tuple[Grouping, int | None]:
        """``trials`` grouped by generation, and how many of them ``previous`` already grouped.

        When ``trials`` starts with the very trial objects ``previous`` was built from (the
        same request again, or one with trials appended), only the new ones are identified
        and the rest of ``previous`` is shared; the count returned is then the length of that
        common prefix, otherwise ``None`` (and every trial is grouped again, reusing the
        identities ``previous`` found for the same objects).
        """
        if previous is not None:
            old = previous.trials
            if trials is old:
                return previous, len(old)
            if len(trials) >= len(old) and all(map(is_, old, trials)):
                return self._extend(previous, trials), len(old)
        known = previous.idents if previous is not None else {}
        grouped: dict[tuple[int, int], dict[int, Trial]] = {}
        loose: list[Trial] = []
        idents: dict[int, tuple[Trial, Member | None]] = {}
        for t in trials:
            if t.point is None:
                continue
            seen = known.get(id(t))
            member = seen[1] if seen is not None and seen[0] is t else identify(t, self.experiment)
            idents[id(t)] = (t, member)
            if member is None:
                loose.append(t)
            else:
                grouped.setdefault(member[:2], {}).setdefault(member.number, t)
        return Grouping(trials, grouped, loose_order(loose), idents), None

    def _extend(self, previous: Grouping, trials: tuple[Trial, ...]) -> Grouping:
        """``previous`` with the trials after its own appended (``previous`` is not changed)."""
        grouped = dict(previous.grouped)
        copied: set[tuple[int, int]] = set()
        idents = dict(previous.idents)
        added: list[Trial] = []
        for t in trials[len(previous.trials) :]:
            if t.point is None:
                continue
            member = identify(t, self.experiment)
            idents[id(t)] = (t, member)
            if member is None:
                added.append(t)
                continue
            key = member[:2]
            if key not in copied:
                grouped[key] = dict(grouped.get(key, {}))
                copied.add(key)
            grouped[key].setdefault(member.number, t)
        loose = previous.loose
        if added:
            added = loose_order(added)
            if loose and loose_key(added[0]) < loose_key(loose[-1]):
                loose = loose_order([*loose, *added])
            else:
                loose = [*loose, *added]
        return Grouping(trials, grouped, loose, idents)

    def _verify(
        self,
        resume: Replayed,
        grouped: dict[tuple[int, int], dict[int, Trial]],
        loose: list[Trial],
        losses: _Losses,
    ) -> bool:
        """True if every generation ``resume`` told has the same core in this history."""
        used = 0
        for key, names, values in resume.told:
            core, n_loose = _core(dict(grouped.get(key, {})), loose, used, len(names))
            used += n_loose
            if tuple(t.name for _, t in core) != names:
                return False
            if any(losses.get(t.name) != v for (_, t), v in zip(core, values, strict=True)):
                return False
        return used == resume.loose_told


def _core(
    members: dict[int, Trial], loose: Sequence[Trial], start: int, lam: int
) -> tuple[list[tuple[int, Trial]], int]:
    """The generation's core (index, trial) pairs, topped up with loose trials in order.

    Returns the core and how many loose trials were consumed (added to ``members``).
    """
    core: list[tuple[int, Trial]] = []
    for i in sorted(members):
        t = members[i]
        if t.state is TrialState.PENDING or t.is_complete:
            core.append((i, t))
            if len(core) == lam:
                return core, 0
    used = 0
    nxt = max(members) + 1 if members else 0
    while len(core) < lam and start + used < len(loose):
        t = loose[start + used]
        used += 1
        members[nxt] = t
        if t.state is TrialState.PENDING or t.is_complete:
            core.append((nxt, t))
        nxt += 1
    return core, used


class _Losses:
    """Loss (minimised, non-finite values clipped) of each completed trial, by name; computed
    on first use, since a warm request that tells nothing new never needs it."""

    def __init__(self, history: History) -> None:
        self.history = history
        self._map: dict[str, float] | None = None

    def _load(self) -> dict[str, float]:
        if self._map is None:
            h = self.history
            self._map = dict(zip((t.name for t in h.completed), h.losses().tolist(), strict=True))
        return self._map

    def __getitem__(self, name: str) -> float:
        return self._load()[name]

    def get(self, name: str) -> float | None:
        """The loss of ``name``, or ``None`` if it has no value."""
        return self._load().get(name)


def _same_objects(
    resume: Replayed,
    idents: dict[int, tuple[Trial, Member | None]],
    grouped: dict[tuple[int, int], dict[int, Trial]],
    loose: list[Trial],
) -> bool:
    """Whether the told generations are built from the very same trial objects as before.

    Decoded trials are immutable and reused across requests while their bytes are unchanged
    (:mod:`katib.suggestion.proto`), so identity implies equal content; the loose trials
    consumed must still come first in order, and no new member may have joined a told
    generation below its last core index.
    """
    if len(loose) < len(resume.told_loose):
        return False
    if any(a is not b for a, b in zip(resume.told_loose, loose, strict=False)):
        return False
    if any(idents.get(id(t), (None,))[0] is not t for t in resume.told_objects):
        return False
    for key, last, count in resume.told_shape:
        if sum(1 for i in grouped.get(key, {}) if i <= last) != count:
            return False
    return True


def _tail_fits(resume: Replayed, grouping: Grouping, prefix: int) -> bool:
    """Whether ``resume``'s told generations still hold, ``grouping`` extending the grouping
    ``resume`` was made from by the trials after its first ``prefix``.

    The earlier trials are the very same objects, so only the new ones can matter: the loose
    trials told must still come first in order, and a new member of a told generation must
    come after its core, which must hold no loose trial (else the new one would come first).
    """
    if not resume.exact or resume.grouping is None or len(resume.grouping.trials) != prefix:
        return False
    if grouping is resume.grouping:
        return True  # the very trials ``resume`` was made from
    told = grouping.loose
    if len(told) < len(resume.told_loose) or not all(map(is_, resume.told_loose, told)):
        return False
    if prefix == len(grouping.trials):
        return True
    lasts = {key: last for key, last, _ in resume.told_shape}
    idents, grouped = grouping.idents, grouping.grouped
    for t in grouping.trials[prefix:]:
        seen = idents.get(id(t))
        member = seen[1] if seen is not None else None
        if member is None or (key := member[:2]) not in lasts:
            continue
        last = lasts[key]
        if member.number <= last or last not in grouped.get(key, {}):
            return False
    return True
