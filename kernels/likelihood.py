"""One-pass sums of count log densities (the Loader forms of
:mod:`gmrf_core.likelihoods._numerics`), evaluated per observation without temporaries.

The vectorised forms build a dozen arrays of length n per call (rates, ratios, masks of
the deviance's branches) and are called several times per Newton step; these kernels
evaluate the same branches, in the same arithmetic, one observation at a time (except
Poisson's bd0 for |log(μ/y)| < 0.5, from a series in log(μ/y): the same function, without
expm1) and sum with Neumaier's compensated summation (Neumaier 1974), whose error does
not grow with n as a left-to-right sum's does.
"""

import math

import numpy as np

from ._jit import jit

_u = np.uintp  # unsigned subscripts: no wraparound checks in the hot loops

# the constants of gmrf_core.likelihoods._numerics.deviance (kept equal; a test compares)
SMALL_T = 0.1
SERIES_TERMS = 8
FROM_LOGS_BELOW = -0.9
_MAX = np.finfo(np.float64).max
# |log(μ/y)| below which the sum takes bd0 = y u² φ(u) from u = log(μ/y) by its Taylor
# series (φ(u) = (eᵘ − 1 − u)/u² = Σ_k uᵏ/(k+2)!, 16 terms: the first left out is
# 0.5¹⁶/18! < 1e-20 of φ), without expm1 and log1p
LOG_RATIO_SERIES_BELOW = 0.5
_PHI = tuple(1.0 / math.factorial(k + 2) for k in range(16))


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
def _bd0_from_log_ratio(x, u):
    """bd0(x, m) = x (eᵘ − 1 − u) = x u² φ(u) for u = log(m/x), |u| < 0.5: φ's Taylor
    series by Estrin's scheme (four dependent steps instead of sixteen). The same function
    of u as Loader's forms, which take t = expm1(u) first; every term of φ has one sign for
    u > 0 and the first dominates for u < 0, so the sum keeps a relative error of a few
    ulps."""
    c = _PHI
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    p0 = (c[0] + u * c[1]) + u2 * (c[2] + u * c[3])
    p1 = (c[4] + u * c[5]) + u2 * (c[6] + u * c[7])
    p2 = (c[8] + u * c[9]) + u2 * (c[10] + u * c[11])
    p3 = (c[12] + u * c[13]) + u2 * (c[14] + u * c[15])
    return x * u2 * ((p0 + u4 * p1) + u8 * (p2 + u4 * p3))


@jit
def _poisson_log_density(eta, log_exposure, y, log_y, constant, observed):
    """Σ_{i observed} log p(y_i | η_i) of the Poisson log link, Loader's form:
    −μ_i for y_i = 0, constant_i − bd0(y_i, μ_i) else (μ_i = exp(log E_i + η_i),
    constant_i = −δ(y_i) − ½ log(2π y_i)); −inf once a μ_i overflows. Near the mode most
    |log(μ_i/y_i)| are below 0.5, where bd0 comes from :func:`_bd0_from_log_ratio`
    (no transcendental call)."""
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
            if abs(log_ratio) < LOG_RATIO_SERIES_BELOW:
                term = constant[_u(i)] - _bd0_from_log_ratio(yi, log_ratio)
            else:
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
