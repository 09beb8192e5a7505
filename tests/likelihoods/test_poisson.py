"""Poisson likelihood: values against scipy, exposure, validation, overflow and simulation."""

import numpy as np
import pytest
from scipy import stats

from gmrf_core.errors import InputError
from gmrf_core.likelihoods import Poisson

NAN = np.nan


def test_log_density_matches_scipy_poisson_with_exposure_and_missing():
    y = np.array([0, 3, NAN, 1, 7, 40])
    exposure = np.array([1.0, 2.5, NAN, 0.3, 1.0, 4.0])
    eta = np.array([-0.5, 0.2, 9.0, 1.0, 2.0, 2.3])
    keep = ~np.isnan(y)
    expected = stats.poisson.logpmf(y[keep], exposure[keep] * np.exp(eta[keep])).sum()
    assert Poisson(y, exposure=exposure).log_density(eta) == pytest.approx(expected, rel=1e-13)
    # scalar exposure is broadcast
    expected = stats.poisson.logpmf(y[keep], 2.0 * np.exp(eta[keep])).sum()
    assert Poisson(y, exposure=2.0).log_density(eta) == pytest.approx(expected, rel=1e-13)


def test_closed_form_derivatives_and_mean():
    y = np.array([0.0, 4.0, 2.0])
    eta = np.array([0.1, 1.2, -0.4])
    exposure = np.array([1.0, 3.0, 0.5])
    likelihood = Poisson(y, exposure=exposure)
    mu = exposure * np.exp(eta)
    d1, d2, d3 = likelihood.eta_derivatives(eta)
    np.testing.assert_allclose(d1, y - mu, rtol=1e-14)
    np.testing.assert_allclose(d2, -mu, rtol=1e-14)
    np.testing.assert_allclose(d3, -mu, rtol=1e-14)
    np.testing.assert_allclose(likelihood.mean(eta), mu, rtol=1e-14)
    assert likelihood.theta_names == ()
    assert likelihood.theta0.shape == (0,)


@pytest.mark.parametrize(
    ("y", "message"),
    [
        ([1, -1, 2], "non-negative integer counts.*index 1"),
        ([1, 2.5, 2], "non-negative integer counts.*index 1"),
        ([1, 2, np.inf], "infinite"),
    ],
)
def test_bad_counts_are_rejected(y, message):
    with pytest.raises(InputError, match=message):
        Poisson(y)


@pytest.mark.parametrize(
    ("exposure", "message"),
    [
        ([1.0, 0.0, 1.0], "exposure must be finite and > 0.*index 1"),
        ([1.0, -2.0, 1.0], "exposure must be finite and > 0"),
        ([1.0, np.inf, 1.0], "exposure must be finite and > 0"),
        ([1.0, NAN, 1.0], "exposure is NaN at index 1 where y is observed"),
        ([1.0, 1.0], "exposure has shape"),
        (0.0, "exposure must be finite and > 0"),
    ],
)
def test_bad_exposure_is_rejected(exposure, message):
    with pytest.raises(InputError, match=message):
        Poisson([1, 2, 3], exposure=exposure)


def test_overflowing_rate_gives_minus_infinity_without_warning():
    likelihood = Poisson([1.0, 2.0])
    eta = np.array([0.0, 750.0])
    assert likelihood.log_density(eta) == -np.inf
    d1, d2, d3 = likelihood.eta_derivatives(eta)
    assert d1[1] == -np.inf and d2[1] == -np.inf and d3[1] == -np.inf
    assert np.isfinite(d1[0])


def test_very_negative_eta_is_finite():
    likelihood = Poisson([0.0, 3.0])
    eta = np.array([-700.0, -700.0])
    assert likelihood.log_density(eta) == pytest.approx(-3 * 700.0 - np.log(6.0), rel=1e-14)
    np.testing.assert_allclose(likelihood.eta_derivatives(eta)[0], [0.0, 3.0], atol=1e-300)


def test_sample_moments():
    n = 20000
    likelihood = Poisson(np.full(n, NAN), exposure=3.0)
    draws = likelihood.sample(np.full(n, np.log(2.0)), rng=11)
    assert np.all(draws == np.floor(draws)) and np.all(draws >= 0)
    assert abs(draws.mean() - 6.0) < 5 * np.sqrt(6.0 / n)
    assert draws.var() == pytest.approx(6.0, rel=0.05)


def test_sample_with_too_large_mean_is_rejected():
    with pytest.raises(InputError, match="too large to simulate"):
        Poisson([1.0]).sample(np.array([60.0]), rng=0)
