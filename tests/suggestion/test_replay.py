"""The replay pattern: a Designer rebuilt from the trials, cached per experiment as a speed-up."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.cache import ByteLRU
from katib.api.settings import setting
from katib.api.trials import Direction, Trial, TrialState
from katib.suggestion.base import ExperimentInfo
from katib.suggestion.history import History
from katib.suggestion.registry import register
from katib.suggestion.replay import Designer, ReplayAlgorithm, canonical_order, told_names
from katib.suggestion.space import ParameterSpec, ParameterType, Point, SearchSpace
from tests.suggestion.requests import assignments, experiment, request, trial

SPACE = SearchSpace(
    (
        ParameterSpec("x", ParameterType.DOUBLE, low=-1.0, high=1.0),
        ParameterSpec("n", ParameterType.INT, low=1, high=9),
    )
)


@dataclass(frozen=True)
class WalkSettings:
    random_state: int | None = setting(None, ge=0)
    scale: float = setting(0.05, gt=0, doc="step size in the unit cube")


class WalkDesigner(Designer):
    """Steps from the best point told so far; counts every trial it was told."""

    def __init__(self, algorithm: Walk) -> None:
        self.space = algorithm.space
        self.scale = algorithm.settings.scale
        self.sign = -1.0 if algorithm.experiment.direction is Direction.MAXIMIZE else 1.0
        self.best: Point | None = None
        self.best_loss = float("inf")
        self.told = 0

    def tell(self, trials: Sequence[Trial]) -> None:
        for t in trials:
            self.told += 1
            if t.is_complete and t.value is not None and self.sign * t.value < self.best_loss:
                self.best, self.best_loss = t.point, self.sign * t.value

    def ask(self, count: int, pending: Sequence[Trial], rng: np.random.Generator) -> list[Point]:
        if self.best is None:
            return self.space.sample(rng, count)
        centre = self.space.encode([self.best])[0]
        steps = self.scale * rng.standard_normal((count, centre.size))
        return self.space.decode(np.clip(centre + steps, 0.0, 1.0))


@register
class Walk(ReplayAlgorithm):
    name = "test-walk"
    settings_class = WalkSettings

    def designer(self) -> WalkDesigner:
        return WalkDesigner(self)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def done(name: str, x: float, value: float, minute: int) -> Trial:
    point = {"x": x, "n": 3}
    return Trial(
        name, point, TrialState.SUCCEEDED, value, completion_time=T0 + timedelta(minutes=minute)
    )


def walk(cache: ByteLRU, name: str = "exp", seed: int = 1, scale: float = 0.05) -> Walk:
    algorithm = Walk(ExperimentInfo(name, SPACE), WalkSettings(random_state=seed, scale=scale))
    algorithm.cache = cache
    return algorithm


HISTORY = [done(f"t{i}", x=0.1 * i - 0.5, value=abs(0.1 * i - 0.3), minute=i) for i in range(8)]


def test_cache_hit_answers_as_a_fresh_designer() -> None:
    cache = ByteLRU()
    first = History("minimize", HISTORY[:5])
    assert walk(cache).suggest(first, 3) == walk(ByteLRU()).suggest(first, 3)
    assert told_names(walk(cache)) == [t.name for t in HISTORY[:5]]
    grown = History("minimize", [*HISTORY, Trial("p", {"x": 0.0, "n": 1}, TrialState.PENDING)])
    hit = walk(cache).suggest(grown, 4)
    assert told_names(walk(cache)) == [t.name for t in HISTORY]  # told only the new three
    assert hit == walk(ByteLRU()).suggest(grown, 4)


def test_told_trials_must_prefix_the_history_with_equal_content() -> None:
    cache = ByteLRU()
    algorithm = walk(cache)
    algorithm.suggest(History("minimize", HISTORY), 1)
    designer = algorithm.replayed(History("minimize", HISTORY))
    assert isinstance(designer, WalkDesigner) and designer.told == len(HISTORY)
    assert algorithm.replayed(History("minimize", HISTORY)) is designer  # reused, not re-told

    edited = [*HISTORY[:3], done("t3", x=0.9, value=-5.0, minute=3), *HISTORY[4:]]
    rebuilt = algorithm.replayed(History("minimize", edited))
    assert isinstance(rebuilt, WalkDesigner)
    assert rebuilt.told == len(edited) and rebuilt.best == {"x": 0.9, "n": 3}

    late = done("t-late", x=0.0, value=1.0, minute=-1)  # finished before every told trial
    base = algorithm.replayed(History("minimize", HISTORY))
    again = algorithm.replayed(History("minimize", [*HISTORY, late]))
    assert again is not base and isinstance(again, WalkDesigner) and again.told == 9
    later = done("t-later", x=0.0, value=1.0, minute=99)  # finished after: told on top
    assert algorithm.replayed(History("minimize", [*HISTORY, late, later])) is again


def test_canonical_order_is_by_completion_then_name_and_skips_pending() -> None:
    a = done("b", 0.0, 1.0, minute=2)
    b = done("a", 0.0, 1.0, minute=2)
    c = done("z", 0.0, 1.0, minute=1)
    d = Trial("d", None, TrialState.FAILED)
    p = Trial("p", {"x": 0.0, "n": 1}, TrialState.PENDING)
    assert [t.name for t in canonical_order([d, p, a, b, c])] == ["z", "a", "b", "d"]


def test_key_never_serves_another_experiment_or_an_edited_one() -> None:
    cache = ByteLRU()
    history = History("minimize", HISTORY)
    keys = {
        walk(cache).replay_key(),
        walk(cache, name="other").replay_key(),
        walk(cache, scale=0.2).replay_key(),
        walk(cache, seed=2).replay_key(),
    }
    assert len(keys) == 4
    other_space = SearchSpace((ParameterSpec("x", ParameterType.DOUBLE, low=-2.0, high=1.0),))
    edited = Walk(ExperimentInfo("exp", other_space), WalkSettings(random_state=1))
    assert edited.replay_key() != walk(cache).replay_key()
    walk(cache).suggest(history, 1)
    walk(cache, name="other").suggest(History("minimize", HISTORY[:2]), 1)
    assert told_names(walk(cache)) == [t.name for t in HISTORY]
    assert told_names(walk(cache, name="other")) == ["t0", "t1"]


def test_designers_are_charged_and_evicted_by_bytes() -> None:
    algorithm = walk(ByteLRU())
    algorithm.suggest(History("minimize", HISTORY), 1)
    charged = algorithm.cache.nbytes if algorithm.cache else 0
    assert 500 < charged < 50_000
    small = ByteLRU(max_bytes=charged + 10)
    first, second = walk(small, name="one"), walk(small, name="two")
    first.suggest(History("minimize", HISTORY), 1)
    second.suggest(History("minimize", HISTORY), 1)
    assert told_names(first) is None and told_names(second) is not None
    assert small.nbytes <= small.max_bytes


def test_over_the_wire_a_warm_cache_answers_like_a_fresh_one(suggestion_stub) -> None:
    from katib.api.cache import shared

    params = [("x", pb.DOUBLE, {"min": "-1", "max": "1"}), ("n", pb.INT, {"min": "1", "max": "9"})]
    exp = experiment("test-walk", params, {"random_state": "4"}, name="walk-wire")
    trials = []
    for i in range(3):
        for a in assignments(suggestion_stub.GetSuggestions(request(exp, trials, 2))):
            trials.append(trial(f"w{i}-{len(trials)}", a.items(), loss=float(a["x"]) ** 2))
    warm = assignments(suggestion_stub.GetSuggestions(request(exp, trials, 3)))
    shared().clear()
    cold = assignments(suggestion_stub.GetSuggestions(request(exp, trials, 3)))
    assert warm == cold


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_direction_reaches_the_designer(direction: str) -> None:
    info = ExperimentInfo("exp", SPACE, direction=Direction(direction))
    algorithm = Walk(info, WalkSettings(random_state=1))
    algorithm.cache = ByteLRU()
    designer = algorithm.replayed(History(direction, HISTORY))
    assert isinstance(designer, WalkDesigner)
    assert designer.best is not None
    best = 7 if direction == "maximize" else 3  # |0.1 i - 0.3| is largest at 7, least at 3
    assert designer.best["x"] == pytest.approx(0.1 * best - 0.5)


def test_separate_processes_replay_identically() -> None:
    """A process whose cache holds the designer and a fresh one answer a controller-like
    request sequence identically (the conformance suite's test, for a replayed algorithm)."""
    from tests.suggestion.test_conformance import call, process, sequence

    code = (
        "import sys, tests.suggestion.test_replay\n"
        "from katib.suggestion.server import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    server = (sys.executable, "-c", code)
    procs = [process(("--algorithm", "test-walk"), server) for _ in range(2)]
    try:
        with (
            grpc.insecure_channel(procs[0][1]) as one,
            grpc.insecure_channel(procs[1][1]) as two,
        ):
            warm, fresh = api_pb2_grpc.SuggestionStub(one), api_pb2_grpc.SuggestionStub(two)
            requests, answers = sequence("test-walk", warm)
            assert call(fresh, requests[-1]) == answers[-1]
            assert [call(fresh, r) for r in requests] == answers
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=30)
