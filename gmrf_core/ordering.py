"""Fill-reducing orderings: approximate minimum degree, nested dissection, user permutations.

The validating wrappers around the AMD kernel (:mod:`gmrf_core.kernels.amd`) and
METIS (:mod:`gmrf_core.bindings.metis`), and the choice :func:`fill_reducing_ordering`
that :func:`gmrf_core.analyze` makes for ``ordering="auto"``. Every ordering is a
permutation ``perm`` with ``perm[k]`` the original index eliminated k-th (the
convention of CHOLMOD's ``Factor.P()``).
"""

import math
import numbers

import numpy as np

from .errors import GMRFError, InputError, NotSymmetricError
from .kernels import _status
from .kernels import amd as _kamd

__all__ = ["ORDERINGS", "amd_order", "nested_dissection", "fill_reducing_ordering"]

ORDERINGS = ("auto", "amd", "nd", "natural")

# Above this order "auto" uses nested dissection (METIS): on large 2-D and 3-D
# meshes it gives markedly less fill than minimum degree.
AUTO_ND_THRESHOLD = 1_000_000


def amd_order(indptr, indices, n, *, dense_threshold=10.0, aggressive=True):
    """Approximate minimum degree fill-reducing ordering of a symmetric pattern.

    Parameters
    ----------
    indptr : array_like of int, shape (n + 1,)
        Column pointers of the full symmetric sparsity pattern in CSC.
    indices : array_like of int
        Row indices: both triangles present, sorted within each column, no
        duplicates. Diagonal entries may be present; they are ignored. int32 and
        int64 arrays are used as they are (no copy).
    n : int
        Order of the matrix.
    dense_threshold : float, optional
        Rows with more than ``max(16, dense_threshold * sqrt(n))`` off-diagonal
        entries are "dense": they are left out of the minimum degree search
        and ordered last (default 10, as in SuiteSparse AMD). A negative value
        only postpones rows with more than ``n - 2`` entries.
    aggressive : bool, optional
        Aggressive element absorption (default True, as in SuiteSparse AMD).

    Returns
    -------
    perm : ndarray of int64, shape (n,)
        ``perm[k]`` is the original index of the k-th pivot; the reordered
        matrix is ``A[perm][:, perm]``.

    Raises
    ------
    InputError
        Wrong shapes or types, indices out of range, unsorted or duplicate
        row indices, NaN threshold.
    NotSymmetricError
        The pattern is not structurally symmetric.
    GMRFError
        The workspace could not be made large enough (should not happen).

    References
    ----------
    P. R. Amestoy, T. A. Davis and I. S. Duff, "An approximate minimum degree
    ordering algorithm", SIAM J. Matrix Anal. Appl. 17(4):886-905, 1996.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise InputError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    indptr = _as_index_array(indptr, "indptr")
    indices = _as_index_array(indices, "indices")
    if indptr.shape[0] != n + 1:
        raise InputError(
            f"indptr must have length n + 1 = {n + 1}, got {indptr.shape[0]}; "
            "pass the CSC column pointers of the n-by-n pattern"
        )
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise InputError("indptr must start at 0 and be non-decreasing (CSC column pointers)")
    nnz = int(indptr[n])
    if nnz > indices.shape[0]:
        raise InputError(f"indptr[n] = {nnz} exceeds len(indices) = {indices.shape[0]}")
    if not isinstance(dense_threshold, numbers.Real) or math.isnan(dense_threshold):
        raise InputError(f"dense_threshold must be a real number, got {dense_threshold!r}")

    perm = np.empty(n, dtype=np.int64)
    if n == 0:
        return perm

    code, column = _kamd._check_pattern(n, indptr, indices, np.empty(n, dtype=np.int64))
    if code == _status.INDEX_OUT_OF_RANGE:
        raise InputError(f"row index out of range [0, {n}) in column {column}")
    if code == _status.UNSORTED:
        raise InputError(
            f"row indices of column {column} are not strictly increasing (unsorted or "
            "duplicated); canonicalize the matrix first, e.g. scipy's A.sum_duplicates() "
            "and A.sort_indices()"
        )
    if code == _status.NOT_SYMMETRIC:
        raise NotSymmetricError(
            f"the sparsity pattern is not symmetric (first mismatch at column {column}); "
            "pass the pattern of A + A.T with both triangles"
        )

    # Like SuiteSparse AMD: the pattern plus 20% elbow room plus n. The kernel
    # only fails if the elbow room is below n, so one doubling is a safety net.
    iwlen = nnz + nnz // 5 + n
    for _attempt in range(3):
        iw, (pe, length, nv, nxt, last, head, hhead, elen, degree, w) = _kamd._workspace(n, iwlen)
        code, _where = _kamd._amd(
            n,
            indptr,
            indices,
            perm,
            iw,
            pe,
            length,
            nv,
            nxt,
            last,
            head,
            hhead,
            elen,
            degree,
            w,
            np.zeros(2, dtype=np.int64),
            float(dense_threshold),
            1 if aggressive else 0,
        )
        if code == _status.OK:
            return perm
        if code != _status.WORKSPACE_TOO_SMALL:
            break
        iwlen *= 2
    raise GMRFError(f"AMD ordering failed with status {code} (n = {n}, nnz = {nnz})")


def _as_index_array(a, name):
    """A contiguous 1-D integer array: int32 and int64 kept as they are (no copy), other
    integer types converted to int64; non-integer input rejected."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype in (np.int32, np.int64) and arr.flags.c_contiguous:
        return arr
    return np.ascontiguousarray(arr, dtype=np.int64)


def nested_dissection(indptr, indices, n):
    """Nested-dissection ordering from METIS (``METIS_NodeND`` through pymetis).

    Parameters
    ----------
    indptr, indices : numpy.ndarray
        Full symmetric CSC pattern, already validated (the diagonal is removed in the
        binding: METIS wants a graph).
    n : int
        Order of the matrix.

    Returns
    -------
    perm : numpy.ndarray of int64
    """
    from .bindings.metis import nested_dissection as _metis_nested_dissection

    return _metis_nested_dissection(indptr, indices, n)


def fill_reducing_ordering(indptr, indices, n, ordering="auto"):
    """The fill-reducing permutation chosen by ``ordering`` for a validated symmetric pattern.

    Parameters
    ----------
    indptr, indices : numpy.ndarray
        Full symmetric CSC pattern (validated by :func:`gmrf_core.linalg.as_csc`).
    n : int
        Order of the matrix.
    ordering : {"auto", "amd", "nd", "natural"} or array of int
        "auto" is AMD up to ``AUTO_ND_THRESHOLD`` unknowns and nested dissection
        above; an array is a user permutation, checked here.

    Returns
    -------
    perm : numpy.ndarray of int64
        ``perm[k]`` is the original index eliminated k-th.

    Raises
    ------
    InputError
        An unknown name, or an array that is not a permutation of ``range(n)``.
    """
    if isinstance(ordering, str):
        method = ordering.lower()
        if method not in ORDERINGS:
            raise InputError(
                f"ordering must be one of {ORDERINGS} or a permutation; got {ordering!r}."
            )
        if method == "auto":
            method = "nd" if n > AUTO_ND_THRESHOLD else "amd"
        if method == "natural":
            return np.arange(n, dtype=np.int64)
        if method == "amd":
            return amd_order(indptr, indices, n)
        return nested_dissection(indptr, indices, n)
    perm = np.asarray(ordering)
    if perm.ndim != 1 or perm.size != n or not np.issubdtype(perm.dtype, np.integer):
        raise InputError(f"a user ordering must be an integer permutation of length {n}.")
    if perm.min() < 0 or perm.max() >= n:
        raise InputError(f"the user ordering has entries outside [0, {n}).")
    check = np.zeros(n, dtype=bool)
    check[perm] = True
    if not check.all():
        raise InputError("the user ordering is not a permutation (it repeats indices).")
    return perm.astype(np.int64)
