"""Hyperparameter priors (gmrf_core.priors): normalisation, tail probabilities, derivatives.

One file for every prior class: PCPrecision and NormalPrior (one parameter), PCBYM2Phi
(BYM2 mixing, exact from the eigenvalues), PCMaternPrior (joint range and sd), each
against references written here (quadrature, scipy.stats, dense KLD, exact fractions).
"""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg as sla
from scipy import integrate, stats

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.errors import InputError
from gmrf_core.models import BYM2
from gmrf_core.priors import (
    NormalPrior,
    PCBYM2Phi,
    PCMaternPrior,
    PCPrecision,
    Prior,
    pc_precision_rate,
)
from tests.models.conftest import grid_adjacency

H = 1e-5
RNG_SEED = 20240611


@pytest.fixture
def grid():
    """Factory of lattice adjacency matrices."""
    return grid_adjacency


def test_one_home_for_every_prior_class():
    """Latent models, likelihoods and the package share the same classes."""
    for name in ("Prior", "PCPrecision", "NormalPrior", "pc_precision_rate"):
        assert getattr(likelihoods, name) is getattr(gm.priors, name)
        assert getattr(models, name) is getattr(gm.priors, name)
    assert models.PCBYM2Phi is gm.priors.PCBYM2Phi
    assert models.PCMaternPrior is gm.priors.PCMaternPrior


# ------------------------------------------------------------------ PCPrecision, NormalPrior
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


# ------------------------------------------------------------------ PCBYM2Phi
def scaled_structure(grid):
    return BYM2(grid(3, 4)).structure.toarray()


@pytest.fixture
def bound(grid):
    structure = scaled_structure(grid)
    return PCBYM2Phi(0.5, 2 / 3, sla.eigvalsh(structure), 1), structure


def test_distance_matches_dense_kld(bound):
    """d(φ) = √(2 KLD), KLD = ½[tr Σ - n - log|Σ|], Σ = (1-φ) I + φ R*⁻ (Riebler et al. 2016)."""
    prior, structure = bound
    n = structure.shape[0]
    r_inverse = sla.pinvh(structure)
    for phi in (1e-3, 0.02, 0.3, 0.5, 0.9, 0.999):
        sigma = (1 - phi) * np.eye(n) + phi * r_inverse
        kld = 0.5 * (np.trace(sigma) - n - np.linalg.slogdet(sigma)[1])
        assert prior.distance(phi) == pytest.approx(np.sqrt(2 * kld), rel=1e-8)
    # small-φ limit d(φ)/φ → √(½ Σ x²), x = γ̃ - 1, without cancellation
    values = np.sort(sla.eigvalsh(structure))
    x = np.r_[0.0, 1 / values[1:]] - 1
    assert prior.distance(1e-12) / 1e-12 == pytest.approx(np.sqrt(0.5 * np.sum(x**2)), rel=1e-9)
    assert prior.rate == pytest.approx(-np.log(1 / 3) / prior.distance(0.5))


def test_density_normalised_and_calibrated(bound):
    prior, _ = bound
    density = lambda t: np.exp(prior.log_density(t))  # noqa: E731
    # P(φ < u) = α exactly
    for u, alpha in ((0.5, 2 / 3), (0.2, 0.1), (0.9, 0.95)):
        p = PCBYM2Phi(u, alpha, *prior_args(prior))
        upper = np.log(u / (1 - u))
        below = scipy.integrate.quad(
            lambda t, p=p: np.exp(p.log_density(t)), -100, upper, limit=200
        )[0]
        assert below == pytest.approx(alpha, rel=1e-7)
    total = sum(
        scipy.integrate.quad(density, a, b, limit=200)[0]
        for a, b in ((-200, -5), (-5, 5), (5, 40), (40, 200))
    )
    # the tail beyond logit φ = 200 has mass exp(-λ d(φ(200))) < 1e-6 (d grows like √θ)
    assert total == pytest.approx(1.0, abs=1e-6)


def prior_args(prior):
    """(eigenvalues, rank deficiency) reproducing a bound prior's excess variances."""
    x = prior._excess
    k = int(np.sum(x == -1.0))
    values = np.r_[np.zeros(k), 1.0 / (x[k:] + 1.0)]
    return values, k


@pytest.mark.parametrize(
    "theta", [-199.0, -40.0, -8.0, -2.0, -0.3, 0.0, 0.7, 3.0, 12.0, 35.0, 150.0, 199.0]
)
def test_derivatives(bound, theta):
    prior, _ = bound
    step = 1e-5 * max(1.0, abs(theta))
    fd = (prior.log_density(theta + step) - prior.log_density(theta - step)) / (2 * step)
    assert prior.log_density_grad(theta) == pytest.approx(fd, rel=1e-6, abs=1e-8)
    fd2 = (prior.log_density_grad(theta + step) - prior.log_density_grad(theta - step)) / (2 * step)
    assert prior.log_density_hess(theta) == pytest.approx(fd2, rel=1e-5, abs=1e-8)
    assert np.isfinite(prior.log_density(theta))


def test_validation(grid):
    with pytest.raises(InputError, match="u must"):
        PCBYM2Phi(u=1.0)
    with pytest.raises(InputError, match="alpha must"):
        PCBYM2Phi(alpha=0.0)
    with pytest.raises(InputError, match="eigenvalues"):
        PCBYM2Phi().log_density(0.0)
    with pytest.raises(InputError, match="rank_deficiency"):
        PCBYM2Phi(eigenvalues=[0.0, 1.0, 2.0])
    with pytest.raises(InputError, match="zero eigenvalue"):
        PCBYM2Phi(eigenvalues=[0.5, 1.0, 2.0], rank_deficiency=1)
    with pytest.raises(InputError, match="zero eigenvalue"):
        PCBYM2Phi(eigenvalues=[0.0, 0.0, 2.0], rank_deficiency=1)
    with pytest.raises(InputError, match="finite"):
        PCBYM2Phi(eigenvalues=[0.0, np.nan], rank_deficiency=1)
    with pytest.raises(InputError, match="identifiable"):
        PCBYM2Phi(eigenvalues=[1.0, 1.0], rank_deficiency=0)
    prior = PCBYM2Phi(eigenvalues=[0.0, 0.5, 2.0], rank_deficiency=1)
    with pytest.raises(InputError, match="outside"):
        prior.log_density(201.0)
    with pytest.raises(InputError, match="finite"):
        prior.log_density(np.nan)
    with pytest.raises(InputError, match="phi must"):
        prior.distance(1.0)
    assert "unbound" in repr(PCBYM2Phi()) and "bound" in repr(prior)


def test_h_functions_series_and_direct_branches():
    """H(z) = (z - log(1+z))/z² and its derivatives, on both sides of the series radius."""
    from fractions import Fraction

    from gmrf_core.priors import _h_functions

    def reference(z):
        # H(z) = Σ_{m>=2} (-1)^m z^(m-2)/m in exact rationals (|z| < 1, 60 terms)
        zf = Fraction(z)
        return float(sum(Fraction((-1) ** m, m) * zf ** (m - 2) for m in range(2, 62)))

    z = np.array([-0.3, -0.049, -1e-9, 0.0, 1e-7, 0.02, 0.0499, 0.0501, 0.3])
    h, h1, h2 = _h_functions(z, 1.0 + z, np.log1p(z))
    np.testing.assert_allclose(h, [reference(v) for v in z], rtol=1e-13)
    step = 1e-6
    for order, values in ((1, h1), (2, h2)):
        up = _h_functions(z + step, 1.0 + z + step, np.log1p(z + step))[order - 1]
        down = _h_functions(z - step, 1.0 + z - step, np.log1p(z - step))[order - 1]
        np.testing.assert_allclose(values, (up - down) / (2 * step), rtol=1e-7, atol=1e-9)
    assert h[0] > 0.5 > h[-1] and h1[4] == pytest.approx(-1 / 3, rel=1e-6) and h2[3] == 0.5


# ------------------------------------------------------------------ PCMaternPrior
def central_difference(fun, theta, k, step=1e-5):
    plus, minus = theta.copy(), theta.copy()
    plus[k] += step
    minus[k] -= step
    return (fun(plus) - fun(minus)) / (2 * step)


def random_thetas(rng, count):
    return [np.array([rng.uniform(-1.0, 2.5), rng.uniform(-1.0, 1.0)]) for _ in range(count)]


def test_pc_matern_tail_probabilities():
    prior = PCMaternPrior(range0=2.0, range_alpha=0.05, sigma0=3.0, sigma_alpha=0.01)

    def density_log_range(t0):
        return math.exp(prior.log_density([t0, 0.0]) - prior.log_density([0.0, 0.0]))

    def density_log_sigma(t1):
        return math.exp(prior.log_density([0.0, t1]) - prior.log_density([0.0, 0.0]))

    # marginal densities on the internal scale; the other factor cancels in the ratio
    norm_range = scipy.integrate.quad(density_log_range, -20, 40, limit=200)[0]
    below = scipy.integrate.quad(density_log_range, -20, math.log(2.0), limit=200)[0]
    assert below / norm_range == pytest.approx(0.05, rel=1e-6)
    norm_sigma = scipy.integrate.quad(density_log_sigma, -40, 10, limit=200)[0]
    above = scipy.integrate.quad(density_log_sigma, math.log(3.0), 10, limit=200)[0]
    assert above / norm_sigma == pytest.approx(0.01, rel=1e-6)
    # normalised: the density factorises, so its integral over the internal scale is
    # norm_range * norm_sigma * pi(0, 0)
    joint = norm_range * norm_sigma * math.exp(prior.log_density([0.0, 0.0]))
    assert joint == pytest.approx(1.0, rel=1e-6)


def test_pc_matern_gradient_and_hessian_match_central_differences():
    prior = PCMaternPrior(1.5, 0.1, 0.7, 0.2)
    rng = np.random.default_rng(RNG_SEED)
    for theta in random_thetas(rng, 4):
        fd = [central_difference(prior.log_density, theta, k) for k in range(2)]
        np.testing.assert_allclose(prior.log_density_grad(theta), fd, rtol=1e-7)
        fd_hess = np.column_stack(
            [central_difference(prior.log_density_grad, theta, k) for k in range(2)]
        )
        np.testing.assert_allclose(prior.log_density_hess(theta), fd_hess, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "args",
    [(0.0, 0.5, 1.0, 0.5), (1.0, 1.0, 1.0, 0.5), (1.0, 0.5, -1.0, 0.5), (1.0, 0.5, 1.0, 0.0)]
    + [(np.nan, 0.5, 1.0, 0.5), (1.0, 0.5, 1.0, "a")],
)
def test_pc_matern_bad_arguments(args):
    with pytest.raises(InputError):
        PCMaternPrior(*args)


def test_pc_matern_bad_theta():
    with pytest.raises(InputError):
        PCMaternPrior(1.0, 0.5, 1.0, 0.5).log_density([1.0, np.nan])
