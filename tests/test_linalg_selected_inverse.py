"""Selected inversion (Factor.selected_inverse) against dense np.linalg.inv."""

import numpy as np
import pytest
import scipy.sparse as sp

import gmrf_core as gm
from tests.test_linalg import CASES, _orderings, grid_laplacian, spde_like


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("ordering", _orderings())
def test_selected_inverse_on_q_pattern_matches_dense(name, ordering):
    Q = CASES[name]
    inverse = np.linalg.inv(Q.toarray())
    Z = gm.cholesky(Q, ordering=ordering).selected_inverse()
    np.testing.assert_allclose(Z.diag(), np.diag(inverse), rtol=1e-10)
    values = Z.values_at(Q)
    Q = Q.copy()
    Q.sort_indices()  # values_at returns canonical CSC
    assert np.array_equal(values.indptr, Q.indptr) and np.array_equal(values.indices, Q.indices)
    mask = Q.toarray() != 0
    np.testing.assert_allclose(values.toarray()[mask], inverse[mask], rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("ordering", ["natural", "nd"])
def test_every_entry_on_the_factor_pattern(ordering):
    Q = spde_like(9, kappa=0.4)
    factor = gm.cholesky(Q, ordering=ordering)
    inverse = np.linalg.inv(Q.toarray())
    L = factor.L().tocoo()
    p = factor.perm
    rows, cols = p[L.row], p[L.col]  # pattern of L mapped back to Q's ordering
    B = sp.csc_matrix((np.ones(rows.size), (rows, cols)), shape=Q.shape)
    values = factor.selected_inverse().values_at(B).tocoo()
    np.testing.assert_allclose(values.data, inverse[values.row, values.col], rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("name", ["grid20", "spde13", "random60", "blocks", "1x1"])
def test_trace_product(name):
    Q = CASES[name]
    rng = np.random.default_rng(7)
    B = Q.copy()
    B.data = rng.standard_normal(B.nnz)
    B = sp.csc_matrix(B + B.T)  # symmetric, on Q's pattern
    Z = gm.cholesky(Q).selected_inverse()
    ref = np.trace(np.linalg.solve(Q.toarray(), B.toarray()))
    assert Z.trace_product(B) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    # a non-symmetric B on a sub-pattern (diagonal only)
    D = sp.diags_array(rng.standard_normal(Q.shape[0])).tocsc()
    ref_d = np.trace(np.linalg.solve(Q.toarray(), D.toarray()))
    assert Z.trace_product(D) == pytest.approx(ref_d, rel=1e-10, abs=1e-12)


def test_quadratic_diag_linear_combinations():
    Q = spde_like(8, kappa=0.5)
    n = Q.shape[0]
    inverse = np.linalg.inv(Q.toarray())
    rng = np.random.default_rng(3)
    # each row combines a node and its lattice neighbours (within L's pattern)
    rows, cols, vals = [], [], []
    interior = [8 * i + j for i in range(7) for j in range(7)]  # node+1 and node+8 stay on the grid
    for r, node in enumerate(rng.choice(interior, 12, replace=False)):
        for c in (node, node + 1, node + 8):
            rows.append(r)
            cols.append(c)
            vals.append(rng.uniform(0.1, 1.0))
    A = sp.csr_matrix((vals, (rows, cols)), shape=(12, n))
    Z = gm.cholesky(Q).selected_inverse()
    np.testing.assert_allclose(Z.quadratic_diag(A), np.diag(A @ inverse @ A.T), rtol=1e-10)


def test_entries_outside_the_factor_pattern_raise():
    # tridiagonal: natural ordering has no fill, and relaxed supernodes (at most 16
    # columns with that many zeros) cannot reach from row 0 to column 199
    Q = grid_laplacian(1, 200)
    Z = gm.cholesky(Q, ordering="natural").selected_inverse()
    far = sp.csc_matrix(([1.0, 1.0], ([0, 199], [199, 0])), shape=(200, 200))
    with pytest.raises(gm.PatternError, match="outside the sparsity pattern"):
        Z.values_at(far)
    with pytest.raises(gm.PatternError):
        Z.trace_product(far)
    A = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 199])), shape=(1, 200))
    with pytest.raises(gm.PatternError):
        Z.quadratic_diag(A)
    with pytest.raises(gm.InputError, match="shape"):
        Z.values_at(sp.eye(3, format="csc"))
    with pytest.raises(gm.InputError, match="columns"):
        Z.quadratic_diag(sp.eye(3, format="csr"))


def test_snapshot_and_failed_factor():
    Q = grid_laplacian(4)
    factor = gm.cholesky(Q)
    Z = factor.selected_inverse()
    d = Z.diag()
    factor.refactorize(Q * 2.0)
    np.testing.assert_array_equal(Z.diag(), d)
    np.testing.assert_allclose(factor.selected_inverse().diag(), d / 2.0, rtol=1e-12)
    bad = Q.copy()
    bad.data = -bad.data
    with pytest.raises(gm.NotPositiveDefiniteError):
        factor.refactorize(bad)
    with pytest.raises(gm.InputError, match="no valid factorization"):
        factor.selected_inverse()


def wide_supernode_matrix(rng, wide=150, middle=40, last=30):
    """SPD matrix whose natural-order factor starts with a supernode of ``wide`` columns
    and ``middle`` rows below it: the selected inversion updates its diagonal block in
    column panels."""
    n = wide + middle + last
    x = rng.standard_normal((n, n))
    dense = x @ x.T / n + np.eye(n)
    dense[:wide, wide + middle :] = 0.0
    dense[wide + middle :, :wide] = 0.0
    dense += n * np.eye(n) * 0.05  # stays positive definite after the zeroing
    return sp.csc_matrix(dense)


@pytest.mark.parametrize("threads", [1, 2])
def test_wide_supernodes_match_dense(threads):
    Q = wide_supernode_matrix(np.random.default_rng(11))
    factor = gm.cholesky(Q, ordering="natural", threads=threads)
    s = factor.symbolic
    widths = np.diff(s.super_ptr)
    below = np.diff(s.rows_ptr) - widths
    assert np.any((widths > 64) & (below > 0))
    inverse = np.linalg.inv(Q.toarray())
    Z = factor.selected_inverse()
    np.testing.assert_allclose(Z.diag(), np.diag(inverse), rtol=1e-10)
    mask = Q.toarray() != 0
    np.testing.assert_allclose(Z.values_at(Q).toarray()[mask], inverse[mask], rtol=1e-9, atol=1e-12)


def test_ownership_checks():
    import pickle

    Q = grid_laplacian(5)
    symbolic = gm.analyze(Q)
    factor = symbolic.factorize(Q)
    Z = factor.selected_inverse()
    assert Z.factor is factor and Z.symbolic is symbolic
    assert Z.belongs_to(factor) and Z.belongs_to(symbolic)
    Z.check_belongs_to(factor)
    Z.check_belongs_to(symbolic)
    # another factor of the same analysis: same positions, other values
    other = symbolic.factorize(Q * 2.0)
    assert not Z.belongs_to(other) and Z.belongs_to(other.symbolic)
    with pytest.raises(gm.PatternMismatchError, match="another factorization"):
        Z.check_belongs_to(other)
    # another analysis of the same pattern: other positions
    with pytest.raises(gm.PatternMismatchError, match="another factorization"):
        Z.check_belongs_to(gm.analyze(Q, ordering="natural"))
    # the factor refactorized since: stale
    factor.refactorize(Q * 3.0)
    with pytest.raises(gm.PatternMismatchError, match="stale"):
        Z.check_belongs_to(factor, name="Sigma")
    Z.check_belongs_to(symbolic)
    fresh = factor.selected_inverse()
    fresh.check_belongs_to(factor)
    # pickled together, the copies keep their relation; the token survives alone
    factor_copy, fresh_copy = pickle.loads(pickle.dumps((factor, fresh)))
    fresh_copy.check_belongs_to(factor_copy)
    unpickled = pickle.loads(pickle.dumps(symbolic))
    assert unpickled.pattern_token == symbolic.pattern_token
    assert not unpickled._indices.flags.writeable
    with pytest.raises(gm.InputError):
        Z.check_belongs_to(Q)


def test_positions_accept_int32_and_int64_alike():
    Q = spde_like(6)
    symbolic = gm.analyze(Q)
    coo = Q.tocoo()
    wide = symbolic.positions(coo.row.astype(np.int64), coo.col.astype(np.int64))
    narrow = symbolic.positions(coo.row.astype(np.int32), coo.col.astype(np.int32))
    mixed = symbolic.positions(coo.row.astype(np.int32), coo.col.astype(np.uint16))
    assert np.array_equal(wide, narrow) and np.array_equal(wide, mixed)
    Z = symbolic.factorize(Q).selected_inverse()
    inverse = np.linalg.inv(Q.toarray())
    np.testing.assert_allclose(Z.values_at_positions(narrow), inverse[coo.row, coo.col], rtol=1e-9)


def dense_supernodal(dense, bounds):
    """A dense SPD matrix's Cholesky factor in the supernodal storage of the kernels, with
    supernodes of the columns between consecutive ``bounds``, each owning every row from
    its first column down (the filled graph of a dense matrix): exact shapes, independent
    of the symbolic analysis and its amalgamation."""
    n = dense.shape[0]
    super_ptr = np.asarray(bounds, dtype=np.int64)
    nsuper = super_ptr.size - 1
    counts = n - super_ptr[:-1]
    rows_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rows = np.concatenate([np.arange(k, n) for k in super_ptr[:-1]]).astype(np.int64)
    widths = np.diff(super_ptr)
    lx_ptr = np.concatenate([[0], np.cumsum(counts * widths)]).astype(np.int64)
    col_super = np.repeat(np.arange(nsuper), widths).astype(np.int64)
    factor = np.linalg.cholesky(dense)
    lx = np.concatenate(
        [factor[k1:, k1:k2].ravel(order="F") for k1, k2 in zip(super_ptr[:-1], super_ptr[1:])]
    )
    return nsuper, super_ptr, rows_ptr, rows, lx_ptr, col_super, lx


@pytest.mark.parametrize(
    "bounds",
    [
        [0, 12, 212],  # narrow, many rows below: full Z_II and dgemm
        [0, 12, 12 + 161 + 40],  # narrow, more rows below than the full gather takes
        [0, 64, 64 + 160],  # at both limits
        [0, 65, 95],  # wide: block rows of L_JJ⁻¹, the last narrow
        [0, 200, 260],  # wider: many block rows and panels, blocks of _OUTER columns
        [0, 130, 200],  # two whole blocks of _OUTER columns and a remainder
        [0, 300, 330],  # more entries than the descending stream-in takes
        [0, 1, 4],  # one column
        [0, 1, 3, 13, 80, 81, 150, 151, 330],  # ancestors of every kind, several runs
    ],
)
def test_kernel_paths_on_exact_supernode_shapes(bounds):
    from gmrf_core.kernels import selinv as kernel

    n = bounds[-1]
    rng = np.random.default_rng(n)
    dense = rng.uniform(-1.0, 1.0, (n, n))
    dense = dense + dense.T + 2.0 * n * np.eye(n)
    nsuper, super_ptr, rows_ptr, rows, lx_ptr, col_super, lx = dense_supernodal(dense, bounds)
    sizes = kernel._workspace_sizes(nsuper, super_ptr, rows_ptr)
    work = [np.full(max(int(k), 1), np.nan) for k in sizes]
    rel_ptr = np.empty(nsuper + 1, dtype=np.int64)
    size = kernel._relative_maps(nsuper, super_ptr, rows_ptr, rows, col_super, rel_ptr, None)
    rel = np.empty(max(int(size), 1), dtype=np.int32)
    kernel._relative_maps(nsuper, super_ptr, rows_ptr, rows, col_super, rel_ptr, rel)
    zx = np.full_like(lx, np.nan)
    order = np.arange(nsuper, dtype=np.int64)
    status = kernel._selected_inverse(
        nsuper, super_ptr, rows_ptr, rows, lx_ptr, col_super, lx, zx, rel_ptr, rel, *work, order
    )
    assert tuple(status) == (0, -1)
    inverse = np.linalg.inv(dense)
    for s, (k1, k2) in enumerate(zip(bounds[:-1], bounds[1:])):
        block = zx[lx_ptr[s] : lx_ptr[s + 1]].reshape((k2 - k1, n - k1)).T
        np.testing.assert_allclose(block, inverse[k1:, k1:k2], rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("ordering", ["natural", "nd", "amd"])
def test_relative_maps_place_each_row_among_its_ancestors_rows(ordering):
    # reference: for every run of a supernode's rows below its columns owned by one
    # ancestor t, the index of each later row in t's row list, by searchsorted
    Q = spde_like(12, kappa=0.3)
    s = gm.cholesky(Q, ordering=ordering).symbolic
    rel_ptr, rel = s._relative_maps()
    expected = []
    for k in range(s.nsuper):
        nscol = s.super_ptr[k + 1] - s.super_ptr[k]
        below = s.rows[s.rows_ptr[k] + nscol : s.rows_ptr[k + 1]]
        assert rel_ptr[k] == len(expected)
        c = 0
        while c < below.size:
            t = s.col_super[below[c]]
            ancestor = s.rows[s.rows_ptr[t] : s.rows_ptr[t + 1]]
            local = np.searchsorted(ancestor, below[c:])
            np.testing.assert_array_equal(ancestor[local], below[c:])
            expected.extend(local)
            c += int(np.count_nonzero(below[c:] < s.super_ptr[t + 1]))
    assert rel_ptr[s.nsuper] == len(expected) > 0
    np.testing.assert_array_equal(rel[: len(expected)], expected)
    assert s._relative_maps()[1] is rel  # computed once per analysis


def test_relative_maps_are_rebuilt_for_a_pickled_analysis():
    import pickle

    Q = grid_laplacian(11, 9) + 0.2 * sp.eye(99)
    factor = gm.cholesky(Q)
    factor.selected_inverse()
    copy = pickle.loads(pickle.dumps(factor.symbolic))
    assert "_inverse_maps" not in copy.__dict__
    for a, b in zip(copy._relative_maps(), factor.symbolic._relative_maps()):
        np.testing.assert_array_equal(a, b)
    again = copy.factorize(Q).selected_inverse().values_at(Q).toarray()
    inverse = np.linalg.inv(Q.toarray())
    np.testing.assert_allclose(again, np.where(Q.toarray() != 0, inverse, 0), rtol=1e-10)


@pytest.mark.parametrize("ordering", ["natural", "nd"])
def test_q_pattern_values_come_back_in_the_patterns_order(ordering):
    # Q's own pattern is gathered in storage order and scattered back: the values must
    # stand in q_positions' (CSC) order, equal to a plain gather of a copy of the positions
    Q = spde_like(11, kappa=0.35) + sp.diags(np.linspace(0.0, 0.3, 121))
    Q = sp.csc_matrix(Q).sorted_indices()
    factor = gm.cholesky(Q, ordering=ordering)
    selinv = factor.selected_inverse()
    positions = factor.symbolic.q_positions
    assert not positions.flags.writeable
    assert np.any(np.diff(positions) < 0)  # the storage order differs from Q's
    values = selinv.values_at_positions(positions)
    cols = np.repeat(np.arange(Q.shape[0]), np.diff(Q.indptr))
    inverse = np.linalg.inv(Q.toarray())
    np.testing.assert_allclose(values, inverse[Q.indices, cols], rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(selinv.values_at_positions(positions.copy()), values)
    np.testing.assert_array_equal(selinv.values_at(Q).data, values)
