"""Likelihood derivative rules (gmrf_core.rules.likelihood): finite differences of closed-form
references written here, and the JVP-VJP dot-product test."""

from functools import partial

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit, gammaln

import gmrf_core as gm
from gmrf_core import likelihoods
from gmrf_core.rules import likelihood as rules
from gmrf_core.testing import check_jvp, check_vjp

M = 12
_RNG = np.random.default_rng(40)
_COUNTS = _RNG.poisson(2.0, M).astype(float)
_COUNTS[3] = np.nan  # a missing observation contributes nothing
_BINARY = (_RNG.random(M) < 0.4).astype(float)
_BINARY[7] = np.nan
_GAUSS = _RNG.standard_normal(M)
_GAUSS[0] = np.nan


def _poisson(eta, theta):
    y, seen = np.nan_to_num(_COUNTS), ~np.isnan(_COUNTS)
    mu = np.exp(eta)
    ll = np.where(seen, y * eta - mu - gammaln(y + 1.0), 0.0).sum()
    return ll, np.where(seen, y - mu, 0.0), np.where(seen, mu, 0.0)


def _bernoulli(eta, theta):
    y, seen = np.nan_to_num(_BINARY), ~np.isnan(_BINARY)
    p = expit(eta)
    ll = np.where(seen, y * eta - np.logaddexp(0.0, eta), 0.0).sum()
    return ll, np.where(seen, y - p, 0.0), np.where(seen, p * (1.0 - p), 0.0)


def _gaussian(eta, theta):
    y, seen = np.nan_to_num(_GAUSS), ~np.isnan(_GAUSS)
    tau = np.exp(theta[0])
    r = y - eta
    ll = np.where(seen, 0.5 * (theta[0] - np.log(2 * np.pi)) - 0.5 * tau * r**2, 0.0).sum()
    return ll, np.where(seen, tau * r, 0.0), np.where(seen, tau, 0.0)


def _negative_binomial(eta, theta):
    y, seen = np.nan_to_num(_COUNTS), ~np.isnan(_COUNTS)
    size, mu = np.exp(theta[0]), np.exp(eta)
    ll = (
        gammaln(y + size)
        - gammaln(size)
        - gammaln(y + 1.0)
        + size * np.log(size / (size + mu))
        + y * np.log(mu / (size + mu))
    )
    score = size * (y - mu) / (size + mu)
    weight = (y + size) * mu * size / (size + mu) ** 2
    return np.where(seen, ll, 0.0).sum(), np.where(seen, score, 0.0), np.where(seen, weight, 0.0)


CASES = {
    "poisson": (likelihoods.Poisson(_COUNTS), _poisson, np.zeros(0)),
    "bernoulli": (likelihoods.Bernoulli(_BINARY), _bernoulli, np.zeros(0)),
    "gaussian": (likelihoods.Gaussian(_GAUSS), _gaussian, np.array([0.4])),
    "negative binomial": (
        likelihoods.NegativeBinomial(_COUNTS),
        _negative_binomial,
        np.array([0.7]),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_likelihood_rules(name):
    """(ℓ, s, w) = (Σ log p, ℓ', −ℓ'') in (η, θ) against closed forms written here."""
    likelihood, reference, theta = CASES[name]
    eta = np.random.default_rng(41).normal(0.3, 0.5, M)
    jvp = partial(rules.likelihood_jvp, likelihood=likelihood)
    vjp = partial(rules.likelihood_vjp, likelihood=likelihood)
    out, _pullback = vjp(eta, theta)
    for value, expected in zip(out, reference(eta, theta)):
        np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-14)
    check_jvp(reference, jvp, (eta, theta), rng=42)
    check_vjp(reference, vjp, (eta, theta), rng=43)
    check_vjp(reference, vjp, (eta, theta), rng=44, f_jvp=jvp, rtol=1e-11)


def test_likelihood_pullback_parts():
    """Zero (None) cotangents and tangents; the Laplace gradient's pieces, term by term."""
    likelihood, _reference, theta = CASES["negative binomial"]
    eta = np.linspace(-1.0, 1.0, M)
    (_ll, _s, _w), pullback = rules.likelihood_vjp(eta, theta, likelihood=likelihood)
    d1, d2, d3 = likelihood.eta_derivatives(eta, theta)
    g, g_eta, g_eta2 = likelihood.theta_derivatives(eta, theta)
    w_bar = np.random.default_rng(45).standard_normal(M)
    eta_bar, theta_bar = pullback((None, None, w_bar))
    np.testing.assert_allclose(eta_bar, -d3 * w_bar, rtol=1e-15)
    np.testing.assert_allclose(theta_bar, -g_eta2 @ w_bar, rtol=1e-14)
    eta_bar, theta_bar = pullback((-1.0, None, None))
    np.testing.assert_allclose(eta_bar, -d1, rtol=1e-15)
    np.testing.assert_allclose(theta_bar, -g, rtol=1e-15)
    (ll, s, w), pullback_without = rules.likelihood_vjp(
        eta, theta, likelihood=likelihood, value=False
    )
    assert ll is None and np.array_equal(s, d1) and np.array_equal(w, -d2)
    np.testing.assert_array_equal(
        pullback_without((None, None, w_bar))[1], pullback((None, None, w_bar))[1]
    )
    _out, (ll_dot, s_dot, w_dot) = rules.likelihood_jvp(
        eta, theta, None, None, likelihood=likelihood
    )
    assert ll_dot == 0.0 and not np.any(s_dot) and not np.any(w_dot)
    with pytest.raises(gm.InputError, match="shape"):
        pullback((1.0, np.ones(M + 1), None))
    with pytest.raises(gm.InputError, match="theta"):
        rules.likelihood_vjp(eta, np.zeros(2), likelihood=likelihood)


def _quadrature_reference(likelihood, mean, var, theta):
    """E[Σ log p(y_i | η_i)], η_i ~ N(m_i, v_i), by adaptive quadrature, one observation at a
    time."""
    total = 0.0
    for i in range(mean.size):
        if not likelihood.observed[i]:
            continue
        sd = np.sqrt(var[i])
        single = np.zeros(mean.size)

        def integrand(x, i=i, sd=sd, single=single):
            single[i] = mean[i] + sd * x
            terms = likelihood.pointwise_log_density(single, theta)
            return terms[i] * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)

        total += integrate.quad(integrand, -12.0, 12.0, epsabs=1e-13, epsrel=1e-13)[0]
    return total


@pytest.mark.parametrize("name", sorted(CASES))
def test_expected_likelihood_rules(name):
    """E_q[ℓ] by Gauss–Hermite against adaptive quadrature; m̄ = E[ℓ'], v̄ = ½E[ℓ''],
    θ̄ = E[∂ℓ/∂θ] against finite differences; the dot-product test."""
    likelihood, _reference, theta = CASES[name]
    rng = np.random.default_rng(46)
    mean = rng.normal(0.2, 0.5, M)
    var = rng.uniform(0.05, 0.6, M)
    points = 60  # Price's ½E[ℓ''] is the derivative of the exact expectation
    value = rules.expected_likelihood(mean, var, theta, likelihood=likelihood, points=points)
    assert value == pytest.approx(_quadrature_reference(likelihood, mean, var, theta), rel=1e-10)
    f = partial(rules.expected_likelihood, likelihood=likelihood, points=points)
    jvp = partial(rules.expected_likelihood_jvp, likelihood=likelihood, points=points)
    vjp = partial(rules.expected_likelihood_vjp, likelihood=likelihood, points=points)
    check_jvp(f, jvp, (mean, var, theta), rng=47, rtol=1e-7)
    check_vjp(f, vjp, (mean, var, theta), rng=48, rtol=1e-7)
    check_vjp(f, vjp, (mean, var, theta), rng=49, f_jvp=jvp, rtol=1e-12)


def test_expected_likelihood_without_value_and_bad_input():
    likelihood, _reference, theta = CASES["gaussian"]
    mean, var = np.zeros(M), np.full(M, 0.3)
    y, pullback = rules.expected_likelihood_vjp(
        mean, var, theta, likelihood=likelihood, points=20, value=False
    )
    assert y is None
    mean_bar, var_bar, theta_bar = pullback(2.0)
    # Gaussian: E[ℓ'] = τ(y − m), E[ℓ''] = −τ, E[∂ℓ/∂θ] = Σ ½ − ½τ((y − m)² + v)
    tau, y_obs, seen = np.exp(theta[0]), np.nan_to_num(_GAUSS), ~np.isnan(_GAUSS)
    np.testing.assert_allclose(mean_bar, 2.0 * np.where(seen, tau * y_obs, 0.0), rtol=1e-12)
    np.testing.assert_allclose(var_bar, -np.where(seen, tau, 0.0), rtol=1e-12)
    expected = np.where(seen, 0.5 - 0.5 * tau * (y_obs**2 + var), 0.0).sum()
    assert theta_bar[0] == pytest.approx(2.0 * expected, rel=1e-12)
    _y, pullback = rules.expected_likelihood_vjp(
        mean, var, theta, likelihood=likelihood, points=20, wrt=("theta",)
    )
    only_theta = pullback(2.0)
    assert only_theta[0] is None and only_theta[1] is None
    assert only_theta[2] == pytest.approx(theta_bar, rel=1e-15)
    with pytest.raises(gm.InputError, match="wrt"):
        rules.expected_likelihood_vjp(mean, var, theta, likelihood=likelihood, points=20, wrt="m")
    with pytest.raises(gm.InputError, match="non-negative"):
        rules.expected_likelihood(mean, -var, theta, likelihood=likelihood, points=20)
    with pytest.raises(gm.InputError, match="shape"):
        rules.expected_likelihood(mean, var[:-1], theta, likelihood=likelihood, points=20)
