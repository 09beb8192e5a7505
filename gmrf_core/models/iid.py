"""Independent, identically distributed Gaussian effects."""

import math

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..validation import check_count, check_positive
from ._structure import LinearPrecision, check_finite_matrix, checked_exp
from .base import LatentModel

__all__ = ["IID"]


class IID(LatentModel):
    """x_i iid N(μ, 1/τ), i = 1..n: Q = τ I.

    Hyperparameters (internal scale):

    - ``log_tau`` = log τ (precision);
    - ``mu`` = μ (only with ``mean_param=True``): the common mean, unconstrained, used
      as is (as in the Poisson example of GaussianMarkovRandomFields.jl, n = 50,
      τ = 4, μ = 5, where the mean is a hyperparameter of the prior).

    ``to_natural`` gives ``{"tau": exp(log_tau)}`` (and ``"mu"``).
    log|Q| = n log τ analytically.

    Parameters
    ----------
    n : int
        Number of effects, n >= 1.
    mean_param : bool
        Whether the common mean μ is a hyperparameter (default False: mean 0).
    prior : None, Prior, or dict, optional
        Priors on the hyperparameters (a single Prior applies to ``log_tau`` when it
        is the only one), e.g. ``PCPrecision(1.0, 0.01)``; ``mu`` can take a
        ``NormalPrior``.
    tau0 : float
        Starting precision τ for :attr:`theta0` (natural scale, default 1).
    mu0 : float
        Starting mean μ for :attr:`theta0` (default 0; only with ``mean_param``).

    Raises
    ------
    InputError
        n not a positive integer; tau0 not a finite number > 0; mu0 not finite, or
        given without ``mean_param``; bad prior.
    """

    def __init__(self, n, mean_param=False, prior=None, tau0=1.0, mu0=None):
        self.n = check_count(n, "n", "IID", 1)
        self.has_mean = bool(mean_param)
        self.theta_names = ("log_tau", "mu") if self.has_mean else ("log_tau",)
        start = [math.log(check_positive(tau0, "tau0", "IID"))]
        if mu0 is not None and not self.has_mean:
            raise InputError(
                "IID: mu0 is the start of the mean hyperparameter; pass mean_param=True."
            )
        if self.has_mean:
            mu0 = 0.0 if mu0 is None else float(mu0)
            if not math.isfinite(mu0):
                raise InputError(f"IID: mu0 must be a finite number, got {mu0}.")
            start.append(mu0)
        self.theta0 = np.array(start)
        self._linear = LinearPrecision([sp.identity(self.n, format="csc")], self.n)
        self._set_priors(prior)

    def precision(self, theta):
        """Q = τ I (CSC, diagonal pattern)."""
        theta = self.check_theta(theta)
        tau = checked_exp(theta[0], "IID", "log_tau")
        return check_finite_matrix(self._linear.matrix([tau]), "IID")

    def precision_grad(self, theta):
        """dQ/dlog τ = τ I, and dQ/dμ = 0 (on the same pattern)."""
        theta = self.check_theta(theta)
        jacobian = np.zeros((1, theta.size))
        jacobian[0, 0] = checked_exp(theta[0], "IID", "log_tau")
        return self._linear.matrices(jacobian)

    def mean(self, theta):
        """μ 1 (zeros without ``mean_param``)."""
        theta = self.check_theta(theta)
        return np.full(self.n, theta[1] if self.has_mean else 0.0)

    def mean_grad(self, theta):
        """dμ/dθ: a row of ones for ``mu``, zeros for ``log_tau``; shape (p, n)."""
        theta = self.check_theta(theta)
        grad = np.zeros((theta.size, self.n))
        if self.has_mean:
            grad[1] = 1.0
        return grad

    def logdet(self, theta):
        """log|Q| = n log τ."""
        theta = self.check_theta(theta)
        return self.n * float(theta[0])

    def logdet_grad(self, theta):
        """(n, 0)."""
        theta = self.check_theta(theta)
        grad = np.zeros(theta.size)
        grad[0] = self.n
        return grad

    def to_natural(self, theta):
        """{"tau": exp(log_tau)} (and {"mu": mu})."""
        theta = self.check_theta(theta)
        natural = {"tau": checked_exp(theta[0], "IID", "log_tau")}
        if self.has_mean:
            natural["mu"] = float(theta[1])
        return natural
