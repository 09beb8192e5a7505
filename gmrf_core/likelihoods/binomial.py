"""Binomial and Bernoulli observations with logit link."""

import numpy as np
from scipy.special import expit

from ..errors import InputError
from ._numerics import HALF_LOG_2PI, deviance, stirling_error
from .base import Likelihood

__all__ = ["Binomial", "Bernoulli"]


def _scaled_softplus(count, log_count, eta):
    """count · softplus(η) = count · log1p(e^η), from log count (−inf for a count of 0).

    For η < −36, softplus(η) = e^η to double precision and count · e^η = exp(log count + η)
    stays representable where e^η alone underflows (e.g. count 1e300, η = −800).
    """
    out = np.zeros(eta.shape)
    positive = np.isfinite(log_count)
    deep = positive & (eta < -36.0)
    out[deep] = np.exp(log_count[deep] + eta[deep])
    rest = positive & ~deep
    out[rest] = count[rest] * np.logaddexp(0.0, eta[rest])
    return out


def _count_times(count, log_count, probability, log_probability):
    """count · probability, from logs where the probability is subnormal or 0 (|η| ≳ 690)
    but the product is not (e.g. 1e300 trials at η = −800)."""
    out = count * probability
    tiny = (probability < _SMALLEST_NORMAL) & (count > 0)
    out[tiny] = np.exp(log_count[tiny] + log_probability[tiny])
    return out


_SMALLEST_NORMAL = np.finfo(float).tiny


class Binomial(Likelihood):
    """y_i | η_i ~ Binomial(N_i, p_i) with logit p_i = η_i.

    No hyperparameters. With softplus(η) = log(1 + e^η), computed as
    ``logaddexp(0, η)`` so that it never overflows:

        log p_i = log C(N_i, y_i) + y_i η_i − N_i softplus(η_i)
                = log C(N_i, y_i) − y_i softplus(−η_i) − (N_i − y_i) softplus(η_i)
        ∂/∂η    = y_i − N_i p_i = y_i (1 − p_i) − (N_i − y_i) p_i
        ∂²/∂η²  = −N_i p_i (1 − p_i)
        ∂³/∂η³  = −N_i p_i (1 − p_i)(1 − 2 p_i) = N_i p_i (1 − p_i) tanh(η_i / 2)

    p_i and 1 − p_i are evaluated as expit(η_i) and expit(−η_i), and 1 − 2p_i as
    −tanh(η_i/2), so every derivative is finite and accurate for any finite η_i.
    The log density is evaluated in Loader's (2000) form, for 0 < y_i < N_i

        log p_i = δ(N) − δ(y) − δ(N−y) − bd0(y, N p) − bd0(N−y, N (1−p))
                  − ½ log(2π y (N−y)/N),

    a sum of terms of one sign (δ the Stirling error, bd0 the deviance, with log p and
    log(1−p) as −softplus(∓η); see :mod:`gmrf_core.likelihoods._numerics`), and as
    −N softplus(−η) or −N softplus(η) for y = N or y = 0: it keeps full accuracy for
    any finite η and for trials up to the largest floats (the form with log C(N, y)
    from lnΓ loses lnΓ(N) · 1e-16 to cancellation, ~1 for N ~ 1e15).

    Parameters
    ----------
    y : array_like, shape (n,)
        Number of successes, integers 0 ≤ y_i ≤ N_i; NaN marks a missing one.
    trials : int or array_like of shape (n,)
        N_i, non-negative integers (a scalar is broadcast). May be NaN where y is missing.

    Raises
    ------
    InputError
        For negative, non-integer or infinite counts, trials that are negative,
        non-integer, non-finite or of the wrong shape, and y_i > N_i.
    """

    theta_names = ()

    def __init__(self, y, trials):
        super().__init__(y)
        self._check_counts("success counts")
        if trials is None:
            raise InputError("Binomial: trials is required (number of trials per observation).")
        self.trials, self._trials = self._per_observation(
            trials, "trials", default=0.0, integer=True, allow_zero=True
        )
        too_many = self.observed & (self._y > self._trials)
        if too_many.any():
            index = int(np.argmax(too_many))
            raise InputError(
                f"{self._name}: y must not exceed trials, got y = {self.y[index]!r} > "
                f"trials = {self.trials[index]!r} at index {index} "
                f"({int(too_many.sum())} such observation(s))."
            )
        with np.errstate(divide="ignore"):  # log 0 = −inf: a count of zero
            self._log_y_or_zero = np.log(self._y)
            self._log_failures_or_zero = np.log(self._trials - self._y)
        # 0 < y < N: the terms of Loader's form that depend on neither η nor θ
        self._interior = (self._y > 0) & (self._y < self._trials)
        successes = self._y[self._interior]
        trials = self._trials[self._interior]
        failures = trials - successes
        self._log_successes = np.log(successes)
        self._log_failures = np.log(failures)
        self._log_trials = np.log(trials)
        self._constant = (
            stirling_error(trials, self._log_trials)
            - stirling_error(successes, self._log_successes)
            - stirling_error(failures, self._log_failures)
            - HALF_LOG_2PI
            - 0.5 * (self._log_successes + self._log_failures - self._log_trials)
        )

    def _log_density_terms(self, eta, theta):
        log_p = -np.logaddexp(0.0, -eta)
        log_q = -np.logaddexp(0.0, eta)
        # y = 0 or y = N (one of the two terms vanishes): −y softplus(−η) − (N−y) softplus(η),
        # with N softplus(η) = exp(log N + η) where softplus(η) = e^η underflows
        out = -_scaled_softplus(self._y, self._log_y_or_zero, -eta)
        out -= _scaled_softplus(self._trials - self._y, self._log_failures_or_zero, eta)
        interior = self._interior
        if not interior.any():
            return out
        successes = self._y[interior]
        trials = self._trials[interior]
        failures = trials - successes
        eta_i = eta[interior]
        p = expit(eta_i)
        q = expit(-eta_i)
        # D = N p − y = (N − y) − N q, from the smaller of p, q (the other is near 1)
        excess = np.where(p <= 0.5, trials * p - successes, failures - trials * q)
        t_success = excess / successes
        t_failure = -excess / failures
        log_ratio_success = self._log_trials + log_p[interior] - self._log_successes
        log_ratio_failure = self._log_trials + log_q[interior] - self._log_failures
        out[interior] = (
            self._constant
            - deviance(successes, t_success, log_ratio_success.__getitem__, excess)
            - deviance(failures, t_failure, log_ratio_failure.__getitem__, -excess)
        )
        return out

    def _eta_derivatives(self, eta, theta):
        probability = expit(eta)
        complement = expit(-eta)
        log_p = -np.logaddexp(0.0, -eta)
        log_q = -np.logaddexp(0.0, eta)
        failures = self._trials - self._y
        log_trials = np.log(np.maximum(self._trials, 1.0))
        # N p q from the smaller of p, q (the other is ≈ 1)
        curvature = np.where(
            eta < 0.0,
            _count_times(self._trials, log_trials, probability, log_p) * complement,
            _count_times(self._trials, log_trials, complement, log_q) * probability,
        )
        return (
            # y (1 − p) − (N − y) p keeps full relative accuracy when p is near 0 or 1
            _count_times(self._y, self._log_y_or_zero, complement, log_q)
            - _count_times(failures, self._log_failures_or_zero, probability, log_p),
            -curvature,
            curvature * np.tanh(0.5 * eta),
        )

    def _mean(self, eta, theta):
        return self.trials * expit(eta)

    def _sample(self, eta, theta, rng):
        known = ~np.isnan(self.trials)
        out = np.full(self.n, np.nan)
        out[known] = rng.binomial(self.trials[known].astype(np.int64), expit(eta[known]))
        return out


class Bernoulli(Binomial):
    """y_i | η_i ~ Bernoulli(p_i) with logit p_i = η_i: a :class:`Binomial` with N_i = 1.

    log p_i = y_i η_i − softplus(η_i); derivatives as for :class:`Binomial` with N_i = 1.

    Parameters
    ----------
    y : array_like, shape (n,)
        Observations in {0, 1} (booleans accepted); NaN marks a missing one.

    Raises
    ------
    InputError
        If an observed y_i is not 0 or 1, or y is empty, not 1-D or infinite.
    """

    def __init__(self, y):
        y, observed = self._check_response(y)
        values = y[observed]
        bad = (values != 0.0) & (values != 1.0)
        if bad.any():
            index = int(np.flatnonzero(observed)[np.argmax(bad)])
            raise InputError(
                f"Bernoulli: y must be 0 or 1 (NaN for missing), got {y[index]!r} at index "
                f"{index} ({int(bad.sum())} bad value(s)); use Binomial for counts out of N."
            )
        super().__init__(y, trials=1)
