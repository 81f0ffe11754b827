"""``cmaes``: tutorial parameters, one update against the cmaes package, margin, restarts,
replay (fresh process, cache, missing labels), asynchronous parallel trials and settings."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.suggestion.base import ExperimentInfo, SuggestResult
from katib.suggestion.cmaes import CMAES, KATIB_MESSAGE, CMAESSettings, strategy
from katib.suggestion.cmaes.layout import Layout
from katib.suggestion.cmaes.members import Member, identify, trial_name
from katib.suggestion.cmaes.replay import Replayed, Replayer
from katib.suggestion.history import Direction, History, Trial, TrialState
from katib.suggestion.space import ParameterSpec, ParameterType, SearchSpace
from tests.suggestion.requests import MIXED, assignments, experiment, request, trial
from tests.suggestion.test_server import server_process

D, INT, CAT = ParameterType.DOUBLE, ParameterType.INT, ParameterType.CATEGORICAL
Objective = Callable[[dict[str, object]], float]


def box(dim: int, kind: ParameterType = D, low: float = -5, high: float = 5) -> SearchSpace:
    return SearchSpace(tuple(ParameterSpec(f"x{i}", kind, low=low, high=high) for i in range(dim)))


def sphere(centre: float) -> Objective:
    return lambda p: float(sum((float(v) - centre) ** 2 for k, v in p.items() if k[0] == "x"))


def drive(
    algo: CMAES,
    f: Objective,
    trials: int,
    batch: int | None = None,
    until: Callable[[CMAES, list[Trial]], bool] | None = None,
) -> list[Trial]:
    """Ask ``batch`` (default: lambda of the open run) at a time, tell all, until ``trials``."""
    done: list[Trial] = []
    while len(done) < trials:
        if until is not None and until(algo, done):
            break
        history = History(algo.experiment.direction, done)
        k = batch or algo.replayed(history).run.lam
        for s in algo.suggest(history, k).suggestions:
            done.append(
                Trial(
                    s.name or "", s.point, TrialState.SUCCEEDED, f(s.point), labels=dict(s.labels)
                )
            )
    return done


def make(space: SearchSpace, name: str = "exp", **settings: object) -> CMAES:
    settings.setdefault("random_state", 5)
    return CMAES(ExperimentInfo(name, space), CMAESSettings(**settings))  # type: ignore[arg-type]


# -- strategy: the tutorial's formulas -------------------------------------------------------


def test_default_parameters_match_the_tutorial_by_hand() -> None:
    # n = 2, lambda = 6 (eq. 48: 4 + floor(3 ln 2) = 6). By hand: w'_i = ln 3.5 - ln i (eq. 49);
    # mu_eff = 1.9665^2 / 1.9064 = 2.0286; c_1 = 2 / (3.3^2 + mu_eff) (eq. 57);
    # c_mu = 2 (mu_eff - 2 + 1/mu_eff) / (4^2 + mu_eff) = 1.04312 / 18.0286 (eq. 58);
    # negative weights scaled by min(1 + c_1/c_mu, 1 + 2 mu_eff^- / (mu_eff + 2),
    # (1 - c_1 - c_mu) / (n c_mu)) = min(3.676, 2.2073, 6.804) (eq. 50-53); c_sigma, d_sigma
    # (eq. 55), c_c (56).
    assert strategy.default_population(2) == 6
    assert strategy.default_population(10) == 10
    p = strategy.Params.build(2, 6)
    assert p.mu == 3
    np.testing.assert_allclose(
        p.weights, [0.63704, 0.28457, 0.078387, -0.28638, -0.76496, -1.15598], rtol=1e-4
    )
    assert p.weights[:3].sum() == pytest.approx(1.0)
    assert p.mu_eff == pytest.approx(2.02861, rel=1e-5)
    assert p.c_1 == pytest.approx(0.154815, rel=1e-5)
    assert p.c_mu == pytest.approx(0.0578589, rel=1e-5)
    assert p.c_sigma == pytest.approx(0.446205, rel=1e-5)
    assert p.d_sigma == pytest.approx(1.446205, rel=1e-5)
    assert p.c_c == pytest.approx(0.624555, rel=1e-5)
    assert p.chi_n == pytest.approx(1.254273, rel=1e-5)  # sqrt(2) (1 - 1/8 + 1/84)


def test_one_generation_matches_the_cmaes_package() -> None:
    """Oracle: CyberAgentAILab/cmaes's CMA, told the same samples, lands on the same state.

    Both follow the tutorial's defaults (eq. 48-58), so parameters and updates must agree.
    """
    cmaes = pytest.importorskip("cmaes")
    n, lam = 4, 8
    mean = np.full(n, 0.5)
    ref = cmaes.CMA(mean=mean.copy(), sigma=0.2, population_size=lam, seed=1)
    params = strategy.Params.build(n, lam)
    np.testing.assert_allclose(params.weights, ref._weights, rtol=1e-12)
    assert (params.c_1, params.c_mu, params.c_c) == pytest.approx((ref._c1, ref._cmu, ref._cc))
    assert (params.c_sigma, params.d_sigma) == pytest.approx((ref._c_sigma, ref._d_sigma))
    mine = strategy.State.initial(params, mean, 0.2)
    for _ in range(4):
        xs = np.array([ref.ask() for _ in range(lam)])
        f = ((xs - 0.3) ** 2 * np.arange(1, n + 1)).sum(axis=1)
        ref.tell(list(zip(xs, f, strict=True)))
        mine = strategy.tell(mine, xs, f)
        np.testing.assert_allclose(mine.mean, ref._mean, atol=1e-12)
        assert mine.sigma == pytest.approx(ref._sigma, rel=1e-9)
        np.testing.assert_allclose(mine.cov, ref._C, atol=1e-8)  # cmaes adds 1e-8 jitter
        np.testing.assert_allclose(mine.p_sigma, ref._p_sigma, atol=1e-8)
        np.testing.assert_allclose(mine.p_c, ref._pc, atol=1e-8)


def test_injected_steps_are_shortened() -> None:
    state = strategy.State.initial(strategy.Params.build(3, 6), np.full(3, 0.5), 0.01)
    far = np.vstack([np.full(3, 0.9), np.full((5, 3), 0.5)])
    losses = np.arange(6.0)
    free = strategy.tell(state, far, losses)
    capped = strategy.tell(state, far, losses, injected=np.array([True] + [False] * 5))
    assert np.linalg.norm(capped.mean - 0.5) < np.linalg.norm(free.mean - 0.5) / 5


# -- integers: the margin --------------------------------------------------------------------


def test_margin_keeps_integer_dimensions_alive() -> None:
    # Two continuous dimensions drive sigma down; two integer ones must not freeze with it.
    space = SearchSpace((*box(2).params, *box(4, INT, 0, 20).params[2:]))
    algo = make(space)
    trials = drive(algo, sphere(2), 400)
    state = algo.replayed(History(Direction.MINIMIZE, trials)).run.state
    layout = Layout.build(space)
    alpha = strategy.margin_alpha(state.params)
    _, scale = strategy.apply_margin(state, layout.cuts)
    for j, cuts in enumerate(layout.cuts):
        if cuts is None:
            continue
        assert strategy.crossing_probability(state, scale, cuts, j) >= alpha * 0.999

    # Without the margin the same search collapses: leaving the mode's cell becomes unlikely.
    class Bare(CMAES):
        def replayer(self) -> Replayer:
            plain = super().replayer()
            plain.layout = dataclasses.replace(plain.layout, cuts=(None,) * 4)
            assert space.names[2:] == ["x2", "x3"]
            plain.continuous = plain.layout.continuous
            plain.reach = plain.layout.reach
            return plain

    bare = Bare(ExperimentInfo("bare", space), algo.settings)
    bare_trials = drive(bare, sphere(2), 400)
    collapsed = bare.replayed(History(Direction.MINIMIZE, bare_trials)).run.state
    ones = np.ones(4)
    leave = [
        strategy.crossing_probability(collapsed, ones, c, j)
        for j, c in enumerate(layout.cuts)
        if c is not None
    ]
    assert max(leave) < alpha / 100

    # And the search keeps trying other integer values; the bare one stopped doing so.
    def ints(ts: list[Trial]) -> int:
        return len({(t.point["x2"], t.point["x3"]) for t in ts[-100:]})  # type: ignore[index]

    assert ints(trials) > ints(bare_trials)


def test_categorical_distribution_learns_with_a_floor() -> None:
    space = SearchSpace((*box(2).params, ParameterSpec("c", CAT, choices=("a", "b", "c"))))

    def f(p: dict[str, object]) -> float:
        return sphere(0)(p) + (0 if p["c"] == "b" else 5)

    algo = make(space)
    trials = drive(algo, f, 240)
    q = algo.replayed(History(Direction.MINIMIZE, trials)).run.state.probs[0]
    assert (
        q[1] > 0.8
        and q.min()
        >= strategy.category_floor(
            3, algo.replayed(History(Direction.MINIMIZE, trials)).run.state.params, 1
        )
        - 1e-12
    )
    assert q.sum() == pytest.approx(1.0)


# -- restarts ----------------------------------------------------------------------------------


def runs_seen(algo: CMAES, trials: list[Trial]) -> list[int]:
    return sorted({int(t.labels["cmaes/restart"]) for t in trials})


def test_ipop_doubles_the_population_at_each_restart() -> None:
    algo = make(box(2), restart_strategy="ipop")
    trials = drive(algo, sphere(1.0), 4000, until=lambda a, t: len(runs_seen(a, t)) >= 3)
    replayed = algo.replayed(History(Direction.MINIMIZE, trials))
    assert replayed.run.restart == 2 and replayed.stops
    assert replayed.run.lam == 24  # 6, 12, 24
    counts = [sum(1 for t in trials if t.labels["cmaes/restart"] == str(r)) for r in (0, 1)]
    assert counts[0] % 6 == 0 and counts[1] % 12 == 0


def test_bipop_alternates_large_and_small_runs() -> None:
    algo = make(box(2), restart_strategy="bipop")
    trials = drive(algo, sphere(1.0), 6000, until=lambda a, t: len(runs_seen(a, t)) >= 4)
    replayer = algo.replayer()
    run = replayer.first_run()
    history = History(Direction.MINIMIZE, trials)
    final = algo.replayed(history).run
    assert final.restart == 3
    # Rebuild the run sequence: restart 1 is large (lambda doubles), restart 2 is small.
    gens = {
        r: 1
        + max(
            int(t.labels["cmaes/generation"])
            for t in trials
            if t.labels["cmaes/restart"] == str(r)
        )
        for r in (0, 1, 2)
    }
    one = replayer.next_run(run, gens[0])
    assert one.large and one.lam == 12 and one.sigma0 == pytest.approx(1 / 6)
    two = replayer.next_run(one, gens[1])
    assert not two.large and 6 <= two.lam <= 12 and two.sigma0 <= 1 / 6


# -- replay ----------------------------------------------------------------------------------


def test_cache_never_changes_the_answer() -> None:
    algo = make(SearchSpace((*box(3).params, *box(2, INT, 0, 6).params[:0])), "cache-exp")
    trials = drive(algo, sphere(0.7), 90, batch=4)
    history = History(Direction.MINIMIZE, trials)
    CMAES.clear_cache()
    algo.replayed(History(Direction.MINIMIZE, trials[:50]))  # warm with a prefix
    warm = algo.suggest(history, 5)
    CMAES.clear_cache()
    cold = algo.suggest(history, 5)
    uncached = algo.replayed(history, use_cache=False).run.state
    cached = algo.replayed(history).run.state
    assert warm.points == cold.points
    assert np.array_equal(uncached.mean, cached.mean) and np.array_equal(uncached.cov, cached.cov)
    # A history that rewrites the past (a told trial's value changed) is replayed from scratch.
    changed = list(trials)
    best = min(range(7), key=lambda i: trials[i].value)  # type: ignore[arg-type,return-value]
    changed[best] = dataclasses.replace(changed[best], value=1e9)  # best becomes worst
    again = algo.replayed(History(Direction.MINIMIZE, changed)).run.state
    fresh = algo.replayed(History(Direction.MINIMIZE, changed), use_cache=False).run.state
    assert np.array_equal(again.cov, fresh.cov) and again.sigma == fresh.sigma
    assert not np.array_equal(again.cov, cached.cov)


def _same_replay(a: Replayed, b: Replayed) -> bool:
    sa, sb = a.run.state, b.run.state
    return (
        a.told == b.told
        and a.run.restart == b.run.restart
        and sa.generation == sb.generation
        and sa.sigma == sb.sigma
        and np.array_equal(sa.mean, sb.mean)
        and np.array_equal(sa.cov, sb.cov)
        and sorted(a.members) == sorted(b.members)
    )


def test_grouping_is_reused_for_identical_and_extended_histories(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Appended trials are the only ones identified again, and the answer never changes:
    labelled and loose trials, a loose trial that starts before the told ones, a changed one."""
    from datetime import UTC, datetime, timedelta

    from katib.suggestion.cmaes import replay

    algo = make(box(3), "grow-exp", restart_strategy="ipop")
    f, rng, t0 = sphere(0.7), np.random.default_rng(3), datetime(2026, 1, 1, tzinfo=UTC)
    trials: list[Trial] = []
    rounds: list[int] = []
    while len(trials) < 120:  # another tool adds a trial before each request of 3
        point = {f"x{d}": float(v) for d, v in enumerate(rng.uniform(-5, 5, 3))}
        start = t0 + timedelta(seconds=len(trials))
        trials.append(Trial(f"foreign-{len(trials):03d}", point, TrialState.SUCCEEDED, f(point),
                            start_time=start))  # fmt: skip
        for sg in algo.suggest(History(Direction.MINIMIZE, trials), 3).suggestions:
            trials.append(Trial(sg.name or "", sg.point, TrialState.SUCCEEDED, f(sg.point),
                                labels=dict(sg.labels)))  # fmt: skip
        rounds.append(len(trials))
    calls: list[Trial] = []
    real, checks = replay.identify, replay._same_objects
    monkeypatch.setattr(replay, "identify", lambda t, e: calls.append(t) or real(t, e))
    slow: list[int] = []  # the checks that look at every trial again
    monkeypatch.setattr(replay, "_same_objects", lambda *a: slow.append(1) or checks(*a))
    CMAES.clear_cache()
    previous = 0
    for size in (rounds[9], rounds[9], rounds[10], rounds[15], rounds[15], rounds[-1]):
        history = History(Direction.MINIMIZE, trials[:size])
        calls.clear()
        cached = algo.replayed(history)
        assert len(calls) == size - previous and not slow
        previous = size
        assert _same_replay(cached, algo.replayed(history, use_cache=False))
        assert algo.suggest(history, 3).points == _cold(algo, history).points
    assert cached.told and cached.loose_told  # told generations, loose trials among them
    # A foreign trial that started first takes a told slot; a told value changes: replayed
    # again (past the checks that look at the new trials only), same answer.
    early = Trial("foreign-early", trials[1].point, TrialState.SUCCEEDED, 9.0, start_time=t0)
    worse = [*trials[:50], dataclasses.replace(trials[50], value=1e9), *trials[51:]]
    for changed in ([*trials, early], [*trials[:-1], early], worse, [*worse, early]):
        algo.replayed(History(Direction.MINIMIZE, trials))
        history = History(Direction.MINIMIZE, changed)
        assert _same_replay(algo.replayed(history), algo.replayed(history, use_cache=False))


def _cold(algo: CMAES, history: History) -> SuggestResult:
    CMAES.clear_cache()
    return algo.suggest(history, 3)


def test_every_told_draw_is_recovered_exactly() -> None:
    space = SearchSpace(
        (
            *box(3).params,
            ParameterSpec("n", INT, low=1, high=9),
            ParameterSpec("c", CAT, choices=("u", "v")),
        )
    )
    algo = make(space)
    trials = drive(algo, sphere(0.5), 60)
    replayer = algo.replayer()
    state = replayer.first_run().state
    for t in trials[:6]:
        member = identify(t, "exp")
        assert member is not None
        assert not replayer.recover(state, member, t).injected


def test_missing_labels_fall_back_to_start_time_then_name() -> None:
    from datetime import UTC, datetime, timedelta

    algo = make(box(3), "plain")
    trials = drive(algo, sphere(1.0), 70)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    stripped = [
        dataclasses.replace(
            t, name=f"foreign-{i:03d}", labels={}, start_time=t0 + timedelta(seconds=i // 2)
        )
        for i, t in enumerate(trials)
    ]
    stripped.reverse()  # request order does not matter
    labelled = algo.replayed(History(Direction.MINIMIZE, trials), use_cache=False)
    plain = algo.replayed(History(Direction.MINIMIZE, stripped), use_cache=False)
    assert plain.run.state.generation == labelled.run.state.generation
    np.testing.assert_array_equal(plain.run.state.mean, labelled.run.state.mean)
    # Names alone carry the identity too (Katib's controller drops reply labels).
    named = [dataclasses.replace(t, labels={}) for t in trials]
    by_name = algo.replayed(History(Direction.MINIMIZE, named), use_cache=False)
    np.testing.assert_array_equal(by_name.run.state.mean, labelled.run.state.mean)


def test_foreign_points_are_injected() -> None:
    algo = make(box(2), "foreign")
    rng = np.random.default_rng(0)
    trials = [
        Trial(
            f"old-{i}",
            {"x0": float(a), "x1": float(b)},
            TrialState.SUCCEEDED,
            float(a * a + b * b),
        )
        for i, (a, b) in enumerate(rng.uniform(-5, 5, (13, 2)))
    ]
    replayed = algo.replayed(History(Direction.MINIMIZE, trials), use_cache=False)
    assert replayed.run.state.generation == 2 and np.all(np.isfinite(replayed.run.state.cov))
    result = algo.suggest(History(Direction.MINIMIZE, trials), 3)
    assert [s.labels["cmaes/generation"] for s in result.suggestions] == ["2"] * 3


def test_trial_names_round_trip_and_respect_the_length_limit() -> None:
    member = Member(1, 22, 3)
    name = trial_name("exp", member)
    assert name == "exp-r1g22i3"
    assert identify(Trial(name, None, TrialState.PENDING), "exp") == member
    assert identify(Trial(name, None, TrialState.PENDING), "other") is None
    assert trial_name("x" * 60, member) is None


# -- asynchronous parallel trials ------------------------------------------------------------


def test_parallel_requests_extend_the_open_generation_and_replace_failures() -> None:
    algo = make(box(2), "async")  # lambda = 6
    f = sphere(1.0)
    first = algo.suggest(History(Direction.MINIMIZE, []), 6).suggestions
    trials = [
        Trial(s.name or "", s.point, TrialState.PENDING, labels=dict(s.labels)) for s in first
    ]

    def finish(i: int, state: TrialState = TrialState.SUCCEEDED) -> None:
        t = trials[i]
        value = f(t.point) if state is TrialState.SUCCEEDED else None  # type: ignore[arg-type]
        trials[i] = dataclasses.replace(t, state=state, value=value)

    for i in range(4):
        finish(i)
    finish(4, TrialState.FAILED)
    more = algo.suggest(History(Direction.MINIMIZE, trials), 3).suggestions
    assert [(s.labels["cmaes/generation"], s.labels["cmaes/index"]) for s in more] == [
        ("0", "6"),
        ("0", "7"),
        ("0", "8"),
    ]
    keys = {tuple(t.point.values()) for t in trials} | {tuple(s.point.values()) for s in more}  # type: ignore[union-attr]
    assert len(keys) == 9
    trials += [
        Trial(s.name or "", s.point, TrialState.PENDING, labels=dict(s.labels)) for s in more
    ]
    finish(5)
    finish(7)  # index 6 still runs: the core (0-3, 5, 6) is not complete
    assert algo.replayed(History(Direction.MINIMIZE, trials)).run.state.generation == 0
    finish(6)  # now it is; 7 and 8 are extras and never told
    replayed = algo.replayed(History(Direction.MINIMIZE, trials))
    assert replayed.run.state.generation == 1
    assert replayed.told[0][1] == tuple(trials[i].name for i in (0, 1, 2, 3, 5, 6))
    nxt = algo.suggest(History(Direction.MINIMIZE, trials), 2).suggestions
    assert [s.labels["cmaes/generation"] for s in nxt] == ["1", "1"]
    finish(8)  # a late extra changes nothing
    late = algo.replayed(History(Direction.MINIMIZE, trials), use_cache=False).run.state
    np.testing.assert_array_equal(late.mean, replayed.run.state.mean)


def test_converged_discrete_search_never_repeats_points() -> None:
    space = box(2, INT, 0, 2)  # nine points
    algo = make(space)
    done = drive(algo, sphere(1), 9, batch=1)
    keys = [tuple(t.point.values()) for t in done]  # type: ignore[union-attr]
    assert len(set(keys)) == 9
    assert algo.suggest(History(Direction.MINIMIZE, done), 2).suggestions == []


# -- the service -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"sigma": "0"}, "setting 'sigma'"),
        ({"sigma": "1.5"}, "setting 'sigma'"),
        ({"restart_strategy": "lipop"}, "setting 'restart_strategy'"),
        ({"population_size": "1"}, "setting 'population_size'"),
        ({"random_state": "-1"}, "setting 'random_state'"),
    ],
)
def test_bad_settings_name_the_setting(
    settings: dict[str, str], needle: str, suggestion_stub: api_pb2_grpc.SuggestionStub
) -> None:
    exp = experiment("cmaes", MIXED, settings)
    with pytest.raises(grpc.RpcError) as err:
        suggestion_stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(experiment=exp)
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.value.details()


@pytest.mark.parametrize("value", ["none", "None", "ipop", "bipop"])
def test_katib_restart_strategies_are_accepted(
    value: str, suggestion_stub: api_pb2_grpc.SuggestionStub
) -> None:
    exp = experiment("cmaes", MIXED, {"restart_strategy": value, "sigma": "0.3"})
    suggestion_stub.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=exp))


def test_fewer_than_two_numeric_parameters_is_invalid(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    params = [
        ("lr", pb.DOUBLE, {"min": "0.01", "max": "0.1"}),
        ("batch", pb.DISCRETE, {"list": ["16", "32"]}),
        ("opt", pb.CATEGORICAL, {"list": ["sgd", "adam"]}),
    ]
    for call in ("ValidateAlgorithmSettings", "GetSuggestions"):
        exp = experiment("cmaes", params)
        message = (
            pb.ValidateAlgorithmSettingsRequest(experiment=exp)
            if call == "ValidateAlgorithmSettings"
            else request(exp)
        )
        with pytest.raises(grpc.RpcError) as err:
            getattr(suggestion_stub, call)(message)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert KATIB_MESSAGE in err.value.details() and "(lr)" in err.value.details()


KATIB_CMA_ES = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {namespace: kubeflow, name: cmaes}
spec:
  objective: {type: maximize, goal: 0.99, objectiveMetricName: Validation-accuracy,
              additionalMetricNames: [Train-accuracy]}
  algorithm:
    algorithmName: cmaes
    algorithmSettings: [{name: restart_strategy, value: ipop}]
  parallelTrialCount: 3
  maxTrialCount: 12
  maxFailedTrialCount: 3
  parameters:
    - {name: lr, parameterType: double, feasibleSpace: {min: "0.01", max: "0.03"}}
    - {name: num-layers, parameterType: int, feasibleSpace: {min: "2", max: "5"}}
    - {name: optimizer, parameterType: categorical, feasibleSpace: {list: [sgd, adam, ftrl]}}
  trialTemplate:
    primaryContainerName: training-container
    trialParameters:
      - {name: learningRate, reference: lr}
      - {name: numberLayers, reference: num-layers}
      - {name: optimizer, reference: optimizer}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: training-container
                image: docker.io/kubeflowkatib/mxnet-mnist:v0.15.0
                command: ["python3", "/opt/mxnet-mnist/mnist.py",
                          "--lr=${trialParameters.learningRate}",
                          "--num-layers=${trialParameters.numberLayers}",
                          "--optimizer=${trialParameters.optimizer}"]
            restartPolicy: Never
"""


@pytest.mark.parametrize("source", ["katib", "example"])
def test_katib_and_our_examples_validate(
    source: str, tmp_path: Path, suggestion_stub: api_pb2_grpc.SuggestionStub
) -> None:
    """Katib's examples/v1beta1/hp-tuning/cma-es.yaml (same spec) and examples/cmaes.yaml."""
    from katib.controller import protos
    from katib.controller.validation import load_file

    path = tmp_path / "cma-es.yaml"
    if source == "katib":
        path.write_text(KATIB_CMA_ES)
    else:
        path = Path(__file__).resolve().parents[2] / "examples" / "cmaes.yaml"
    spec = load_file(path, ["cmaes"])
    message = protos.experiment(spec)
    suggestion_stub.ValidateAlgorithmSettings(
        pb.ValidateAlgorithmSettingsRequest(experiment=message)
    )
    reply = suggestion_stub.GetSuggestions(request(message, [], 3))
    assert len(reply.parameter_assignments) == 3
    assert all(a.trial_name.startswith(spec.name + "-r0g0i") for a in reply.parameter_assignments)


def test_cross_process_restart_mid_generation() -> None:
    """A second ``katib-suggestion`` process continues a half-finished generation identically."""
    exp = experiment("cmaes", MIXED, {"random_state": "3", "restart_strategy": "ipop"})

    def session(stub: api_pb2_grpc.SuggestionStub, trials: list[pb.Trial]) -> list[pb.Trial]:
        for _ in range(4):  # batches of 4 against lambda = 8: generations overlap requests
            reply = stub.GetSuggestions(request(exp, trials, 4))
            for k, a in enumerate(reply.parameter_assignments):
                values = {x.name: x.value for x in a.assignments}
                done = (len(trials) + k) % 5 != 4  # every fifth stays running
                loss = float(values["layers"]) + float(values["momentum"]) if done else None
                status = pb.TrialStatus.SUCCEEDED if done else pb.TrialStatus.RUNNING
                t = trial(a.trial_name, values.items(), status, loss)
                t.spec.labels.update(a.labels)
                trials.append(t)
        return trials

    with server_process("--algorithm", "cmaes") as (proc, address):
        with grpc.insecure_channel(address) as channel:
            before = session(api_pb2_grpc.SuggestionStub(channel), [])
            upto = session(api_pb2_grpc.SuggestionStub(channel), list(before))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    with (
        server_process("--algorithm", "cmaes") as (proc, address),
        grpc.insecure_channel(address) as channel,
    ):
        after = session(api_pb2_grpc.SuggestionStub(channel), list(before))
    assert [t.name for t in after] == [t.name for t in upto]
    assert [t.spec.parameter_assignments for t in after] == [
        t.spec.parameter_assignments for t in upto
    ]
    assert len({t.name for t in upto}) == len(upto)
    assert assignments(pb.GetSuggestionsReply()) == []


# -- convergence (slow) ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dim", [5, 10])
def test_converges_on_a_sphere(dim: int) -> None:
    algo = make(box(dim), f"sphere-{dim}")
    trials = drive(algo, sphere(1.234), 150 * dim)
    assert min(t.value for t in trials if t.value is not None) < 1e-6  # type: ignore[type-var]


@pytest.mark.slow
def test_converges_on_rosenbrock_5d() -> None:
    def rosen(p: dict[str, object]) -> float:
        x = np.array([float(p[f"x{i}"]) for i in range(5)])  # type: ignore[arg-type]
        return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))

    algo = make(box(5, D, -2, 2), "rosen")
    trials = drive(algo, rosen, 2500)
    assert min(t.value for t in trials if t.value is not None) < 1e-3  # type: ignore[type-var]
