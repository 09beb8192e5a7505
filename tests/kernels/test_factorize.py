"""Numeric supernodal factorization kernel (kernels/cholesky.py: _factorize and its helpers)
against dense NumPy references.

The rows below a supernode's diagonal block are solved by plain column sweeps
(:func:`_solve_below`) up to ``_SMALL_TRSM`` columns and by dtrsm above; both paths are
checked directly and inside whole factorizations whose supernodes fall on each side. A
descendant's update is one dgemm up to ``_ONE_GEMM`` target columns and dsyrk + dgemm
above; a factorization with updates of both kinds is checked against dense Cholesky.
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


def _update_widths(symbolic):
    """Target columns (ndrow1) of every BLAS update a descendant sends to an ancestor."""
    sp_, rp, rows, cs = symbolic.super_ptr, symbolic.rows_ptr, symbolic.rows, symbolic.col_super
    widths = []
    for d in range(symbolic.nsuper):
        ndcol = sp_[d + 1] - sp_[d]
        p, pend = rp[d] + ndcol, rp[d + 1]
        while p < pend:
            end = sp_[cs[rows[p]] + 1]
            p2 = p
            while p2 < pend and rows[p2] < end:
                p2 += 1
            if ndcol >= 2 and (p2 - p) * (pend - p) * ndcol > kchol._SMALL_UPDATE:
                widths.append(p2 - p)
            p = p2
    return np.array(widths)


def _chain_on_a_dense_block():
    """A chain of 30 nodes each coupled to every node of a dense 70 x 70 block and to two
    of a last dense block of 5 (which then stays a supernode of its own), plus a lattice
    coupled to the chain: updates of more than 64 target columns with rows below them
    (dsyrk and dgemm), and the lattice's of fewer (one dgemm)."""
    rng = np.random.default_rng(8)
    nc, nd, nt = 30, 70, 5
    lattice = sp.csc_matrix(spde_precision_2d(9, kappa=0.5))
    nl = lattice.shape[0]
    n = nl + nc + nd + nt
    Q = np.zeros((n, n))
    Q[:nl, :nl] = lattice.toarray()
    chain = slice(nl, nl + nc)
    block = slice(nl + nc, nl + nc + nd)
    tail = slice(nl + nc + nd, n)
    Q[chain, tail] = 0.0
    Q[chain, tail.start : tail.start + 2] = rng.uniform(-0.3, 0.3, (nc, 2))
    Q[tail, chain] = Q[chain, tail].T
    Q[tail, tail] = np.full((nt, nt), 0.5) + np.diag(np.full(nt, 50.0))
    Q[chain, chain] = np.diag(np.full(nc, 80.0)) - np.eye(nc, k=1) - np.eye(nc, k=-1)
    Q[chain, block] = rng.uniform(-0.3, 0.3, (nc, nd))
    Q[block, chain] = Q[chain, block].T
    x = rng.standard_normal((nd, nd))
    Q[block, block] = x @ x.T + nd * np.eye(nd)
    for j in range(0, nl, 9):
        Q[j, nl + j % nc] = Q[nl + j % nc, j] = -0.2
    return sp.csc_matrix(Q)


def test_factor_with_both_update_paths_matches_dense():
    Q = _chain_on_a_dense_block()
    factor = gm.cholesky(Q, ordering="natural")
    widths = _update_widths(factor.symbolic)
    assert np.any(widths > kchol._ONE_GEMM) and np.any(widths <= kchol._ONE_GEMM)
    dense = Q.toarray()[np.ix_(factor.perm, factor.perm)]
    L = factor.L().toarray()
    np.testing.assert_allclose(L, np.linalg.cholesky(dense), rtol=1e-10, atol=1e-12)
    assert factor.logdet() == pytest.approx(np.linalg.slogdet(dense)[1], rel=1e-12)


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
