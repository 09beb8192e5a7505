"""Stationary first-order autoregressive process."""

import math

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..validation import check_count, check_positive
from ._structure import LinearPrecision, check_finite_matrix, checked_exp
from .base import LatentModel

__all__ = ["AR1"]

# Largest |atanh ρ| accepted. The precision's entries are of order τ/(1-ρ²) ≈ τ e^{2|u|}/4
# while its last Cholesky pivot is τ, so a relative rounding ε of the entries costs about
# ε e^{2|u|}/4 in log|Q| as the factorization sees it: 5e-10 at |u| = 8 (ρ = 1 - 2.3e-7),
# but 2e-4 at |u| = 15 and a matrix that is no longer positive definite at |u| = 20.
ATANH_RHO_LIMIT = 8.0


class AR1(LatentModel):
    """Stationary AR(1): x_t = ρ x_{t-1} + ε_t, with marginal variance 1/τ.

    The precision is tridiagonal (Rue & Held 2005, Section 1.2, the AR(1) example,
    scaled to marginal precision τ):

        Q = τ/(1-ρ²) · [[1, -ρ], [-ρ, 1+ρ², -ρ], ..., [-ρ, 1]],

    i.e. innovation precision τ/(1-ρ²) and x_1 ~ N(0, 1/τ).

    Hyperparameters (internal scale): ``log_tau`` = log τ and ``atanh_rho`` = atanh ρ
    (ρ = tanh θ₂ ∈ (-1, 1)). With u = θ₂ the entries are evaluated without
    cancellation as τ cosh²u (ends), τ cosh 2u (interior diagonal) and
    -τ sinh(2u)/2 (off-diagonal). ``to_natural`` gives ``{"tau": τ, "rho": ρ}``.

    log|Q| = n log τ - (n-1) log(1-ρ²) = n θ₁ + 2(n-1) log cosh θ₂ (the determinant of
    the Kac–Murdock–Szegő correlation matrix is (1-ρ²)^(n-1)), with
    log cosh u = |u| + log1p(e^{-2|u|}) - log 2 (no overflow, no cancellation).

    Accepted range: |atanh ρ| <= 8 (|ρ| <= 1 - 2.3·10⁻⁷). Closer to a unit root the
    precision matrix itself, with entries of order τ/(1-ρ²) and a last pivot τ, cannot
    be stored accurately enough in double precision for any factorization of it to
    agree with the exact log-determinant (2·10⁻⁴ off at |atanh ρ| = 15); such
    hyperparameters raise InputError (use RW1 for a near-unit-root series).

    Parameters
    ----------
    n : int
        Length of the series, n >= 1 (n = 1: Q = τ).
    prior : None or dict, optional
        Priors by hyperparameter name, e.g. ``{"log_tau": PCPrecision(1.0, 0.01),
        "atanh_rho": NormalPrior(0.0, 1.0)}``.
    tau0 : float
        Starting marginal precision τ for :attr:`theta0` (natural scale, default 1).
    rho0 : float
        Starting correlation ρ for :attr:`theta0` (natural scale, default 0.5).

    Raises
    ------
    InputError
        n not a positive integer; tau0 not a finite number > 0; rho0 outside the
        accepted range (|atanh ρ| <= 8); bad prior.
    """

    def __init__(self, n, prior=None, rho0=0.5, tau0=1.0):
        self.n = check_count(n, "n", "AR1", 1)
        self.theta_names = ("log_tau", "atanh_rho")
        tau0 = check_positive(tau0, "tau0", "AR1")
        rho0 = float(rho0)
        if not -1.0 < rho0 < 1.0 or abs(math.atanh(rho0)) > ATANH_RHO_LIMIT:
            raise InputError(
                f"AR1: rho0 must lie in (-1, 1) with |atanh(rho0)| <= {ATANH_RHO_LIMIT:g}, "
                f"got {rho0}."
            )
        self.theta0 = np.array([math.log(tau0), math.atanh(rho0)])
        n = self.n
        ends = np.zeros(n)
        ends[[0, n - 1]] = 1.0
        interior = 1.0 - ends
        off = np.ones(n - 1)
        self._linear = LinearPrecision(
            [sp.diags(ends), sp.diags(interior), sp.diags([off, off], [-1, 1], shape=(n, n))], n
        )
        self._set_priors(prior)

    def _tau_u(self, theta):
        theta = self.check_theta(theta)
        tau = checked_exp(theta[0], "AR1", "log_tau")
        u = float(theta[1])
        if abs(u) > ATANH_RHO_LIMIT:
            raise InputError(
                f"AR1: atanh_rho = {u} is outside the accepted range |atanh_rho| <= "
                f"{ATANH_RHO_LIMIT:g} (|rho| <= {math.tanh(ATANH_RHO_LIMIT):.8f}): closer to a "
                "unit root the precision matrix, with entries of order 1/(1 - rho^2), cannot be "
                "stored accurately in double precision (its determinant loses digits in "
                "proportion); use RW1 for a near-unit-root series."
            )
        return tau, u

    def _coefficients(self, tau, u):
        if self.n == 1:
            return np.array([tau, 0.0, 0.0])
        return tau * np.array([math.cosh(u) ** 2, math.cosh(2 * u), -0.5 * math.sinh(2 * u)])

    def precision(self, theta):
        """Q(θ), tridiagonal CSC."""
        tau, u = self._tau_u(theta)
        return check_finite_matrix(self._linear.matrix(self._coefficients(tau, u)), "AR1")

    def precision_grad(self, theta):
        """[dQ/dlog τ, dQ/datanh ρ] on the pattern of Q."""
        tau, u = self._tau_u(theta)
        jacobian = np.zeros((3, 2))
        jacobian[:, 0] = self._coefficients(tau, u)
        if self.n > 1:
            jacobian[:, 1] = tau * np.array(
                [math.sinh(2 * u), 2 * math.sinh(2 * u), -math.cosh(2 * u)]
            )
        return self._linear.matrices(jacobian)

    def logdet(self, theta):
        """log|Q| = n θ₁ + 2(n-1) log cosh θ₂."""
        theta = self.check_theta(theta)
        self._tau_u(theta)
        log_tau, u = float(theta[0]), float(theta[1])
        log_cosh = abs(u) + math.log1p(math.exp(-2.0 * abs(u))) - math.log(2.0)
        return self.n * log_tau + 2.0 * (self.n - 1) * log_cosh

    def logdet_grad(self, theta):
        """(n, 2(n-1) tanh θ₂)."""
        _, u = self._tau_u(theta)
        return np.array([float(self.n), 2.0 * (self.n - 1) * math.tanh(u)])

    def to_natural(self, theta):
        """{"tau": exp θ₁, "rho": tanh θ₂}."""
        tau, u = self._tau_u(theta)
        return {"tau": tau, "rho": math.tanh(u)}
