"""Symbolic analysis kernels: etree, column counts, supernodes, scatter map vs dense references."""

import numpy as np
import pytest
import scipy.sparse as sp

import gmrf_core as gm
from gmrf_core.datasets import laplacian_2d, spde_precision_2d


def dense_structure(Q, perm):
    """Column counts and elimination tree of the dense Cholesky factor of Q[perm][:, perm]."""
    C = Q.toarray()[np.ix_(perm, perm)]
    L = np.linalg.cholesky(C)
    nonzero = np.abs(L) > 1e-14 * np.abs(L).max()
    counts = nonzero.sum(axis=0)
    parent = np.full(C.shape[0], -1)
    for j in range(C.shape[0]):
        below = np.flatnonzero(nonzero[j + 1 :, j])
        if below.size:
            parent[j] = j + 1 + below[0]
    return counts, parent


@pytest.mark.parametrize(
    "Q",
    [laplacian_2d(9, 7), spde_precision_2d(8, kappa=0.5), sp.csc_matrix(np.diag([2.0, 3.0, 4.0]))],
    ids=["laplace", "spde", "diagonal"],
)
@pytest.mark.parametrize("ordering", ["natural", "amd", "nd"])
def test_etree_and_column_counts(Q, ordering):
    symbolic = gm.analyze(Q, ordering=ordering)
    counts, parent = dense_structure(Q, symbolic.perm)
    np.testing.assert_array_equal(symbolic.parent, parent)
    np.testing.assert_array_equal(symbolic.colcount, counts)
    # postorder: every parent comes after its children
    has_parent = symbolic.parent >= 0
    assert np.all(symbolic.parent[has_parent] > np.flatnonzero(has_parent))


def test_supernodes_partition_and_contain_the_factor_pattern():
    Q = spde_precision_2d(12, kappa=0.3)
    symbolic = gm.analyze(Q, ordering="amd")
    sp_ = symbolic.super_ptr
    assert sp_[0] == 0 and sp_[-1] == Q.shape[0] and np.all(np.diff(sp_) > 0)
    counts, _parent = dense_structure(Q, symbolic.perm)
    # relaxed supernodes store at least the true structure of each column
    for s in range(symbolic.nsuper):
        rows = symbolic.rows[symbolic.rows_ptr[s] : symbolic.rows_ptr[s + 1]]
        assert np.all(np.diff(rows) > 0)
        for k, j in enumerate(range(sp_[s], sp_[s + 1])):
            assert rows.size - k >= counts[j]
            assert rows[k] == j
    assert symbolic.nnz >= counts.sum()
    # CHOLMOD's relaxation rules merge small supernodes freely (ns <= 4 always), so on a
    # matrix this small the explicit zeros are a sizeable but bounded share
    assert symbolic.nnz <= 1.5 * counts.sum()


def test_scatter_map_places_every_entry():
    Q = spde_precision_2d(7, kappa=0.4)
    factor = gm.cholesky(Q, ordering="amd")
    L = factor.L().toarray()
    p = factor.perm
    # assembling Q into the factor storage and expanding it gives the permuted lower triangle
    stored = np.zeros_like(factor._lx)
    s = factor.symbolic
    stored[s._dest] = Q.data[s._c_src]
    probe = gm.Factor(s)
    probe._lx[:] = stored
    probe._valid = True  # filled by hand: a factor refuses queries until it holds values
    np.testing.assert_allclose(probe.L().toarray(), np.tril(Q.toarray()[np.ix_(p, p)]))
    assert L.shape == Q.shape
