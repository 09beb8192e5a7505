"""Intrinsic random walks of first and second order (Rue & Held 2005, Sections 3.3-3.4)."""

import numpy as np
import scipy.sparse as sp

from ._structure import IntrinsicStructureModel, check_count, scaled_structure

__all__ = ["RW1", "RW2"]


def difference_matrix(n, order):
    """The (n - order) × n matrix of forward differences of the given order (CSC)."""
    coefficients = {1: [-1.0, 1.0], 2: [1.0, -2.0, 1.0]}[order]
    m = n - order
    return sp.csc_matrix(
        sp.diags([np.full(m, c) for c in coefficients], list(range(order + 1)), shape=(m, n))
    )


class _RandomWalk(IntrinsicStructureModel):
    """Q = τ c Dᵀ D with D the difference matrix of order ``_order``."""

    _order = 0

    def __init__(self, n, scale=True, prior=None):
        name = type(self).__name__
        n = check_count(n, "n", name, self._order + 1)
        difference = difference_matrix(n, self._order)
        structure = sp.csc_matrix(difference.T @ difference)
        positions = np.arange(n, dtype=float)
        null_space = np.column_stack([positions**p for p in range(self._order)])
        # grounding the last `order` nodes makes the grounded Cholesky factor the exact
        # integer difference operator (see intrinsic_structure)
        grounded = np.arange(n - self._order, n)
        structure, log_pdet, factor = scaled_structure(
            structure, null_space, name, scale, grounded=grounded
        )
        self.scale = bool(scale)
        self.scale_factor = factor
        constraint = null_space.T.copy()
        if self._order == 2:
            constraint[1] -= constraint[1].mean()  # centred trend: rows orthogonal
        self._init_structure(structure, log_pdet, constraint, self._order, prior)


class RW1(_RandomWalk):
    """First-order intrinsic random walk: Q = τ c Dᵀ D, D the (n-1) × n first differences.

    x_{i+1} - x_i ~ N(0, 1/(τ c)) independently (Rue & Held 2005, Section 3.3).
    The null space is the constant vector; the model carries the sum-to-zero
    constraint 1ᵀx = 0 (``constraints = (ones((1, n)), [0])``, rank deficiency 1).

    With ``scale=True`` (default) c is the Sørbye–Rue (2014) factor making the
    geometric mean of the marginal variances of the constrained model with τ = 1
    equal to 1, so τ has the same meaning across n (R-INLA's ``scale.model``); with
    ``scale=False``, c = 1 (the textbook model).

    Hyperparameter: ``log_tau`` = log τ. log|Q|* = (n-1) log τ + log|R*|*, with
    log|R*|* computed exactly at construction (:attr:`structure_log_pdet`; for c = 1
    it is log n).

    The scaling uses the banded algorithm of
    :func:`gmrf_core.models._structure.intrinsic_structure` (exact, O(n), any n).

    Parameters
    ----------
    n : int
        Number of nodes, n >= 2.
    scale : bool
        Scale to unit generalised variance (default True).
    prior : None or Prior or dict
        Prior on ``log_tau``, e.g. ``PCPrecision(1.0, 0.01)``.

    Raises
    ------
    InputError
        n not an integer >= 2; bad prior.
    """

    _order = 1


class RW2(_RandomWalk):
    """Second-order intrinsic random walk: Q = τ c Dᵀ D, D the (n-2) × n second differences.

    x_{i+2} - 2x_{i+1} + x_i ~ N(0, 1/(τ c)) independently (Rue & Held 2005,
    Section 3.4, regular locations). The null space is spanned by the constant and
    linear vectors; both are constrained to zero: ``constraints`` has the rows
    1ᵀ and (i - (n-1)/2)ᵢᵀ (rank deficiency 2).

    ``scale`` (default True) applies the Sørbye–Rue (2014) scaling to the model under
    both constraints. Hyperparameter ``log_tau``; log|Q|* = (n-2) log τ + log|R*|*
    (for c = 1, |R|* = n²(n²-1)/12).

    Parameters
    ----------
    n : int
        Number of nodes, n >= 3.
    scale : bool
        Scale to unit generalised variance (default True).
    prior : None or Prior or dict
        Prior on ``log_tau``.

    Raises
    ------
    InputError
        n not an integer >= 3; bad prior.
    """

    _order = 2
