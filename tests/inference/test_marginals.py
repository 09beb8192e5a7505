"""Mixture quantiles and skew-normal moment matching against scipy.stats."""

import numpy as np
from scipy import stats

from gmrf_core.inference.marginals import mixture_quantiles, skew_normal_parameters


def test_skew_normal_matches_three_cumulants():
    mean = np.array([0.3, -1.0, 2.0])
    variance = np.array([0.5, 2.0, 0.1])
    skewness = np.array([0.4, -0.8, 0.05])
    xi, omega, alpha = skew_normal_parameters(mean, variance, skewness * variance**1.5)
    m, v, g = stats.skewnorm.stats(alpha, loc=xi, scale=omega, moments="mvs")
    np.testing.assert_allclose(m, mean, rtol=1e-12)
    np.testing.assert_allclose(v, variance, rtol=1e-12)
    np.testing.assert_allclose(g, skewness, rtol=1e-10)


def test_mixture_quantiles_invert_the_mixture_cdf():
    rng = np.random.default_rng(0)
    K, n = 7, 200
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(size=(K, n))
    sds = rng.uniform(0.2, 2.0, size=(K, n))
    kappa3 = rng.uniform(-0.9, 0.9, size=(K, n)) * sds**3
    xi, omega, alpha = skew_normal_parameters(means, sds**2, kappa3)
    for q in (0.001, 0.025, 0.5, 0.975, 0.999):
        x = mixture_quantiles(q, weights, means, sds, kappa3)
        cdf = weights @ stats.skewnorm.cdf(x[None, :], alpha, loc=xi, scale=omega)
        np.testing.assert_allclose(cdf, q, atol=1e-10)
        g = mixture_quantiles(q, weights, means, sds)
        np.testing.assert_allclose(weights @ stats.norm.cdf((g - means) / sds), q, atol=1e-10)
