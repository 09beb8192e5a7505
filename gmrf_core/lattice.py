"""Regular 2-D lattices: node numbering, shape/spacing validation and stencil assembly.

Shared by the lattice models (:class:`~gmrf_core.models.Matern2D`), the lattice
projection (:func:`~gmrf_core.mesh.lattice_projection`) and the test matrices of
:mod:`gmrf_core.datasets`, so that each of them builds the same matrices from one code.

Node numbering
--------------
Node ``(i, j)`` of an ``m x n`` lattice (``0 <= i < m``, ``0 <= j < n``) is unknown
number ``i * n + j`` (row-major, NumPy's C order), so a vector ``x`` of length
``m * n`` is the field ``x.reshape(m, n)``. With spacing ``(h0, h1)`` the node sits at
the point ``(i * h0, j * h1)``.

Every assembly is vectorised over the lattice nodes (a Python loop runs over the at
most 13 stencil offsets, never over nodes).

References
----------
Lindgren, F., Rue, H. and Lindström, J. (2011). An explicit link between Gaussian
fields and Gaussian Markov random fields: the stochastic partial differential
equation approach. *JRSS B* 73(4), 423–498.
"""

import numbers

import numpy as np

from .errors import InputError
from .validation import check_count

__all__ = ["lattice_shape", "lattice_spacing", "stencil_csc", "spde_lattice_parts"]

# Stencil of G C^-1 G on a lattice: the node itself, its 4 neighbours, the 4
# two-step neighbours along an axis and the 4 diagonal neighbours (13 offsets),
# sorted lexicographically so that row indices come out sorted within a column.
_SPDE_OFFSETS = (
    (-2, 0),
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -2),
    (0, -1),
    (0, 0),
    (0, 1),
    (0, 2),
    (1, -1),
    (1, 0),
    (1, 1),
    (2, 0),
)


def lattice_shape(shape, owner, minimum=2):
    """Return a lattice shape ``(m, n)`` as two ints, both >= ``minimum``.

    Raises
    ------
    InputError
        If ``shape`` is not a pair of integers >= ``minimum``.
    """
    if isinstance(shape, numbers.Integral) or np.ndim(shape) != 1 or len(shape) != 2:
        raise InputError(f"{owner}: shape must be a pair (m, n) of integers, got {shape!r}.")
    m = check_count(shape[0], "shape[0]", owner, minimum=minimum)
    n = check_count(shape[1], "shape[1]", owner, minimum=minimum)
    return m, n


def lattice_spacing(spacing, owner):
    """Return the spacing as a pair (h0, h1) of finite positive floats.

    Raises
    ------
    InputError
        If ``spacing`` is not a finite positive number or a pair of them.
    """
    try:
        h = np.asarray(spacing, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{owner}: spacing must be a positive number or a pair of them.") from exc
    if h.size == 1:
        h = np.repeat(h, 2)
    if h.size != 2 or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise InputError(
            f"{owner}: spacing must be a finite positive number or a pair (h0, h1) of them, "
            f"got {spacing!r}."
        )
    return float(h[0]), float(h[1])


def stencil_csc(m, n, offsets, value_blocks):
    """Assemble CSC matrices whose column (i, j) holds the entries at rows (i+di, j+dj).

    Parameters
    ----------
    m, n : int
        Lattice shape.
    offsets : sequence of (int, int)
        Stencil offsets, sorted lexicographically (this makes the row indices of
        every column sorted, because a valid offset has ``0 <= j + dj < n``).
    value_blocks : callable
        ``value_blocks(k, rows, cols)`` returns a list of arrays (one per output
        matrix) holding the values of offset ``k`` for the column nodes in the slices
        ``rows, cols`` (the block of nodes for which the offset stays inside the
        lattice).

    Returns
    -------
    indptr, indices : numpy.ndarray
        The shared CSC structure.
    data : list of numpy.ndarray
        One data array per output matrix.
    """
    size = m * n
    blocks = []
    count = np.zeros((m, n), dtype=np.int64)
    for di, dj in offsets:
        rows = slice(max(0, -di), min(m, m - di))
        cols = slice(max(0, -dj), min(n, n - dj))
        blocks.append((rows, cols))
        count[rows, cols] += 1
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(count.ravel(), out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, size) < np.iinfo(np.int32).max else np.int64
    indptr = indptr.astype(index_dtype)
    indices = np.empty(nnz, dtype=index_dtype)
    data = None
    # filled[i, j]: how many entries of column (i, j) are already written
    filled = indptr[:-1].reshape(m, n).astype(np.int64)
    node = np.arange(size, dtype=np.int64).reshape(m, n)
    for k, ((di, dj), (rows, cols)) in enumerate(zip(offsets, blocks)):
        position = filled[rows, cols]
        if position.size == 0:
            continue
        indices[position] = node[rows, cols] + (di * n + dj)
        values = value_blocks(k, rows, cols)
        if data is None:
            data = [np.zeros(nnz) for _ in values]
        for out, value in zip(data, values):
            out[position] = value
        filled[rows, cols] += 1
    if data is None:  # pragma: no cover - a lattice always has its diagonal
        data = []
    return indptr, indices, data


def spde_lattice_parts(m, n, spacing, coefficients):
    """Linear combinations of the lattice SPDE matrices C, G and G C⁻¹ G on one pattern.

    The lattice is the cell-centred finite-volume (equivalently: lumped P1 finite
    element on right triangles, with a zero-flux Neumann boundary) discretisation of
    −Δ with cells of size ``h0 x h1`` centred at the nodes:

    * ``C = h0*h1 * I`` (lumped mass: the cell area),
    * ``G`` = weighted graph Laplacian with weight ``w0 = h1/h0`` between neighbours
      along axis 0 and ``w1 = h0/h1`` along axis 1 (the P1 stiffness of a right-
      triangle split; dimensionless in 2-D), diagonal = sum of the weights of the
      node's lattice edges (so boundary rows sum to zero: Neumann),
    * ``G C⁻¹ G = G² / (h0*h1)`` with entries (d = diagonal of G)
      ``d_k² + Σ_nbrs w²`` on the diagonal, ``−w (d_k + d_l)`` between neighbours
      k, l, ``w²`` two steps along an axis, ``2 w0 w1`` between diagonal neighbours.

    The common pattern is the 13-point stencil of G²: 13 nonzeros in every column
    at least two nodes away from the boundary.

    Parameters
    ----------
    m, n : int
        Lattice shape.
    spacing : (float, float)
        Node spacing along axes 0 and 1.
    coefficients : sequence of (float, float, float)
        For each output matrix, the coefficients ``(a, b, e)`` of ``a C + b G + e G C⁻¹ G``.

    Returns
    -------
    indptr, indices : numpy.ndarray
        CSC structure (sorted row indices) of the 13-point pattern.
    data : list of numpy.ndarray
        One data array per coefficient triple.
    """
    h0, h1 = spacing
    cell = h0 * h1
    w0, w1 = h1 / h0, h0 / h1
    axis0_neighbours = np.full(m, 2.0)
    axis0_neighbours[[0, -1]] -= 1.0
    axis1_neighbours = np.full(n, 2.0)
    axis1_neighbours[[0, -1]] -= 1.0
    if m == 1:
        axis0_neighbours[:] = 0.0
    if n == 1:
        axis1_neighbours[:] = 0.0
    degree = w0 * axis0_neighbours[:, None] + w1 * axis1_neighbours[None, :]
    square_sum = w0**2 * axis0_neighbours[:, None] + w1**2 * axis1_neighbours[None, :]
    coefficients = [tuple(float(c) for c in triple) for triple in coefficients]

    def value_blocks(k, rows, cols):
        di, dj = _SPDE_OFFSETS[k]
        d = degree[rows, cols]
        if (di, dj) == (0, 0):
            c_part, g_part, gg_part = cell, d, (d * d + square_sum[rows, cols]) / cell
        elif abs(di) + abs(dj) == 1:
            weight = w0 if di else w1
            d_other = degree[rows.start + di : rows.stop + di, cols.start + dj : cols.stop + dj]
            c_part, g_part, gg_part = 0.0, -weight, -weight * (d + d_other) / cell
        elif abs(di) == 2 or abs(dj) == 2:
            weight = w0 if di else w1
            c_part, g_part, gg_part = 0.0, 0.0, weight * weight / cell
        else:
            c_part, g_part, gg_part = 0.0, 0.0, 2.0 * w0 * w1 / cell
        shape = d.shape
        return [
            np.broadcast_to(a * c_part + b * g_part + e * gg_part, shape)
            for a, b, e in coefficients
        ]

    return stencil_csc(m, n, _SPDE_OFFSETS, value_blocks)
