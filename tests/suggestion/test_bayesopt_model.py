"""The GP's numerics against direct formulas, SciPy and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize as sp_optimize
from scipy.stats import multivariate_normal, norm

from katib.suggestion.bayesopt import acquisition, gp, kernel, priors
from katib.suggestion.bayesopt.acquisition import Acquisition
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, SearchSpace

RNG = np.random.default_rng(12345)
CAT = np.array([False, False, True])  # two ordered columns, one categorical (3 values)


def points(n: int) -> np.ndarray:
    x = RNG.random((n, 3))
    x[:, 2] = (np.floor(x[:, 2] * 3) + 0.5) / 3
    return x


def test_kernel_matches_the_matern_formula_with_an_overlap_distance():
    x, z = points(5), points(4)
    w, s = np.array([4.0, 0.5, 2.0]), 1.7
    got = kernel.matern52(x, z, w, s, CAT)
    for i in range(5):
        for j in range(4):
            r2 = w[0] * (x[i, 0] - z[j, 0]) ** 2 + w[1] * (x[i, 1] - z[j, 1]) ** 2
            r2 += w[2] * (x[i, 2] != z[j, 2])
            r = math.sqrt(r2)
            want = s * (1 + math.sqrt(5) * r + 5 * r2 / 3) * math.exp(-math.sqrt(5) * r)
            assert got[i, j] == pytest.approx(want, rel=1e-12)


def test_categories_are_equidistant_whatever_their_order():
    w = np.array([1.0, 1.0, 3.0])
    a = np.array([[0.2, 0.2, 0.5 / 3]])
    near, far = a.copy(), a.copy()
    near[0, 2], far[0, 2] = 1.5 / 3, 2.5 / 3
    assert kernel.matern52(a, near, w, 1.0, CAT) == pytest.approx(
        kernel.matern52(a, far, w, 1.0, CAT)
    )


def test_kernel_derivative_by_r2_matches_finite_differences():
    d2 = np.array([0.0, 1e-3, 0.3, 2.0])
    h = 1e-7
    numeric = (kernel.matern52_r2(d2 + h, 1.3) - kernel.matern52_r2(d2, 1.3)) / h
    assert kernel.dmatern52_dr2(d2, 1.3) == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_neg_log_posterior_is_the_gaussian_log_density_plus_the_prior():
    x = points(12)
    y = RNG.normal(size=12)
    theta = np.array([np.log(0.4), np.log(0.7), np.log(1.5), np.log(1.2), np.log(1e-2)])
    p = gp.Params.from_theta(theta)
    k = kernel.matern52(x, x, p.weights, p.scale, CAT) + p.noise * np.eye(12)
    want = -multivariate_normal(np.zeros(12), k).logpdf(y) - priors.log_prior(theta)[0]
    got, _ = gp.neg_log_posterior(theta, kernel.sq_diffs(x, x, CAT), y)
    assert got == pytest.approx(want, rel=1e-7)


def test_neg_log_posterior_gradient_matches_finite_differences():
    x = points(15)
    y = RNG.normal(size=15)
    sq = kernel.sq_diffs(x, x, CAT)
    theta = np.array([np.log(0.3), np.log(1.1), np.log(0.8), np.log(0.9), np.log(3e-2)])
    _, grad = gp.neg_log_posterior(theta, sq, y)
    numeric = sp_optimize.approx_fprime(theta, lambda t: gp.neg_log_posterior(t, sq, y)[0], 1e-6)
    assert grad == pytest.approx(numeric, rel=1e-4, abs=1e-4)


def test_posterior_matches_the_textbook_equations():
    x, z = points(10), points(6)
    y = RNG.normal(size=10)
    p = gp.Params(np.array([3.0, 1.0, 2.0]), 1.3, 1e-3)
    post = gp.Posterior(x, y, p, CAT)
    k = kernel.matern52(x, x, p.weights, p.scale, CAT) + p.noise * np.eye(10)
    ks = kernel.matern52(z, x, p.weights, p.scale, CAT)
    mean, var = post.predict(z)
    assert mean == pytest.approx(ks @ np.linalg.solve(k, y), rel=1e-6)
    want_var = p.scale - np.einsum("ij,ji->i", ks, np.linalg.solve(k, ks.T))
    assert var == pytest.approx(want_var, rel=1e-6, abs=1e-9)
    # at an observed point the latent variance is about the noise, not the prior variance
    assert post.predict(x[:1])[1][0] < 2 * p.noise


def test_posterior_gradients_match_finite_differences():
    x = points(10)
    post = gp.Posterior(
        x, RNG.normal(size=10), gp.Params(np.array([3.0, 1.0, 2.0]), 1.0, 1e-4), CAT
    )
    z = points(1)
    cols = np.array([0, 1])
    _, _, dmean, dvar = post.predict_grad(z, cols)
    for c in cols:
        step = np.zeros_like(z)
        step[0, c] = 1e-6
        (m1, v1), (m0, v0) = post.predict(z + step), post.predict(z - step)
        assert dmean[0, c] == pytest.approx((m1 - m0)[0] / 2e-6, rel=1e-4, abs=1e-6)
        assert dvar[0, c] == pytest.approx((v1 - v0)[0] / 2e-6, rel=1e-4, abs=1e-6)


def test_fit_recovers_lengthscales_that_tell_relevant_from_irrelevant_columns():
    x = RNG.random((40, 3))
    x[:, 2] = (np.floor(x[:, 2] * 3) + 0.5) / 3
    y = np.sin(6 * x[:, 0])  # only the first column matters
    y = (y - y.mean()) / y.std()
    p = gp.fit(x, y, CAT)
    lengthscales = 1 / np.sqrt(p.weights)
    assert lengthscales[0] < 2.0
    assert lengthscales[1] > 10 * lengthscales[0] and lengthscales[2] > 10 * lengthscales[0]


def test_fit_survives_duplicate_points_and_constant_values():
    x = np.repeat(points(3), 4, axis=0)
    p = gp.fit(x, np.zeros(12), CAT)
    assert np.isfinite(p.theta()).all()
    gp.Posterior(x, np.zeros(12), p, CAT).predict(points(5))


@pytest.mark.parametrize("z", np.linspace(-5, 5, 21))
def test_log_ei_equals_naive_ei_where_both_are_stable(z):
    sigma = 0.7
    mean = 0.3 - z * sigma
    naive = sigma * (z * norm.cdf(z) + norm.pdf(z))
    got = acquisition.values(Acquisition("EI", 0.3), np.array([mean]), np.array([sigma**2]))
    assert got[0] == pytest.approx(math.log(naive), rel=1e-9, abs=1e-12)


def test_log_ei_stays_finite_and_ordered_where_naive_ei_underflows():
    z = -np.logspace(1, 5, 40)
    values = acquisition.log_h(z)
    assert np.isfinite(values).all()
    assert np.all(np.diff(values) < 0)  # further from the incumbent, lower
    with np.errstate(divide="ignore"):
        assert np.isneginf(np.log(norm.pdf(-40) + -40 * norm.cdf(-40)))


@pytest.mark.parametrize("kind", ["EI", "PI", "LCB"])
def test_acquisition_gradients_match_finite_differences(kind):
    acq = Acquisition(kind, -0.5)
    mean, var = np.array([-0.2, 0.4, 3.0]), np.array([0.3, 0.05, 0.01])
    _, d_mean, d_var = acquisition.value_and_grads(acq, mean, var)
    h = 1e-7
    num_mean = acquisition.values(acq, mean + h, var) - acquisition.values(acq, mean - h, var)
    num_var = acquisition.values(acq, mean, var + h) - acquisition.values(acq, mean, var - h)
    assert d_mean == pytest.approx(num_mean / (2 * h), rel=1e-5, abs=1e-6)
    assert d_var == pytest.approx(num_var / (2 * h), rel=1e-5, abs=1e-6)


def test_log_pi_and_lcb_are_their_formulas():
    mean, var = np.array([0.1, -1.0]), np.array([0.25, 4.0])
    pi = acquisition.values(Acquisition("PI", 0.0), mean, var)
    assert pi == pytest.approx(np.log(norm.cdf((0.0 - mean) / np.sqrt(var))))
    lcb = acquisition.values(Acquisition("LCB", 0.0), mean, var)
    assert lcb == pytest.approx(-(mean - 1.96 * np.sqrt(var)))


def test_hedge_probabilities_favour_the_lower_mean():
    p = acquisition.hedge_probabilities(-np.array([0.0, 1.0, 2.0]))
    assert p.sum() == pytest.approx(1.0)
    assert p[0] > p[1] > p[2]


def test_snap_is_encode_of_decode_for_every_kind_of_column():
    space = SearchSpace(
        (
            ParameterSpec(
                "i", ParameterType.INT, low=-7, high=300, distribution=Distribution.NORMAL
            ),
            ParameterSpec(
                "l", ParameterType.INT, low=2, high=512, distribution=Distribution.LOG_UNIFORM
            ),
            ParameterSpec("s", ParameterType.DOUBLE, low=-1.0, high=0.0, step=0.15),
            ParameterSpec("c", ParameterType.CATEGORICAL, choices=("x", "y", "z")),
            ParameterSpec("d", ParameterType.DISCRETE, choices=("-1", "0", "2.5")),
            ParameterSpec("x", ParameterType.DOUBLE, low=-3.0, high=-1.0),
        )
    )
    u = RNG.random((500, space.dim))
    assert space.snap(u) == pytest.approx(space.encode(space.decode(u)), abs=1e-12)
    view = space.view
    assert view.continuous.tolist() == [False] * 5 + [True]
    assert view.categorical.tolist() == [False, False, False, True, False, False]
    assert view.n_values.tolist() == [308, 511, 7, 3, 3, 0]
