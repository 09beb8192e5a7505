"""Likelihood numerics against high-precision references (mpmath) over the accepted range.

Each reference is the textbook formula (lnΓ, log, exp) evaluated in mpmath with enough
digits that nothing cancels, at the exact binary values of the inputs, so the stable
reformulations of the code never enter the reference. The negative binomial's
derivatives (orders 1–3 in η, the θ-derivative and the mixed ones) are mpmath's own
numerical derivatives (``mpmath.diff``) of its reference log density; those of the
Poisson, binomial and Gaussian densities are their textbook closed forms in mpmath.

Tolerances: the inputs are floats, so a result can only be as accurate as its
conditioning allows. Every check allows C·ε·(|f| + Σ_x (|x| + 1)|∂f/∂x| + s) with
ε = 2⁻⁵², x ranging over the arguments (η, θ, log y, ...), and s the size of the terms
that the data themselves make cancel (e.g. y and μ in y − μ); C = 64. A formulation that
cancels terms of size r log r or y log μ fails these checks by many orders of magnitude
(the former formulas: the negative binomial at y = 9, μ = 8 was off by 3e-5 at log size
25, 1e-2 at 30 and 352 at 40; the Poisson log density at y = μ = 1e15 gave −16.0 for
−18.19).
"""

import math

import mpmath as mp
import numpy as np
import pytest

from gmrf_core.likelihoods import Bernoulli, Binomial, Gaussian, NegativeBinomial, Poisson

EPS = np.finfo(float).eps
C = 64.0
BIG = np.finfo(float).max


def _digits(*magnitudes):
    """Working digits: 40 beyond the largest term, |m| for each magnitude m (a float or mpf,
    e.g. r |log r| for a size r) that the formula forms before cancelling."""
    largest = max(abs(mp.mpf(m)) for m in magnitudes + (1,))
    return 40 + int(mp.log10(largest + 1))


def _check(value, reference, slack):
    """value ≈ reference (mpf) within C·ε·slack; ±inf expected where the reference overflows."""
    reference = mp.mpf(reference)
    if abs(reference) > BIG:
        assert value == (math.inf if reference > 0 else -math.inf), (value, reference)
        return
    tolerance = C * EPS * float(slack) + 1e-300
    assert abs(value - float(reference)) <= tolerance, (value, float(reference), tolerance)


def _table(f, point, orders):
    """Partial derivatives of f at point, {orders: mpf}, with mpmath.diff."""
    return {order: mp.diff(f, point, order) for order in orders}


# -- Poisson ----------------------------------------------------------------------------


def _poisson_reference(y, a):
    """log p and its η-derivatives of orders 1–4 (textbook formulas, in mpmath)."""
    mean = mp.exp(a)
    return [y * a - mean - mp.loggamma(y + 1), y - mean, -mean, -mean, -mean]


POISSON_CASES = [
    (y, eta)
    for y in [0.0, 1.0, 3.0, 9.0, 10.0, 11.0, 57.0, 1e6, 1e15, 1e300]
    for eta in [-700.0, -30.0, -1.0, 0.0, 2.5, 30.0, 700.0]
    + ([math.log(y), math.log(y) + 1e-3, math.log(y) - 0.4] if y > 0 else [])
]


def _ids(cases):
    return ["-".join(f"{v:.6g}" for v in case) for case in cases]


@pytest.mark.parametrize(("y", "eta"), POISSON_CASES, ids=_ids(POISSON_CASES))
def test_poisson_log_density_and_eta_derivatives_match_mpmath(y, eta):
    likelihood = Poisson([y])
    with mp.workdps(_digits(y * (abs(eta) + math.log(y + 1)), mp.exp(eta))):
        table = _poisson_reference(mp.mpf(y), mp.mpf(eta))
        slack_a = abs(eta) + math.log(y + 1.0) + 1.0
        values = [likelihood.log_density([eta])]
        values += [float(d[0]) for d in likelihood.eta_derivatives([eta])]
        mean = float(mp.exp(mp.mpf(eta)))
        for k, value in enumerate(values):
            # d1 = y − μ cancels terms of size y + μ
            scale = (y + mean) if k == 1 else 0.0
            slack = abs(table[k]) + slack_a * abs(table[k + 1]) + scale
            _check(value, table[k], slack)


# -- Binomial / Bernoulli ---------------------------------------------------------------


def _binomial_reference(y, trials, eta):
    """log p and its η-derivatives of orders 1–4 (textbook formulas, in mpmath)."""
    p = 1 / (1 + mp.exp(-eta))
    q = 1 / (1 + mp.exp(eta))
    variance = trials * p * q
    return [
        mp.loggamma(trials + 1)
        - mp.loggamma(y + 1)
        - mp.loggamma(trials - y + 1)
        - y * mp.log1p(mp.exp(-eta))
        - (trials - y) * mp.log1p(mp.exp(eta)),
        y * q - (trials - y) * p,
        -variance,
        -variance * (q - p),
        -variance * (1 - 6 * p * q),
    ]


def _binomial_etas(y, trials):
    # 1e300 trials need ~350 digits: fewer points there
    if trials > 1e100:
        etas = [-800.0, -1.0, 0.3, 800.0]
    else:
        etas = [-800.0, -700.0, -30.0, -1.0, 0.0, 0.3, 2.0, 30.0, 700.0, 800.0]
    return etas + ([math.log(y / (trials - y))] if 0 < y < trials else [])


BINOMIAL_CASES = [
    (y, trials, eta)
    for trials in [1.0, 2.0, 5.0, 20.0, 1e3, 1e6, 1e15, 1e300]
    for y in sorted({0.0, 1.0, math.floor(trials / 2), trials - 1 if trials < 1e15 else trials})
    for eta in _binomial_etas(y, trials)
]


@pytest.mark.parametrize(("y", "trials", "eta"), BINOMIAL_CASES, ids=_ids(BINOMIAL_CASES))
def test_binomial_log_density_and_eta_derivatives_match_mpmath(y, trials, eta):
    likelihood = Bernoulli([y]) if trials == 1 and y in (0, 1) else Binomial([y], [trials])
    with mp.workdps(_digits(trials * (abs(eta) + math.log(trials) + 1))):
        table = _binomial_reference(mp.mpf(y), mp.mpf(trials), mp.mpf(eta))
        p = 1 / (1 + mp.exp(-mp.mpf(eta)))
        slack_eta = abs(eta) + math.log(trials) + 1.0
        values = [likelihood.log_density([eta])]
        values += [float(d[0]) for d in likelihood.eta_derivatives([eta])]
        for k, value in enumerate(values):
            scale = 0.0
            if k == 1:  # y (1 − p) − (N − y) p
                scale = y * (1 - p) + (trials - y) * p
            if k == 3:  # N p (1 − p) tanh(η/2): the tanh is accurate to ε absolutely
                scale = abs(table[2])
            slack = abs(table[k]) + slack_eta * abs(table[k + 1]) + scale
            _check(value, table[k], slack)


# -- negative binomial ------------------------------------------------------------------


def _negative_binomial_reference(y):
    def f(a, b):
        r = mp.exp(b)
        log_total = mp.log(r + mp.exp(a))
        return (
            mp.loggamma(y + r)
            - mp.loggamma(r)
            - mp.loggamma(y + 1)
            + r * (b - log_total)
            + y * (a - log_total)
        )

    return f


NB_COUNTS = [0.0, 1.0, 7.0, 300.0, 1e9]
NB_LOG_SIZES = [-30.0, -3.0, 0.0, 2.3, 8.0, 14.0, 25.0, 40.0, 100.0, 700.0]


def _nb_etas(y):
    etas = [-30.0, -2.0, 0.0, 4.0, 30.0]
    if y > 0:
        etas += [math.log(y), math.log(y) + 0.3]
    return etas


NB_CASES = [(y, eta, b) for y in NB_COUNTS for eta in _nb_etas(y) for b in NB_LOG_SIZES]


def _nb_digits(y, eta, log_size):
    size, mean = mp.exp(log_size), mp.exp(eta)
    return _digits(
        (size + y) * (abs(log_size) + abs(eta) + math.log(y + 1) + 1), mean * (abs(eta) + 1)
    )


def _nb_scales(y, a, b):
    """Sizes of the terms the data make cancel in d1, d3, g, g_eta, g_eta2 (mpf)."""
    r, mean = mp.exp(b), mp.exp(a)
    p, q = r / (r + mean), mean / (r + mean)
    digamma_part = abs(r * (mp.digamma(y + r) - mp.log(y + r) - mp.digamma(r) + b))
    return {
        "d1": (y + mean) * p,
        "d3": (mean * p + y * q) * p,
        "g": digamma_part,
        "g_eta": q * (y + mean) * p,
        "g_eta2": 2 * mean * p * p * q + y * p * q,
    }


@pytest.mark.parametrize(("y", "eta", "log_size"), NB_CASES, ids=_ids(NB_CASES))
def test_negative_binomial_log_density_matches_mpmath(y, eta, log_size):
    likelihood = NegativeBinomial([y])
    with mp.workdps(_nb_digits(y, eta, log_size)):
        f = _negative_binomial_reference(mp.mpf(y))
        a, b = mp.mpf(eta), mp.mpf(log_size)
        table = _table(f, (a, b), [(0, 0), (1, 0), (0, 1)])
        slack = (
            abs(table[(0, 0)])
            + (abs(eta) + abs(log_size) + math.log(y + 1) + 1) * abs(table[(1, 0)])
            + (abs(log_size) + abs(eta) + 1) * abs(table[(0, 1)])
        )
        _check(likelihood.log_density([eta], [log_size]), table[(0, 0)], slack)


NB_DERIVATIVE_CASES = [
    (y, eta, b)
    for y in [0.0, 1.0, 7.0, 1e9]
    for eta in [-30.0, 0.0] + ([math.log(y) + 0.3] if y > 0 else [4.0])
    for b in [-8.0, 0.0, 8.0, 25.0, 100.0]
]


@pytest.mark.parametrize(
    ("y", "eta", "log_size"), NB_DERIVATIVE_CASES, ids=_ids(NB_DERIVATIVE_CASES)
)
def test_negative_binomial_derivatives_match_mpmath(y, eta, log_size):
    likelihood = NegativeBinomial([y])
    d1, d2, d3 = (float(d[0]) for d in likelihood.eta_derivatives([eta], [log_size]))
    g, g_eta, g_eta2 = likelihood.theta_derivatives([eta], [log_size])
    computed = {
        (1, 0): d1,
        (2, 0): d2,
        (3, 0): d3,
        (0, 1): float(g[0]),
        (1, 1): float(g_eta[0, 0]),
        (2, 1): float(g_eta2[0, 0]),
    }
    names = {(1, 0): "d1", (3, 0): "d3", (0, 1): "g", (1, 1): "g_eta", (2, 1): "g_eta2"}
    # derivatives in θ are O(1/r) next to O(1) values: 1/r more digits for mpmath.diff
    with mp.workdps(_nb_digits(y, eta, log_size) + int(max(log_size, 0.0) / 2.3)):
        f = _negative_binomial_reference(mp.mpf(y))
        a, b = mp.mpf(eta), mp.mpf(log_size)
        orders = {(i, j) for i, j in computed} | {(i + 1, j) for i, j in computed}
        orders |= {(i, j + 1) for i, j in computed}
        table = _table(f, (a, b), sorted(orders))
        scales = _nb_scales(mp.mpf(y), a, b)
        for (i, j), value in computed.items():
            slack = (
                abs(table[(i, j)])
                + (abs(eta) + abs(log_size) + math.log(y + 1) + 1) * abs(table[(i + 1, j)])
                + (abs(log_size) + abs(eta) + 1) * abs(table[(i, j + 1)])
                + scales.get(names.get((i, j)), 0)
            )
            _check(value, table[(i, j)], slack)


def test_negative_binomial_tends_to_the_poisson_limit():
    # the defect: log density positive and the objective wrong for a large log size
    y = np.array([0.0, 1.0, 4.0, 9.0, 30.0])
    eta = np.log(np.array([0.5, 1.2, 3.0, 8.0, 33.0]))
    poisson = Poisson(y).pointwise_log_density(eta)
    nb = NegativeBinomial(y)
    previous = None
    for log_size in [14.0, 20.0, 25.0, 30.0, 50.0, 200.0, 700.0, 709.0, 720.0, 1e4]:
        values = nb.pointwise_log_density(eta, [log_size])
        assert np.all(values < 0)
        gap = np.max(np.abs(values - poisson))
        # the NB − Poisson gap is O(((y − μ)² − y) / r): no floor from rounding
        assert gap <= 1e3 * np.exp(-log_size) + 16 * EPS * np.max(np.abs(poisson))
        if previous is not None:
            assert gap <= previous + 16 * EPS * np.max(np.abs(poisson))
        previous = gap
        g, g_eta, g_eta2 = nb.theta_derivatives(eta, [log_size])
        assert abs(g[0]) <= 1e3 * np.exp(-log_size)
        assert np.all(np.isfinite(g_eta)) and np.all(np.isfinite(g_eta2))
        for d_nb, d_poisson in zip(
            nb.eta_derivatives(eta, [log_size]), Poisson(y).eta_derivatives(eta)
        ):
            np.testing.assert_allclose(d_nb, d_poisson, rtol=1e-12 + 1e3 * np.exp(-log_size))


def test_negative_binomial_is_finite_for_any_finite_eta_and_log_size():
    y = np.array([0.0, 1.0, 5.0, 1e6])
    likelihood = NegativeBinomial(y)
    for eta in [-1e4, -700.0, 0.0, 700.0]:
        for log_size in [-1e4, -800.0, -700.0, 0.0, 700.0, 800.0, 1e4]:
            etas = np.full(y.size, eta)
            values = likelihood.pointwise_log_density(etas, [log_size])
            assert not np.any(np.isnan(values)) and np.all(values < np.inf)
            for part in likelihood.eta_derivatives(etas, [log_size]):
                assert not np.any(np.isnan(part))
            for part in likelihood.theta_derivatives(etas, [log_size]):
                assert not np.any(np.isnan(part))


# -- Gaussian ---------------------------------------------------------------------------

GAUSSIAN_CASES = [
    (residual, log_precision)
    for residual in [0.0, 1e-300, 1e-150, 1e-10, 0.7, 3.0, 1e10, 1e150, 1e300]
    for log_precision in [-800.0, -700.0, -30.0, 0.0, 30.0, 700.0, 709.0, 710.0, 800.0]
]


@pytest.mark.parametrize(("residual", "log_precision"), GAUSSIAN_CASES, ids=_ids(GAUSSIAN_CASES))
def test_gaussian_matches_mpmath_at_any_log_precision(residual, log_precision):
    # the defect: NaN at log precision 800 (inf · 0)
    y = 0.5 + residual if residual < 1e10 else residual
    eta = 0.5 if residual < 1e10 else 0.0
    likelihood = Gaussian([y], scale=[2.0])
    # no term cancels (mpmath's exponent range is unbounded): 40 digits suffice
    with mp.workdps(40):
        theta = mp.mpf(log_precision)

        precision = 2 * mp.exp(theta)
        r = mp.mpf(y) - mp.mpf(eta)
        half_quadratic = precision * r**2 / 2
        # value, ∂/∂η, ∂²/∂η² at (0, 0), (1, 0), (2, 0); ∂/∂θ of each at (0, 1), (1, 1), (2, 1)
        table = {
            (0, 0): (theta + mp.log(2) - mp.log(2 * mp.pi)) / 2 - half_quadratic,
            (1, 0): precision * r,
            (2, 0): -precision,
            (0, 1): mp.mpf(1) / 2 - half_quadratic,
            (1, 1): precision * r,
            (2, 1): -precision,
        }
        # y − η in floats is exact here; θ carries one rounding: (|θ| + 1)|∂f/∂θ|
        cases = [
            (likelihood.log_density([eta], [log_precision]), (0, 0)),
            (float(likelihood.eta_derivatives([eta], [log_precision])[0][0]), (1, 0)),
            (float(likelihood.eta_derivatives([eta], [log_precision])[1][0]), (2, 0)),
        ]
        g, g_eta, g_eta2 = likelihood.theta_derivatives([eta], [log_precision])
        cases += [
            (float(g[0]), (0, 1)),
            (float(g_eta[0, 0]), (1, 1)),
            (float(g_eta2[0, 0]), (2, 1)),
        ]
        for value, order in cases:
            slack = abs(table[order]) * (abs(log_precision) + 2) + 1
            _check(value, table[order], slack)
        assert likelihood.eta_derivatives([eta], [log_precision])[2][0] == 0.0


def test_negative_binomial_objective_tends_to_the_poisson_objective():
    # the defect: on Poisson data a fit ran off to log size ≈ 14 and the Laplace objective
    # was wrong beyond log size ≈ 25; the NB objective must approach the Poisson one
    import gmrf_core as gm

    rng = np.random.default_rng(5)
    y = rng.poisson(np.exp(0.4 + 0.3 * rng.standard_normal(30))).astype(float)
    prior = gm.models.IID(30)
    poisson = gm.LatentGaussianModel(prior, Poisson(y)).objective([0.5])
    nb_model = gm.LatentGaussianModel(prior, NegativeBinomial(y))
    for log_size in [25.0, 40.0, 100.0, 700.0]:
        gap = abs(nb_model.objective([0.5, log_size]) - poisson)
        assert gap <= 1e4 * np.exp(-log_size) + 1e-10 * abs(poisson)
