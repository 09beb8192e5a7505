"""Poisson counts with log link and an optional exposure (offset)."""

import numpy as np
from scipy.special import gammaln

from ..errors import InputError
from .base import Likelihood

__all__ = ["Poisson"]


class Poisson(Likelihood):
    """y_i | η_i ~ Poisson(μ_i) with μ_i = E_i exp(η_i) (log link, exposure E_i > 0).

    No hyperparameters. With μ_i = exp(log E_i + η_i):

        log p_i = y_i (log E_i + η_i) − μ_i − log y_i!
        ∂/∂η = y_i − μ_i,   ∂²/∂η² = ∂³/∂η³ = −μ_i.

    For η_i large enough that μ_i overflows (log E_i + η_i > ~709) the log density is
    −inf and the derivatives ±inf, their floating-point limits.

    Parameters
    ----------
    y : array_like, shape (n,)
        Non-negative integer counts; NaN marks a missing one.
    exposure : None, float or array_like of shape (n,), optional
        E_i > 0 (default 1): the mean is exposure times exp(η). May be NaN where y is
        missing.

    Raises
    ------
    InputError
        For negative, non-integer or infinite counts, and for an exposure of the wrong
        shape or not finite and positive.
    """

    theta_names = ()

    def __init__(self, y, exposure=None):
        super().__init__(y)
        self._check_counts()
        self.exposure, exposure_filled = self._per_observation(exposure, "exposure", default=1.0)
        self._log_exposure = np.log(exposure_filled)
        # terms that depend on neither η nor θ
        self._constant = self._y * self._log_exposure - gammaln(self._y + 1.0)

    def _rate(self, eta):
        return np.exp(self._log_exposure + eta)

    def _log_density_terms(self, eta, theta):
        return self._constant + self._y * eta - self._rate(eta)

    def _eta_derivatives(self, eta, theta):
        rate = self._rate(eta)
        return self._y - rate, -rate, -rate

    def _mean(self, eta, theta):
        return self.exposure * np.exp(eta)

    def _sample(self, eta, theta, rng):
        rate = self._mean(eta, theta)
        known = ~np.isnan(rate)
        out = np.full(self.n, np.nan)
        try:
            out[known] = rng.poisson(rate[known])
        except ValueError as exc:
            raise InputError(
                f"Poisson.sample: a mean of {rate[known].max():.3g} is too large to simulate."
            ) from exc
        return out
