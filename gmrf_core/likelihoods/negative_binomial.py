"""Negative binomial counts with log link, exposure and an unknown size (overdispersion)."""

import numpy as np
from scipy.special import expit

from ..errors import InputError
from ..priors import PCPrecision
from ._numerics import HALF_LOG_2PI, deviance, scaled_digamma_difference, stirling_error
from .base import Likelihood

__all__ = ["NegativeBinomial"]


def _log1p_over(u):
    """log1p(u)/u for 0 ≤ u ≤ 1 (1 at u = 0)."""
    out = np.ones_like(u)
    positive = u > 0
    out[positive] = np.log1p(u[positive]) / u[positive]
    return out


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

    Numerics (see :mod:`gmrf_core.likelihoods._numerics`): the form above subtracts
    numbers of size r log r for a large size (lnΓ(y+r) − lnΓ(r), r(b − L)), so it is
    evaluated in Loader's (2000) form instead (R's ``dnbinom_mu``), for y_i ≥ 1

        log p_i = δ(y+r) − δ(r) − δ(y) − bd0(r, r + r t_i) − bd0(y, y + y s_i)
                  − ½ log(2π y) − ½ log1p(y/r),
        t_i = (y − μ)/(r + μ),   s_i = (μ − y) p_i / y,   p_i = r/(r + μ) = 1 − q_i,

    and −r log1p(μ/r) for y_i = 0: a sum of terms of one sign that tends to the Poisson
    log density as r → ∞ (δ the Stirling error, bd0(x, x + x t) = x (t − log1p t) the
    deviance, r t and y s passed as (y − μ) p and its negative, so nothing of the size of
    r is formed). Likewise the θ-derivative is evaluated as

        ∂/∂θ = −bd0(r, r + r t_i) + r [ψ̃(y+r) − ψ̃(r)],   ψ̃(x) = ψ(x) − log x,

    both O(1/r) for a large size (the form above cancels terms of size r ψ(r)), and
    r q_i in the η-derivatives as μ_i p_i = exp(min(a_i, b)) / (1 + exp(−|a_i − b|)).
    Every quantity is
    accurate (to the conditioning of the data) and finite for any finite η and θ, the
    Poisson limit included; only where μ_i or r themselves overflow (a_i or θ above ~709)
    can the log density be −inf, its floating-point limit.

    Parameters
    ----------
    y : array_like, shape (n,)
        Non-negative integer counts; NaN marks a missing one.
    exposure : None, float or array_like of shape (n,), optional
        E_i > 0 (default 1). May be NaN where y is missing.
    prior : Prior, optional
        Prior on θ = log r on that scale (e.g. ``NormalPrior``). Default none.
    size0 : float, optional
        Starting value of the size r on its natural scale (default 1), like the models'
        ``rho0``/``phi0``: :attr:`theta0` is ``[log(size0)]``.

    Raises
    ------
    InputError
        For negative, non-integer or infinite counts, an exposure of the wrong shape or
        not finite and positive, a prior that is not a Prior (or is a PCPrecision,
        which is a prior on a log precision), or a size0 that is not a finite number > 0.
    """

    theta_names = ("log_size",)

    def __init__(self, y, exposure=None, prior=None, size0=1.0):
        super().__init__(y)
        self._check_counts()
        self.exposure, exposure_filled = self._per_observation(exposure, "exposure", default=1.0)
        self._log_exposure = np.log(exposure_filled)
        self._positive = self._y > 0
        # log y (−inf where y = 0: only used through exp and logaddexp) and δ(y) for y ≥ 1
        self._log_y = np.full(self.n, -np.inf)
        self._log_y[self._positive] = np.log(self._y[self._positive])
        self._stirling_y = stirling_error(self._y[self._positive], self._log_y[self._positive])
        self._y_max = float(self._y.max())
        if isinstance(prior, PCPrecision):
            raise InputError(
                "NegativeBinomial: PCPrecision is a prior on a Gaussian log precision, not on "
                "the log size; use e.g. NormalPrior(mean, sd) on log size."
            )
        self._set_prior(0, prior)
        self._set_log_theta0(0, size0, "size0")

    def _parts(self, eta, theta):
        """Shared pieces at (η, θ), all formed in logs so that neither μ nor r need be finite.

        With d = a − b and e = exp(−|d|) ≤ 1: p = r/(r+μ) and q = μ/(r+μ) are 1/(1+e) and
        e/(1+e) (by the sign of d), L = log(r+μ) = max(a, b) + log1p(e), and
        μ p = r q = exp(min(a, b))/(1+e) (not exp(a + b − L), which would carry the
        rounding of b).
        """
        log_mean = self._log_exposure + eta
        log_size = float(theta[0])
        size = np.exp(log_size)
        difference = log_mean - log_size
        e = np.exp(-np.abs(difference))
        inverse = 1.0 / (1.0 + e)
        softplus_e = np.log1p(e)
        above = difference > 0.0  # μ > r
        p = np.where(above, e * inverse, inverse)
        q = np.where(above, inverse, e * inverse)
        log_total = np.maximum(log_mean, log_size) + softplus_e
        mean_p = np.exp(np.minimum(log_mean, log_size)) * inverse
        return dict(
            log_mean=log_mean,
            log_size=log_size,
            size=size,
            difference=difference,
            e=e,
            softplus_e=softplus_e,
            log_total=log_total,
            p=p,
            q=q,
            mean_p=mean_p,
        )

    def _size_deviance(self, parts):
        """bd0(r, (y+r) p) = r h(t), t = (y − μ)/(r + μ), and (y − μ) p, elementwise."""
        log_size, log_total = parts["log_size"], parts["log_total"]
        excess = self._y * parts["p"] - parts["mean_p"]  # (y − μ) p = r t
        t = np.exp(self._log_y - log_total) - parts["q"]  # y/(r + μ) − q, 0 − q at y = 0

        def log_ratio(mask):  # log1p(t) = log((r + y)/(r + μ)) from logs
            return np.logaddexp(log_size, self._log_y[mask]) - log_total[mask]

        return deviance(parts["size"], t, log_ratio, excess), excess

    def _log_density_terms(self, eta, theta):
        parts = self._parts(eta, theta)
        size_term, excess = self._size_deviance(parts)
        log_mean, log_size, size = parts["log_mean"], parts["log_size"], parts["size"]
        difference, e, softplus_e = parts["difference"], parts["e"], parts["softplus_e"]
        # y = 0: −r log1p(μ/r) = −r softplus(d); as −μ log1p(u)/u (u = μ/r = e ≤ 1) where
        # μ < r, so that a huge size never gives inf · 0
        below = difference < 0.0
        out = np.empty(self.n)
        out[below] = -np.exp(log_mean[below]) * _log1p_over(e[below])
        out[~below] = -size * (difference[~below] + softplus_e[~below])
        positive = self._positive
        if not positive.any():
            return out
        y = self._y[positive]
        log_y = self._log_y[positive]
        log_mean_p, log_total_p = log_mean[positive], parts["log_total"][positive]

        def log_ratio(mask):  # log1p(s) = log((y + r) μ / ((r + μ) y)) from logs
            return (
                log_mean_p[mask]
                + np.logaddexp(log_size, log_y[mask])
                - log_total_p[mask]
                - log_y[mask]
            )

        # y h(s) with s = (μ − y) p / y and y s = −(y − μ) p
        count_term = deviance(y, -excess[positive] / y, log_ratio, -excess[positive])
        stirling_size = stirling_error(np.array([size]), np.array([log_size]))[0]
        inverse_size = np.exp(-log_size)
        if np.isfinite(self._y_max * inverse_size):  # log1p(y/r) without logaddexp
            log1p_y_over_r = np.log1p(y * inverse_size)
        else:
            log1p_y_over_r = np.logaddexp(0.0, log_y - log_size)
        out[positive] = (
            stirling_error(y + size)
            - stirling_size
            - self._stirling_y
            - size_term[positive]
            - count_term
            - HALF_LOG_2PI
            - 0.5 * log_y
            - 0.5 * log1p_y_over_r
        )
        return out

    def _eta_derivatives(self, eta, theta):
        parts = self._parts(eta, theta)
        p, q, mean_p = parts["p"], parts["q"], parts["mean_p"]
        y = self._y
        curvature = (mean_p + y * q) * p  # (r + y) q (1 − q)
        return (
            y * p - mean_p,  # y (1 − q) − r q
            -curvature,
            curvature * (q - p),  # (1 − 2q) = p − q, tanh((a − b)/2) = q − p
        )

    def _theta_derivatives(self, eta, theta):
        parts = self._parts(eta, theta)
        p, q, mean_p = parts["p"], parts["q"], parts["mean_p"]
        y = self._y
        size_term, excess = self._size_deviance(parts)
        g = -size_term + scaled_digamma_difference(y, parts["size"], parts["log_size"])
        d1 = excess
        # ∂/∂θ of d2 = −(μp)p − y p q, with ∂(μp)/∂θ = μ p q, ∂p/∂θ = p q, ∂q/∂θ = −p q
        g_eta2 = -2.0 * mean_p * p * q - y * p * q * (q - p)
        return g, q * d1, g_eta2

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
            if np.isinf(size):  # r = ∞ is the Poisson limit (numpy would form inf · 0)
                out[known] = rng.poisson(mean[known])
            else:
                out[known] = rng.negative_binomial(size, success)
        except ValueError as exc:
            raise InputError(
                f"NegativeBinomial.sample: cannot simulate with size {size:.3g} and means up to "
                f"{mean[known].max():.3g} ({exc})."
            ) from exc
        return out
