"""Poisson counts with log link and an optional exposure (offset)."""

import numpy as np

from ..errors import InputError
from ..kernels import likelihood as _klik
from ._numerics import HALF_LOG_2PI, deviance, stirling_error
from .base import Likelihood

__all__ = ["Poisson"]


class Poisson(Likelihood):
    """y_i | η_i ~ Poisson(μ_i) with μ_i = E_i exp(η_i) (log link, exposure E_i > 0).

    No hyperparameters. With a_i = log E_i + η_i and μ_i = exp(a_i):

        log p_i = y_i a_i − μ_i − log y_i!
                = −δ(y_i) − bd0(y_i, μ_i) − ½ log(2π y_i)     (y_i ≥ 1),   −μ_i   (y_i = 0)
        ∂/∂η = y_i − μ_i,   ∂²/∂η² = ∂³/∂η³ = −μ_i.

    The second form (Loader 2000; δ the Stirling error, bd0(y, μ) = y h(μ/y − 1) ≥ 0 with
    μ/y − 1 = expm1(a_i − log y_i), see :mod:`gmrf_core.likelihoods._numerics`) is the one
    evaluated (the one-pass sum of :meth:`log_density` takes bd0 = y (eᵘ − 1 − u) from
    u = a_i − log y_i by its Taylor series where |u| < 0.5, see
    :mod:`gmrf_core.kernels.likelihood`): a sum of terms of one sign, so the log density
    keeps full accuracy for counts up to the largest floats (the first form loses
    y log μ · 1e-16 to cancellation, ~1 for y ~ 1e15). For η_i large enough that μ_i
    overflows (a_i > ~709) the log density is −inf and the derivatives ±inf, their
    floating-point limits.

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
        # terms that depend on neither η nor θ: −δ(y) − ½ log(2π y) for y ≥ 1
        self._positive = self._y > 0
        y = self._y[self._positive]
        self._log_y = np.log(y)
        self._constant = -stirling_error(y, self._log_y) - HALF_LOG_2PI - 0.5 * self._log_y
        # the same per observation (0 where y = 0 or missing), for the one-pass sum
        self._log_y_all = np.zeros(self.n)
        self._log_y_all[self._positive] = self._log_y
        self._constant_all = np.zeros(self.n)
        self._constant_all[self._positive] = self._constant

    def _rate(self, eta):
        return np.exp(self._log_exposure + eta)

    def _log_density_terms(self, eta, theta):
        log_rate = self._log_exposure + eta
        out = -np.exp(log_rate)  # y = 0: −μ
        positive = self._positive
        y = self._y[positive]
        log_ratio = log_rate[positive] - self._log_y  # log(μ/y) = log1p(t)
        t = np.expm1(log_ratio)
        out[positive] = self._constant - deviance(y, t, log_ratio.__getitem__, y * t)
        return out

    def _log_density_sum(self, eta, theta):
        """The sum of :meth:`_log_density_terms` over the observed in one pass (the same
        branches, compensated summation; see :mod:`gmrf_core.kernels.likelihood`)."""
        return _klik._poisson_log_density(
            eta, self._log_exposure, self._y, self._log_y_all, self._constant_all, self.observed
        )

    def _observed_eta_derivatives(self, eta, theta):
        """(y − μ, −μ, −μ) where observed, 0 elsewhere, in one pass (three new arrays)."""
        out = np.empty((3, self.n))
        _klik._poisson_eta_derivatives(
            eta, self._log_exposure, self._y, self.observed, out[0], out[1], out[2]
        )
        return out[0], out[1], out[2]

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
