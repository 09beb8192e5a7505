"""One-pass count log densities against the vectorised Loader forms they replace."""

import math

import mpmath as mp
import numpy as np
import pytest

from gmrf_core.kernels import likelihood as klik
from gmrf_core.likelihoods import Poisson, _numerics


def test_constants_are_those_of_the_vectorised_deviance():
    assert klik.SMALL_T == _numerics._SMALL_T
    assert klik.SERIES_TERMS == _numerics._SERIES_TERMS
    assert klik.FROM_LOGS_BELOW == _numerics._FROM_LOGS_BELOW


@pytest.mark.parametrize("t", [-0.999999, -0.95, -0.9, -0.5, -0.1, -0.05, 0.0, 1e-9, 0.099, 0.5])
def test_deviance_branches_match_the_vectorised_form(t):
    x = 7.0
    log1p_t = math.log1p(t)
    expected = _numerics.deviance(
        np.array([x]), np.array([t]), lambda mask: np.array([log1p_t])[mask], np.array([x * t])
    )[0]
    assert klik._deviance(x, t, log1p_t, x * t) == pytest.approx(expected, rel=1e-15, abs=1e-300)


def test_bd0_from_the_log_ratio_is_accurate_to_a_few_ulps():
    # y (eᵘ − 1 − u) against mpmath with enough digits for the cancellation, over the
    # series' whole range, both signs, tiny u and the ends
    us = list(np.linspace(-0.4999999, 0.4999999, 2000)) + [1e-150, -1e-150, 1e-8, -1e-8]
    worst = 0.0
    for u in us:
        with mp.workdps(40 + int(2 * abs(math.log10(abs(u))))):
            u_mp = mp.mpf(float(u))
            expected = 3.0 * (mp.exp(u_mp) - 1 - u_mp)
        got = klik._bd0_from_log_ratio(3.0, float(u))
        worst = max(worst, abs(float((got - expected) / expected)))
    assert worst < 8 * np.finfo(float).eps
    assert klik._bd0_from_log_ratio(3.0, 0.0) == 0.0


def test_poisson_sum_takes_the_series_inside_and_the_deviance_outside():
    # counts whose log ratios fall on both sides of LOG_RATIO_SERIES_BELOW: the two forms
    # meet there (the sum equals the exact terms on either side)
    y = np.full(4, 5.0)
    edge = klik.LOG_RATIO_SERIES_BELOW
    eta = np.log(5.0) + np.array([edge - 1e-12, edge + 1e-12, -edge + 1e-12, -edge - 1e-12])
    for k in range(4):
        likelihood = Poisson(y[k : k + 1])
        with mp.workdps(60):
            mean = mp.exp(mp.mpf(float(eta[k])))
            expected = 5 * mp.log(mean) - mean - mp.loggamma(6)
        assert likelihood.log_density(eta[k : k + 1]) == pytest.approx(float(expected), rel=1e-15)


def test_deviance_for_a_ratio_that_overflows_uses_the_log():
    # t = m/x − 1 overflowed: x t is inf, the deviance is inf (the log density −inf)
    assert klik._deviance(3.0, math.inf, 800.0, math.inf) == math.inf
    assert klik._deviance(3.0, 1e300, 690.8, 3e300) == pytest.approx(3e300 - 3.0 * 690.8)


@pytest.mark.parametrize("spread", [1e-3, 0.05, 0.4, 2.0, 8.0])
def test_poisson_sum_matches_the_pointwise_terms(spread):
    # every branch of the deviance, zero counts, large counts, missing values, an exposure
    rng = np.random.default_rng(3)
    n = 5000
    y = rng.poisson(np.exp(rng.normal(1.0, 1.5, n))).astype(float)
    y[::11] = np.nan
    exposure = rng.uniform(0.2, 3.0, n)
    exposure[::11] = np.nan  # allowed where y is missing
    likelihood = Poisson(y, exposure=exposure)
    base = np.log(np.where(np.isnan(y), 1.0, np.maximum(y, 0.5))) - np.log(
        np.where(np.isnan(exposure), 1.0, exposure)
    )
    eta = base + rng.normal(0.0, spread, n)
    expected = math.fsum(likelihood.pointwise_log_density(eta))
    assert likelihood.log_density(eta) == pytest.approx(expected, rel=1e-14)


def test_poisson_sum_is_minus_inf_when_a_rate_overflows():
    likelihood = Poisson(np.array([0.0, 3.0, 2.0]))
    assert likelihood.log_density(np.array([0.1, 800.0, 0.2])) == -math.inf
    assert likelihood.log_density(np.array([800.0, 0.1, 0.2])) == -math.inf


def test_poisson_sum_is_compensated():
    # 10⁶ equal terms: a left-to-right sum drifts by ~n ulps, the compensated one does not
    n = 10**6
    likelihood = Poisson(np.zeros(n))
    eta = np.full(n, math.log(0.1))
    rate = math.exp(math.log(0.1))
    assert likelihood.log_density(eta) == pytest.approx(-n * rate, rel=4e-16)


def test_poisson_eta_derivatives_match_the_vectorised_form():
    # the same formulas; exp may differ from NumPy's by an ulp
    rng = np.random.default_rng(5)
    y = rng.poisson(3.0, 400).astype(float)
    y[::7] = np.nan
    exposure = rng.uniform(0.2, 3.0, 400)
    likelihood = Poisson(y, exposure=exposure)
    eta = rng.normal(0.0, 2.0, 400)
    eta[3] = 800.0  # a rate that overflows: ±inf, as the vectorised form gives
    d1, d2, d3 = likelihood.eta_derivatives(eta)
    with np.errstate(over="ignore"):
        rate = np.where(likelihood.observed, exposure * np.exp(eta), 0.0)
    y0 = np.where(likelihood.observed, y, 0.0)
    assert d1[3] == -np.inf and d2[3] == -np.inf and d3[3] == -np.inf
    finite = np.isfinite(rate)
    np.testing.assert_allclose(d2[finite], -rate[finite], rtol=1e-15, atol=0)
    np.testing.assert_array_equal(d3, d2)
    np.testing.assert_allclose(
        d1[finite], (y0 - rate)[finite], rtol=0, atol=1e-15 * np.max(rate[finite] + y0[finite])
    )
    assert np.all(d1[~likelihood.observed] == 0.0) and np.all(d2[~likelihood.observed] == 0.0)
    assert not np.shares_memory(d2, d3) and d1.flags.writeable
