"""Numeric supernodal factorization kernel (kernels/cholesky.py: _factorize and its helpers)
against dense NumPy references.

The rows below a supernode's diagonal block are solved by plain column sweeps
(:func:`_solve_below`) up to ``_SMALL_TRSM`` columns and by dtrsm above; both paths are
checked directly and inside whole factorizations whose supernodes fall on each side.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import gmrf_core as gm
from gmrf_core.datasets import laplacian_2d, spde_precision_2d
from gmrf_core.kernels import cholesky as kchol


@pytest.mark.parametrize(
    ("nscol", "nsrow"),
    [(1, 2), (2, 7), (3, 3), (4, 9), (5, 6), (7, 40), (9, 31), (16, 50), (64, 90)],
)
def test_solve_below_matches_dense_triangular_solve(nscol, nsrow):
    rng = np.random.default_rng(nscol * 100 + nsrow)
    x = rng.standard_normal((nscol, nscol))
    lower = np.linalg.cholesky(x @ x.T / nscol + np.eye(nscol))  # a well-conditioned factor
    below = rng.standard_normal((nsrow - nscol, nscol))
    block = np.vstack([lower + np.triu(rng.standard_normal((nscol, nscol)), 1), below])
    offset = 5  # the block starts inside the value array, as every supernode but the first
    lx = np.full(offset + nsrow * nscol + 3, 7.0)
    lx[offset : offset + nsrow * nscol] = block.ravel(order="F")
    kchol._solve_below(lx, offset, nsrow, nscol)
    out = lx[offset : offset + nsrow * nscol].reshape((nsrow, nscol), order="F")
    # X Lᵀ = B, so X = B L⁻ᵀ; the diagonal block (upper triangle included) is not touched
    expected = np.linalg.solve(lower, below.T).T
    np.testing.assert_allclose(out[nscol:], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out[:nscol], block[:nscol])
    assert np.all(lx[:offset] == 7.0) and np.all(lx[offset + nsrow * nscol :] == 7.0)


def _column_classes(symbolic):
    ncol = np.diff(symbolic.super_ptr)
    nrow = np.diff(symbolic.rows_ptr)
    below = nrow > ncol
    small = int(np.sum(below & (ncol <= kchol._SMALL_TRSM) & (ncol > kchol._SMALL_BLOCK)))
    large = int(np.sum(below & (ncol > kchol._SMALL_TRSM)))
    return small, large


def _dense_block_on_a_lattice():
    """A dense 80 x 80 block coupled by four entries to a 12 x 12 SPDE lattice: in the
    natural and nested-dissection orderings the block is a supernode of more than 64
    columns with rows below it (dtrsm), the lattice's separators have 9-64 (swept)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((80, 80))
    lattice = sp.csc_matrix(spde_precision_2d(12, kappa=0.4))
    Q = sp.lil_matrix((80 + 144, 80 + 144))
    Q[:80, :80] = x @ x.T + 80 * np.eye(80)
    Q[80:, 80:] = lattice.toarray()
    for j, g in enumerate((3, 20, 50, 100)):
        Q[7 * j, 80 + g] = Q[80 + g, 7 * j] = -0.5
    return sp.csc_matrix(Q)


@pytest.mark.parametrize("ordering", ["natural", "nd"])
def test_factor_with_both_solve_paths_matches_dense(ordering):
    Q = _dense_block_on_a_lattice()
    factor = gm.cholesky(Q, ordering=ordering)
    small, large = _column_classes(factor.symbolic)
    assert small > 0 and large > 0  # supernodes on both sides of _SMALL_TRSM with rows below
    dense = Q.toarray()[np.ix_(factor.perm, factor.perm)]
    L = factor.L().toarray()
    np.testing.assert_allclose(L, np.linalg.cholesky(dense), rtol=1e-10, atol=1e-12)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12)


def test_spde_lattice_with_fill_matches_dense():
    Q = sp.csc_matrix(spde_precision_2d(30, kappa=0.4) + 1e-3 * laplacian_2d(30))
    factor = gm.cholesky(Q, ordering="nd")
    assert _column_classes(factor.symbolic)[0] > 0
    dense = Q.toarray()[np.ix_(factor.perm, factor.perm)]
    L = factor.L().toarray()
    np.testing.assert_allclose(L, np.linalg.cholesky(dense), rtol=1e-10, atol=1e-12)


def test_not_positive_definite_inside_a_swept_supernode():
    # the failing pivot is in a supernode of the plain-sweep size class; the column reported
    # is the one dense Cholesky fails at in the same ordering
    Q = sp.csc_matrix(spde_precision_2d(20, kappa=0.4)).tolil()
    symbolic = gm.analyze(Q.tocsc(), ordering="nd")
    ncol = np.diff(symbolic.super_ptr)
    nrow = np.diff(symbolic.rows_ptr)
    s = int(
        np.flatnonzero((ncol > kchol._SMALL_BLOCK) & (ncol <= kchol._SMALL_TRSM) & (nrow > ncol))[0]
    )
    k = int(symbolic.super_ptr[s]) + 3
    col = int(symbolic.perm[k])
    Q[col, col] = -50.0
    with pytest.raises(gm.NotPositiveDefiniteError) as info:
        symbolic.factorize(Q.tocsc())
    assert info.value.column == col
