"""Gaussian likelihood: values against scipy, scale, PC prior, validation and simulation."""

import numpy as np
import pytest
from scipy import stats

from gmrf_core.errors import InputError
from gmrf_core.likelihoods import Gaussian, NormalPrior, PCPrecision

NAN = np.nan


def test_log_density_matches_scipy_norm_with_scale_and_missing():
    y = np.array([0.3, -1.2, NAN, 2.5, 0.0, -0.7])
    scale = np.array([1.0, 2.0, NAN, 0.5, 3.0, 1.0])
    eta = np.array([0.1, -0.2, 5.0, 1.0, 0.4, -2.0])
    likelihood = Gaussian(y, scale=scale)
    keep = ~np.isnan(y)
    for theta in (-2.0, 0.0, 1.7):
        sd = 1.0 / np.sqrt(np.exp(theta) * scale[keep])
        expected = stats.norm.logpdf(y[keep], loc=eta[keep], scale=sd).sum()
        assert likelihood.log_density(eta, [theta]) == pytest.approx(expected, rel=1e-13)


def test_closed_form_derivatives():
    y = np.array([1.0, 2.0, -1.0])
    eta = np.array([0.5, 2.5, 0.0])
    likelihood = Gaussian(y, scale=2.0)
    tau = np.exp(0.3)
    d1, d2, d3 = likelihood.eta_derivatives(eta, [0.3])
    np.testing.assert_allclose(d1, 2 * tau * (y - eta))
    np.testing.assert_allclose(d2, np.full(3, -2 * tau))
    np.testing.assert_array_equal(d3, np.zeros(3))
    g, g_eta, g_eta2 = likelihood.theta_derivatives(eta, [0.3])
    np.testing.assert_allclose(g, [np.sum(0.5 - tau * (y - eta) ** 2)])
    np.testing.assert_allclose(g_eta, d1[None, :])
    np.testing.assert_allclose(g_eta2, d2[None, :])


def test_theta_names_defaults_and_priors():
    likelihood = Gaussian([1.0, 2.0])
    assert likelihood.theta_names == ("log_noise_precision",)
    np.testing.assert_array_equal(likelihood.theta0, [0.0])
    assert likelihood.log_prior([1.0]) == 0.0
    np.testing.assert_array_equal(likelihood.log_prior_grad([1.0]), [0.0])
    prior = PCPrecision(u=0.5, alpha=0.05)
    likelihood = Gaussian([1.0, 2.0], prior=prior, precision0=np.exp(4.0))
    np.testing.assert_allclose(likelihood.theta0, [4.0], rtol=1e-15)
    assert likelihood.log_prior([1.0]) == prior.log_density(1.0)
    np.testing.assert_array_equal(likelihood.log_prior_grad(1.0), [prior.log_density_grad(1.0)])
    other = Gaussian([1.0], prior=NormalPrior(0.0, 1.0))
    assert other.log_prior([0.0]) == pytest.approx(stats.norm.logpdf(0.0))


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        (np.array([1.0, -1.0, 1.0]), "scale must be finite and > 0"),
        (np.array([1.0, 0.0, 1.0]), "scale must be finite and > 0"),
        (np.array([1.0, np.inf, 1.0]), "scale must be finite and > 0"),
        (np.array([1.0, 1.0]), "scale has shape"),
        (np.array([1.0, NAN, 1.0]), "scale is NaN at index 1 where y is observed"),
        ("big", "scale must be numeric"),
        (-2.0, "scale must be finite and > 0"),
    ],
)
def test_bad_scale_is_rejected(scale, message):
    with pytest.raises(InputError, match=message):
        Gaussian([0.0, 1.0, 2.0], scale=scale)


def test_nan_scale_accepted_where_y_missing():
    likelihood = Gaussian([0.0, NAN, 2.0], scale=[1.0, NAN, 2.0])
    eta = np.zeros(3)
    assert np.isfinite(likelihood.log_density(eta))
    draws = likelihood.sample(eta, rng=1)
    assert np.isnan(draws[1]) and np.isfinite(draws[[0, 2]]).all()


def test_start_value_is_on_the_natural_scale():
    likelihood = Gaussian([1.0, 2.0], precision0=0.25)
    np.testing.assert_allclose(likelihood.theta0, [np.log(0.25)], rtol=1e-15)
    assert likelihood.theta_names == ("log_noise_precision",)


@pytest.mark.parametrize(
    ("precision0", "message"),
    [
        (np.inf, "precision0 must be finite and > 0"),
        (0.0, "precision0 must be finite and > 0"),
        (-2.0, "precision0 must be finite and > 0"),
        (np.nan, "precision0 must be finite and > 0"),
        ("high", "precision0 must be a number, got strings"),
        ("2.0", "precision0 must be a number, got strings"),
        (2.0 + 1.0j, "precision0 must be a number, got complex"),
        ([1.0, 2.0], "precision0 must be a single number"),
    ],
)
def test_bad_start_value_is_rejected(precision0, message):
    with pytest.raises(InputError, match=message):
        Gaussian([1.0], precision0=precision0)


def test_sample_moments():
    n = 20000
    likelihood = Gaussian(np.full(n, NAN), scale=2.0)
    theta = np.log(4.0)
    draws = likelihood.sample(np.full(n, 1.5), [theta], rng=7)
    variance = 1.0 / 8.0
    assert abs(draws.mean() - 1.5) < 5 * np.sqrt(variance / n)
    assert draws.var() == pytest.approx(variance, rel=0.05)
    eta = np.linspace(-1.0, 1.0, n)
    np.testing.assert_array_equal(likelihood.mean(eta, [theta]), eta)
