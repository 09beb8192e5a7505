"""Cancellation-free building blocks of the count log densities (Poisson, binomial, NB).

The textbook forms of these log densities subtract numbers much larger than the result:
``y log μ − μ − lnΓ(y+1)`` for huge counts, ``lnΓ(y+r) − lnΓ(r)`` and ``r log(r/(r+μ))``
for a large negative-binomial size r. Following Loader (2000) every density is written
instead as a sum of small terms of known sign,

    Stirling error  δ(x) = lnΓ(x+1) − (x+½) log x + x − ½ log 2π          (≥ 0, ~1/(12x))
    deviance        bd0(x, m) = x log(x/m) + m − x = x h(m/x − 1)          (≥ 0)
                    h(t) = t − log1p(t)

so that the absolute error of the result is a few ulps of the largest term that is
not cancelled by the data themselves. The deviance is evaluated from t *and* from a
separately computed log1p(t) (from logs, accurate even where 1 + t underflows) and, in
its power-series branch, from x·t = m − x passed in directly, so that nothing of the
size of x is ever formed (x may be a size r = e^θ that overflows).

References
----------
Loader, C. (2000). Fast and accurate computation of binomial probabilities.
Technical report, Bell Labs (the algorithm of R's ``dbinom``, ``dpois``, ``dnbinom``).
Abramowitz, M. and Stegun, I. A. (1964). *Handbook of Mathematical Functions*,
6.1.40 (Stirling series of lnΓ) and 6.3.18 (asymptotic series of ψ).
"""

import numpy as np
from scipy.special import digamma, gammaln

__all__ = [
    "HALF_LOG_2PI",
    "stirling_error",
    "deviance",
    "scaled_digamma_difference",
]

HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))

# Stirling series of δ(x) = Σ_k B_2k / (2k (2k−1) x^(2k−1)) (A&S 6.1.40), k = 1..8
_STIRLING = (
    1.0 / 12.0,
    -1.0 / 360.0,
    1.0 / 1260.0,
    -1.0 / 1680.0,
    1.0 / 1188.0,
    -691.0 / 360360.0,
    1.0 / 156.0,
    -3617.0 / 122400.0,
)
# ψ(x) − log x = −1/(2x) − Σ_k B_2k / (2k x^2k) (A&S 6.3.18): (power, coefficient)
_DIGAMMA = (
    (1, -0.5),
    (2, -1.0 / 12.0),
    (4, 1.0 / 120.0),
    (6, -1.0 / 252.0),
    (8, 1.0 / 240.0),
    (10, -1.0 / 132.0),
    (12, 691.0 / 32760.0),
    (14, -1.0 / 12.0),
)
# Below this argument the series are not used (their truncation error at 10 is < 1e-16
# relative; the direct formulas lose at most ~1e-14 absolute below it).
_SERIES_FROM = 10.0
# |t| below which h(t) = t − log1p(t) is summed as a power series (8 terms: < 1e-17 rel.)
_SMALL_T = 0.1
_SERIES_TERMS = 8
# t below which log1p(t) is taken from the caller's log(m/x) rather than from t
_FROM_LOGS_BELOW = -0.9
_MAX = np.finfo(float).max


def stirling_error(x, log_x=None):
    """δ(x) = lnΓ(x+1) − (x+½) log x + x − ½ log 2π, elementwise for x > 0.

    Parameters
    ----------
    x : numpy.ndarray
        Positive arguments (x may be +inf: δ(inf) = 0).
    log_x : numpy.ndarray, optional
        log x, where the caller has it more accurately than ``log(x)`` (e.g. x = e^θ
        that underflows to 0).

    Returns
    -------
    numpy.ndarray
        δ(x): the Stirling series (A&S 6.1.40) for x ≥ 10, the direct formula below.
    """
    x = np.asarray(x, dtype=float)
    log_x = np.log(np.maximum(x, np.finfo(float).tiny)) if log_x is None else log_x
    log_x = np.broadcast_to(log_x, x.shape)
    out = np.empty(x.shape)
    large = x >= _SERIES_FROM
    if large.any():
        inverse = 1.0 / x[large]
        inverse2 = inverse * inverse
        series = np.zeros_like(inverse)
        for coefficient in reversed(_STIRLING):
            series = series * inverse2 + coefficient
        out[large] = series * inverse
    small = ~large
    if small.any():
        xs = x[small]
        out[small] = gammaln(xs + 1.0) - (xs + 0.5) * log_x[small] + xs - HALF_LOG_2PI
    return out


def _h_series_over_t2(t):
    """h(t) / t² for |t| < 0.1, from v = t/(2+t) (|v| < 0.053; Loader's bd0 series):
    log1p(t) = 2 atanh v, so h(t)/t² = (1−v)/2 − (1−v)² v S/2 with
    S = Σ_{j≥1} v^(2j−2)/(2j+1), 8 terms (v^14 < 1e-17)."""
    v = t / (2.0 + t)
    v2 = v * v
    series = np.zeros_like(t)
    for j in range(_SERIES_TERMS, 0, -1):
        series = series * v2 + 1.0 / (2 * j + 1)
    one_minus_v = 1.0 - v
    return 0.5 * one_minus_v - 0.5 * one_minus_v * one_minus_v * v * series


def deviance(x, t, log1p_t, x_times_t):
    """bd0(x, m) = x h(t) with t = m/x − 1 and h(t) = t − log1p(t), elementwise.

    Parameters
    ----------
    x : float or numpy.ndarray
        Positive first arguments (may be +inf where |t| < 0.1).
    t : numpy.ndarray
        m/x − 1 (> −1).
    log1p_t : callable
        ``log1p_t(mask)`` returns log(m/x) on ``mask``, computed by the caller from logs
        (accurate where m/x is tiny); called only where m/x < 0.1 or t overflows.
    x_times_t : numpy.ndarray
        m − x, computed by the caller without forming x or m where they overflow.

    Returns
    -------
    numpy.ndarray
        bd0 ≥ 0: (m − x)·t·h(t)/t² from a power series for |t| < 0.1 (no cancellation),
        else x (t − log1p t) (Loader 2000, the deviance term of dbinom).
    """
    x = np.broadcast_to(x, t.shape)
    out = np.empty(t.shape)
    small = np.abs(t) < _SMALL_T
    if small.all():  # the common case near the mode: one branch, no fancy indexing
        return x_times_t * t * _h_series_over_t2(t)
    if small.any():
        ts = t[small]
        out[small] = x_times_t[small] * ts * _h_series_over_t2(ts)
    # log1p(t) from t where 1 + t is not small (t is then accurate relative to 1 + t);
    # the caller's log(m/x), computed from logs, where m/x < 0.1
    moderate = ~small & (t >= _FROM_LOGS_BELOW) & (t <= 1.0)
    if moderate.any():
        tm = t[moderate]
        out[moderate] = x[moderate] * (tm - np.log1p(tm))
    # t > 1: x t − x log1p(t) with x t as given (t itself may overflow where x t does not)
    big = t > 1.0
    if big.any():
        tb = t[big]
        log1p_big = np.log1p(np.minimum(tb, _MAX))
        overflowed = ~np.isfinite(tb)
        if overflowed.any():
            where = np.flatnonzero(big)[overflowed]
            mask = np.zeros(t.shape, dtype=bool)
            mask[where] = True
            log1p_big[overflowed] = log1p_t(mask)
        out[big] = x_times_t[big] - x[big] * log1p_big
    tiny_ratio = ~small & (t < _FROM_LOGS_BELOW)
    if tiny_ratio.any():
        out[tiny_ratio] = x[tiny_ratio] * (t[tiny_ratio] - log1p_t(tiny_ratio))
    return out


def scaled_digamma_difference(y, size, log_size):
    """r [ψ̃(y + r) − ψ̃(r)] with ψ̃(x) = ψ(x) − log x, elementwise (y ≥ 0, r = e^θ > 0).

    For r ≥ 10 each term c x^(−m) of the asymptotic series of ψ̃ (A&S 6.3.18) gives
    r [c (y+r)^(−m) − c r^(−m)] = −c r^(1−m) (1 − w)(1 + w + … + w^(m−1)) with
    w = r/(r+y), free of cancellation and of overflow for any θ; below,
    r ψ(y+r) − r ψ(r+1) + 1 − r log((y+r)/r) (ψ(r) = ψ(r+1) − 1/r keeps r → 0 finite).

    Parameters
    ----------
    y : numpy.ndarray
        Counts ≥ 0.
    size : float
        r = e^θ (may be +inf or 0).
    log_size : float
        θ = log r.

    Returns
    -------
    numpy.ndarray
        The scaled difference (0 where y = 0).
    """
    y = np.asarray(y, dtype=float)
    out = np.zeros(y.shape)
    positive = y > 0
    if not positive.any():
        return out
    yp = y[positive]
    if log_size >= np.log(_SERIES_FROM):
        if not np.isfinite(size):
            return out  # the limit r → ∞: every term is O(y/r)
        # (1 + y/r)^(−m) − 1 = w^m − 1 = −(1 − w)(1 + w + … + w^(m−1)), w = r/(r+y):
        # no cancellation, and 1 − w = y/(r+y) is formed directly
        ratio = size / yp
        one_minus_w = 1.0 / (1.0 + ratio)
        w = ratio * one_minus_w
        power = np.ones_like(yp)  # w^k
        partial = np.zeros_like(yp)  # Σ_{k<m} w^k
        total = np.zeros_like(yp)
        k = 0
        for m, coefficient in _DIGAMMA:
            while k < m:
                partial += power
                power *= w
                k += 1
            total += (coefficient * np.exp((1 - m) * log_size)) * partial
        out[positive] = -one_minus_w * total
    else:
        log1p_ratio = np.logaddexp(0.0, np.log(yp) - log_size)
        out[positive] = (
            size * digamma(yp + size) - size * digamma(size + 1.0) + 1.0 - size * log1p_ratio
        )
    return out
