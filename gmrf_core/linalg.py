"""Sparse Cholesky factorization of symmetric positive definite matrices.

The public face of the Numba kernels in :mod:`gmrf_core.kernels`: the one place
where input is validated (:func:`as_csc`, before any kernel reads an index) and
where kernel statuses become exceptions (``_ERRORS``).

Convention: every matrix is given as a *full* symmetric sparse matrix (both
triangles stored), in any ``scipy.sparse`` format, sparse matrix or sparse
array. The factorization computes ``Q[perm][:, perm] = L Lᵀ`` where ``perm``
combines the fill-reducing ordering with a postorder of the elimination tree.

Typical use, one analysis per sparsity pattern and one numeric factorization
per hyperparameter value::

    symbolic = gm.analyze(Q0)          # ordering + symbolic analysis, once
    factor = symbolic.factorize(Q0)
    for theta in thetas:
        factor.refactorize(Q(theta))   # same pattern, new values
        factor.logdet(), factor.solve(b)

Threads: a :class:`Symbolic` is immutable once built. A :class:`Factor` may be
used from several threads: ``logdet``, the solves, ``sample``, ``L``, ``copy``
and ``selected_inverse`` run concurrently with each other (each call has its own
work space), while ``refactorize`` waits for them and they wait for it (a
readers-writer lock), so no call ever sees a half-written factor. A
:class:`SelectedInverse` is read-only after construction.
"""

import contextlib
import math
import numbers
import os
import threading
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from .bindings import blas
from .errors import (
    GMRFError,
    InputError,
    NotPositiveDefiniteError,
    NotSymmetricError,
    PatternError,
    PatternMismatchError,
)
from .kernels import _status
from .kernels import cholesky as _kchol
from .kernels import selinv as _kselinv
from .kernels import symbolic as _ksym
from .ordering import ORDERINGS, fill_reducing_ordering

__all__ = [
    "Symbolic",
    "Factor",
    "SelectedInverse",
    "FactorPool",
    "analyze",
    "cholesky",
    "as_csc",
    "ORDERINGS",
]

# CHOLMOD's default relaxed-amalgamation parameters (cholmod_common: nrelax, zrelax)
_RELAX = (4, 16, 48, 0.8, 0.1, 0.05)

# Kernel status -> (exception, message). The message is formatted with ``where`` (the
# kernel's place) and the caller's context; ``column`` is a column of the original matrix.
_ERRORS = {
    _status.NOT_SYMMETRIC: (
        NotSymmetricError,
        "{name}'s sparsity pattern is not symmetric (first at column {where}). gmrf_core "
        "expects the full symmetric matrix with both triangles stored; if you have only one "
        "triangle T, pass T + T.T - diag(T).",
    ),
    _status.NOT_FINITE: (InputError, "{name} has a NaN or infinite entry in column {where}."),
    _status.VALUES_NOT_SYMMETRIC: (
        NotSymmetricError,
        "{name} is not symmetric: column {where} differs from its row by more than {rtol:g} "
        "relative to sqrt(|q_ii q_jj|). Pass the full symmetric matrix, e.g. (Q + Q.T) / 2.",
    ),
    _status.NOT_POSITIVE_DEFINITE: (
        NotPositiveDefiniteError,
        "{name} is not positive definite: the {stage} broke down at column {column} (pivot "
        "{where} in the factor's ordering). Check that the matrix is a proper precision (an "
        "intrinsic model needs constraints or a small diagonal addition).",
    ),
    _status.OUTSIDE_PATTERN: (
        PatternError,
        "entry ({row}, {col}) lies outside the sparsity pattern of the Cholesky factor, where "
        "the selected inverse is not computed. Only entries on the pattern of L (which "
        "contains Q's pattern) are available.",
    ),
    _status.INDEX_OUT_OF_RANGE: (
        InputError,
        "{name} is malformed: {major} {where} holds an index outside [0, {minor_size}) (were "
        "its index arrays changed after construction?). Build it with scipy.sparse "
        "constructors, or check it with {name}.check_format(full_check=True).",
    ),
    _status.BAD_POINTERS: (
        InputError,
        "{name} is malformed: its index pointers (indptr) must start at 0, never decrease and "
        "end at most at len(indices); the first wrong one is at {major} {where}. Build it with "
        "scipy.sparse constructors, or check it with {name}.check_format(full_check=True).",
    ),
    _status.UNSORTED: (
        InputError,
        "{name}'s row indices are unsorted or repeated in column {where}; canonicalize it "
        "first ({name}.sum_duplicates()).",
    ),
    _status.INCONSISTENT: (
        GMRFError,
        "gmrf_core internal error: {stage} is inconsistent at {where}. Please report it.",
    ),
    _status.WORKSPACE_TOO_SMALL: (
        GMRFError,
        "gmrf_core internal error: a work space of the {stage} is too small. Please report it.",
    ),
}


def _raise_for(code, where, **context):
    """Raise the exception ``_ERRORS`` gives for a kernel status; nothing for OK.

    ``context`` fills the message (``name``, ``column``, ...); a NotPositiveDefiniteError
    carries ``context["column"]`` as its ``.column``.
    """
    if code == _status.OK:
        return
    cls, template = _ERRORS.get(
        code, (GMRFError, "gmrf_core internal error: unknown kernel status {code}.")
    )
    message = template.format(where=where, code=code, **context)
    if cls is NotPositiveDefiniteError:
        raise cls(message, context["column"])
    raise cls(message)


# -- input validation ---------------------------------------------------------------------


def _index_array(array, what, name):
    """The 1-D integer index array ``array`` of a sparse matrix, or raise InputError."""
    array = np.asarray(array)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise InputError(
            f"{name} is malformed: its {what} must be a 1-D integer array; got dtype "
            f"{array.dtype} and shape {array.shape}."
        )
    return array


def _check_compressed(indptr, indices, n_major, n_minor, name, major):
    """O(nnz) check of a compressed structure before scipy or a kernel indexes with it.

    Returns True if it is canonical (sorted, no duplicates); raises InputError if an index
    or pointer is out of range.
    """
    indptr = _index_array(indptr, "indptr", name)
    indices = _index_array(indices, "indices", name)
    if indptr.size != n_major + 1:
        raise InputError(
            f"{name} is malformed: indptr has length {indptr.size}, but {n_major} {major}s "
            f"need {n_major + 1}."
        )
    code, where = _ksym._check_compressed(n_major, n_minor, indptr, indices)
    if code == _status.UNSORTED:
        return False
    _raise_for(code, where, name=name, major=major, minor_size=n_minor)
    return True


def _check_source_structure(matrix, name):
    """Check the raw arrays of a sparse matrix in a format scipy converts in C++ (CSR, BSR,
    COO), so that a malformed one raises instead of crashing the conversion."""
    nrow, ncol = matrix.shape
    if matrix.format == "csr":
        _check_compressed(matrix.indptr, matrix.indices, nrow, ncol, name, "row")
    elif matrix.format == "bsr":
        rows, cols = matrix.blocksize
        _check_compressed(matrix.indptr, matrix.indices, nrow // rows, ncol // cols, name, "row")
        data = np.asarray(matrix.data)
        if data.ndim != 3 or data.shape[1:] != (rows, cols) or data.shape[0] < matrix.indptr[-1]:
            raise InputError(f"{name} is malformed: its BSR data has shape {data.shape}.")
    elif matrix.format == "coo":
        row = _index_array(matrix.row, "row indices", name)
        col = _index_array(matrix.col, "column indices", name)
        if not (row.size == col.size == np.asarray(matrix.data).size):
            raise InputError(f"{name} is malformed: its COO row, col and data lengths differ.")
        if row.size and (min(row.min(), col.min()) < 0 or row.max() >= nrow or col.max() >= ncol):
            raise InputError(
                f"{name} is malformed: a COO index lies outside its shape {matrix.shape}."
            )


def as_csc(matrix, name="Q"):
    """THE validator of sparse input: ``matrix`` as a canonical float64 CSC matrix.

    Accepts any scipy.sparse matrix or array, and dense 2-D arrays. The index
    structure is checked in O(nnz) before scipy's converters or any kernel index
    with it (pointers that start at 0, never decrease and stay within the index
    array; indices within the shape; integer index arrays), so a hand-built or
    mutated matrix raises instead of crashing. Duplicates are summed and row
    indices sorted (a copy is made only when needed); scipy's cached
    ``has_canonical_format`` flag is never trusted.

    Parameters
    ----------
    matrix : scipy.sparse matrix or array, or 2-D array_like
    name : str
        Name used in error messages.

    Returns
    -------
    scipy.sparse.csc_matrix
        Canonical (sorted, no duplicates), float64, int32 or int64 indices; shares
        the input's arrays when they already are.

    Raises
    ------
    InputError
        Not 2-D, complex or non-numeric values, malformed index structure.
    """
    if sp.issparse(matrix):
        if matrix.ndim != 2:
            raise InputError(f"{name} must be 2-D, got {matrix.ndim} dimensions.")
        _check_source_structure(matrix, name)
        try:
            source = matrix if matrix.format == "csc" else matrix.tocsc()
        except (ValueError, TypeError, IndexError) as exc:
            raise InputError(f"{name} could not be converted to CSC: {exc}") from exc
    else:
        try:
            dense = np.asarray(matrix)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise InputError(f"{name} must be a scipy.sparse matrix; got {type(matrix)}.") from exc
        if dense.dtype == object or dense.ndim != 2:
            raise InputError(
                f"{name} must be a 2-D scipy.sparse matrix (or dense array); got "
                f"{type(matrix).__name__} with shape {getattr(dense, 'shape', None)}."
            )
        if dense.dtype.kind not in "biufc":
            raise InputError(f"{name} must hold numbers; got dtype {dense.dtype}.")
        source = sp.csc_matrix(dense)
    return _canonical_csc(source, name)


def _canonical_csc(source, name):
    """Validate a CSC matrix's arrays and return it canonical and float64 (see as_csc)."""
    nrow, ncol = source.shape
    canonical = _check_compressed(source.indptr, source.indices, ncol, nrow, name, "column")
    indptr, indices = source.indptr, source.indices
    nnz = int(indptr[ncol])
    data = np.asarray(source.data)
    if data.ndim != 1 or data.size < nnz:
        raise InputError(
            f"{name} is malformed: its data array has shape {data.shape}, but indptr "
            f"announces {nnz} entries."
        )
    if np.iscomplexobj(data):
        raise InputError(f"{name} must be real; got dtype {data.dtype}.")
    if data.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold numbers; got dtype {data.dtype}.")
    if indices.size != nnz:  # scipy allows a longer tail after indptr[-1]: not ours
        indices, data = indices[:nnz], data[:nnz]
    if data.dtype != np.float64:
        data = data.astype(np.float64)
    out = sp.csc_matrix((data, indices, indptr), shape=source.shape, copy=False)
    if canonical:
        out.has_canonical_format = True  # just checked: spares scipy's own pass
    else:
        out = sp.csc_matrix(
            (out.data.copy(), out.indices.copy(), out.indptr.copy()), shape=source.shape
        )
        out.has_sorted_indices = False
        out.has_canonical_format = False
        out.sum_duplicates()
    return out


def _check_square(Q, name="Q"):
    nrow, ncol = Q.shape
    if nrow != ncol:
        raise InputError(f"{name} must be square; got shape {Q.shape}.")
    if nrow == 0:
        raise InputError(f"{name} is empty (shape {Q.shape}); nothing to factorize.")


def _check_rtol(symmetry_rtol):
    if isinstance(symmetry_rtol, bool) or not isinstance(symmetry_rtol, numbers.Real):
        raise InputError(f"symmetry_rtol must be a real number >= 0; got {symmetry_rtol!r}.")
    value = float(symmetry_rtol)
    if math.isnan(value) or value < 0:
        raise InputError(f"symmetry_rtol must be a real number >= 0; got {symmetry_rtol!r}.")
    return value


def _check_threads(threads):
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise InputError(f"threads must be a positive integer; got {threads!r}.")
    return int(threads)


def _check_positions(positions, size, name="positions"):
    """1-D integer positions into a factor storage of ``size`` entries, or raise."""
    positions = np.asarray(positions)
    if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
        raise InputError(
            f"{name} must be a 1-D integer array from Symbolic.positions; got dtype "
            f"{positions.dtype} and shape {positions.shape}."
        )
    if positions.size and (positions.min() < 0 or positions.max() >= size):
        raise InputError(
            f"{name} has entries outside [0, {size}): they do not come from Symbolic.positions "
            "of this analysis."
        )
    return positions


class _SharedLock:
    """A readers-writer lock: many holders of ``shared()`` or one of ``exclusive()``.

    A waiting writer blocks new readers, so a refactorize is not starved by a stream of
    solves. Not reentrant: linalg takes it once per public call, never nested.
    """

    def __init__(self):
        self._condition = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self):
        with self._condition:
            while self._writer or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if self._readers == 0:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._condition:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._condition.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


class _Scratch(threading.local):
    """Work arrays for the symbolic phase, kept between analyses (one set per thread).

    Each analysis needs about ten temporary arrays of length n; handing out views of
    one retained buffer spares the page faults of fresh allocations, which cost more
    than the sweeps themselves. Buffers above ``_SCRATCH_KEEP`` elements are not kept.
    """

    def __init__(self):
        self._ints = np.empty(0, dtype=np.int64)
        self._floats = np.empty(0, dtype=np.float64)

    def ints(self, count, size):
        """``count`` int64 arrays of length ``size`` (views; contents undefined)."""
        buffer = self._ints
        if buffer.size < count * size:
            buffer = np.empty(count * size, dtype=np.int64)
            if buffer.size <= _SCRATCH_KEEP:
                self._ints = buffer
        return [buffer[k * size : (k + 1) * size] for k in range(count)]

    def floats(self, size):
        """A float64 array of length ``size`` (a view; contents undefined)."""
        buffer = self._floats
        if buffer.size < size:
            buffer = np.empty(size, dtype=np.float64)
            if buffer.size <= _SCRATCH_KEEP:
                self._floats = buffer
        return buffer[:size]


# parallel factorization: below this many flops threads cost more than they gain; a
# schedule must promise at least this share of the sequential time, split at most so many
# subtrees, and stops at this load balance; the ancestors' BLAS speed-up on two threads
_PARALLEL_MIN_FLOPS = 2e7
_PARALLEL_GAIN = 0.85
_SCHEDULE_MAX_SPLITS = 64
_BALANCE = 1.05
_TOP_SPEEDUP = 1.5
# parallel solves: below this many entries of L the threads' start-up and the copy of the
# right-hand side per worker cost more than the halved pass over L gains (n = 10⁴ lattice,
# nnz(L) 0.7 M: 2.5 ms on two threads vs 1.8 ms on one)
_PARALLEL_SOLVE_MIN_NNZ = 2_000_000

_SCRATCH_KEEP = 2**24  # 128 MiB of int64
_scratch = _Scratch()
_executors = {}
_executors_lock = threading.Lock()
# guards the arrays a Symbolic derives on first use (threads share one analysis)
_derived_lock = threading.Lock()


def _run_parallel(func, arguments):
    """``[func(*args) for args in arguments]``, each call on its own thread (the kernels
    release the GIL)."""
    workers = len(arguments)
    with _executors_lock:
        # a forked child inherits the pools but not their threads: start its own
        key = (os.getpid(), workers)
        pool = _executors.get(key)
        if pool is None:
            pool = _executors[key] = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="gmrf_core"
            )
    futures = [pool.submit(func, *args) for args in arguments]
    return [future.result() for future in futures]


class Symbolic:
    """Result of the symbolic analysis of a sparsity pattern (see :func:`analyze`).

    Holds the fill-reducing permutation, the supernode partition and row
    structure of L, and the map from Q's entries into the factor. Reusable for
    every matrix with the same pattern.

    Attributes
    ----------
    n : int
        Order of the matrix.
    perm : numpy.ndarray
        Permutation with ``Q[perm][:, perm] = L Lᵀ``.
    nnz : int
        Number of entries of L (lower triangle, diagonal included).
    nsuper : int
        Number of supernodes.
    flops : float
        Floating-point operations of one numeric factorization (Σ c_j²).
    pattern_token : str
        Identifies this analysis (pattern, ordering, storage positions); equal for
        pickled copies. A Symbolic is immutable, so threads may share it.
    """

    def __init__(self, Q, ordering="auto", symmetry_rtol=1e-8, threads=1):
        self.symmetry_rtol = _check_rtol(symmetry_rtol)
        self.threads = _check_threads(threads)
        Q = as_csc(Q)
        _check_square(Q)
        n = Q.shape[0]
        self.n = n
        # a private, read-only copy of the validated pattern, as int32 whenever it fits (the
        # kernels then compile once and the symbolic phase moves half the bytes): changes the
        # caller makes to Q's arrays later cannot reach the kernels
        index_dtype = np.int32 if Q.nnz < 2**31 - 1 and n < 2**31 - 1 else np.int64
        indptr = np.array(Q.indptr, dtype=index_dtype)
        indices = np.array(Q.indices, dtype=index_dtype)
        indptr.flags.writeable = False
        indices.flags.writeable = False
        self._indptr = indptr
        self._indices = indices
        # identifies this analysis (its pattern, ordering and storage positions); kept by
        # pickled copies, so ownership checks work across processes too
        self.pattern_token = uuid.uuid4().hex

        code, column = self._set_mirror()
        _raise_for(code, column, name="Q")

        perm = fill_reducing_ordering(indptr, indices, n, ordering)
        self.ordering = ordering if isinstance(ordering, str) else "user"
        self._analyze(indptr, indices, perm)

    def _analyze(self, indptr, indices, perm_in):
        n = self.n
        # temporaries come from reusable scratch memory (CHOLMOD's Common->Iwork): freshly
        # mapped pages cost more here than the sweeps that use them
        w = _scratch.ints(8, n + 1)
        fwork = _scratch.floats(n)
        pinv = np.empty(n, dtype=np.int64)
        pinv[perm_in] = np.arange(n, dtype=np.int64)

        # elimination tree of C = P Q Pᵀ, then its postorder composed into the permutation
        _ksym._etree_q(n, indptr, indices, perm_in, pinv, w[0], w[1])
        _ksym._postorder(n, w[0], w[2], w[3], w[4], w[1])
        perm = np.empty(n, dtype=np.int64)
        parent = np.empty(n, dtype=np.int64)
        _ksym._compose_postorder(n, w[0], w[2], perm_in, w[1], perm, pinv, parent)

        colcount = np.empty(n, dtype=np.int64)
        c_ptr = np.empty(n + 1, dtype=np.int64)
        _ksym._column_counts_q(
            n, indptr, indices, perm, pinv, parent, colcount, w[0], w[1], w[2], w[3], c_ptr
        )

        nsuper = _ksym._supernodes(
            n, parent, colcount, *_RELAX, w[7], w[0], w[1], w[2], w[3], w[4], w[5], w[6], fwork
        )
        super_ptr = w[7][: nsuper + 1].copy()
        col_super = np.empty(n, dtype=np.int64)
        sparent = np.empty(nsuper, dtype=np.int64)
        nrows = w[0][:nsuper]
        _ksym._supernode_structure_counts(
            n, nsuper, super_ptr, parent, colcount, col_super, sparent, nrows
        )
        rows_ptr = np.empty(nsuper + 1, dtype=np.int64)
        lx_ptr = np.empty(nsuper + 1, dtype=np.int64)
        # stored entries: relaxed supernodes keep a few explicit zeros (CHOLMOD counts them too)
        self.nnz = int(_ksym._supernode_offsets(nsuper, super_ptr, nrows, rows_ptr, lx_ptr))
        rows = np.empty(int(rows_ptr[-1]), dtype=np.int64)
        code, _where = _ksym._supernode_rows_q(
            n,
            nsuper,
            super_ptr,
            indptr,
            indices,
            perm,
            pinv,
            col_super,
            sparent,
            rows_ptr,
            rows,
            w[1][:nsuper],
            w[2][:nsuper],
        )
        _raise_for(code, _where, stage="the supernode row count")

        self.perm = perm
        self.pinv = pinv
        self.parent = parent
        self.colcount = colcount
        self.nsuper = nsuper
        self.super_ptr = super_ptr
        self.super_parent = sparent
        self.rows_ptr = rows_ptr
        self.rows = rows
        self.lx_ptr = lx_ptr
        self.col_super = col_super
        self._c_ptr = c_ptr
        self._set_lower_map()
        self._cwork_size = max(
            1, int(_ksym._update_workspace_size(nsuper, super_ptr, rows_ptr, rows, col_super))
        )
        self.flops = float(_ksym._flop_count(nsuper, super_ptr, rows_ptr))
        # the one-thread schedule: every supernode in order, one owner
        self.all_supernodes = np.arange(nsuper, dtype=np.int64)
        self.no_owner = np.zeros(nsuper, dtype=np.int64)
        self._max_rows = int(_kchol._max_rows(nsuper, rows_ptr))  # solve buffer height

    # derived from the pattern in O(nnz): not pickled, rebuilt on load (equal to the
    # originals), faster than shipping them (the mirror map: 3 ms at 300², 29 ms at 1000²,
    # against 11 and 120 ms at 0.5 GB/s); the lower-triangle map (_c_src, _dest) travels:
    # its 94 ms at 1000² are about what its bytes cost (128 ms)
    _DERIVED = ("_mirror", "_diag_pos")
    # made on first use and not pickled either: q_positions and the selected inverse's
    # gather order and relative-index maps
    _LAZY = ("_q_positions", "_q_sorted", "_inverse_maps")

    def _set_mirror(self):
        """``_mirror`` (the position of each entry's transpose) and ``_diag_pos``; returns
        the kernel's status and column."""
        n, indices = self.n, self._indices
        work = _scratch.ints(1, n + 1)[0]
        self._mirror = np.empty(indices.size, dtype=indices.dtype)
        self._diag_pos = np.empty(n, dtype=np.int64)
        return _ksym._mirror_map(n, self._indptr, indices, self._mirror, work, self._diag_pos)

    def _set_lower_map(self):
        """Lower triangle of C = P Q Pᵀ: where each entry comes from in Q (``_c_src``) and
        goes to in the factor (``_dest``)."""
        n, indices = self.n, self._indices
        size = int(self._c_ptr[n])
        self._c_src = np.empty(size, dtype=indices.dtype)
        self._dest = np.empty(size, dtype=np.int64)
        _ksym._lower_map_q(
            n,
            self.nsuper,
            self.super_ptr,
            self.rows_ptr,
            self.rows,
            self.lx_ptr,
            self._indptr,
            indices,
            self.perm,
            self.pinv,
            self._c_ptr,
            self._c_src,
            self._dest,
            _scratch.ints(1, n + 1)[0],
        )

    # -- numeric phase ----------------------------------------------------------
    def check_values(self, Q, name="Q"):
        """Validate ``Q`` against this analysis: pattern, finiteness, symmetry.

        Returns Q's data array (float64) ready for the numeric kernels. A CSC matrix
        whose index arrays equal the analysed ones is the fast path (two comparisons,
        no copies); anything else is validated by :func:`as_csc` first.

        Raises
        ------
        PatternMismatchError
            If Q's sparsity pattern is not the analysed one.
        InputError
            If Q is malformed or has NaN or infinite entries.
        NotSymmetricError
            If ``|q_ij - q_ji| > symmetry_rtol * sqrt(|q_ii q_jj|)`` somewhere.
        """
        if type(Q) is _CheckedValues and Q.symbolic is self:
            return Q.data  # assembled by the library from values it has validated
        data = self._data_on_pattern(Q, name)
        if data is None:
            Q = as_csc(Q, name)
            if Q.shape != (self.n, self.n):
                raise PatternMismatchError(
                    f"{name} has shape {Q.shape}, but the analysis was done for "
                    f"({self.n}, {self.n})."
                )
            if not self.same_pattern(Q):
                raise PatternMismatchError(
                    f"{name}'s sparsity pattern differs from the analysed one (nnz {Q.nnz} vs "
                    f"{self._indices.size}). Keep explicit zeros so the pattern stays fixed, or "
                    "call gm.analyze again for the new pattern."
                )
            data = Q.data
        code, column = _ksym._check_values(
            self.n,
            self._indptr,
            self._indices,
            data,
            self._mirror,
            self.symmetry_rtol,
            self._diag_pos,
        )
        _raise_for(code, column, name=name, rtol=self.symmetry_rtol)
        return data

    def _data_on_pattern(self, Q, name):
        """Q's values if Q is a CSC matrix with exactly the analysed index arrays, else None."""
        if not (sp.issparse(Q) and Q.format == "csc" and Q.shape == (self.n, self.n)):
            return None
        indptr, indices, data = Q.indptr, Q.indices, Q.data
        nnz = self._indices.size
        if not (
            isinstance(indptr, np.ndarray)
            and isinstance(indices, np.ndarray)
            and isinstance(data, np.ndarray)
            and indptr.ndim == indices.ndim == data.ndim == 1
            and indptr.dtype.kind in "iu"
            and indices.dtype.kind in "iu"
            and indices.size >= nnz
            and data.size >= nnz
            and _ksym._equal(indptr, self._indptr)
            and _ksym._equal(indices[:nnz], self._indices)
        ):
            return None
        if np.iscomplexobj(data) or data.dtype.kind not in "biuf":
            raise InputError(f"{name} must hold real numbers; got dtype {data.dtype}.")
        return np.ascontiguousarray(data[:nnz], dtype=np.float64)

    @property
    def q_positions(self):
        """Position in the factor storage of every entry of Q's pattern (CSC order).

        Lower-triangle entries of the permuted matrix come from the scatter map,
        the others through their symmetric mirror. Computed once, on first use;
        read-only.
        """
        if getattr(self, "_q_positions", None) is None:
            with _derived_lock:
                if getattr(self, "_q_positions", None) is None:
                    positions = self._storage_positions()
                    positions.flags.writeable = False
                    self._q_positions = positions
        return self._q_positions

    def _q_gather(self):
        """``(sorted, order)``: :attr:`q_positions` in increasing order and where each goes
        (``sorted[k] = q_positions[order[k]]``), so that a gather reads the factor storage
        in one ascending pass. Computed once, on first use; int32 where the sizes allow
        (then together the size of q_positions)."""
        pair = getattr(self, "_q_sorted", None)
        if pair is None:
            positions = self.q_positions
            with _derived_lock:
                pair = getattr(self, "_q_sorted", None)
                if pair is None:
                    order = np.argsort(positions, kind="stable")
                    small = max(positions.size, int(self.lx_ptr[-1])) < 2**31
                    index = np.int32 if small else np.int64
                    pair = (positions[order].astype(index), order.astype(index))
                    self._q_sorted = pair
        return pair

    def _relative_maps(self):
        """``(rel_ptr, rel)``: the selected inversion's relative-index maps, which place
        each supernode's rows among its ancestors' (kernels.selinv._relative_maps).

        They depend on the pattern only: computed once, on first use (O(nnz(L)) merges;
        about 7 % of nnz(L) entries, int32, on the SPDE-type 2-D patterns).
        """
        maps = getattr(self, "_inverse_maps", None)
        if maps is None:
            with _derived_lock:
                maps = getattr(self, "_inverse_maps", None)
                if maps is None:
                    rel_ptr = np.empty(self.nsuper + 1, dtype=np.int64)
                    args = (self.nsuper, self.super_ptr, self.rows_ptr, self.rows, self.col_super)
                    size = _kselinv._relative_maps(*args, rel_ptr, None)
                    rel = np.empty(max(int(size), 1), dtype=np.int32)
                    _kselinv._relative_maps(*args, rel_ptr, rel)
                    maps = self._inverse_maps = (rel_ptr, rel)
        return maps

    def _storage_positions(self):
        """:attr:`q_positions`, as a new array (O(nnz): a scatter and a gather)."""
        positions = np.empty(self._indices.size, dtype=np.int64)
        positions[self._c_src] = self._dest
        lower = np.zeros(self._indices.size, dtype=bool)
        lower[self._c_src] = True
        upper = np.flatnonzero(~lower)
        positions[upper] = positions[self._mirror[upper]]
        return positions

    def schedule(self, workers):
        """Independent subtrees of the supernodal elimination tree for ``workers`` threads.

        Returns None when one thread should do everything (a single worker, a small
        or unbalanced tree), else ``(orders, owner, top)``: ``orders[k]`` the supernodes
        worker k factorizes (whole subtrees, increasing), ``top`` the remaining
        ancestors, done afterwards with multithreaded BLAS, and ``owner`` the worker
        of each supernode (-1 on ``top``). Subtrees are split greedily, heaviest first,
        and assigned to the least loaded worker (longest processing time first) until
        the loads balance (Geist & Ng 1989, subtree-to-processor mapping). A supernode's
        weight is the work done while it is factorized: its dense block and every update
        it receives (:func:`kernels.symbolic._factorization_work`); cached per worker count.
        """
        if workers < 2:
            return None
        cache = self.__dict__.setdefault("_schedules", {})
        if workers not in cache:
            cache[workers] = self._tree_schedule(workers)
        return cache[workers]

    def _tree_schedule(self, workers):
        nsuper = self.nsuper
        weight = np.empty(nsuper, dtype=np.float64)
        _ksym._factorization_work(
            nsuper, self.super_ptr, self.rows_ptr, self.rows, self.col_super, weight
        )
        total = float(weight.sum())
        if total < _PARALLEL_MIN_FLOPS:
            return None
        subtree = weight.copy()
        first = np.arange(nsuper, dtype=np.int64)
        _ksym._subtree_weights(nsuper, self.super_parent, subtree, first)
        # children of every supernode: kids[bounds[s + 1]:bounds[s + 2]] (index 0: roots)
        kids = np.argsort(self.super_parent, kind="stable")
        bounds = np.searchsorted(self.super_parent[kids], np.arange(-1, nsuper + 1))
        pieces = list(kids[bounds[0] : bounds[1]])
        top = []
        best = None
        for _ in range(_SCHEDULE_MAX_SPLITS):
            loads = [0.0] * workers
            bins = [[] for _ in range(workers)]
            for piece in sorted(pieces, key=lambda p: -subtree[p]):
                k = int(np.argmin(loads))
                bins[k].append(piece)
                loads[k] += subtree[piece]
            # ancestors run after the subtrees, on multithreaded BLAS
            estimate = max(loads) + float(weight[top].sum()) / _TOP_SPEEDUP
            if best is None or estimate < best[0]:
                best = (estimate, [list(b) for b in bins], list(top))
            if max(loads) <= _BALANCE * sum(loads) / workers:
                break
            heaviest = max(pieces, key=lambda p: subtree[p])
            children = kids[bounds[heaviest + 1] : bounds[heaviest + 2]]
            if children.size == 0:
                break
            pieces.remove(heaviest)
            top.append(heaviest)
            pieces.extend(int(c) for c in children)
        estimate, bins, top = best
        if estimate > _PARALLEL_GAIN * total or sum(1 for b in bins if b) < 2:
            return None
        owner = np.full(nsuper, -1, dtype=np.int64)
        orders = []
        for k, pieces_k in enumerate(bins):
            ranges = [np.arange(first[p], p + 1, dtype=np.int64) for p in sorted(pieces_k)]
            order = np.concatenate(ranges) if ranges else np.empty(0, dtype=np.int64)
            owner[order] = k
            orders.append(order)
        return orders, owner, np.sort(np.asarray(top, dtype=np.int64))

    def same_pattern(self, B):
        """True if the (validated, canonical) CSC matrix ``B`` has exactly Q's pattern."""
        return (
            B.shape == (self.n, self.n)
            and _ksym._equal(B.indptr, self._indptr)
            and _ksym._equal(B.indices, self._indices)
        )

    def positions(self, rows, cols):
        """Factor-storage positions of the entries (rows[k], cols[k]) of Q (original order).

        Raises
        ------
        InputError
            If rows and cols are not integer arrays of one shape, or hold indices
            outside ``[0, n)``.
        PatternError
            If an entry lies outside the pattern of L (where Q⁻¹ is not computed).
        """
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise InputError(
                f"rows and cols must be 1-D arrays of one length; got shapes {rows.shape} and "
                f"{cols.shape}."
            )
        if rows.size and (rows.dtype.kind not in "iu" or cols.dtype.kind not in "iu"):
            raise InputError(
                f"rows and cols must hold integers; got dtypes {rows.dtype} and {cols.dtype}."
            )
        if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= self.n):
            raise InputError(f"indices out of range for a {self.n} x {self.n} matrix.")
        # int32 and int64 indices go to the kernel as they are (no copies)
        if rows.dtype not in (np.int32, np.int64) or cols.dtype != rows.dtype:
            rows = rows.astype(np.int64)
            cols = cols.astype(np.int64)
        pos = np.empty(rows.size, dtype=np.int64)
        code, bad = _kselinv._locate(
            self.n,
            self.super_ptr,
            self.rows_ptr,
            self.rows,
            self.lx_ptr,
            self.col_super,
            self.pinv,
            rows,
            cols,
            pos,
        )
        if code != _status.OK:
            _raise_for(code, bad, row=rows[bad], col=cols[bad])
        return pos

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in self._DERIVED + self._LAZY:
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # an unpickled copy keeps its pattern read-only too
        self._indptr.flags.writeable = False
        self._indices.flags.writeable = False
        self._set_mirror()  # the pattern was checked symmetric when it was analysed

    def factorize(self, Q):
        """Numeric factorization of ``Q`` (same pattern as analysed) -> :class:`Factor`."""
        factor = Factor(self)
        factor.refactorize(Q)
        return factor

    def __repr__(self):
        return (
            f"Symbolic(n={self.n}, nnz(L)={self.nnz}, nsuper={self.nsuper}, "
            f"ordering={self.ordering!r})"
        )


class _CheckedValues:
    """Values of a matrix on ``symbolic``'s analysed pattern (float64, in its order) that the
    library assembled from pieces it has validated (e.g. H = Q̃ + Ãᵀ W Ã with Q̃ checked
    once per θ, see :class:`gmrf_core.latent.LatentStructure`): :meth:`Symbolic.check_values`
    hands them to the kernels without checking them again. Never made from user input."""

    __slots__ = ("symbolic", "data")

    def __init__(self, symbolic, data):
        self.symbolic = symbolic
        self.data = data


class Factor:
    """Numeric Cholesky factor ``Q[perm][:, perm] = L Lᵀ`` (see :func:`cholesky`).

    Create with :func:`cholesky` or :meth:`Symbolic.factorize`; update in place
    with :meth:`refactorize` for new values on the same pattern.

    A factor whose last :meth:`refactorize` failed (or that was never factorized)
    refuses every query (``logdet``, solves, ``sample``, ``L``, ``selected_inverse``)
    with the error of that failure until a refactorize succeeds.

    Thread safety: queries run concurrently with each other; :meth:`refactorize`
    waits until running queries are done and holds new ones until it is (a
    readers-writer lock), so a query sees the factor before or after a
    refactorize, never in between. ``copy.copy`` and ``copy.deepcopy`` give an
    independent factor (the immutable :class:`Symbolic` is shared).

    Attributes
    ----------
    factorizations : int
        Number of numeric factorizations this object has run, failed ones included
        (input rejected before the kernel started is not counted).
    """

    def __init__(self, symbolic):
        if not isinstance(symbolic, Symbolic):
            raise InputError(f"Factor needs a Symbolic analysis; got {type(symbolic).__name__}.")
        self.symbolic = symbolic
        s = symbolic
        self._lx = np.empty(int(s.lx_ptr[-1]), dtype=np.float64)
        self._head = np.empty(s.nsuper, dtype=np.int64)
        self._next = np.empty(s.nsuper, dtype=np.int64)
        self._lpos = np.empty(s.nsuper, dtype=np.int64)
        self._schedule = s.schedule(s.threads)
        workers = 1 if self._schedule is None else len(self._schedule[0])
        # per worker: relative map, relative rows and the update buffer (used only while
        # refactorize holds the factor exclusively)
        self._work = [
            (
                np.empty(s.n, dtype=np.int64),
                np.empty(s.n, dtype=np.int64),
                np.empty(s._cwork_size, dtype=np.float64),
                np.empty(1, dtype=np.float64),  # Σ log L_jj over the worker's supernodes
            )
            for _ in range(workers)
        ]
        self._half_logdet = np.nan  # Σ log L_jj, set by each successful factorization
        self.factorizations = 0
        self._valid = False
        self._failure = "no numeric factorization has been computed yet"
        self._init_sync()

    def _init_sync(self):
        """Locks and reusable storage: not part of the factor's value (not pickled)."""
        self._lock = _SharedLock()
        self._mutex = threading.Lock()  # guards the two fields below
        self._zx_spare = None  # storage of a released SelectedInverse, for reuse
        self._inverse_work = []  # idle selected-inversion work spaces, for reuse

    @property
    def n(self):
        return self.symbolic.n

    @property
    def perm(self):
        """Permutation with ``Q[perm][:, perm] = L Lᵀ``."""
        return self.symbolic.perm

    @property
    def nnz(self):
        """Number of entries of L (lower triangle including the diagonal)."""
        return self.symbolic.nnz

    @property
    def valid(self):
        """True if the factor holds a successful factorization (its last one succeeded)."""
        return self._valid

    def _require_valid(self):
        """Raise InputError naming the failed (or missing) factorization; call under the lock."""
        if not self._valid:
            raise InputError(
                f"this factor holds no valid factorization: {self._failure}. Refactorize it "
                "with a valid matrix first."
            )

    def refactorize(self, Q):
        """Recompute the factor for new values of ``Q`` on the analysed pattern.

        Waits for queries running on other threads and holds new ones until done.

        Parameters
        ----------
        Q : scipy.sparse matrix or array
            Full symmetric matrix with exactly the pattern given to :func:`analyze`.

        Returns
        -------
        Factor
            ``self``, updated in place.

        Raises
        ------
        PatternMismatchError, NotSymmetricError, InputError
            See :meth:`Symbolic.check_values`.
        NotPositiveDefiniteError
            If a pivot is zero, negative or not finite; ``.column`` is the column of
            Q (original ordering) where the factorization broke down.

        After any of these the factor refuses queries until a refactorize succeeds.
        """
        with self._lock.exclusive():
            self._valid = False
            try:
                data = self.symbolic.check_values(Q)
                self.factorizations += 1
                code, pivot = self._factorize_values(data)
                _raise_for(
                    code,
                    pivot,
                    name="Q",
                    stage="Cholesky factorization",
                    column=int(self.symbolic.perm[pivot]) if pivot >= 0 else -1,
                )
            except GMRFError as exc:
                self._failure = f"the last refactorize failed ({type(exc).__name__}: {exc})"
                raise
            except BaseException as exc:  # e.g. KeyboardInterrupt: the values are half done
                self._failure = f"the last refactorize was interrupted ({exc!r})"
                raise
            self._valid = True
            self._failure = None
        return self

    def _factorize_values(self, data):
        """Run the numeric kernels on Q's values; a status pair (pivot in factor order)."""
        s = self.symbolic
        self._head.fill(-1)
        schedule = self._schedule
        owner = s.no_owner if schedule is None else schedule[1]

        def factorize(order, me, work):
            relmap, relrow, cwork, logsum = work
            return _kchol._factorize(
                s.n,
                s.nsuper,
                s.super_ptr,
                s.rows_ptr,
                s.rows,
                s.lx_ptr,
                s.col_super,
                s._c_ptr,
                s._c_src,
                s._dest,
                data,
                self._lx,
                relmap,
                relrow,
                self._head,
                self._next,
                self._lpos,
                cwork,
                order,
                owner,
                me,
                logsum,
            )

        if schedule is None:
            with blas.blas_threads(s.threads):
                result = factorize(s.all_supernodes, 0, self._work[0])
            if result[0] == _status.OK:  # a failed kernel leaves logsum unwritten
                self._half_logdet = float(self._work[0][3][0])
            return result
        # independent subtrees concurrently, then their ancestors on threaded BLAS
        orders, _owner, top = schedule
        with blas.blas_threads(1):
            results = _run_parallel(
                factorize, [(order, k, self._work[k]) for k, order in enumerate(orders)]
            )
        failed = [result for result in results if result[0] != _status.OK]
        if failed:
            # the first pivot in the factor's ordering, as one thread would report it
            return min(failed, key=lambda result: result[1])
        for order in orders:
            _kchol._link_pending(
                order,
                owner,
                s.rows_ptr,
                s.rows,
                s.col_super,
                self._head,
                self._next,
                self._lpos,
            )
        subtrees = sum(float(work[3][0]) for work in self._work[: len(orders)])
        with blas.blas_threads(s.threads):
            result = factorize(top, -1, self._work[0])
        if result[0] == _status.OK:
            self._half_logdet = subtrees + float(self._work[0][3][0])
        return result

    def logdet(self):
        """log det Q = 2 Σ log L_jj (the sum is taken by the factorization)."""
        with self._lock.shared():
            self._require_valid()
            return 2.0 * self._half_logdet

    def _rhs(self, b, name="b"):
        if sp.issparse(b):
            b = b.toarray()
        b = np.asarray(b)
        if np.iscomplexobj(b):
            raise InputError(
                f"{name} must be real; got dtype {b.dtype} (solve the real and imaginary parts "
                "separately)."
            )
        if b.dtype.kind not in "biuf":
            raise InputError(f"{name} must hold real numbers; got dtype {b.dtype}.")
        b = b.astype(np.float64, copy=False)
        if b.ndim not in (1, 2) or b.shape[0] != self.n:
            raise InputError(f"{name} must have shape ({self.n},) or ({self.n}, k); got {b.shape}.")
        if not np.all(np.isfinite(b)):
            raise InputError(f"{name} has NaN or infinite entries.")
        return b

    # Right-hand sides are processed in blocks of this many columns, which bounds the
    # per-supernode work buffer (max rows of a supernode x block) for many-sample draws.
    _RHS_BLOCK = 64

    def _triangular(self, b, forward, backward, permute_in, permute_out):
        """Apply L⁻¹ and/or L⁻ᵀ to the columns of ``b`` (shape (n, k)), block by block."""
        s = self.symbolic
        b2 = b.reshape(self.n, -1)
        out = np.empty(b2.shape, dtype=np.float64)
        with self._lock.shared():
            self._require_valid()
            for start in range(0, b2.shape[1], self._RHS_BLOCK):
                columns = b2[:, start : start + self._RHS_BLOCK]
                width = columns.shape[1]
                if permute_in:
                    work = np.empty(columns.shape)
                    _kchol._permute_rows(np.ascontiguousarray(columns), s.perm, work)
                else:  # one copy, C-contiguous (the caller's b is never written)
                    work = np.array(columns, dtype=np.float64, order="C")
                # several columns: BLAS on one thread, the ancestors' blocks too: their
                # dtrsm/dgemm are memory-bound and lose to OpenBLAS's thread start-up (500² top
                # separators: 1.3 ms on one thread, 8.4 ms on two); one column calls no BLAS
                with blas.blas_threads(1) if width > 1 else contextlib.nullcontext():
                    if forward:
                        self._forward(work)
                    if backward:
                        self._backward(work)
                if width == out.shape[1]:  # one block: straight into the result
                    if permute_out:
                        _kchol._unpermute_rows(work, s.perm, out)
                    else:
                        out = work
                    break
                if permute_out:
                    result = np.empty(work.shape)
                    _kchol._unpermute_rows(work, s.perm, result)
                    work = result
                out[:, start : start + width] = work
        return out.reshape(b.shape)

    def _solve_schedule(self):
        """The factorization's subtree schedule where solves gain from it, else None."""
        return self._schedule if self.symbolic.nnz >= _PARALLEL_SOLVE_MIN_NNZ else None

    def _forward(self, x):
        """x ← L⁻¹ x in place (factor ordering; x C-contiguous (n, k)); with a schedule the
        independent subtrees run concurrently, each adding its updates of the common
        ancestors' rows into its own copy, summed before the ancestors are solved."""
        s = self.symbolic
        # work buffers are per call: solves on the same factor run concurrently
        buffer = (s._max_rows, x.shape[1])

        def forward(order, owner, me, out):
            _kchol._forward_solve(
                s.super_ptr,
                s.rows_ptr,
                s.rows,
                s.lx_ptr,
                self._lx,
                x,
                np.empty(buffer),
                order,
                owner,
                s.col_super,
                me,
                out,
            )

        schedule = self._solve_schedule()
        if schedule is None:
            forward(s.all_supernodes, s.no_owner, -1, x)
            return
        orders, owner, top = schedule
        outs = [x] + [np.zeros_like(x) for _ in orders[1:]]
        _run_parallel(forward, [(order, owner, k, outs[k]) for k, order in enumerate(orders)])
        for extra in outs[1:]:
            x += extra
        forward(top, owner, -1, x)

    def _backward(self, x):
        """x ← L⁻ᵀ x in place; with a schedule the common ancestors first, then the
        independent subtrees concurrently (each reads only its ancestors' rows)."""
        s = self.symbolic
        buffer = (s._max_rows, x.shape[1])

        def backward(order):
            _kchol._backward_solve(
                s.super_ptr, s.rows_ptr, s.rows, s.lx_ptr, self._lx, x, np.empty(buffer), order
            )

        schedule = self._solve_schedule()
        if schedule is None:
            backward(s.all_supernodes)
            return
        orders, _owner, top = schedule
        backward(top)
        _run_parallel(backward, [(order,) for order in orders])

    def solve(self, b):
        """Solve Q x = b for a real vector (n,) or matrix (n, k) of right-hand sides."""
        return self._triangular(self._rhs(b), True, True, True, True)

    def solve_L(self, b):
        """Return y with L y = b[perm] (y in the factor's ordering)."""
        return self._triangular(self._rhs(b), True, False, True, False)

    def solve_Lt(self, y):
        """Return x with Lᵀ x[perm] = y (``y`` in the factor's ordering, x in Q's)."""
        return self._triangular(self._rhs(y, "y"), False, True, False, True)

    def sample(self, size=None, rng=None):
        """Draw from N(0, Q⁻¹): x = Pᵀ L⁻ᵀ z with z ~ N(0, I) (Rue & Held 2005, Alg. 2.4).

        Parameters
        ----------
        size : int, optional
            Number of draws (a non-negative integer); None for a single draw of shape (n,).
        rng : numpy.random.Generator or seed, optional

        Returns
        -------
        numpy.ndarray
            Shape (n,) if ``size`` is None, else (size, n).

        Raises
        ------
        InputError
            If ``size`` is not None or a non-negative integer (``2.5``, ``"3"``, ``True``).
        """
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 0
        ):
            raise InputError(f"size must be None or a non-negative integer; got {size!r}.")
        rng = np.random.default_rng(rng)
        k = 1 if size is None else int(size)
        z = rng.standard_normal((self.n, k))
        x = self.solve_Lt(z)
        return x[:, 0] if size is None else np.ascontiguousarray(x.T)

    def L(self):
        """L as a scipy.sparse CSC matrix (lower triangular, factor ordering)."""
        s = self.symbolic
        l_ptr = np.empty(s.n + 1, dtype=np.int64)
        l_rows = np.empty(s.nnz, dtype=np.int64)
        l_data = np.empty(s.nnz, dtype=np.float64)
        with self._lock.shared():
            self._require_valid()
            _kchol._factor_to_csc(
                s.n,
                s.nsuper,
                s.super_ptr,
                s.rows_ptr,
                s.rows,
                s.lx_ptr,
                self._lx,
                l_ptr,
                l_rows,
                l_data,
            )
        return sp.csc_matrix((l_data, l_rows, l_ptr), shape=(s.n, s.n))

    def copy(self):
        """An independent copy of the numeric factor (the symbolic analysis is shared)."""
        other = Factor(self.symbolic)
        with self._lock.shared():
            other._lx[:] = self._lx
            other._half_logdet = self._half_logdet
            other._valid = self._valid
            other._failure = self._failure
        return other

    __copy__ = copy

    def __deepcopy__(self, memo):
        return self.copy()

    def __getstate__(self):
        # locks and reusable storage are not part of the factor's value (and neither a
        # lock nor a weak reference can be pickled); the values are copied under the lock
        state = dict(self.__dict__)
        for key in ("_lock", "_mutex", "_zx_spare", "_inverse_work"):
            state.pop(key, None)
        with self._lock.shared():
            state["_lx"] = self._lx.copy()
            state["_half_logdet"] = self._half_logdet
            state["_valid"] = self._valid
            state["_failure"] = self._failure
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_sync()

    def _take_spare(self, owner):
        """Storage for a new SelectedInverse: the last one's, once that has been released
        (a fresh gigabyte costs a page fault per 4 KiB), else new memory."""
        with self._mutex:
            spare = self._zx_spare
            if spare is not None and spare[1]() is None:
                zx = spare[0]
            else:
                zx = np.empty_like(self._lx)
            self._zx_spare = (zx, weakref.ref(owner))
        return zx

    def _checkout_inversion_work(self, count):
        """``count`` selected-inversion work spaces (Z_II, [W; −M], Z_JJ), each used by one
        call only: idle ones are reused, new ones made when concurrent calls hold them."""
        s = self.symbolic
        with self._mutex:
            taken = [self._inverse_work.pop() for _ in range(min(count, len(self._inverse_work)))]
        if len(taken) < count:
            sizes = _kselinv._workspace_sizes(s.nsuper, s.super_ptr, s.rows_ptr)
            taken += [
                tuple(np.empty(max(int(size), 1)) for size in sizes)
                for _ in range(count - len(taken))
            ]
        return taken

    def _return_inversion_work(self, works):
        with self._mutex:
            self._inverse_work.extend(works)

    def selected_inverse(self):
        """Entries of Q⁻¹ on the pattern of L (Takahashi recursion) -> :class:`SelectedInverse`."""
        return SelectedInverse(self)

    def __repr__(self):
        return f"Factor(n={self.n}, nnz(L)={self.nnz}, nsuper={self.symbolic.nsuper})"


class SelectedInverse:
    """Entries of Σ = Q⁻¹ on the sparsity pattern of the Cholesky factor.

    Computed by the supernodal Takahashi recursion (Takahashi, Fagan & Chen 1973;
    Erisman & Tinney 1975; Lin et al. 2011, SelInv) on the factor's own storage,
    in about 1.3-1.6 times the time of one numeric factorization (twice its flops).
    The pattern of L contains Q's pattern, so every entry needed for tr(Q⁻¹ dQ/dθ)
    and every marginal variance is available.

    Create with :meth:`Factor.selected_inverse`. A SelectedInverse is a snapshot:
    refactorizing the factor later does not change it. It is read-only, so any
    number of threads may query it at once.

    Attributes
    ----------
    factor : Factor
        The factor it was computed from.
    symbolic : Symbolic
        That factor's analysis (``symbolic.pattern_token`` identifies it).
    factorization : int
        ``factor.factorizations`` when it was computed: it is current while the two
        agree (see :meth:`check_belongs_to`).
    """

    def __init__(self, factor):
        if not isinstance(factor, Factor):
            raise InputError(
                f"SelectedInverse needs a Factor; got {type(factor).__name__} (use "
                "factor.selected_inverse())."
            )
        s = factor.symbolic
        self.symbolic = s
        self.factor = factor
        self.n = s.n
        schedule = factor._schedule
        with factor._lock.shared():  # no refactorize while the factor's values are read
            factor._require_valid()
            self.factorization = factor.factorizations
            self._zx = factor._take_spare(self)
            works = factor._checkout_inversion_work(1 if schedule is None else len(schedule[0]))
            try:
                code, pivot = self._invert(factor, schedule, works)
            finally:
                factor._return_inversion_work(works)
        _raise_for(
            code,
            pivot,
            name="Q",
            stage="selected inversion",
            column=int(s.perm[pivot]) if pivot >= 0 else -1,
        )

    def _invert(self, factor, schedule, works):
        s = self.symbolic
        rel_ptr, rel = s._relative_maps()

        def invert(order, work):
            zii, mwork, tjj = work
            return _kselinv._selected_inverse(
                s.nsuper,
                s.super_ptr,
                s.rows_ptr,
                s.rows,
                s.lx_ptr,
                s.col_super,
                factor._lx,
                self._zx,
                rel_ptr,
                rel,
                zii,
                mwork,
                tjj,
                order,
            )

        if schedule is None:
            with blas.blas_threads(s.threads):
                return invert(s.all_supernodes, works[0])
        # the ancestors first, then the independent subtrees below them concurrently
        orders, _owner, top = schedule
        with blas.blas_threads(s.threads):
            result = invert(top, works[0])
        if result[0] != _status.OK:
            return result
        with blas.blas_threads(1):
            results = _run_parallel(invert, [(order, works[k]) for k, order in enumerate(orders)])
        failed = [result for result in results if result[0] != _status.OK]
        return min(failed, key=lambda result: result[1]) if failed else (_status.OK, -1)

    def belongs_to(self, owner):
        """True if this was computed from ``owner``: a :class:`Factor` (the same object, not
        refactorized since) or a :class:`Symbolic` (the same analysis: pattern, ordering
        and storage positions, also across pickled copies)."""
        if isinstance(owner, Factor):
            return owner is self.factor and owner.factorizations == self.factorization
        if isinstance(owner, Symbolic):
            return owner.pattern_token == self.symbolic.pattern_token
        return False

    def check_belongs_to(self, owner, name="selected_inverse"):
        """Raise PatternMismatchError unless :meth:`belongs_to` ``owner``.

        The cheap identity check for callers handed a SelectedInverse: a foreign one
        (of another matrix, pattern or ordering) or a stale one (its factor has been
        refactorized since) would give wrong numbers, not an error.

        Raises
        ------
        PatternMismatchError
            With a message that says which of the two it is.
        InputError
            If ``owner`` is neither a Factor nor a Symbolic.
        """
        if not isinstance(owner, (Factor, Symbolic)):
            raise InputError(
                f"{name} can only be checked against a Factor or a Symbolic; got "
                f"{type(owner).__name__}."
            )
        if self.belongs_to(owner):
            return
        if isinstance(owner, Factor) and owner is self.factor:
            raise PatternMismatchError(
                f"{name} is stale: it was computed from factorization {self.factorization} of "
                f"this factor, which has run {owner.factorizations} since. Compute a new one "
                "with factor.selected_inverse()."
            )
        raise PatternMismatchError(
            f"{name} belongs to another factorization (another matrix, pattern or ordering); "
            "compute it from this one with factor.selected_inverse()."
        )

    def diag(self):
        """Marginal variances: the diagonal of Q⁻¹ in the original ordering."""
        s = self.symbolic
        out = np.empty(self.n)
        _kselinv._diagonal(s.nsuper, s.super_ptr, s.rows_ptr, s.lx_ptr, self._zx, s.perm, out)
        return out

    def _positions_of(self, B):
        B = as_csc(B, "B")
        if B.shape != (self.n, self.n):
            raise InputError(f"B must have shape ({self.n}, {self.n}); got {B.shape}.")
        if self.symbolic.same_pattern(B):
            return B, self.symbolic.q_positions
        cols = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(B.indptr))
        return B, self.symbolic.positions(B.indices, cols)

    def values_at(self, B):
        """Q⁻¹ restricted to the pattern of ``B`` (which must lie within L's pattern).

        Parameters
        ----------
        B : scipy.sparse matrix, shape (n, n)
            Only its pattern is used (explicit zeros included); Q's own pattern is
            the fast path.

        Returns
        -------
        scipy.sparse.csc_matrix
            Same pattern as B, with the entries of Q⁻¹.

        Raises
        ------
        InputError
            If B is malformed or has the wrong shape.
        PatternError
            If B has an entry outside the pattern of L.
        """
        B, pos = self._positions_of(B)
        data = self._gather(pos)
        return sp.csc_matrix((data, B.indices.copy(), B.indptr.copy()), shape=B.shape)

    def trace_product(self, B):
        """tr(Q⁻¹ B) = Σ_ij (Q⁻¹)_ij B_ij for B on (a subset of) L's pattern.

        Computed straight from the supernodal blocks, without forming a matrix.
        """
        B, pos = self._positions_of(B)
        if not np.all(np.isfinite(B.data)):
            raise InputError("B has NaN or infinite entries.")
        return float(_kselinv._gather_dot(self._zx, pos, B.data))

    def values_at_positions(self, positions):
        """Entries of Q⁻¹ at factor-storage positions from :meth:`Symbolic.positions`.

        The fast path for repeated queries on a fixed pattern: look the positions up
        once, then gather for every new factorization.

        Raises
        ------
        InputError
            If ``positions`` is not a 1-D integer array within the factor storage.
        """
        if positions is not self.symbolic.q_positions:  # that one is read-only and valid
            positions = _check_positions(positions, self._zx.size)
        return self._gather(positions)

    def _gather(self, positions):
        """Z at valid ``positions``, in their order; Q's own pattern read in storage order."""
        out = np.empty(positions.size)
        if positions is self.symbolic.q_positions:
            ascending, order = self.symbolic._q_gather()
            _kselinv._gather_sorted(self._zx, ascending, order, out)
        else:
            _kselinv._gather(self._zx, positions, out)
        return out

    def quadratic_diag(self, A):
        """diag(A Q⁻¹ Aᵀ) for a sparse A whose AᵀA pattern lies within L's.

        The marginal variances of linear combinations η = A x (projection matrices
        of meshes, the linear predictor).

        Raises
        ------
        InputError
            If A is malformed or does not have n columns.
        PatternError
            If a pair of columns used by one row of A is outside L's pattern.
        """
        A = as_csc(A, "A")
        if A.shape[1] != self.n:
            raise InputError(f"A must have {self.n} columns; got shape {A.shape}.")
        A = A.tocsr()  # canonical CSC -> canonical CSR
        counts = np.diff(A.indptr).astype(np.int64)
        pos_ptr = np.zeros(A.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts * counts, out=pos_ptr[1:])
        row_of = np.repeat(np.arange(A.shape[0]), counts * counts)
        within = np.arange(pos_ptr[-1]) - pos_ptr[row_of]
        m = counts[row_of]
        u = within // np.maximum(m, 1)
        v = within % np.maximum(m, 1)
        start = A.indptr[row_of]
        pos = self.symbolic.positions(A.indices[start + u], A.indices[start + v])
        out = np.empty(A.shape[0])
        _kselinv._quadratic_diag(
            A.indptr,
            A.indices,
            A.data,
            pos_ptr,
            pos,
            self._zx,
            out,
        )
        return out

    def __repr__(self):
        return f"SelectedInverse(n={self.n}, entries={self._zx.size})"


class FactorPool:
    """Work factors of one symbolic analysis, one per concurrent call.

    A call takes a factor (and the value array it assembles into) with
    :meth:`borrow` and gives it back when it is done, so two threads never share a
    factor, while serial use keeps reusing one (no fresh memory per evaluation).
    """

    def __init__(self, symbolic, pattern):
        self.symbolic = symbolic
        self._pattern = pattern  # (indptr, indices, shape) of the assembled matrix
        self._free = []
        self._lock = threading.Lock()

    def __getstate__(self):
        # work factors are not part of a model's value (and a lock cannot be pickled)
        return {"symbolic": self.symbolic, "_pattern": self._pattern}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._free = []
        self._lock = threading.Lock()

    def _new(self):
        indptr, indices, shape = self._pattern
        matrix = sp.csc_matrix((np.zeros(indices.size), indices, indptr), shape=shape)
        return [matrix, None]  # the factor is created on the first factorization

    def acquire(self, preferred=None):
        """A free work item [matrix, factor] (a new one when all are in use); ``preferred``
        when it is free (a caller that wants the factor it left there)."""
        with self._lock:
            for k, item in enumerate(self._free):
                if item is preferred:
                    return self._free.pop(k)
            return self._free.pop() if self._free else self._new()

    def release(self, item):
        """Give a work item back (its factor may be overwritten by the next call)."""
        with self._lock:
            self._free.append(item)

    @contextlib.contextmanager
    def borrow(self):
        item = self.acquire()
        try:
            yield item
        finally:
            self.release(item)

    @staticmethod
    def factorize(item, symbolic, checked=False):
        """Factorize item's matrix into item's factor (in place) -> the factor.

        ``checked``: the matrix's values were assembled by the library from validated
        pieces (finite, symmetric), so the factorization does not check them again.
        """
        matrix, factor = item
        if factor is None:
            item[1] = symbolic.factorize(matrix)
        elif checked:
            factor.refactorize(_CheckedValues(symbolic, matrix.data))
        else:
            factor.refactorize(matrix)
        return item[1]


def analyze(Q, ordering="auto", *, symmetry_rtol=1e-8, threads=1):
    """Symbolic analysis of a symmetric sparsity pattern.

    Parameters
    ----------
    Q : scipy.sparse matrix or array, shape (n, n)
        Full symmetric matrix (both triangles stored). Only its pattern is used
        here; its values are checked when factorizing.
    ordering : {"auto", "amd", "nd", "natural"} or array of int
        Fill-reducing ordering: approximate minimum degree (Amestoy, Davis & Duff
        1996), nested dissection (METIS), none, or a user permutation (``perm[k]``
        eliminated k-th). "auto" is AMD up to 10⁶ unknowns, nested dissection above.
        The permutation is composed with a postorder of the elimination tree.
    symmetry_rtol : float
        Relative tolerance of the symmetry check in :meth:`Factor.refactorize`.
    threads : int
        Threads for the numeric factorization and the selected inversion (default 1:
        everything single-threaded). With 2 or more, independent subtrees of the
        elimination tree are processed concurrently, each on single-threaded BLAS,
        and their common ancestors (the big separator blocks) on ``threads`` BLAS
        threads; small or unbalanced trees stay on one thread (see
        :meth:`Symbolic.schedule`). Results agree with one thread to rounding.

    Returns
    -------
    Symbolic

    Raises
    ------
    InputError
        Non-square, empty, complex or non-numeric input; an invalid ordering.
    NotSymmetricError
        If the pattern is not symmetric.
    """
    return Symbolic(Q, ordering=ordering, symmetry_rtol=symmetry_rtol, threads=threads)


def cholesky(Q, ordering="auto", *, symmetry_rtol=1e-8, threads=1):
    """Sparse Cholesky factorization ``Q[perm][:, perm] = L Lᵀ``.

    Equivalent to ``analyze(Q, ordering).factorize(Q)``; see :func:`analyze`.

    Raises
    ------
    NotPositiveDefiniteError
        With ``.column`` the original column where the factorization failed.
    """
    return analyze(Q, ordering=ordering, symmetry_rtol=symmetry_rtol, threads=threads).factorize(Q)
