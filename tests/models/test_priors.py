"""Tests of the hyperparameter priors of the latent models (PCBYM2Phi; re-exports)."""

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg as sla

from gmrf_core import likelihoods
from gmrf_core.errors import InputError
from gmrf_core.models import BYM2, NormalPrior, PCBYM2Phi, PCPrecision


def scaled_structure(grid):
    return BYM2(grid(3, 4)).structure.toarray()


@pytest.fixture
def bound(grid):
    structure = scaled_structure(grid)
    return PCBYM2Phi(0.5, 2 / 3, sla.eigvalsh(structure), 1), structure


def test_shared_prior_classes():
    assert PCPrecision is likelihoods.PCPrecision
    assert NormalPrior is likelihoods.NormalPrior


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

    from gmrf_core.models.priors import _h_functions

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
