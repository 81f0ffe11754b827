"""TPE-specific behaviour: settings, Parzen densities, batches, directions, failures, spaces."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from scipy import stats

from katib.api import api_pb2 as pb
from katib.api.errors import InvalidArgument
from katib.api.settings import parse_settings
from katib.api.trials import Direction, Trial, TrialState
from katib.suggestion import parzen
from katib.suggestion.base import ExperimentInfo
from katib.suggestion.history import History
from katib.suggestion.random_search import RandomSearch
from katib.suggestion.sobol import SobolSearch, SobolSettings
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace
from katib.suggestion.tpe import TPE, MultivariateTPE, TPESettings, n_good
from tests.suggestion.requests import MIXED, assignments, experiment, request, trial

D, I, CAT, DISC = (
    ParameterType.DOUBLE,
    ParameterType.INT,
    ParameterType.CATEGORICAL,
    ParameterType.DISCRETE,
)
BOTH = [TPE, MultivariateTPE]
SQUARE = SearchSpace(
    (ParameterSpec("x", D, low=-1, high=1), ParameterSpec("y", D, low=-1, high=1))
)


def make(cls, space: SearchSpace, **settings):
    return cls(ExperimentInfo("exp", space), TPESettings(**settings))


def sampled_history(space, f, n, seed=0, direction=Direction.MINIMIZE, state=TrialState.SUCCEEDED):
    points = space.sample(np.random.default_rng(seed), n)
    sign = -1.0 if direction is Direction.MAXIMIZE else 1.0
    return [Trial(f"t{i}", p, state, sign * f(p)) for i, p in enumerate(points)]


def sphere(p):
    return sum(float(v) ** 2 for v in p.values())


# -- settings --------------------------------------------------------------------------------


def test_settings_defaults_and_aliases():
    s = parse_settings(TPESettings, [], "tpe")
    assert (s.n_startup_trials, s.n_ei_candidates, s.gamma, s.prior_weight, s.random_state) == (
        10,
        24,
        None,
        1.0,
        None,
    )
    s = parse_settings(
        TPESettings,
        [
            ("n_EI_candidates", "48"),
            ("gamma", "0.25"),
            ("prior_weight", "2"),
            ("random_state", "3"),
        ],
        "tpe",
    )
    assert (s.n_ei_candidates, s.gamma, s.prior_weight, s.random_state) == (48, 0.25, 2.0, 3)
    assert parse_settings(TPESettings, [("n_ei_candidates", "5")], "tpe").n_ei_candidates == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("gamma", "1"),
        ("gamma", "0"),
        ("gamma", "x"),
        ("prior_weight", "0"),
        ("n_EI_candidates", "0"),
        ("n_ei_candidates", "1.5"),
        ("n_startup_trials", "-1"),
        ("random_state", "-1"),
    ],
)
def test_bad_settings_name_the_setting(name, value):
    with pytest.raises(InvalidArgument, match=f"setting '{name}'"):
        parse_settings(TPESettings, [(name, value)], "tpe")


@pytest.mark.parametrize("algorithm", ["tpe", "multivariate-tpe"])
def test_bad_settings_are_invalid_argument_over_grpc(algorithm, suggestion_stub):
    exp = experiment(algorithm, MIXED, {"gamma": "1.5", "n_EI_candidates": "0"})
    with pytest.raises(grpc.RpcError) as err:
        suggestion_stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(experiment=exp)
        )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "'gamma'" in err.value.details() and "'n_EI_candidates'" in err.value.details()


def test_gamma_rules():
    assert [n_good(n, None) for n in (0, 1, 10, 11, 100, 1000)] == [0, 1, 1, 2, 10, 25]
    assert [n_good(n, 0.25) for n in (1, 16, 100, 100_000)] == [1, 1, 3, 25]


# -- Parzen estimators -----------------------------------------------------------------------

LINE = SearchSpace((ParameterSpec("x", D, low=0, high=1),))


def test_bandwidths_follow_the_neighbour_rule_and_magic_clip():
    obs = np.array([[0.5], [0.1], [0.2], [0.9]])
    # sorted 0.1 0.2 0.5 0.9: the outermost use their inner gap; clip floor 1/6
    expected = np.array([[0.4], [0.1], [0.3], [0.4]])
    np.testing.assert_allclose(parzen.bandwidths(obs), np.maximum(expected, 1 / 6))


def test_continuous_density_matches_scipy_truncnorm():
    obs, weights = np.array([[0.2], [0.3], [0.85]]), np.array([1.0, 2.0, 0.5])
    est = parzen.fit(parzen.Layout.of(LINE), obs, weights, prior_weight=1.5)
    grid = np.linspace(0, 1, 7)[:, None]
    cells = parzen.snap(LINE, parzen.Layout.of(LINE), grid)
    ours = parzen.log_pdf(est, parzen.Layout.of(LINE), cells, joint=True)
    mus, sigmas = est.mus[:, 0], est.sigmas[:, 0]
    w = np.append(weights, 1.5) / np.append(weights, 1.5).sum()
    dists = stats.truncnorm((0 - mus) / sigmas, (1 - mus) / sigmas, loc=mus, scale=sigmas)
    oracle = np.log((w * dists.pdf(grid)).sum(axis=1))
    np.testing.assert_allclose(ours, oracle, rtol=1e-10)


@pytest.mark.parametrize("joint", [True, False])
def test_densities_integrate_to_one(joint):
    rng = np.random.default_rng(0)
    layout = parzen.Layout.of(SQUARE)
    est = parzen.fit(layout, rng.random((6, 2)), np.ones(6), prior_weight=1.0)
    t = np.linspace(0, 1, 401)
    if joint:
        xx, yy = np.meshgrid(t, t, indexing="ij")
        u = np.column_stack([xx.ravel(), yy.ravel()])
        density = np.exp(parzen.log_pdf(est, layout, parzen.snap(SQUARE, layout, u), True))
        total = np.trapezoid(np.trapezoid(density.reshape(401, 401), t), t)
        assert total == pytest.approx(1, abs=1e-4)
    else:  # per-column marginals
        u = np.column_stack([t, t])
        density = np.exp(parzen.log_pdf(est, layout, parzen.snap(SQUARE, layout, u), False))
        np.testing.assert_allclose(np.trapezoid(density, t, axis=0), 1, atol=1e-4)


def test_stepped_and_list_masses_sum_to_one():
    space = SearchSpace(
        (
            ParameterSpec("n", I, low=1, high=200, distribution=Distribution.LOG_UNIFORM),
            ParameterSpec("y", D, low=0, high=1, step=0.1),
            ParameterSpec("c", CAT, choices=("a", "b", "c")),
            ParameterSpec("d", DISC, choices=("1", "2", "4", "8")),
        )
    )
    layout = parzen.Layout.of(space)
    obs = space.encode(space.sample(np.random.default_rng(1), 5))
    est = parzen.fit(layout, obs, np.ones(5), prior_weight=1.0)
    base = {"n": 1, "y": 0.0, "c": "a", "d": 1.0}

    def marginal(name, values):
        u = space.encode([{**base, name: v} for v in values])
        log_p = parzen.log_pdf(est, layout, parzen.snap(space, layout, u), joint=False)
        return np.exp(log_p[:, space.names.index(name)])

    assert marginal("n", range(1, 201)).sum() == pytest.approx(1, abs=1e-9)
    assert marginal("y", [k / 10 for k in range(11)]).sum() == pytest.approx(1, abs=1e-9)
    assert marginal("c", "abc").sum() == pytest.approx(1, abs=1e-9)
    assert marginal("d", [1.0, 2.0, 4.0, 8.0]).sum() == pytest.approx(1, abs=1e-9)


def test_log_gauss_mass_is_accurate_in_the_tails():
    a, b = np.array([-1.0, 30.0, -31.0]), np.array([2.0, 31.0, -30.0])
    got = parzen.log_gauss_mass(a, b)
    assert got[0] == pytest.approx(np.log(stats.norm.cdf(2) - stats.norm.cdf(-1)))
    assert np.isfinite(got).all() and got[1] == pytest.approx(got[2])
    assert got[1] == pytest.approx(stats.norm.logsf(30), abs=1e-3)


def test_samples_follow_the_mixture():
    layout = parzen.Layout.of(LINE)
    est = parzen.fit(layout, np.array([[0.2]]), np.ones(1), prior_weight=1e-9)
    u = parzen.sample(est, layout, np.random.default_rng(0), 20_000, joint=True)[:, 0]
    sigma = est.sigmas[0, 0]
    expected = stats.truncnorm(-0.2 / sigma, 0.8 / sigma, loc=0.2, scale=sigma)
    assert stats.kstest(u, expected.cdf).pvalue > 1e-3


# -- the algorithms --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", BOTH)
def test_startup_phase_is_sobol_then_model(cls):
    algo = make(cls, SQUARE, n_startup_trials=5, random_state=0)
    few = History(Direction.MINIMIZE, sampled_history(SQUARE, sphere, 4))
    sobol = SobolSearch(ExperimentInfo("exp", SQUARE), SobolSettings(random_state=0))
    assert algo.suggest(few, 3) == sobol.suggest(few, 3)
    many = History(Direction.MINIMIZE, sampled_history(SQUARE, sphere, 5))
    assert len(algo.suggest(many, 3)) == 3


@pytest.mark.parametrize("cls", BOTH)
def test_seeded_and_reproducible(cls):
    hist = History(Direction.MINIMIZE, sampled_history(SQUARE, sphere, 30))
    a = make(cls, SQUARE, random_state=1).suggest(hist, 4)
    assert a == make(cls, SQUARE, random_state=1).suggest(hist, 4)
    assert a != make(cls, SQUARE, random_state=2).suggest(hist, 4)


@pytest.mark.parametrize("cls", BOTH)
def test_maximise_mirrors_minimise(cls):
    lo = History(Direction.MINIMIZE, sampled_history(SQUARE, sphere, 25))
    hi = History(
        Direction.MAXIMIZE, sampled_history(SQUARE, sphere, 25, direction=Direction.MAXIMIZE)
    )
    assert make(cls, SQUARE, random_state=4).suggest(lo, 3) == make(
        cls, SQUARE, random_state=4
    ).suggest(hi, 3)


@pytest.mark.parametrize("cls", BOTH)
def test_batch_is_diverse_and_pending_trials_are_avoided(cls):
    trials = sampled_history(SQUARE, sphere, 40)
    algo = make(cls, SQUARE, random_state=0)
    batch = algo.suggest(History(Direction.MINIMIZE, trials), 8)
    xy = np.array([[p["x"], p["y"]] for p in batch])
    assert len({tuple(r) for r in xy}) == 8
    assert np.min(np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(8)) > 1e-3
    # The batch's points, once pending, join the bad group.
    pending = [Trial(f"p{i}", p, TrialState.PENDING) for i, p in enumerate(batch)]
    good, bad = algo._split(History(Direction.MINIMIZE, (*trials, *pending)))
    assert len(good.obs) == 4 and len(bad.obs) == 36 + 8


@pytest.mark.parametrize("cls", BOTH)
def test_failed_trials_are_bad_observations_not_startup_trials(cls):
    ok = sampled_history(SQUARE, sphere, 12)
    failed = [Trial(f"f{i}", {"x": 0.01 * i, "y": 0.0}, TrialState.FAILED) for i in range(5)] + [
        Trial("mu", {"x": 0.5, "y": 0.5}, TrialState.METRICS_UNAVAILABLE)
    ]
    algo = make(cls, SQUARE, n_startup_trials=12, random_state=0)
    good, bad = algo._split(History(Direction.MINIMIZE, (*ok, *failed)))
    assert (len(good.obs), len(bad.obs)) == (2, 10 + 6)
    short = History(Direction.MINIMIZE, (*ok[:11], *failed))  # 11 values < 12: still start-up
    sobol = SobolSearch(ExperimentInfo("exp", SQUARE), SobolSettings(random_state=0))
    assert algo.suggest(short, 2) == sobol.suggest(short, 2)


@pytest.mark.parametrize("cls", BOTH)
def test_finite_space_never_repeats_and_exhausts(cls):
    space = SearchSpace((ParameterSpec("n", I, low=0, high=5),))
    trials = [Trial(f"t{n}", {"n": n}, TrialState.SUCCEEDED, float(n)) for n in range(3)]
    trials.append(Trial("f", {"n": 3}, TrialState.FAILED))
    got = make(cls, space, n_startup_trials=0, random_state=0).suggest(
        History(Direction.MINIMIZE, trials), 5
    )
    assert sorted(p["n"] for p in got) == [4, 5]


@pytest.mark.parametrize("cls", BOTH)
def test_categorical_only_space_prefers_the_best_choice(cls):
    space = SearchSpace(
        (
            ParameterSpec("c", CAT, choices=tuple("abcdefgh")),
            ParameterSpec("d", CAT, choices=tuple("0123456789")),
            ParameterSpec("e", CAT, choices=tuple("uvwxyz")),
        )
    )
    loss = {c: i for i, c in enumerate("abcdefgh")}
    trials = sampled_history(space, lambda p: loss[p["c"]] + 0.1 * int(p["d"]), 30)
    picks = [
        make(cls, space, random_state=s).suggest(History(Direction.MINIMIZE, trials), 1)[0]
        for s in range(20)
    ]
    assert sum(p["c"] in "ab" for p in picks) >= 12  # random: 5 of 20 on average


@pytest.mark.parametrize("cls", BOTH)
def test_categorical_batch_returns_exactly_the_untried_points(cls):
    space = SearchSpace(
        (
            ParameterSpec("c", CAT, choices=tuple("abcd")),
            ParameterSpec("d", CAT, choices=("u", "v")),
        )
    )
    points = [{"c": c, "d": d} for c in "abcd" for d in "uv"]
    trials = [Trial(f"t{i}", p, TrialState.SUCCEEDED, float(i)) for i, p in enumerate(points[:5])]
    batch = make(cls, space, n_startup_trials=2, random_state=0).suggest(
        History(Direction.MINIMIZE, trials), 16
    )
    assert sorted(map(space.key, batch)) == sorted(map(space.key, points[5:]))


@pytest.mark.parametrize("cls", BOTH)
def test_int_only_space(cls):
    space = SearchSpace(
        (
            ParameterSpec("a", I, low=-20, high=20),
            ParameterSpec("b", I, low=1, high=1024, distribution=Distribution.LOG_UNIFORM),
        )
    )
    trials = sampled_history(space, lambda p: (p["a"] - 3) ** 2 + np.log2(p["b"]), 40)
    batch = make(cls, space, random_state=0).suggest(History(Direction.MINIMIZE, trials), 10)
    assert all(isinstance(p["a"], int) and -20 <= p["a"] <= 20 for p in batch)
    assert len({(p["a"], p["b"]) for p in batch}) == 10
    assert np.median([abs(p["a"] - 3) for p in batch]) <= 6


@pytest.mark.parametrize("algorithm", ["tpe", "multivariate-tpe"])
def test_model_phase_over_grpc(algorithm, suggestion_stub):
    settings = {"random_state": "0", "n_startup_trials": "3"}
    exp = experiment(algorithm, MIXED, settings, maximize=True)
    seed = assignments(suggestion_stub.GetSuggestions(request(experiment("random", MIXED), [], 8)))
    trials = [trial(f"t{i}", a.items(), loss=float(i)) for i, a in enumerate(seed)]
    trials.append(trial("r", seed[0].items(), pb.TrialStatus.RUNNING))
    got = assignments(suggestion_stub.GetSuggestions(request(exp, trials, 6)))
    assert len(got) == 6 and len({tuple(sorted(a.items())) for a in got}) == 6


def _final_best(cls, seed: int, n: int = 60) -> float:
    space = SearchSpace(tuple(ParameterSpec(f"x{i}", D, low=-5, high=5) for i in range(3)))
    algo = cls(ExperimentInfo("exp", space), cls.settings_class(random_state=seed))
    trials: list[Trial] = []
    for i in range(n):
        p = algo.suggest(History(Direction.MINIMIZE, trials), 1)[0]
        trials.append(Trial(f"t{i}", p, TrialState.SUCCEEDED, sphere(p)))
    return min(t.value for t in trials)


@pytest.mark.slow
@pytest.mark.parametrize("cls", BOTH)
def test_beats_random_on_a_sphere(cls):
    # Medians over 8 seeds after 60 trials; typical: TPE ~0.3, random ~2.5.
    ours = np.median([_final_best(cls, s) for s in range(8)])
    rand = np.median([_final_best(RandomSearch, s) for s in range(8)])
    assert ours < 0.5 * rand


@pytest.mark.parametrize("cls", BOTH)
def test_good_group_has_ei_weights(cls):
    trials = [
        Trial(f"t{i}", {"x": 0.1 * i, "y": 0.0}, TrialState.SUCCEEDED, v)
        for i, v in enumerate([5.0, 1.0, 3.0, 0.5, 4.0, 2.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
    ]
    good, bad = make(cls, SQUARE)._split(History(Direction.MINIMIZE, trials))
    # n = 12: the two best (1.0 and 0.5, in request order) against the best bad loss 2.0
    np.testing.assert_allclose(good.obs[:, 0], [0.1 * 1 / 2 + 0.5, 0.1 * 3 / 2 + 0.5])
    np.testing.assert_allclose(good.gains, [1.0, 1.5])
    assert bad.gains is None and len(bad.obs) == 10


@pytest.mark.parametrize("cls", BOTH)
def test_startup_batches_continue_one_sobol_sequence(cls):
    algo = make(cls, SQUARE, random_state=3)
    whole = algo.suggest(History(Direction.MINIMIZE), 4)
    pieces: list[Trial] = []
    for i in range(4):
        (point,) = algo.suggest(History(Direction.MINIMIZE, pieces), 1)
        pieces.append(Trial(f"p{i}", point, TrialState.PENDING))
    assert [t.point for t in pieces] == whole
