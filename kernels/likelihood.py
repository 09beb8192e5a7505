"""One-pass sums of count log densities (the Loader forms of
:mod:`gmrf_core.likelihoods._numerics`), evaluated per observation without temporaries.

The vectorised forms build a dozen arrays of length n per call (rates, ratios, masks of
the deviance's branches) and are called several times per Newton step; these kernels
evaluate the same branches, in the same arithmetic, one observation at a time and sum
with Neumaier's compensated summation (Neumaier 1974), whose error does not grow with n
as a left-to-right sum's does.
"""

import numpy as np

from ._jit import jit

_u = np.uintp  # unsigned subscripts: no wraparound checks in the hot loops

# the constants of gmrf_core.likelihoods._numerics.deviance (kept equal; a test compares)
SMALL_T = 0.1
SERIES_TERMS = 8
FROM_LOGS_BELOW = -0.9
_MAX = np.finfo(np.float64).max


@jit
def _h_series_over_t2(t):
    """h(t)/t² for |t| < 0.1 from v = t/(2+t): (1−v)/2 − (1−v)² v S/2,
    S = Σ_{j=1..8} v^(2j−2)/(2j+1) (Loader's bd0 series)."""
    v = t / (2.0 + t)
    v2 = v * v
    series = 0.0
    for j in range(SERIES_TERMS, 0, -1):
        series = series * v2 + 1.0 / (2 * j + 1)
    one_minus_v = 1.0 - v
    return 0.5 * one_minus_v - 0.5 * one_minus_v * one_minus_v * v * series


@jit
def _deviance(x, t, log1p_t, x_times_t):
    """bd0(x, m) = x (t − log1p t) for one pair, t = m/x − 1, log1p_t = log(m/x) from
    logs, x_times_t = m − x: the branches of ``_numerics.deviance``."""
    if abs(t) < SMALL_T:
        return x_times_t * t * _h_series_over_t2(t)
    if t < FROM_LOGS_BELOW:
        return x * (t - log1p_t)
    if t <= 1.0:
        return x * (t - np.log1p(t))
    log1p_big = np.log1p(min(t, _MAX)) if np.isfinite(t) else log1p_t
    return x_times_t - x * log1p_big


@jit
def _poisson_log_density(eta, log_exposure, y, log_y, constant, observed):
    """Σ_{i observed} log p(y_i | η_i) of the Poisson log link, Loader's form:
    −μ_i for y_i = 0, constant_i − bd0(y_i, μ_i) else (μ_i = exp(log E_i + η_i),
    constant_i = −δ(y_i) − ½ log(2π y_i)); −inf once a μ_i overflows."""
    total = 0.0
    compensation = 0.0
    for i in range(eta.size):
        if not observed[_u(i)]:
            continue
        log_rate = log_exposure[_u(i)] + eta[_u(i)]
        yi = y[_u(i)]
        if yi == 0.0:
            term = -np.exp(log_rate)
        else:
            log_ratio = log_rate - log_y[_u(i)]
            t = np.expm1(log_ratio)
            term = constant[_u(i)] - _deviance(yi, t, log_ratio, yi * t)
        if not np.isfinite(term):
            return term  # a rate that overflowed: the log density is −inf
        # Neumaier: the low-order bits lost by each addition are carried separately
        s = total + term
        if abs(total) >= abs(term):
            compensation += (total - s) + term
        else:
            compensation += (term - s) + total
        total = s
    return total + compensation


@jit
def _poisson_eta_derivatives(eta, log_exposure, y, observed, d1, d2, d3):
    """d1 = y − μ, d2 = d3 = −μ (μ = exp(log E + η)) for the observed, 0 elsewhere."""
    for i in range(eta.size):
        if observed[_u(i)]:
            rate = np.exp(log_exposure[_u(i)] + eta[_u(i)])
            d1[_u(i)] = y[_u(i)] - rate
            d2[_u(i)] = -rate
            d3[_u(i)] = -rate
        else:
            d1[_u(i)] = 0.0
            d2[_u(i)] = 0.0
            d3[_u(i)] = 0.0
