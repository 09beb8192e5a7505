"""Tests of the lattice matrix generators in gmrf_core.datasets."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.datasets import laplacian_2d, spde_precision_2d
from gmrf_core.errors import InputError


def path_matrix(size, diagonal):
    """Tridiagonal (size x size) with -1 off the diagonal and the given diagonal."""
    return np.diag(np.asarray(diagonal, dtype=float)) - np.eye(size, k=1) - np.eye(size, k=-1)


def neumann_path_laplacian(size):
    if size == 1:
        return np.zeros((1, 1))
    degree = np.full(size, 2.0)
    degree[[0, -1]] = 1.0
    return path_matrix(size, degree)


def check_canonical_csc(matrix):
    assert isinstance(matrix, sp.csc_matrix)
    assert matrix.dtype == np.float64
    assert matrix.has_sorted_indices
    copy = matrix.copy()
    copy.sum_duplicates()
    assert copy.nnz == matrix.nnz  # no duplicates
    for col in range(matrix.shape[1]):
        rows = matrix.indices[matrix.indptr[col] : matrix.indptr[col + 1]]
        assert np.all(np.diff(rows) > 0)
    assert abs(matrix - matrix.T).max() == 0  # both triangles, exactly symmetric


# ------------------------------------------------------------------ laplacian_2d
@pytest.mark.parametrize("m, n", [(1, 1), (1, 4), (3, 1), (4, 5), (6, 6)])
def test_laplacian_matches_kronecker_reference(m, n):
    matrix = laplacian_2d(m, n)
    check_canonical_csc(matrix)
    expected = np.kron(path_matrix(m, np.full(m, 2.0)), np.eye(n)) + np.kron(
        np.eye(m), path_matrix(n, np.full(n, 2.0))
    )
    np.testing.assert_array_equal(matrix.toarray(), expected)
    eigenvalues = np.linalg.eigvalsh(expected)
    smallest = 4 - 2 * math.cos(math.pi / (m + 1)) - 2 * math.cos(math.pi / (n + 1))
    assert eigenvalues.min() == pytest.approx(smallest, rel=1e-12)
    assert eigenvalues.min() > 0


def test_laplacian_square_default_and_nnz():
    matrix = laplacian_2d(50)
    assert matrix.shape == (2500, 2500)
    assert matrix.nnz == 2500 + 4 * 50 * 49
    assert np.all(matrix.diagonal() == 4.0)


@pytest.mark.parametrize("args", [(0,), (-3,), (2.5,), (True,), ("4",), (3, 0), (3, 1.5)])
def test_laplacian_bad_sizes(args):
    with pytest.raises(InputError):
        laplacian_2d(*args)


# ------------------------------------------------------------------ spde_precision_2d
@pytest.mark.parametrize(
    "m, n, spacing",
    [(1, 1, 1.0), (1, 6, 1.0), (2, 3, 0.5), (5, 4, (1.0, 2.0)), (7, 7, 1.0), (4, 9, (0.3, 0.2))],
)
def test_spde_precision_matches_dense_formula(m, n, spacing):
    kappa, tau = 0.7, 1.3
    h0, h1 = np.broadcast_to(np.asarray(spacing, dtype=float), (2,))
    matrix = spde_precision_2d(m, n, kappa=kappa, tau=tau, spacing=spacing)
    check_canonical_csc(matrix)
    stiffness = (h1 / h0) * np.kron(neumann_path_laplacian(m), np.eye(n)) + (h0 / h1) * np.kron(
        np.eye(m), neumann_path_laplacian(n)
    )
    mass = h0 * h1 * np.eye(m * n)
    k = kappa**2 * mass + stiffness
    expected = tau * k @ np.linalg.inv(mass) @ k
    np.testing.assert_allclose(
        matrix.toarray(), expected, rtol=1e-13, atol=1e-13 * np.abs(expected).max()
    )
    assert np.all(matrix.data != 0)  # no explicit zeros in the dataset matrix
    assert np.linalg.eigvalsh(matrix.toarray()).min() > 0


def test_spde_precision_nnz_is_13_point_count():
    m, n = 40, 30
    matrix = spde_precision_2d(m, n, kappa=0.2)
    offsets = [(0, 0), (1, 0), (0, 1), (2, 0), (0, 2), (1, 1), (1, -1)]
    offsets += [(-a, -b) for a, b in offsets[1:]]
    expected = sum(max(m - abs(a), 0) * max(n - abs(b), 0) for a, b in offsets)
    assert len(offsets) == 13
    assert matrix.nnz == expected
    per_column = np.diff(matrix.indptr).reshape(m, n)
    assert np.all(per_column[2:-2, 2:-2] == 13)
    assert per_column.max() == 13


def test_spde_precision_default_kappa_and_variance_scaling():
    m, n = 20, 10
    diameter = math.hypot(m - 1, n - 1)
    kappa = math.sqrt(8) / (diameter / 5)
    np.testing.assert_allclose(
        spde_precision_2d(m, n).toarray(), spde_precision_2d(m, n, kappa=kappa).toarray()
    )
    # Q is linear in tau
    np.testing.assert_allclose(
        spde_precision_2d(m, n, tau=3.0).data, 3.0 * spde_precision_2d(m, n).data, rtol=1e-15
    )


def test_spde_precision_large_lattice_builds_with_int32_indices():
    matrix = spde_precision_2d(300)
    assert matrix.shape == (90000, 90000)
    assert matrix.indices.dtype == np.int32
    # 13 per node minus the stencil entries that fall off the four sides
    assert matrix.nnz == 13 * 90000 - (2 * 300 + 2 * 300 + 4 * 300 + 4 * 300 + 4 * 599)
    assert matrix.diagonal().min() > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"m": 0},
        {"m": 3, "n": -1},
        {"m": 3.0},
        {"m": 3, "kappa": 0.0},
        {"m": 3, "kappa": np.nan},
        {"m": 3, "tau": -1.0},
        {"m": 3, "tau": np.inf},
        {"m": 3, "tau": True},
        {"m": 3, "spacing": 0.0},
        {"m": 3, "spacing": (1.0, np.nan)},
    ],
)
def test_spde_precision_bad_input(kwargs):
    with pytest.raises(InputError):
        spde_precision_2d(**kwargs)
