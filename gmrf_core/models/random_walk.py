"""Intrinsic random walks of first and second order (Rue & Held 2005, Sections 3.3-3.4).

The Sørbye–Rue scaling of a random walk needs the marginal variances of the
constrained model, diag(R⁺) for R = DᵀD. They are computed exactly here, in O(n),
from an explicit representative of the walk: x_g with x_g,0 (= x_g,1) = 0 is a
sum of independent unit increments with closed-form covariance, and the
constrained model is its orthogonal projection P x_g onto the complement of the
null space (P = I - V(VᵀV)⁻¹Vᵀ), so diag(R⁺) = diag(P Σ_g P). For RW1 the terms
are small (O(n)) and float arithmetic is exact to a few ulps. For RW2, Σ_g is
O(n³) and the projection cancels about three digits, and beyond n ≈ 2·10⁵ no
float method keeps its integers exact, so the projection is carried out in exact
integer arithmetic (Python integers, one rounding at the end): about 1 s for
n = 10⁵ and 11 s for n = 10⁶.
"""

import math

import numpy as np
import scipy.sparse as sp

from ..validation import check_count
from ._structure import IntrinsicStructureModel

__all__ = ["RW1", "RW2"]


def difference_matrix(n, order):
    """The (n - order) × n matrix of forward differences of the given order (CSC)."""
    coefficients = {1: [-1.0, 1.0], 2: [1.0, -2.0, 1.0]}[order]
    m = n - order
    return sp.csc_matrix(
        sp.diags([np.full(m, c) for c in coefficients], list(range(order + 1)), shape=(m, n))
    )


def rw1_constrained_variances(n):
    """diag(R⁺) for R = D₁ᵀD₁: marginal variances of the sum-to-zero RW1 with unit steps.

    With W_i = Σ_{j<i} e_j (W_0 = 0, Cov(W_i, W_j) = min(i, j)) the constrained walk
    is W - mean(W): Var_i = i - 2 c_i + mean(c), c_i = (1/n) Σ_j min(i, j)
    = (i(i-1)/2 + i(n-i))/n.
    """
    i = np.arange(n, dtype=float)
    c = (i * (i - 1) / 2 + i * (n - i)) / n
    return i - 2 * c + c.mean()


def rw2_constrained_variances(n):
    """diag(R⁺) for R = D₂ᵀD₂: marginal variances of RW2 constrained to V ᵀx = 0, V = [1, t].

    Representative: x_0 = x_1 = 0, x_t = Σ_{k=2}^{t} (t-k+1) e_k, whose covariance
    for s <= t is C(s, t) = A(s-1) + (t-s) B(s-1), A(m) = Σ_{j<=m} j², B(m) = Σ_{j<=m} j.
    Σ_g v for v ∈ {1, c} (c_t = 2t - (n-1), centred so VᵀV is diagonal) follows from
    prefix and suffix sums; every quantity is an exact integer until the final
    division diag(PΣ_gP)_t = D_t / (g₁² g₂²).
    """
    t = np.arange(n, dtype=object)
    m = t - 1
    a_sq = m * (m + 1) * (2 * m + 1) // 6  # A(t-1)
    a_lin = m * (m + 1) // 2  # B(t-1)
    # C(s, t) = [A(s-1) - s B(s-1)] + t B(s-1) for s < t, and the mirror image for s >= t
    offset = a_sq - t * a_lin
    centred = 2 * t - (n - 1)
    zero = np.zeros(1, dtype=object)

    def sigma_times(v):
        before_offset = np.concatenate([zero, np.cumsum(offset * v)[:-1]])
        before_slope = np.concatenate([zero, np.cumsum(a_lin * v)[:-1]])
        after = np.cumsum(v[::-1])[::-1]
        after_weighted = np.cumsum((t * v)[::-1])[::-1]
        return before_offset + t * before_slope + offset * after + a_lin * after_weighted

    ones = np.ones(n, dtype=object)
    sigma_ones, sigma_centred = sigma_times(ones), sigma_times(centred)
    g1, g2 = n, int(np.sum(centred * centred))
    m11 = int(np.sum(sigma_ones))
    m12 = int(np.sum(centred * sigma_ones))
    m22 = int(np.sum(centred * sigma_centred))
    numerator = (
        (g1 * g2) ** 2 * a_sq
        - 2 * g1 * g2 * (g2 * sigma_ones + g1 * centred * sigma_centred)
        + g2 * g2 * m11
        + 2 * g1 * g2 * m12 * centred
        + g1 * g1 * m22 * centred * centred
    )
    return numerator.astype(float) / float((g1 * g2) ** 2)


class _RandomWalk(IntrinsicStructureModel):
    """Q = τ c Dᵀ D with D the difference matrix of order ``_order``."""

    _order = 0

    def __init__(self, n, scale=True, prior=None, tau0=1.0):
        name = type(self).__name__
        n = check_count(n, "n", name, self._order + 1)
        difference = difference_matrix(n, self._order)
        structure = sp.csc_matrix(difference.T @ difference)
        if self._order == 1:
            log_pdet = math.log(n)  # |D₁ᵀD₁|* = n × (number of spanning trees of a path = 1)
        else:
            log_pdet = math.log(n) * 2 + math.log(n * n - 1) - math.log(12)  # n²(n²-1)/12
        factor = 1.0
        if scale:
            variances = (
                rw1_constrained_variances(n) if self._order == 1 else rw2_constrained_variances(n)
            )
            log_factor = float(np.mean(np.log(variances)))
            factor = math.exp(log_factor)
            structure = sp.csc_matrix(structure * factor)
            log_pdet += (n - self._order) * log_factor
        self.scale = bool(scale)
        self.scale_factor = factor
        positions = np.arange(n, dtype=float)
        constraint = np.vstack([np.ones(n), positions - positions.mean()])[: self._order]
        self._init_structure(structure, log_pdet, constraint, self._order, prior, tau0)


class RW1(_RandomWalk):
    """First-order intrinsic random walk: Q = τ c Dᵀ D, D the (n-1) × n first differences.

    x_{i+1} - x_i ~ N(0, 1/(τ c)) independently (Rue & Held 2005, Section 3.3).
    The null space is the constant vector; the model carries the sum-to-zero
    constraint 1ᵀx = 0 (``constraints = (ones((1, n)), [0])``, rank deficiency 1).

    With ``scale=True`` (default) c is the Sørbye–Rue (2014) factor making the
    geometric mean of the marginal variances of the constrained model with τ = 1
    equal to 1, so τ has the same meaning across n (R-INLA's ``scale.model``); with
    ``scale=False``, c = 1 (the textbook model). The marginal variances are exact
    (closed form, any n; see the module docstring).

    Hyperparameter: ``log_tau`` = log τ. log|Q|* = (n-1) log τ + log|R*|*, with
    |DᵀD|* = n, so log|R*|* = log n + (n-1) log c (:attr:`structure_log_pdet`).

    Parameters
    ----------
    n : int
        Number of nodes, n >= 2.
    scale : bool
        Scale to unit generalised variance (default True).
    prior : None or Prior or dict
        Prior on ``log_tau``, e.g. ``PCPrecision(1.0, 0.01)``.
    tau0 : float
        Starting precision τ for :attr:`theta0` (natural scale, default 1).

    Raises
    ------
    InputError
        n not an integer >= 2; tau0 not a finite number > 0; bad prior.
    """

    _order = 1


class RW2(_RandomWalk):
    """Second-order intrinsic random walk: Q = τ c Dᵀ D, D the (n-2) × n second differences.

    x_{i+2} - 2x_{i+1} + x_i ~ N(0, 1/(τ c)) independently (Rue & Held 2005,
    Section 3.4, regular locations). The null space is spanned by the constant and
    linear vectors; both are constrained to zero: ``constraints`` has the rows
    1ᵀ and (i - (n-1)/2)ᵢᵀ (rank deficiency 2).

    ``scale`` (default True) applies the Sørbye–Rue (2014) scaling to the model under
    both constraints, with exact marginal variances (exact integer arithmetic, O(n):
    about 1 s at n = 10⁵; see the module docstring). Hyperparameter ``log_tau``;
    log|Q|* = (n-2) log τ + log|R*|*, with |DᵀD|* = n²(n²-1)/12.

    Parameters
    ----------
    n : int
        Number of nodes, n >= 3.
    scale : bool
        Scale to unit generalised variance (default True).
    prior : None or Prior or dict
        Prior on ``log_tau``.
    tau0 : float
        Starting precision τ for :attr:`theta0` (natural scale, default 1).

    Raises
    ------
    InputError
        n not an integer >= 3; tau0 not a finite number > 0; bad prior.
    """

    _order = 2
