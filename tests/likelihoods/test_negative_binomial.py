"""Negative binomial likelihood: values against scipy, Poisson limit, validation, simulation."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from gmrf_core.errors import InputError
from gmrf_core.likelihoods import NegativeBinomial, NormalPrior, PCPrecision, Poisson

NAN = np.nan


def _scipy_log_density(y, eta, log_size, exposure):
    size = np.exp(log_size)
    mu = exposure * np.exp(eta)
    return stats.nbinom.logpmf(y, size, size / (size + mu)).sum()


@pytest.mark.parametrize("log_size", [-2.0, 0.0, 0.7, 4.0])
def test_log_density_matches_scipy_nbinom(log_size):
    y = np.array([0, 3, NAN, 1, 7, 60, 2])
    exposure = np.array([1.0, 2.5, 1.0, 0.3, 1.0, 4.0, 0.8])
    eta = np.array([-0.5, 0.2, 9.0, 1.0, 2.0, 2.3, -3.0])
    keep = ~np.isnan(y)
    likelihood = NegativeBinomial(y, exposure=exposure)
    expected = _scipy_log_density(y[keep], eta[keep], log_size, exposure[keep])
    assert likelihood.log_density(eta, [log_size]) == pytest.approx(expected, rel=1e-12)


def test_mean_and_variance_parameterisation():
    n = 40000
    log_size = np.log(2.5)
    likelihood = NegativeBinomial(np.full(n, NAN), exposure=2.0)
    eta = np.full(n, np.log(3.0))
    mean = likelihood.mean(eta, [log_size])
    np.testing.assert_allclose(mean, 6.0)
    draws = likelihood.sample(eta, [log_size], rng=9)
    variance = 6.0 + 6.0**2 / 2.5
    assert np.all(draws == np.floor(draws)) and np.all(draws >= 0)
    assert abs(draws.mean() - 6.0) < 5 * np.sqrt(variance / n)
    assert draws.var() == pytest.approx(variance, rel=0.05)


def test_closed_form_eta_derivatives():
    y = np.array([0.0, 4.0, 11.0])
    eta = np.array([0.1, 1.2, -0.4])
    size = 1.7
    mu = np.exp(eta)
    d1, d2, d3 = NegativeBinomial(y).eta_derivatives(eta, [np.log(size)])
    q = mu / (size + mu)
    np.testing.assert_allclose(d1, size * (y - mu) / (size + mu), rtol=1e-13)
    np.testing.assert_allclose(d2, -(size + y) * q * (1 - q), rtol=1e-13)
    np.testing.assert_allclose(d3, -(size + y) * q * (1 - q) * (1 - 2 * q), rtol=1e-12)


def test_theta_gradient_uses_digamma_difference_exactly():
    # for integer y, psi(y + r) - psi(r) = sum_{j < y} 1 / (r + j): an independent check
    y = np.array([0.0, 1.0, 5.0, 23.0])
    eta = np.array([0.3, -0.2, 1.5, 3.0])
    log_size = 0.9
    size = np.exp(log_size)
    mu = np.exp(eta)
    harmonic = np.array([np.sum(1.0 / (size + np.arange(k))) for k in y.astype(int)])
    expected = size * (harmonic - np.log1p(mu / size) + mu / (size + mu)) - y * size / (size + mu)
    g, _, _ = NegativeBinomial(y).theta_derivatives(eta, [log_size])
    assert g[0] == pytest.approx(expected.sum(), rel=1e-12)


def test_large_size_approaches_poisson():
    y = np.array([0.0, 2.0, 5.0, 9.0])
    eta = np.array([0.0, 0.5, 1.5, 2.2])
    exposure = np.array([1.0, 2.0, 1.0, 0.5])
    nb = NegativeBinomial(y, exposure=exposure)
    poisson = Poisson(y, exposure=exposure)
    log_size = [18.0]
    assert nb.log_density(eta, log_size) == pytest.approx(poisson.log_density(eta), abs=1e-5)
    for a, b in zip(nb.eta_derivatives(eta, log_size), poisson.eta_derivatives(eta)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    g, g_eta, g_eta2 = nb.theta_derivatives(eta, log_size)
    assert abs(g[0]) < 1e-5 and np.max(np.abs(g_eta)) < 1e-5 and np.max(np.abs(g_eta2)) < 1e-5


@pytest.mark.parametrize("eta", [-700.0, -50.0, 50.0, 700.0])
def test_extreme_eta_is_finite_and_matches_limits(eta):
    y = np.array([0.0, 3.0])
    likelihood = NegativeBinomial(y)
    log_size = np.log(2.0)
    values = likelihood.pointwise_log_density(np.full(2, eta), [log_size])
    assert np.all(np.isfinite(values))
    d1, d2, d3 = likelihood.eta_derivatives(np.full(2, eta), [log_size])
    q = expit(eta - log_size)
    np.testing.assert_allclose(d1, y * (1 - q) - 2.0 * q, rtol=1e-12)
    if eta > 0:
        # mu -> inf: log p ~ -r eta + const, d1 -> -r
        assert values[0] == pytest.approx(2.0 * (log_size - eta), rel=1e-10)
        np.testing.assert_allclose(d1, [-2.0, -2.0], rtol=1e-10)
    else:
        assert values[0] == pytest.approx(0.0, abs=1e-20)
    assert np.all(np.isfinite(d2)) and np.all(np.isfinite(d3))
    assert all(np.all(np.isfinite(a)) for a in likelihood.theta_derivatives(np.full(2, eta)))


def test_theta_names_defaults_and_prior():
    likelihood = NegativeBinomial([1, 2])
    assert likelihood.theta_names == ("log_size",)
    np.testing.assert_array_equal(likelihood.theta0, [0.0])
    assert likelihood.log_prior([3.0]) == 0.0
    prior = NormalPrior(1.0, 2.0)
    likelihood = NegativeBinomial([1, 2], prior=prior, size0=np.exp(2.5))
    np.testing.assert_allclose(likelihood.theta0, [2.5], rtol=1e-15)
    assert likelihood.log_prior([3.0]) == pytest.approx(stats.norm.logpdf(3.0, 1.0, 2.0))
    np.testing.assert_allclose(likelihood.log_prior_grad([3.0]), [-0.5])


def test_pc_precision_prior_is_refused_on_log_size():
    with pytest.raises(InputError, match="PCPrecision is a prior on a Gaussian log precision"):
        NegativeBinomial([1, 2], prior=PCPrecision(1.0, 0.01))


@pytest.mark.parametrize(
    ("y", "exposure", "message"),
    [
        ([1, -2, 3], None, "non-negative integer counts.*index 1"),
        ([1, 0.2, 3], None, "non-negative integer counts.*index 1"),
        ([1, np.inf, 3], None, "infinite"),
        ([1, 2, 3], [1.0, 0.0, 1.0], "exposure must be finite and > 0"),
        ([1, 2, 3], [1.0, -np.inf, 1.0], "exposure must be finite and > 0"),
        ([1, 2, 3], [1.0, 1.0], "exposure has shape"),
    ],
)
def test_bad_data_are_rejected(y, exposure, message):
    with pytest.raises(InputError, match=message):
        NegativeBinomial(y, exposure=exposure)


def test_start_value_is_on_the_natural_scale():
    likelihood = NegativeBinomial([1, 2], size0=40.0)
    np.testing.assert_allclose(likelihood.theta0, [np.log(40.0)], rtol=1e-15)
    assert likelihood.theta_names == ("log_size",)


@pytest.mark.parametrize(
    ("size0", "message"),
    [
        (np.nan, "size0 must be finite and > 0"),
        (np.inf, "size0 must be finite and > 0"),
        (0.0, "size0 must be finite and > 0"),
        (-1.0, "size0 must be finite and > 0"),
        ("3", "size0 must be a number, got strings"),
        (1j, "size0 must be a number, got complex"),
    ],
)
def test_bad_start_value_is_rejected(size0, message):
    with pytest.raises(InputError, match=message):
        NegativeBinomial([1], size0=size0)
