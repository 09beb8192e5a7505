"""Tests of FixedPattern, the one mapping of matrices onto a fixed sparsity pattern."""

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import InputError, NotSymmetricError, PatternError
from gmrf_core.pattern import FixedPattern


def grid_laplacian(m, n):
    """5-point Laplacian plus identity on an m × n grid (fill-in when factorized)."""

    def path(k):
        return sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])

    q = sp.csc_matrix(sp.kron(sp.identity(n), path(m)) + sp.kron(path(n), sp.identity(m)))
    q.eliminate_zeros()
    return q


def test_union_keeps_explicit_zeros():
    a = sp.csc_matrix(([1.0, 0.0, 0.0], ([0, 1, 2], [1, 0, 2])), shape=(3, 3))  # explicit zeros
    b = sp.csc_matrix(([2.0, 2.0], ([0, 2], [2, 0])), shape=(3, 3))
    pattern = FixedPattern([a, b], 3)
    dense_pattern = pattern.matrix(np.ones(pattern.nnz)).toarray()
    expected = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 1]], dtype=float)
    np.testing.assert_array_equal(dense_pattern, expected)  # union plus the diagonal
    data = pattern.data_of(a)
    np.testing.assert_allclose(pattern.matrix(data).toarray(), a.toarray())
    with pytest.raises(InputError, match="outside"):
        pattern.data_of(sp.csc_matrix(([1.0], ([1], [2])), shape=(3, 3)))
    # index arrays are copies: mutating one matrix cannot corrupt the pattern
    m = pattern.matrix(np.zeros(pattern.nnz))
    m.indices[:] = 0
    np.testing.assert_array_equal(pattern.matrix(np.ones(pattern.nnz)).toarray(), expected)
    t = pattern.transpose_positions
    np.testing.assert_allclose(data[t], pattern.data_of(a.T))
    with pytest.raises(NotSymmetricError):
        _ = FixedPattern([sp.csc_matrix(([1.0], ([0], [1])), shape=(2, 2))], 2).transpose_positions
    without = FixedPattern([b], 3, diagonal=False)
    assert without.nnz == 2


@pytest.mark.parametrize("fmt", ["csc", "csr", "coo", "dense"])
def test_data_of_on_a_grid_with_fill_in_pattern(fmt):
    """Sub-patterns of a grid precision's Cholesky pattern mapped against dense references."""
    rng = np.random.default_rng(1)
    q = grid_laplacian(5, 6)
    n = q.shape[0]
    dense_l = np.linalg.cholesky(q.toarray())
    fill = sp.csc_matrix(np.abs(dense_l) + np.abs(dense_l.T) > 0)  # pattern with fill-in
    pattern = FixedPattern([fill], n)
    assert pattern.nnz > q.nnz
    values = q.copy()
    values.data = rng.standard_normal(values.nnz)
    given = {"csc": values, "csr": values.tocsr(), "coo": values.tocoo(), "dense": values.toarray()}
    data = pattern.data_of(given[fmt], "values")
    np.testing.assert_allclose(pattern.matrix(data).toarray(), values.toarray(), rtol=0, atol=0)
    assert pattern.holds(pattern.matrix(data)) and not pattern.holds(values)
    # on the exact pattern: a copy of the data, not a view
    same = pattern.matrix(data)
    out = pattern.data_of(same)
    out[:] = 0
    assert np.any(same.data != 0)
    # an entry outside, named by row and column
    outside = values.tolil()
    outside[0, n - 1] = outside[n - 1, 0] = 3.0
    named = r"values has a nonzero at \(\d+, \d+\) outside.*fix it"
    with pytest.raises(PatternError, match=named):
        pattern.data_of(sp.csc_matrix(outside), "values", hint="fix it")


def test_duplicates_are_summed_and_zeros_outside_dropped():
    pattern = FixedPattern([sp.identity(3)], 3)
    coo = sp.coo_matrix(([1.0, 2.0, 0.0], ([1, 1, 0], [1, 1, 2])), shape=(3, 3))
    data = pattern.data_of(coo)
    np.testing.assert_allclose(pattern.matrix(data).toarray(), np.diag([0.0, 3.0, 0.0]))
    # the caller's (non-canonical) arrays are not modified
    csc = sp.csc_matrix((np.array([1.0, 2.0]), np.array([1, 1]), np.array([0, 0, 2, 2])), (3, 3))
    pattern.data_of(csc)
    np.testing.assert_array_equal(csc.indices, [1, 1])


def test_stored_positions_in_stored_order():
    q = grid_laplacian(3, 3).tocsr()  # CSR: stored order differs from CSC order
    pattern = FixedPattern.of(q)
    where = pattern.stored_positions(q)
    coo = q.tocoo()
    data = np.arange(1.0, q.nnz + 1)
    placed = np.zeros(pattern.nnz)
    placed[where] = data
    dense = pattern.matrix(placed).toarray()
    np.testing.assert_array_equal(dense[coo.row, coo.col], data)
    with pytest.raises(PatternError, match="outside"):
        pattern.stored_positions(sp.csr_matrix(np.ones((9, 9))))


def test_rectangular_and_bad_input():
    a = sp.csc_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    pattern = FixedPattern.of(a)
    assert pattern.shape == (2, 3) and pattern.nnz == 3
    np.testing.assert_allclose(pattern.matrix(pattern.data_of(2 * a)).toarray(), 2 * a.toarray())
    with pytest.raises(InputError, match="shape"):
        pattern.data_of(sp.identity(3))
    with pytest.raises(InputError, match="shape"):
        pattern.matrix(np.zeros(2))
    with pytest.raises(InputError, match="scipy.sparse"):
        pattern.data_of([[1.0]])
    with pytest.raises(InputError, match="square"):
        FixedPattern([a], (2, 3), diagonal=True)
    with pytest.raises(NotSymmetricError):
        _ = pattern.transpose_positions
    with pytest.raises(InputError, match="shape"):
        FixedPattern([a], 3)


def test_derived_arrays_are_made_once_when_threads_ask_together():
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    grid = sp.random(400, 400, density=0.02, random_state=4, format="csc")
    pattern = pickle.loads(pickle.dumps(FixedPattern([grid + grid.T], 400)))
    assert pattern._columns is None and pattern._transpose is None  # not pickled
    with ThreadPoolExecutor(8) as pool:
        columns = list(pool.map(lambda _: pattern.columns, range(64)))
        transposes = list(pool.map(lambda _: pattern.transpose_positions, range(64)))
    assert all(x is columns[0] for x in columns)
    assert all(x is transposes[0] for x in transposes)
    expected = np.repeat(np.arange(400), np.diff(pattern.indptr))
    np.testing.assert_array_equal(columns[0], expected)
