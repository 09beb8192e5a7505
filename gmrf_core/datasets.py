"""Sparse test matrices on regular 2-D lattices, for benchmarks, tests and demos.

Every generator is vectorised over the lattice nodes (a Python loop runs over the
at most 13 stencil offsets, never over nodes) and returns a full symmetric (both
triangles stored) ``scipy.sparse.csc_matrix`` of float64 with sorted row indices and
no duplicate entries, so it can be given directly to :func:`gmrf_core.cholesky`.

Node numbering
--------------
Node ``(i, j)`` of an ``m x n`` lattice (``0 <= i < m``, ``0 <= j < n``) is unknown
number ``i * n + j`` (row-major, NumPy's C order), so a vector ``x`` of length
``m * n`` is the field ``x.reshape(m, n)``. With spacing ``(h0, h1)`` the node sits at
the point ``(i * h0, j * h1)``.

References
----------
Lindgren, F., Rue, H. and Lindström, J. (2011). An explicit link between Gaussian
fields and Gaussian Markov random fields: the stochastic partial differential
equation approach. *JRSS B* 73(4), 423–498.
"""

import math
import numbers

import numpy as np
import scipy.sparse as sp

from .errors import InputError

__all__ = ["laplacian_2d", "spde_precision_2d"]

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
_LAPLACIAN_OFFSETS = ((-1, 0), (0, -1), (0, 0), (0, 1), (1, 0))


def _lattice_size(value, name, owner, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{owner}: {name} must be an integer, got {value!r}.")
    value = int(value)
    if value < minimum:
        raise InputError(f"{owner}: {name} must be >= {minimum}, got {value}.")
    return value


def _lattice_spacing(spacing, owner):
    """Return the spacing as a pair (h0, h1) of finite positive floats."""
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


def _stencil_csc(m, n, offsets, value_blocks):
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


def laplacian_2d(m, n=None):
    """Dirichlet 5-point Laplacian on an ``m x n`` lattice (symmetric positive definite).

    The matrix has 4 on every diagonal entry and -1 between lattice neighbours
    (up/down/left/right), i.e. the standard finite-difference matrix of −Δ with
    homogeneous Dirichlet conditions on the ring of nodes just outside the lattice
    (unit spacing). Its eigenvalues are
    ``4 − 2 cos(π a/(m+1)) − 2 cos(π b/(n+1))`` for ``a = 1..m``, ``b = 1..n``, all
    positive, so it is SPD.

    Parameters
    ----------
    m : int
        Number of lattice rows, >= 1.
    n : int, optional
        Number of lattice columns (default ``m``).

    Returns
    -------
    scipy.sparse.csc_matrix
        ``(m*n, m*n)`` float64, both triangles, sorted indices; node ``(i, j)`` is
        unknown ``i*n + j``. At most 5 nonzeros per column.

    Raises
    ------
    InputError
        If ``m`` or ``n`` is not an integer >= 1.
    """
    m = _lattice_size(m, "m", "laplacian_2d")
    n = m if n is None else _lattice_size(n, "n", "laplacian_2d")

    def value_blocks(k, rows, cols):
        value = 4.0 if _LAPLACIAN_OFFSETS[k] == (0, 0) else -1.0
        return [np.full((rows.stop - rows.start, cols.stop - cols.start), value)]

    indptr, indices, (data,) = _stencil_csc(m, n, _LAPLACIAN_OFFSETS, value_blocks)
    return sp.csc_matrix((data, indices, indptr), shape=(m * n, m * n))


def _spde_lattice_parts(m, n, spacing, coefficients):
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

    return _stencil_csc(m, n, _SPDE_OFFSETS, value_blocks)


def spde_precision_2d(m, n=None, kappa=None, tau=1.0, spacing=1.0):
    """Precision of the 2-D SPDE (α = 2) Matérn field on a regular lattice.

    ``K = κ² C + G`` and ``Q = τ K C⁻¹ K = τ (κ⁴ C + 2κ² G + G C⁻¹ G)``
    (Lindgren, Rue & Lindström 2011, section 2.3 and appendix C), with the lumped
    mass ``C = h0*h1 I`` and ``G`` the 5-point stiffness matrix with a Neumann
    (zero-flux) boundary, i.e. the weighted graph Laplacian of the lattice (weights
    ``h1/h0`` along axis 0 and ``h0/h1`` along axis 1; plain graph Laplacian for unit
    square cells). Q has the 13-point pattern of G²: 13 nonzeros in every column
    at least two nodes from the boundary (fewer at the boundary). With this
    scaling the marginal variance away from the boundary approaches
    ``1/(4π κ² τ)`` as ``κ h → 0`` (the continuous Matérn value for ν = 1).

    Parameters
    ----------
    m : int
        Number of lattice rows, >= 1.
    n : int, optional
        Number of lattice columns (default ``m``).
    kappa : float, optional
        Inverse range parameter κ > 0. Default: ``sqrt(8) / (D/5)`` so that the
        practical range ``sqrt(8)/κ`` is a fifth of the lattice diagonal
        ``D = sqrt(((m-1) h0)² + ((n-1) h1)²)`` (``D`` at least one spacing).
    tau : float, optional
        Precision scale τ > 0 (default 1).
    spacing : float or (float, float), optional
        Node spacing ``h`` or ``(h0, h1)`` along axes 0 and 1 (default 1).

    Returns
    -------
    scipy.sparse.csc_matrix
        ``(m*n, m*n)`` float64, SPD, both triangles, sorted indices, no explicit
        zeros; node ``(i, j)`` is unknown ``i*n + j``.

    Raises
    ------
    InputError
        If a size is not an integer >= 1, or κ, τ or the spacing is not a finite
        positive number.

    References
    ----------
    Lindgren, F., Rue, H. and Lindström, J. (2011), JRSS B 73(4), 423–498.
    """
    m = _lattice_size(m, "m", "spde_precision_2d")
    n = m if n is None else _lattice_size(n, "n", "spde_precision_2d")
    h = _lattice_spacing(spacing, "spde_precision_2d")
    if kappa is None:
        diameter = max(math.hypot((m - 1) * h[0], (n - 1) * h[1]), min(h))
        kappa = math.sqrt(8.0) / (diameter / 5.0)
    for name, value in (("kappa", kappa), ("tau", tau)):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise InputError(
                f"spde_precision_2d: {name} must be a finite number > 0, got {value!r}."
            )
    kappa2 = float(kappa) ** 2
    coefficients = [(tau * kappa2 * kappa2, 2.0 * tau * kappa2, float(tau))]
    indptr, indices, (data,) = _spde_lattice_parts(m, n, h, coefficients)
    return sp.csc_matrix((data, indices, indptr), shape=(m * n, m * n))
