"""``bayesianoptimization``: Katib's settings contract, spaces Katib's service could not handle,
batches, failed trials, restarts, bounded cost and (with ``-m slow``) convergence."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.suggestion.base import ExperimentInfo
from katib.suggestion.bayesopt import algorithm, optimize
from katib.suggestion.bayesopt.algorithm import BayesianOptimization, BayesOptSettings, subsample
from katib.suggestion.history import History, Trial, TrialState
from katib.suggestion.proto import space_from_proto
from katib.suggestion.space import ParameterSpec, ParameterType, SearchSpace
from tests.suggestion.requests import MIXED, assignments, experiment, request, trial
from tests.suggestion.test_server import server_process

ALGO = "bayesianoptimization"
D = ParameterType.DOUBLE


def validate(stub: api_pb2_grpc.SuggestionStub, exp: pb.Experiment) -> grpc.RpcError | None:
    try:
        stub.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=exp))
    except grpc.RpcError as err:
        return err
    return None


# -- Katib's settings contract (test_skopt_service.py), over gRPC ----------------------------


def test_katib_unit_test_request_gets_two_suggestions(suggestion_stub):
    """Katib's own GetSuggestions case: int, categorical, discrete and double, maximised."""
    params = [
        ("param-1", pb.INT, {"min": "1", "max": "5"}),
        ("param-2", pb.CATEGORICAL, {"list": ["cat1", "cat2", "cat3"]}),
        ("param-3", pb.DISCRETE, {"list": ["3", "2", "6"]}),
        ("param-4", pb.DOUBLE, {"min": "1", "max": "5"}),
    ]
    exp = experiment(ALGO, params, {"random_state": "10"}, maximize=True)
    trials = [
        trial("test-asfjh", [("param-1", "2"), ("param-2", "cat1"), ("param-3", "2"),
                             ("param-4", "3.44")], loss=5643),
        trial("test-234hs", [("param-1", "3"), ("param-2", "cat2"), ("param-3", "6"),
                             ("param-4", "4.44")], loss=3028),
    ]  # fmt: skip
    got = assignments(suggestion_stub.GetSuggestions(request(exp, trials, 2)))
    assert len(got) == 2
    assert validate(suggestion_stub, exp) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("base_estimator", "unknown estimator"),
        ("n_initial_points", "-1"),
        ("acq_func", "unknown"),
        ("acq_optimizer", "unknown"),
        ("random_state", "-1"),
        ("unknown_conf", "1111"),
    ],
)
def test_katib_invalid_settings_are_invalid_argument_naming_them(suggestion_stub, name, value):
    exp = experiment(ALGO, MIXED, {name: value})
    err = validate(suggestion_stub, exp)
    assert err is not None and err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert name in err.details()
    assert value in err.details() or name == "unknown_conf"
    with pytest.raises(grpc.RpcError) as again:
        suggestion_stub.GetSuggestions(request(exp))
    assert again.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_every_katib_value_is_accepted(suggestion_stub):
    for name, values in {
        "base_estimator": ["GP", "RF", "ET", "GBRT"],
        "acq_func": ["gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"],
        "acq_optimizer": ["auto", "sampling", "lbfgs"],
        "n_initial_points": ["0", "10"],
        "random_state": ["0", "10"],
    }.items():
        for value in values:
            settings = {name: value}
            if name == "acq_optimizer" or name == "base_estimator":
                settings["base_estimator" if name == "acq_optimizer" else "acq_optimizer"] = (
                    "GP" if name == "acq_optimizer" else "auto"
                )
            assert validate(suggestion_stub, experiment(ALGO, MIXED, settings)) is None, settings


def test_defaults_are_katibs():
    s = BayesOptSettings()
    assert (s.base_estimator, s.n_initial_points, s.acq_func, s.acq_optimizer) == (
        "GP",
        10,
        "gp_hedge",
        "auto",
    )
    assert s.random_state is None


def test_lbfgs_with_a_tree_ensemble_is_rejected(suggestion_stub):
    exp = experiment(ALGO, MIXED, {"base_estimator": "RF", "acq_optimizer": "lbfgs"})
    err = validate(suggestion_stub, exp)
    assert err is not None and err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "acq_optimizer" in err.details()


# -- the model at work ------------------------------------------------------------------------


def make(space: SearchSpace, **settings: object) -> BayesianOptimization:
    merged = {"random_state": 3, "n_initial_points": 6, **settings}
    return BayesianOptimization(ExperimentInfo("unit", space), BayesOptSettings(**merged))


def run(algo: BayesianOptimization, f, n: int, start: list[Trial] | None = None) -> list[Trial]:
    trials = list(start or [])
    for i in range(n):
        point = algo.suggest(History("minimize", trials), 1)[0]
        trials.append(Trial(f"t{len(trials)}-{i}", point, TrialState.SUCCEEDED, f(point)))
    return trials


NEGATIVE = SearchSpace(
    (
        ParameterSpec("a", D, low=-5.0, high=0.0),
        ParameterSpec("b", D, low=-1.0, high=1.0, step=0.25),
        ParameterSpec("n", ParameterType.INT, low=-3, high=3),
    )
)


def test_ranges_with_zero_and_negatives_work_and_are_learnt():
    """Katib's skopt service failed on these (log-uniform forced on every double)."""

    def f(p):
        return (p["a"] + 4) ** 2 + (p["b"] + 0.5) ** 2 + (p["n"] + 2) ** 2

    trials = run(make(NEGATIVE), f, 25)
    for t in trials:
        assert -5 <= t.point["a"] <= 0 and t.point["b"] in np.arange(-1, 1.01, 0.25)
        assert isinstance(t.point["n"], int) and -3 <= t.point["n"] <= 3
    best = min(trials, key=lambda t: t.value)
    assert best.point["n"] == -2 and best.point["b"] == -0.5 and abs(best.point["a"] + 4) < 0.5


def test_categorical_values_are_learnt_as_categories():
    space = SearchSpace(
        (
            ParameterSpec("c", ParameterType.CATEGORICAL, choices=tuple("abcdefgh")),
            ParameterSpec("x", D, low=0.0, high=1.0),
        )
    )
    good = {"e": 0.0, "b": 0.2}  # not neighbours in list order

    def f(p):
        return good.get(p["c"], 1.0) + (p["x"] - 0.3) ** 2

    trials = run(make(space), f, 24)
    late = [t.point["c"] for t in trials[12:]]
    assert sum(c in good for c in late) >= 9, late


def test_kernel_ignores_the_order_categories_are_listed_in():
    """Relabelling categories (permuting their cells) leaves the posterior unchanged."""
    from katib.suggestion.bayesopt import gp

    rng = np.random.default_rng(0)
    cat = np.array([False, True])
    x = np.column_stack([rng.random(15), (rng.integers(0, 4, 15) + 0.5) / 4])
    y = rng.normal(size=15)
    perm = np.array([2, 0, 3, 1])
    relabel = x.copy()
    relabel[:, 1] = (perm[(x[:, 1] * 4).astype(int)] + 0.5) / 4
    p = gp.fit(x, y, cat)
    q = gp.fit(relabel, y, cat)
    assert p.theta() == pytest.approx(q.theta(), rel=1e-5, abs=1e-5)
    z = np.column_stack([rng.random(4), (np.arange(4) + 0.5) / 4])
    zr = z.copy()
    zr[:, 1] = (perm[np.arange(4)] + 0.5) / 4
    mean, var = gp.Posterior(x, y, p, cat).predict(z)
    mean_r, var_r = gp.Posterior(relabel, y, p, cat).predict(zr)
    assert mean == pytest.approx(mean_r) and var == pytest.approx(var_r)


def quadratic(p):
    return (p["a"] + 2.5) ** 2 + p["b"] ** 2


def test_a_batch_is_diverse_and_avoids_pending_points():
    algo = make(NEGATIVE, acq_func="EI")
    trials = run(algo, quadratic, 12)
    history = History("minimize", trials)
    single = algo.suggest(history, 1)[0]
    assert algo.suggest(history, 1)[0] == single  # deterministic: only pending data changes it
    batch = algo.suggest(history, 8)
    keys = {NEGATIVE.key(p) for p in batch}
    assert len(keys) == 8
    u = NEGATIVE.encode(batch)
    gaps = np.linalg.norm(u[:, None, :] - u[None, :, :], axis=-1)[np.triu_indices(8, 1)]
    assert gaps.min() >= optimize.MIN_SEPARATION - 1e-12
    pending = History("minimize", [*trials, Trial("p", single, TrialState.PENDING)])
    assert NEGATIVE.key(algo.suggest(pending, 1)[0]) != NEGATIVE.key(single)


def test_failed_points_are_not_proposed_again():
    algo = make(NEGATIVE, acq_func="EI")
    trials = run(algo, quadratic, 12)
    nxt = algo.suggest(History("minimize", trials), 1)[0]
    failed = [*trials, Trial("f", nxt, TrialState.FAILED)]
    again = algo.suggest(History("minimize", failed), 1)[0]
    assert NEGATIVE.key(again) != NEGATIVE.key(nxt)


@pytest.mark.parametrize("estimator", ["RF", "ET", "GBRT"])
def test_tree_ensembles_suggest_valid_distinct_points(estimator):
    algo = make(NEGATIVE, base_estimator=estimator, n_initial_points=4)
    trials = run(algo, quadratic, 6)
    batch = algo.suggest(History("minimize", trials), 3)
    assert len({NEGATIVE.key(p) for p in batch}) == 3


@pytest.mark.parametrize("acq", ["EI", "PI", "LCB", "gp_hedge"])
@pytest.mark.parametrize("optimizer", ["sampling", "lbfgs"])
def test_each_acquisition_and_optimizer_improves_on_the_start(acq, optimizer):
    algo = make(NEGATIVE, acq_func=acq, acq_optimizer=optimizer)
    trials = run(algo, quadratic, 20)
    start = min(t.value for t in trials[:6])
    assert min(t.value for t in trials) < start


def test_cache_hits_give_what_a_fresh_fit_gives():
    algo = make(NEGATIVE)
    trials = run(algo, quadratic, 12)
    history = History("minimize", trials)
    warm = algo.suggest(history, 2)
    algorithm._cache.clear()
    assert algo.suggest(history, 2) == warm
    keys = list(algorithm._cache)
    assert keys and all(k[0] == "unit" for k in keys)  # keyed by experiment


def test_subsample_keeps_the_best_and_bounds_the_size():
    y = np.random.default_rng(0).normal(size=2000)
    keep = subsample(y, 600, np.random.default_rng(1))
    assert len(keep) == 600 and len(set(keep.tolist())) == 600
    assert set(np.argsort(y)[:150].tolist()) <= set(keep.tolist())


def test_two_thousand_trials_stay_bounded(suggestion_stub):
    exp = experiment(ALGO, MIXED, {"random_state": "1"})
    space = space_from_proto(exp.spec.parameter_specs.parameters)
    points = space.sample(np.random.default_rng(0), 2000)
    u = space.encode(points)
    trials = [
        trial(f"t{i}", space.format(p), loss=float(((row - 0.4) ** 2).sum()))
        for i, (p, row) in enumerate(zip(points, u, strict=True))
    ]
    got = assignments(suggestion_stub.GetSuggestions(request(exp, trials, 2), timeout=120))
    assert len(got) == 2


def test_a_fresh_process_gives_the_same_answer():
    exp = experiment(ALGO, MIXED, {"random_state": "5", "n_initial_points": "4"})
    space = space_from_proto(exp.spec.parameter_specs.parameters)
    points = space.sample(np.random.default_rng(2), 12)
    u = space.encode(points)
    trials = [
        trial(f"t{i}", space.format(p), loss=float(((row - 0.3) ** 2).sum()))
        for i, (p, row) in enumerate(zip(points, u, strict=True))
    ]
    trials.append(trial("running", space.format(points[0]), pb.TrialStatus.RUNNING))
    answers = []
    for _ in range(2):
        with (
            server_process("--algorithm", ALGO) as (_, address),
            grpc.insecure_channel(address) as channel,
        ):
            stub = api_pb2_grpc.SuggestionStub(channel)
            answers.append(assignments(stub.GetSuggestions(request(exp, trials, 3))))
    assert answers[0] == answers[1] and len(answers[0]) == 3


# -- convergence ------------------------------------------------------------------------------


@pytest.mark.slow
def test_converges_on_branin():
    from katib.bench import problems

    problem = problems.get("branin")
    regrets = []
    for seed in range(3):
        algo = BayesianOptimization(
            ExperimentInfo(f"branin-{seed}", problem.space), BayesOptSettings(random_state=seed)
        )
        trials = run(algo, lambda p: problem.evaluate(p, np.random.default_rng()).value, 40)
        regrets.append(min(t.value for t in trials) - problem.optimum)
    # Optuna's GPSampler reaches ~1e-3 here; a broken model stays near random search (~0.5).
    assert np.median(regrets) < 0.02, regrets
