"""Gaussian observations with identity link and an unknown noise precision."""

import numpy as np

from ..errors import InputError
from .base import Likelihood

__all__ = ["Gaussian"]

_LOG_2PI = float(np.log(2.0 * np.pi))
# |log π| below which π = e^(log π) is a normal float (log of the smallest normal: −708.4)
_LOG_NORMAL_RANGE = 708.0


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
    precision0 : float, optional
        Starting value of the noise precision τ on its natural scale (default 1), like
        the models' ``rho0``/``phi0``: :attr:`theta0` is ``[log(precision0)]``.

    Raises
    ------
    InputError
        For empty, non-1-D or infinite y; a scale of the wrong shape or not finite and
        positive; a prior that is not a Prior; a precision0 that is not a finite number > 0.
    """

    theta_names = ("log_noise_precision",)

    def __init__(self, y, scale=None, prior=None, precision0=1.0):
        super().__init__(y)
        self.scale, self._scale = self._per_observation(scale, "scale", default=1.0)
        self._log_scale = np.log(self._scale)
        self._set_prior(0, prior)
        self._set_log_theta0(0, precision0, "precision0")

    def _parts(self, eta, theta):
        """π_i, π_i r_i and π_i r_i², each without an intermediate inf or 0 (r_i = y_i − η_i).

        Where π_i is a normal float, (π_i r_i) r_i overflows only if the result does; where
        it is not (|log π_i| beyond ~708), π_i r_i and π_i r_i² are formed in logs, so
        that e.g. θ = 800 with a residual of 1e-300 gives the finite value it has.
        """
        log_precision = theta[0] + self._log_scale
        residual = self._y - eta
        in_range = np.abs(log_precision) < _LOG_NORMAL_RANGE
        precision = np.exp(log_precision)
        weighted = np.where(in_range, precision, 0.0) * residual
        quadratic = weighted * residual
        # π r = π r² = 0 at a zero residual, even where π overflows (no inf · 0)
        outside = ~in_range & (residual != 0.0)
        if outside.any():
            log_residual = np.log(np.abs(residual[outside]))
            log_pi = log_precision[outside]
            weighted[outside] = np.sign(residual[outside]) * np.exp(log_pi + log_residual)
            quadratic[outside] = np.exp(log_pi + 2.0 * log_residual)
        return log_precision, precision, weighted, quadratic

    def _log_density_terms(self, eta, theta):
        log_precision, _, _, quadratic = self._parts(eta, theta)
        return 0.5 * (log_precision - _LOG_2PI) - 0.5 * quadratic

    def _eta_derivatives(self, eta, theta):
        _, precision, weighted, _ = self._parts(eta, theta)
        return weighted, -precision, np.zeros(self.n)

    def _theta_derivatives(self, eta, theta):
        _, precision, weighted, quadratic = self._parts(eta, theta)
        return 0.5 - 0.5 * quadratic, weighted, -precision

    def _mean(self, eta, theta):
        return eta.copy()

    def _sample(self, eta, theta, rng):
        # σ_i = exp(−θ/2) / √s_i: no 1/0 at a log precision below ~−709
        sd = np.exp(-0.5 * theta[0]) / np.sqrt(self.scale)
        if np.any(np.isinf(sd)):
            raise InputError(
                f"Gaussian.sample: log_noise_precision {theta[0]:g} gives an infinite noise "
                "standard deviation; nothing finite can be simulated."
            )
        return eta + sd * rng.standard_normal(self.n)
