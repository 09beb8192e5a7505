"""Binomial and Bernoulli likelihoods: values against scipy, extreme η, validation, simulation."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from gmrf_core.errors import InputError
from gmrf_core.likelihoods import Bernoulli, Binomial

NAN = np.nan


def test_binomial_log_density_matches_scipy_binom():
    y = np.array([0, 3, NAN, 5, 2, 10, 0])
    trials = np.array([4, 5, NAN, 5, 9, 12, 0])
    eta = np.array([-1.0, 0.3, 2.0, 2.5, -0.2, 1.4, 0.7])
    keep = ~np.isnan(y)
    expected = stats.binom.logpmf(y[keep], trials[keep], expit(eta[keep])).sum()
    assert Binomial(y, trials).log_density(eta) == pytest.approx(expected, rel=1e-13)
    # scalar trials broadcast
    expected = stats.binom.logpmf(y[keep], 12, expit(eta[keep])).sum()
    assert Binomial(y, 12).log_density(eta) == pytest.approx(expected, rel=1e-13)


def test_bernoulli_log_density_matches_scipy_bernoulli():
    y = np.array([0, 1, 1, NAN, 0, True])
    eta = np.array([-1.0, 0.3, -2.0, 5.0, 2.5, 0.0])
    keep = ~np.isnan(y)
    expected = stats.bernoulli.logpmf(y[keep], expit(eta[keep])).sum()
    likelihood = Bernoulli(y)
    assert likelihood.log_density(eta) == pytest.approx(expected, rel=1e-13)
    assert Bernoulli([True, False, True]).log_density(np.zeros(3)) == pytest.approx(3 * np.log(0.5))
    np.testing.assert_allclose(likelihood.mean(eta), expit(eta))


def test_closed_form_derivatives():
    y = np.array([1.0, 0.0, 3.0])
    trials = np.array([2.0, 1.0, 7.0])
    eta = np.array([0.3, -1.1, 2.0])
    p = expit(eta)
    d1, d2, d3 = Binomial(y, trials).eta_derivatives(eta)
    np.testing.assert_allclose(d1, y - trials * p, rtol=1e-14)
    np.testing.assert_allclose(d2, -trials * p * (1 - p), rtol=1e-14)
    np.testing.assert_allclose(d3, -trials * p * (1 - p) * (1 - 2 * p), rtol=1e-12)


@pytest.mark.parametrize("eta", [700.0, -700.0, 50.0, -50.0])
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_bernoulli_at_extreme_eta_is_accurate(eta, y):
    likelihood = Bernoulli([y])
    value = likelihood.log_density([eta])
    # log p(y | eta) = y eta - log(1 + e^eta); the smaller probability is about exp(-|eta|)
    expected = -abs(eta) if (y == 1.0) != (eta > 0) else -np.exp(-abs(eta))
    assert value == pytest.approx(expected, rel=1e-12, abs=0)
    d1, d2, d3 = likelihood.eta_derivatives([eta])
    tail = np.exp(-abs(eta))  # min(p, 1 - p) up to a factor (1 + tail)
    assert d1[0] == pytest.approx(
        y - (1.0 if eta > 0 else 0.0) + np.sign(eta) * tail, rel=1e-12, abs=0
    )
    assert d2[0] == pytest.approx(-tail, rel=1e-12, abs=0)
    assert d3[0] == pytest.approx(np.sign(eta) * tail, rel=1e-12, abs=0)


def test_binomial_with_zero_trials_contributes_nothing():
    likelihood = Binomial([0.0, 2.0], trials=[0, 3])
    eta = np.array([1.3, 0.2])
    assert likelihood.pointwise_log_density(eta)[0] == 0.0
    d1, d2, d3 = likelihood.eta_derivatives(eta)
    assert d1[0] == 0.0 and d2[0] == 0.0 and d3[0] == 0.0


@pytest.mark.parametrize("y", [[0, 2, 1], [0, 0.5, 1], [0, -1, 1]])
def test_bernoulli_rejects_values_outside_zero_one(y):
    with pytest.raises(InputError, match="y must be 0 or 1.*index 1"):
        Bernoulli(y)


@pytest.mark.parametrize(
    ("y", "trials", "message"),
    [
        ([1, 6, 2], 5, "y must not exceed trials.*index 1"),
        ([1, -1, 2], 5, "non-negative integer success counts.*index 1"),
        ([1, 1.5, 2], 5, "non-negative integer success counts"),
        ([1, 2, 2], [5, -1, 5], "trials must be finite and >= 0 integers.*index 1"),
        ([1, 2, 2], [5, 2.5, 5], "trials must be finite and >= 0 integers"),
        ([1, 2, 2], [5, np.inf, 5], "trials must be finite and >= 0 integers"),
        ([1, 2, 2], [5, NAN, 5], "trials is NaN at index 1 where y is observed"),
        ([1, 2, 2], [5, 5], "trials has shape"),
        ([1, 2, 2], None, "trials is required"),
    ],
)
def test_binomial_rejects_bad_data(y, trials, message):
    with pytest.raises(InputError, match=message):
        Binomial(y, trials)


def test_nan_trials_accepted_where_y_missing():
    likelihood = Binomial([1, NAN, 2], trials=[3, NAN, 4])
    eta = np.zeros(3)
    assert np.isfinite(likelihood.log_density(eta))
    mean = likelihood.mean(eta)
    assert np.isnan(mean[1]) and mean[0] == 1.5 and mean[2] == 2.0
    draws = likelihood.sample(eta, rng=0)
    assert np.isnan(draws[1]) and 0 <= draws[0] <= 3 and 0 <= draws[2] <= 4


def test_sample_moments():
    n = 20000
    eta = np.full(n, 0.4)
    p = expit(0.4)
    draws = Binomial(np.full(n, NAN), trials=8).sample(eta, rng=5)
    assert np.all((draws >= 0) & (draws <= 8) & (draws == np.floor(draws)))
    assert abs(draws.mean() - 8 * p) < 5 * np.sqrt(8 * p * (1 - p) / n)
    bits = Bernoulli(np.full(n, NAN)).sample(eta, rng=6)
    assert set(np.unique(bits)) <= {0.0, 1.0}
    assert abs(bits.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
