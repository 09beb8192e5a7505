"""Gaussian observations with identity link and an unknown noise precision."""

import numpy as np

from .base import Likelihood

__all__ = ["Gaussian"]

_LOG_2PI = float(np.log(2.0 * np.pi))


class Gaussian(Likelihood):
    """y_i | η_i, θ ~ N(η_i, 1 / (τ s_i)) with θ = log τ the log noise precision.

    With r_i = y_i − η_i and precision π_i = τ s_i = exp(θ) s_i:

        log p_i          = ½ log π_i − ½ log 2π − ½ π_i r_i²
        ∂/∂η, ∂²/∂η², ∂³/∂η³   = π_i r_i,  −π_i,  0
        ∂/∂θ             = ½ − ½ π_i r_i²
        ∂²/∂η∂θ, ∂³/∂η²∂θ      = π_i r_i,  −π_i

    (the θ-derivatives follow from ∂π_i/∂θ = π_i).

    Parameters
    ----------
    y : array_like, shape (n,)
        Observations; NaN marks a missing one.
    scale : None, float or array_like of shape (n,), optional
        Known per-observation precision multipliers s_i > 0 (default 1), e.g. the
        number of replicates averaged into y_i. May be NaN where y is missing.
    prior : Prior, optional
        Prior on θ = log τ, e.g. ``PCPrecision(u, alpha)`` (P(σ > u) = α). Default none.
    log_noise_precision : float, optional
        Default value θ0 of the log noise precision (default 0, i.e. τ = 1).

    Raises
    ------
    InputError
        For empty, non-1-D or infinite y; a scale of the wrong shape or not finite and
        positive; a prior that is not a Prior; a non-finite default.
    """

    theta_names = ("log_noise_precision",)

    def __init__(self, y, scale=None, prior=None, log_noise_precision=0.0):
        super().__init__(y)
        self.scale, self._scale = self._per_observation(scale, "scale", default=1.0)
        self._log_scale = np.log(self._scale)
        self._set_prior(0, prior)
        self._set_theta0(0, log_noise_precision, "log_noise_precision")

    def _log_density_terms(self, eta, theta):
        precision = np.exp(theta[0]) * self._scale
        residual = self._y - eta
        return 0.5 * (theta[0] + self._log_scale - _LOG_2PI) - 0.5 * precision * residual**2

    def _eta_derivatives(self, eta, theta):
        precision = np.exp(theta[0]) * self._scale
        return precision * (self._y - eta), -precision, np.zeros(self.n)

    def _theta_derivatives(self, eta, theta):
        precision = np.exp(theta[0]) * self._scale
        residual = self._y - eta
        return 0.5 - 0.5 * precision * residual**2, precision * residual, -precision

    def _mean(self, eta, theta):
        return eta.copy()

    def _sample(self, eta, theta, rng):
        sd = 1.0 / np.sqrt(np.exp(theta[0]) * self.scale)
        return eta + sd * rng.standard_normal(self.n)
