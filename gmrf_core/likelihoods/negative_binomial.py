"""Negative binomial counts with log link, exposure and an unknown size (overdispersion)."""

import numpy as np
from scipy.special import digamma, expit, gammaln

from ..errors import InputError
from ..priors import PCPrecision
from .base import Likelihood

__all__ = ["NegativeBinomial"]


class NegativeBinomial(Likelihood):
    """y_i | η_i, θ ~ NegBin(mean μ_i, size r) with μ_i = E_i exp(η_i), θ = log r.

    The variance is μ_i + μ_i²/r (r → ∞ is the Poisson limit). This is scipy's
    ``nbinom(n=r, p=r/(r+μ))`` and R's ``dnbinom(size=r, mu=μ)``.

    With a_i = log E_i + η_i = log μ_i, b = θ = log r, L_i = log(r + μ_i) =
    logaddexp(a_i, b), q_i = μ_i/(r + μ_i) = expit(a_i − b) and 1 − q_i = expit(b − a_i):

        log p_i = lnΓ(y_i + r) − lnΓ(r) − ln y_i! + r (b − L_i) + y_i (a_i − L_i)

    In η (∂q/∂η = q(1 − q)):

        ∂/∂η    = y_i (1 − q_i) − r q_i                      (= r (y_i − μ_i)/(r + μ_i))
        ∂²/∂η²  = −(r + y_i) q_i (1 − q_i)
        ∂³/∂η³  = −(r + y_i) q_i (1 − q_i)(1 − 2q_i) = (r + y_i) q_i (1 − q_i) tanh((a_i − b)/2)

    In θ = log r (∂r/∂θ = r, ∂L/∂θ = 1 − q, ∂q/∂θ = −q(1 − q)):

        ∂/∂θ       = r [ψ(y_i + r) − ψ(r) + (b − L_i) + q_i] − y_i (1 − q_i)
        ∂²/∂η∂θ    = q_i ∂/∂η log p_i
        ∂³/∂η²∂θ   = −r q_i (1 − q_i) − ∂³/∂η³ log p_i

    Everything is written with logaddexp/expit/tanh of a_i − b, so it stays finite
    for any finite η (no exp(η) is formed except in :meth:`mean`).

    Parameters
    ----------
    y : array_like, shape (n,)
        Non-negative integer counts; NaN marks a missing one.
    exposure : None, float or array_like of shape (n,), optional
        E_i > 0 (default 1). May be NaN where y is missing.
    prior : Prior, optional
        Prior on θ = log r on that scale (e.g. ``NormalPrior``). Default none.
    log_size : float, optional
        Default value θ0 of the log size (default 0, i.e. r = 1).

    Raises
    ------
    InputError
        For negative, non-integer or infinite counts, an exposure of the wrong shape or
        not finite and positive, a prior that is not a Prior (or is a PCPrecision,
        which is a prior on a log precision), or a non-finite default.
    """

    theta_names = ("log_size",)

    def __init__(self, y, exposure=None, prior=None, log_size=0.0):
        super().__init__(y)
        self._check_counts()
        self.exposure, exposure_filled = self._per_observation(exposure, "exposure", default=1.0)
        self._log_exposure = np.log(exposure_filled)
        self._log_factorial = gammaln(self._y + 1.0)
        if isinstance(prior, PCPrecision):
            raise InputError(
                "NegativeBinomial: PCPrecision is a prior on a Gaussian log precision, not on "
                "the log size; use e.g. NormalPrior(mean, sd) on log size."
            )
        self._set_prior(0, prior)
        self._set_theta0(0, log_size, "log_size")

    def _parts(self, eta, theta):
        log_mean = self._log_exposure + eta
        log_size = theta[0]
        difference = log_mean - log_size
        return log_mean, log_size, np.exp(log_size), expit(difference), expit(-difference)

    def _log_density_terms(self, eta, theta):
        log_mean, log_size, size, _, _ = self._parts(eta, theta)
        log_total = np.logaddexp(log_mean, log_size)
        y = self._y
        return (
            gammaln(y + size)
            - gammaln(size)
            - self._log_factorial
            + size * (log_size - log_total)
            + y * (log_mean - log_total)
        )

    def _eta_derivatives(self, eta, theta):
        log_mean, log_size, size, q, one_minus_q = self._parts(eta, theta)
        y = self._y
        curvature = (size + y) * q * one_minus_q
        return (
            y * one_minus_q - size * q,
            -curvature,
            curvature * np.tanh(0.5 * (log_mean - log_size)),
        )

    def _theta_derivatives(self, eta, theta):
        log_mean, log_size, size, q, one_minus_q = self._parts(eta, theta)
        y = self._y
        log_total = np.logaddexp(log_mean, log_size)
        d1 = y * one_minus_q - size * q
        d3 = (size + y) * q * one_minus_q * np.tanh(0.5 * (log_mean - log_size))
        g = (
            size * (digamma(y + size) - digamma(size) + (log_size - log_total) + q)
            - y * one_minus_q
        )
        return g, q * d1, -size * q * one_minus_q - d3

    def _mean(self, eta, theta):
        return self.exposure * np.exp(eta)

    def _sample(self, eta, theta, rng):
        mean = self._mean(eta, theta)
        known = ~np.isnan(mean)
        size = float(np.exp(theta[0]))
        # numpy counts failures before `size` successes of probability r/(r+μ): mean μ
        success = expit(theta[0] - (self._log_exposure[known] + eta[known]))
        out = np.full(self.n, np.nan)
        try:
            out[known] = rng.negative_binomial(size, success)
        except ValueError as exc:
            raise InputError(
                f"NegativeBinomial.sample: cannot simulate with size {size:.3g} and means up to "
                f"{mean[known].max():.3g} ({exc})."
            ) from exc
        return out
