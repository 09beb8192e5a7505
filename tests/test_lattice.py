"""Tests of gmrf_core.lattice: the SPDE lattice matrices and the shape/spacing checks."""

import numpy as np
import pytest
import scipy.sparse as sp

from gmrf_core.errors import InputError
from gmrf_core.lattice import lattice_shape, lattice_spacing, spde_lattice_parts, stencil_csc


def dense_lattice_matrices(m, n, h0, h1):
    """C = h0 h1 I, the weighted Neumann graph Laplacian G and G C⁻¹ G, by loops."""
    size = m * n
    stiffness = np.zeros((size, size))
    for i in range(m):
        for j in range(n):
            for di, dj, weight in ((1, 0, h1 / h0), (0, 1, h0 / h1)):
                if i + di < m and j + dj < n:
                    k, ell = i * n + j, (i + di) * n + (j + dj)
                    stiffness[[k, ell], [ell, k]] -= weight
                    stiffness[[k, ell], [k, ell]] += weight
    mass = h0 * h1 * np.eye(size)
    return mass, stiffness, stiffness @ np.linalg.inv(mass) @ stiffness


@pytest.mark.parametrize("shape", [(4, 5), (1, 6), (5, 1), (2, 2), (1, 1)])
def test_spde_parts_are_linear_combinations_of_dense_c_g_and_gcg(shape):
    m, n = shape
    spacing = (0.7, 1.3)
    mass, stiffness, squared = dense_lattice_matrices(m, n, *spacing)
    coefficients = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (2.0, -3.0, 0.5)]
    indptr, indices, data = spde_lattice_parts(m, n, spacing, coefficients)
    expected = [mass, stiffness, squared, 2.0 * mass - 3.0 * stiffness + 0.5 * squared]
    for values, dense in zip(data, expected):
        matrix = sp.csc_matrix((values, indices, indptr), shape=(m * n, m * n))
        assert matrix.has_sorted_indices
        np.testing.assert_allclose(matrix.toarray(), dense, rtol=1e-13, atol=1e-13)
    # the 13-point pattern of G² (nodes at most two lattice steps apart), no duplicates
    pattern = sp.csc_matrix((np.ones(indices.size), indices, indptr), shape=(m * n, m * n))
    reach = np.abs(stiffness) + np.eye(m * n) > 0
    np.testing.assert_array_equal(pattern.toarray() > 0, (reach.astype(int) @ reach) > 0)
    assert pattern.nnz == indices.size


def test_stencil_csc_places_each_offset_once():
    """A 3-point stencil (left, self, right) on a 2 x 3 lattice, values from the offset."""
    offsets = ((0, -1), (0, 0), (0, 1))

    def value_blocks(k, rows, cols):
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        return [np.full(shape, float(k + 1))]

    indptr, indices, (data,) = stencil_csc(2, 3, offsets, value_blocks)
    matrix = sp.csc_matrix((data, indices, indptr), shape=(6, 6)).toarray()
    expected = np.zeros((6, 6))
    for i in range(2):
        for j in range(3):
            column = i * 3 + j
            for k, (_, dj) in enumerate(offsets):
                if 0 <= j + dj < 3:
                    expected[column + dj, column] = k + 1
    np.testing.assert_array_equal(matrix, expected)


def test_lattice_shape_and_spacing_checks():
    assert lattice_shape((3, 4), "t") == (3, 4)
    assert lattice_shape(np.array([2, 5]), "t") == (2, 5)
    assert lattice_spacing(0.5, "t") == (0.5, 0.5)
    assert lattice_spacing((0.5, 2), "t") == (0.5, 2.0)
    for shape in [(1, 4), 4, (2, 3, 4), (2.0, 3), (True, 3)]:
        with pytest.raises(InputError, match="t: shape"):
            lattice_shape(shape, "t")
    for spacing in [0.0, -1.0, np.nan, (1.0, np.inf), (1.0, 2.0, 3.0), "x"]:
        with pytest.raises(InputError, match="t: spacing"):
            lattice_spacing(spacing, "t")
