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
from .lattice import lattice_spacing, spde_lattice_parts, stencil_csc
from .validation import check_count

__all__ = ["laplacian_2d", "spde_precision_2d"]

_LAPLACIAN_OFFSETS = ((-1, 0), (0, -1), (0, 0), (0, 1), (1, 0))


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
    m = check_count(m, "m", "laplacian_2d")
    n = m if n is None else check_count(n, "n", "laplacian_2d")

    def value_blocks(k, rows, cols):
        value = 4.0 if _LAPLACIAN_OFFSETS[k] == (0, 0) else -1.0
        return [np.full((rows.stop - rows.start, cols.stop - cols.start), value)]

    indptr, indices, (data,) = stencil_csc(m, n, _LAPLACIAN_OFFSETS, value_blocks)
    return sp.csc_matrix((data, indices, indptr), shape=(m * n, m * n))


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
    m = check_count(m, "m", "spde_precision_2d")
    n = m if n is None else check_count(n, "n", "spde_precision_2d")
    h = lattice_spacing(spacing, "spde_precision_2d")
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
    indptr, indices, (data,) = spde_lattice_parts(m, n, h, coefficients)
    return sp.csc_matrix((data, indices, indptr), shape=(m * n, m * n))
