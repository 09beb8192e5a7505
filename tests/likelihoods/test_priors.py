"""Hyperparameter priors: normalisation, the PC tail probability, derivatives, validation."""

import numpy as np
import pytest
from scipy import integrate, stats

from gmrf_core.errors import InputError
from gmrf_core.likelihoods import NormalPrior, PCPrecision, Prior, pc_precision_rate

H = 1e-5


def _density(prior):
    return lambda t: np.exp(prior.log_density(t))


@pytest.mark.parametrize(("u", "alpha"), [(1.0, 0.01), (0.2, 0.5), (3.0, 0.05)])
def test_pc_precision_is_normalised_with_the_requested_tail_probability(u, alpha):
    prior = PCPrecision(u, alpha)
    assert isinstance(prior, Prior)
    assert prior.rate == pytest.approx(-np.log(alpha) / u)
    # sigma = exp(-theta / 2) > u  <=>  theta < -2 log u
    split = -2.0 * np.log(u)
    below, _ = integrate.quad(_density(prior), -np.inf, split, epsabs=1e-12)
    above, _ = integrate.quad(_density(prior), split, np.inf, epsabs=1e-12)
    assert below == pytest.approx(alpha, rel=1e-7)
    assert below + above == pytest.approx(1.0, rel=1e-7)


def test_pc_precision_matches_exponential_on_sigma_with_jacobian():
    prior = PCPrecision(0.5, 0.1)
    for theta in (-3.0, 0.0, 2.0, 6.0):
        sigma = np.exp(-theta / 2)
        expected = stats.expon.logpdf(sigma, scale=1 / prior.rate) + np.log(sigma / 2)
        assert prior.log_density(theta) == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("prior", [PCPrecision(1.0, 0.01), NormalPrior(0.5, 1.7)], ids=repr)
@pytest.mark.parametrize("theta", [-4.0, 0.0, 2.5, 9.0])
def test_gradient_and_hessian_match_finite_differences(prior, theta):
    grad = (prior.log_density(theta + H) - prior.log_density(theta - H)) / (2 * H)
    hess = (prior.log_density_grad(theta + H) - prior.log_density_grad(theta - H)) / (2 * H)
    scale = max(1.0, abs(prior.log_density(theta)))
    assert prior.log_density_grad(theta) == pytest.approx(grad, abs=1e-6 * scale)
    assert prior.log_density_hess(theta) == pytest.approx(hess, abs=1e-6 * max(1.0, abs(grad)))


def test_normal_prior_matches_scipy():
    prior = NormalPrior(-1.0, 0.5)
    for theta in (-2.0, 0.0, 3.0):
        assert prior.log_density(theta) == pytest.approx(stats.norm.logpdf(theta, -1.0, 0.5))
    assert repr(prior) == "NormalPrior(mean=-1.0, sd=0.5)"


def test_pc_precision_far_tail_is_minus_infinity_without_warning():
    prior = PCPrecision(1.0, 0.01)
    assert prior.log_density(-2000.0) == -np.inf
    assert prior.log_density_grad(-2000.0) == np.inf
    assert np.isfinite(prior.log_density(2000.0))


@pytest.mark.parametrize(
    ("u", "alpha", "message"),
    [
        (0.0, 0.01, "u must be > 0"),
        (-1.0, 0.01, "u must be > 0"),
        (np.inf, 0.01, "u must be finite"),
        (1.0, 0.0, r"alpha must be in \(0, 1\)"),
        (1.0, 1.0, r"alpha must be in \(0, 1\)"),
        (1.0, np.nan, "alpha must be finite"),
        ("one", 0.5, "u must be a real number"),
    ],
)
def test_pc_precision_rejects_bad_arguments(u, alpha, message):
    with pytest.raises(InputError, match=message):
        PCPrecision(u, alpha)
    with pytest.raises(InputError, match=message):
        pc_precision_rate(u, alpha)


@pytest.mark.parametrize(
    ("mean", "sd", "message"),
    [(0.0, 0.0, "sd must be > 0"), (0.0, -1.0, "sd must be > 0"), (np.nan, 1.0, "mean")],
)
def test_normal_prior_rejects_bad_arguments(mean, sd, message):
    with pytest.raises(InputError, match=message):
        NormalPrior(mean, sd)


def test_prior_rejects_non_finite_value():
    with pytest.raises(InputError, match="value must be finite"):
        PCPrecision(1.0, 0.1).log_density(np.nan)
