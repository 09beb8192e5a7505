"""Tests of the stationary AR(1) model."""

import numpy as np
import pytest

from gmrf_core.errors import InputError
from gmrf_core.models import AR1, NormalPrior, PCPrecision


def test_covariance_is_stationary_ar1():
    """Q⁻¹ = ρ^|i-j| / τ (marginal variance 1/τ, correlation ρ^lag)."""
    n, tau, rho = 7, 2.5, -0.6
    model = AR1(n)
    theta = [np.log(tau), np.arctanh(rho)]
    covariance = np.linalg.inv(model.precision(theta).toarray())
    lags = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    np.testing.assert_allclose(covariance, rho**lags / tau, atol=1e-12)
    assert model.to_natural(theta) == pytest.approx({"tau": tau, "rho": rho})


def test_textbook_tridiagonal():
    n, tau, rho = 5, 3.0, 0.4
    q = AR1(n).precision([np.log(tau), np.arctanh(rho)]).toarray()
    expected = np.diag(np.r_[1.0, np.full(n - 2, 1 + rho**2), 1.0])
    expected -= rho * (np.eye(n, k=1) + np.eye(n, k=-1))
    np.testing.assert_allclose(q, tau / (1 - rho**2) * expected, rtol=1e-13)


def test_gradients_pattern_logdet(check, rng):
    model = AR1(9)
    for theta in ([0.2, 0.7], [-1.0, -2.5], [0.5, 0.0]):
        check.precision_grad(model, theta)
        q = model.precision(theta).toarray()
        assert model.logdet(theta) == pytest.approx(np.linalg.slogdet(q)[1], rel=1e-12)
        check.scalar_grad(model.logdet, model.logdet_grad, theta)
        assert np.all(np.linalg.eigvalsh(q) > 0)
    check.fixed_pattern(model, rng)
    # explicit zeros kept at ρ = 0: the off-diagonal stays in the pattern
    q0 = model.precision([0.0, 0.0])
    assert q0.nnz == 9 + 2 * 8
    np.testing.assert_allclose(q0.toarray(), np.eye(9))


def test_single_point_and_large_rho():
    assert AR1(1).precision([np.log(2.0), 1.3]).toarray() == pytest.approx(np.array([[2.0]]))
    assert AR1(1).logdet([np.log(2.0), 1.3]) == pytest.approx(np.log(2.0))
    model = AR1(4)
    theta = [0.0, 8.0]  # ρ = tanh 8 ≈ 1 - 2.3e-7, the edge of the accepted range
    q = model.precision(theta)
    assert np.all(np.isfinite(q.data))
    assert model.logdet(theta) == pytest.approx(2 * 3 * np.log(np.cosh(8.0)), rel=1e-12)
    # beyond it (|ρ| ≈ 1 - 2e-13 at 15, where the stored matrix's log-determinant is 2e-4
    # off) every method refuses, naming the range
    for u in (15.0, -8.5, 400.0):
        for method in (model.precision, model.precision_grad, model.logdet, model.to_natural):
            with pytest.raises(InputError, match=r"atanh_rho .* accepted range"):
                method([0.0, u])


def exact_ar1_logdet(n, log_tau, u):
    """log det of the AR(1) precision built entry by entry in 60-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    if n == 1:  # x_1 ~ N(0, 1/τ): the tridiagonal form starts at n = 2
        return log_tau
    with mpmath.workdps(60):
        tau, rho = mpmath.exp(mpmath.mpf(log_tau)), mpmath.tanh(mpmath.mpf(u))
        q = mpmath.zeros(n, n)
        for i in range(n):
            q[i, i] = 1 if i in (0, n - 1) else 1 + rho**2
            if i + 1 < n:
                q[i, i + 1] = q[i + 1, i] = -rho
        return float(mpmath.log(mpmath.det(q * tau / (1 - rho**2))))


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_logdet_against_mpmath_over_the_accepted_range(n):
    model = AR1(n)
    for log_tau in (-30.0, 0.0, 4.5):
        for u in np.r_[np.linspace(-8.0, 8.0, 17), [-1e-9, 7.999, 0.3]]:
            expected = exact_ar1_logdet(n, log_tau, u)
            got = model.logdet([log_tau, u])
            assert got == pytest.approx(expected, rel=1e-13, abs=1e-12), (log_tau, u)


def test_stored_matrix_agrees_with_the_exact_logdet_at_the_edge():
    """At |atanh ρ| = 8 the factorization of the stored matrix is still accurate (1e-7)."""
    from gmrf_core import cholesky

    model = AR1(40)
    for u in (-8.0, 6.0, 8.0):
        theta = [0.7, u]
        factor_logdet = cholesky(model.precision(theta)).logdet()
        assert factor_logdet == pytest.approx(exact_ar1_logdet(40, 0.7, u), abs=1e-7)


def test_priors_and_defaults(check):
    model = AR1(5, prior={"log_tau": PCPrecision(1, 0.01), "atanh_rho": NormalPrior(0, 1)})
    check.scalar_grad(model.log_prior, model.log_prior_grad, [0.3, -0.2])
    assert model.to_natural(model.theta0)["rho"] == pytest.approx(0.5)
    assert AR1(5, rho0=-0.3).to_natural(AR1(5, rho0=-0.3).theta0)["rho"] == pytest.approx(-0.3)
    start = AR1(5, tau0=4.0, rho0=0.9)
    assert start.to_natural(start.theta0) == pytest.approx({"tau": 4.0, "rho": 0.9})
    with pytest.raises(InputError, match="log precision"):
        AR1(5, prior={"atanh_rho": PCPrecision(1, 0.01)})
    with pytest.raises(InputError, match="dict"):
        AR1(5, prior=PCPrecision(1, 0.01))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n=0),
        dict(n=-2),
        dict(n=3, rho0=1.0),
        dict(n=3, rho0=-1.5),
        dict(n=3, rho0=0.99999999),
        dict(n=3, tau0=0.0),
        dict(n=3, tau0=np.inf),
    ],
)
def test_bad_input(kwargs):
    with pytest.raises(InputError):
        AR1(**kwargs)
    with pytest.raises(InputError):
        AR1(3).precision([0.0])
