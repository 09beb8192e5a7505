"""Sparse Cholesky factorization of symmetric positive definite matrices.

The public face of the Numba kernels in :mod:`gmrf_core.kernels`: validation,
conversion, and the one place where kernel status codes become exceptions.

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
"""

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from .bindings import blas
from .errors import (
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

__all__ = ["Symbolic", "Factor", "SelectedInverse", "analyze", "cholesky", "as_csc", "ORDERINGS"]

ORDERINGS = ("auto", "amd", "nd", "natural")

# Above this order "auto" uses nested dissection (METIS): on large 2-D and 3-D
# meshes it gives markedly less fill than minimum degree.
_AUTO_ND_THRESHOLD = 1_000_000

# CHOLMOD's default relaxed-amalgamation parameters (cholmod_common: nrelax, zrelax)
_RELAX = (4, 16, 48, 0.8, 0.1, 0.05)


def as_csc(matrix, name="Q"):
    """Return ``matrix`` as a canonical float64 CSC matrix, or raise InputError.

    Accepts any scipy.sparse matrix or array, and dense 2-D arrays. Duplicates
    are summed and row indices sorted (a copy is made only when needed).
    """
    if sp.issparse(matrix):
        if matrix.ndim != 2:
            raise InputError(f"{name} must be 2-D, got {matrix.ndim} dimensions.")
        out = sp.csc_matrix(matrix)
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
        out = sp.csc_matrix(dense)
    if np.iscomplexobj(out.data):
        raise InputError(f"{name} must be real; got dtype {out.dtype}.")
    if out.dtype != np.float64:
        out = out.astype(np.float64)
    if not out.has_canonical_format:
        out = out.copy()
        out.sum_duplicates()
    return out


def _check_square(Q, name="Q"):
    nrow, ncol = Q.shape
    if nrow != ncol:
        raise InputError(f"{name} must be square; got shape {Q.shape}.")
    if nrow == 0:
        raise InputError(f"{name} is empty (shape {Q.shape}); nothing to factorize.")


def _ordering(indptr, indices, n, ordering):
    """Fill-reducing permutation, ``perm[k]`` = original index eliminated k-th."""
    if isinstance(ordering, str):
        method = ordering.lower()
        if method not in ORDERINGS:
            raise InputError(
                f"ordering must be one of {ORDERINGS} or a permutation; got {ordering!r}."
            )
        if method == "auto":
            method = "nd" if n > _AUTO_ND_THRESHOLD else "amd"
        if method == "natural":
            return np.arange(n, dtype=np.int64)
        if method == "amd":
            from .kernels.amd import amd_order

            return amd_order(indptr, indices, n)
        from .bindings.metis import nested_dissection

        return nested_dissection(indptr, indices, n)
    perm = np.asarray(ordering)
    if perm.ndim != 1 or perm.size != n or not np.issubdtype(perm.dtype, np.integer):
        raise InputError(f"a user ordering must be an integer permutation of length {n}.")
    check = np.zeros(n, dtype=bool)
    if perm.min() < 0 or perm.max() >= n:
        raise InputError(f"the user ordering has entries outside [0, {n}).")
    check[perm] = True
    if not check.all():
        raise InputError("the user ordering is not a permutation (it repeats indices).")
    return perm.astype(np.int64)


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

_SCRATCH_KEEP = 2**24  # 128 MiB of int64
_scratch = _Scratch()
_executors = {}
_executors_lock = threading.Lock()


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
    """

    def __init__(self, Q, ordering="auto", symmetry_rtol=1e-8, threads=1):
        Q = as_csc(Q)
        _check_square(Q)
        n = Q.shape[0]
        self.n = n
        self.symmetry_rtol = float(symmetry_rtol)
        if int(threads) != threads or threads < 1:
            raise InputError(f"threads must be a positive integer; got {threads!r}.")
        self.threads = int(threads)
        self._indptr_in = Q.indptr
        self._indices_in = Q.indices
        # Q's own index arrays, as int32 whenever they fit (no copy for SciPy's usual
        # int32): the kernels then compile once, and the symbolic phase moves half the bytes
        index_dtype = np.int32 if Q.nnz < 2**31 - 1 and n < 2**31 - 1 else np.int64
        indptr = Q.indptr.astype(index_dtype, copy=False)
        indices = Q.indices.astype(index_dtype, copy=False)
        self._indptr = indptr
        self._indices = indices

        work = _scratch.ints(1, n + 1)[0]
        mirror = np.empty(indices.size, dtype=index_dtype)
        diag_pos = np.empty(n, dtype=np.int64)
        code, column = _ksym._mirror_map(n, indptr, indices, mirror, work, diag_pos)
        if code != _status.OK:
            raise NotSymmetricError(
                f"Q's sparsity pattern is not symmetric (first at column {column}). gmrf_core "
                "expects the full symmetric matrix with both triangles stored; if you have only "
                "one triangle T, pass T + T.T - diag(T)."
            )
        self._mirror = mirror
        self._diag_pos = diag_pos

        perm = _ordering(indptr, indices, n, ordering)
        self.ordering = ordering if isinstance(ordering, str) else "user"
        self._analyze(indptr, indices, perm)

    # -- symbolic phase ---------------------------------------------------------
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
        if code != _status.OK:  # pragma: no cover - internal consistency check
            raise RuntimeError("gmrf_core internal error: supernode row counts are inconsistent.")

        # lower triangle of C: where each entry comes from in Q and goes to in the factor
        c_src = np.empty(c_ptr[n], dtype=indices.dtype)
        dest = np.empty(c_ptr[n], dtype=np.int64)
        _ksym._lower_map_q(
            n,
            nsuper,
            super_ptr,
            rows_ptr,
            rows,
            lx_ptr,
            indptr,
            indices,
            perm,
            pinv,
            c_ptr,
            c_src,
            dest,
            w[0],
        )

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
        self._c_src = c_src
        self._dest = dest
        self._cwork_size = max(
            1, int(_ksym._update_workspace_size(nsuper, super_ptr, rows_ptr, rows, col_super))
        )
        self.flops = float(_ksym._flop_count(nsuper, super_ptr, rows_ptr))
        # the one-thread schedule: every supernode in order, one owner
        self.all_supernodes = np.arange(nsuper, dtype=np.int64)
        self.no_owner = np.zeros(nsuper, dtype=np.int64)

    # -- numeric phase ----------------------------------------------------------
    def check_values(self, Q, name="Q"):
        """Validate ``Q`` against this analysis: pattern, finiteness, symmetry.

        Returns Q's data array (float64) ready for the numeric kernels.

        Raises
        ------
        PatternMismatchError
            If Q's sparsity pattern is not the analysed one.
        InputError
            If Q has NaN or infinite entries.
        NotSymmetricError
            If ``|q_ij - q_ji| > symmetry_rtol * sqrt(|q_ii q_jj|)`` somewhere.
        """
        Q = as_csc(Q, name)
        if Q.shape != (self.n, self.n):
            raise PatternMismatchError(
                f"{name} has shape {Q.shape}, but the analysis was done for ({self.n}, {self.n})."
            )
        same = (Q.indptr is self._indptr_in and Q.indices is self._indices_in) or (
            np.array_equal(Q.indptr, self._indptr) and np.array_equal(Q.indices, self._indices)
        )
        if not same:
            raise PatternMismatchError(
                f"{name}'s sparsity pattern differs from the analysed one (nnz {Q.nnz} vs "
                f"{self._indices.size}). Keep explicit zeros so the pattern stays fixed, or call "
                "gm.analyze again for the new pattern."
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
        if code == _status.NOT_FINITE:
            raise InputError(f"{name} has a NaN or infinite entry in column {column}.")
        if code != _status.OK:
            raise NotSymmetricError(
                f"{name} is not symmetric: column {column} differs from its row by more than "
                f"{self.symmetry_rtol:g} relative to sqrt(|q_ii q_jj|). Pass the full symmetric "
                "matrix, e.g. (Q + Q.T) / 2."
            )
        return data

    @property
    def q_positions(self):
        """Position in the factor storage of every entry of Q's pattern (CSC order).

        Lower-triangle entries of the permuted matrix come from the scatter map,
        the others through their symmetric mirror. Computed once, on first use.
        """
        if getattr(self, "_q_positions", None) is None:
            positions = np.empty(self._indices.size, dtype=np.int64)
            positions[self._c_src] = self._dest
            lower = np.zeros(self._indices.size, dtype=bool)
            lower[self._c_src] = True
            upper = np.flatnonzero(~lower)
            positions[upper] = positions[self._mirror[upper]]
            self._q_positions = positions
        return self._q_positions

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
        """True if the CSC matrix ``B`` has exactly Q's sparsity pattern."""
        return B.shape == (self.n, self.n) and (
            (B.indptr is self._indptr_in and B.indices is self._indices_in)
            or (np.array_equal(B.indptr, self._indptr) and np.array_equal(B.indices, self._indices))
        )

    def positions(self, rows, cols):
        """Factor-storage positions of the entries (rows[k], cols[k]) of Q (original order).

        Raises
        ------
        PatternError
            If an entry lies outside the pattern of L (where Q⁻¹ is not computed).
        """
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= self.n):
            raise InputError(f"indices out of range for a {self.n} x {self.n} matrix.")
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
            raise PatternError(
                f"entry ({rows[bad]}, {cols[bad]}) lies outside the sparsity pattern of the "
                "Cholesky factor, where the selected inverse is not computed. Only entries on "
                "the pattern of L (which contains Q's pattern) are available."
            )
        return pos

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


class Factor:
    """Numeric Cholesky factor ``Q[perm][:, perm] = L Lᵀ`` (see :func:`cholesky`).

    Create with :func:`cholesky` or :meth:`Symbolic.factorize`; update in place
    with :meth:`refactorize` for new values on the same pattern.
    """

    def __init__(self, symbolic):
        self.symbolic = symbolic
        s = symbolic
        self._lx = np.empty(int(s.lx_ptr[-1]), dtype=np.float64)
        self._head = np.empty(s.nsuper, dtype=np.int64)
        self._next = np.empty(s.nsuper, dtype=np.int64)
        self._lpos = np.empty(s.nsuper, dtype=np.int64)
        self._schedule = s.schedule(s.threads)
        workers = 1 if self._schedule is None else len(self._schedule[0])
        # per worker: relative map, relative rows and the update buffer
        self._work = [
            (
                np.empty(s.n, dtype=np.int64),
                np.empty(s.n, dtype=np.int64),
                np.empty(s._cwork_size, dtype=np.float64),
            )
            for _ in range(workers)
        ]
        self._zx_spare = None  # storage of a released SelectedInverse, for reuse
        self._inverse_work = None
        self._valid = False
        # numeric factorizations run by this object, failed ones included (validation
        # errors raised before the kernel starts are not counted)
        self.factorizations = 0

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

    def refactorize(self, Q):
        """Recompute the factor for new values of ``Q`` on the analysed pattern.

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
        """
        s = self.symbolic
        data = s.check_values(Q)
        self._valid = False
        self.factorizations += 1
        self._head.fill(-1)
        schedule = self._schedule
        owner = s.no_owner if schedule is None else schedule[1]

        def factorize(order, me, work):
            relmap, relrow, cwork = work
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
            )

        if schedule is None:
            with blas.blas_threads(s.threads):
                code, status = factorize(s.all_supernodes, 0, self._work[0])
        else:
            # independent subtrees concurrently, then their ancestors on threaded BLAS
            orders, _owner, top = schedule
            with blas.blas_threads(1):
                results = _run_parallel(
                    factorize, [(order, k, self._work[k]) for k, order in enumerate(orders)]
                )
            failed = [where for code, where in results if code != _status.OK]
            code = _status.NOT_POSITIVE_DEFINITE if failed else _status.OK
            status = min(failed) if failed else -1
            if code == _status.OK:
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
                with blas.blas_threads(s.threads):
                    code, status = factorize(top, -1, self._work[0])
        if code != _status.OK:
            column = int(s.perm[status])
            raise NotPositiveDefiniteError(
                f"Q is not positive definite: the Cholesky factorization broke down at column "
                f"{column} (pivot {status} in the factor's ordering). Check that the matrix is a "
                "proper precision (an intrinsic model needs constraints or a small diagonal "
                "addition).",
                column,
            )
        self._valid = True
        return self

    def logdet(self):
        """log det Q = 2 Σ log L_jj."""
        s = self.symbolic
        return 2.0 * _kchol._diag_logsum(s.nsuper, s.super_ptr, s.rows_ptr, s.lx_ptr, self._lx)

    def _rhs(self, b, name="b"):
        if sp.issparse(b):
            b = b.toarray()
        b = np.asarray(b, dtype=np.float64)
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
        if getattr(s, "_max_rows", None) is None:
            s._max_rows = int(_kchol._max_rows(s.nsuper, s.rows_ptr))
        b2 = b.reshape(self.n, -1)
        out = np.empty(b2.shape, dtype=np.float64)
        for start in range(0, b2.shape[1], self._RHS_BLOCK):
            block = np.ascontiguousarray(b2[:, start : start + self._RHS_BLOCK])
            width = block.shape[1]
            if permute_in:
                work = np.empty(block.shape)
                _kchol._permute_rows(block, s.perm, work)
            else:
                work = block.copy()
            buffer = np.empty((s._max_rows, width))
            args = (s.nsuper, s.super_ptr, s.rows_ptr, s.rows, s.lx_ptr, self._lx, work, buffer)
            if forward:
                _kchol._forward_solve(*args)
            if backward:
                _kchol._backward_solve(*args)
            if permute_out:
                result = np.empty(work.shape)
                _kchol._unpermute_rows(work, s.perm, result)
                work = result
            out[:, start : start + width] = work
        return out.reshape(b.shape)

    def solve(self, b):
        """Solve Q x = b for a vector (n,) or a matrix (n, k) of right-hand sides."""
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
            Number of draws; None for a single draw of shape (n,).
        rng : numpy.random.Generator or seed, optional

        Returns
        -------
        numpy.ndarray
            Shape (n,) if ``size`` is None, else (size, n).
        """
        rng = np.random.default_rng(rng)
        k = 1 if size is None else int(size)
        if k < 0:
            raise InputError(f"size must be non-negative; got {size}.")
        z = rng.standard_normal((self.n, k))
        x = self.solve_Lt(z)
        return x[:, 0] if size is None else np.ascontiguousarray(x.T)

    def L(self):
        """L as a scipy.sparse CSC matrix (lower triangular, factor ordering)."""
        s = self.symbolic
        l_ptr = np.empty(s.n + 1, dtype=np.int64)
        l_rows = np.empty(s.nnz, dtype=np.int64)
        l_data = np.empty(s.nnz, dtype=np.float64)
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
        other._lx[:] = self._lx
        other._valid = self._valid
        return other

    def __getstate__(self):
        # reusable storage and work space are not part of the factor's value (and a
        # weak reference cannot be pickled)
        state = dict(self.__dict__)
        state["_zx_spare"] = None
        state["_inverse_work"] = None
        return state

    def _take_spare(self, owner):
        """Storage for a new SelectedInverse: the last one's, once that has been released
        (a fresh gigabyte costs a page fault per 4 KiB), else new memory."""
        spare = self._zx_spare
        if spare is not None and spare[1]() is None:
            zx = spare[0]
        else:
            zx = np.empty_like(self._lx)
        self._zx_spare = (zx, weakref.ref(owner))
        return zx

    def _inversion_work(self, k):
        """Work space of worker k for the selected inversion, kept with the factor: the
        relative map (shared with the factorization), Z_II and M."""
        if self._inverse_work is None:
            s = self.symbolic
            big, rect = _kselinv._workspace_sizes(s.nsuper, s.super_ptr, s.rows_ptr)
            self._inverse_work = [
                (np.empty(max(int(big), 1)), np.empty(max(int(rect), 1))) for _ in self._work
            ]
        return (self._work[k][0], *self._inverse_work[k])

    def selected_inverse(self):
        """Entries of Q⁻¹ on the pattern of L (Takahashi recursion) -> :class:`SelectedInverse`."""
        return SelectedInverse(self)

    def __repr__(self):
        return f"Factor(n={self.n}, nnz(L)={self.nnz}, nsuper={self.symbolic.nsuper})"


class SelectedInverse:
    """Entries of Σ = Q⁻¹ on the sparsity pattern of the Cholesky factor.

    Computed by the supernodal Takahashi recursion (Takahashi, Fagan & Chen 1973;
    Erisman & Tinney 1975; Lin et al. 2011, SelInv) on the factor's own storage,
    in about the time of one numeric factorization. The pattern of L contains
    Q's pattern, so every entry needed for tr(Q⁻¹ dQ/dθ) and every marginal
    variance is available.

    Create with :meth:`Factor.selected_inverse`. A SelectedInverse is a snapshot:
    refactorizing the factor later does not change it.
    """

    def __init__(self, factor):
        if not factor._valid:
            raise InputError("the factor holds no valid factorization (the last one failed).")
        s = factor.symbolic
        self.symbolic = s
        self.n = s.n
        self._zx = factor._take_spare(self)

        def invert(order, k):
            relmap, zii, mwork = factor._inversion_work(k)
            return _kselinv._selected_inverse(
                s.nsuper,
                s.super_ptr,
                s.rows_ptr,
                s.rows,
                s.lx_ptr,
                s.col_super,
                factor._lx,
                self._zx,
                relmap,
                zii,
                mwork,
                order,
            )

        schedule = factor._schedule
        if schedule is None:
            with blas.blas_threads(s.threads):
                code, _where = invert(s.all_supernodes, 0)
        else:
            # the ancestors first, then the independent subtrees below them concurrently
            orders, _owner, top = schedule
            with blas.blas_threads(s.threads):
                code, _where = invert(top, 0)
            if code == _status.OK:
                with blas.blas_threads(1):
                    results = _run_parallel(invert, [(order, k) for k, order in enumerate(orders)])
                code = min(code for code, _where in results)
        if code != _status.OK:  # pragma: no cover - a valid factor has positive pivots
            raise NotPositiveDefiniteError("selected inversion met a zero pivot.", s.perm[0])

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
        PatternError
            If B has an entry outside the pattern of L.
        """
        B, pos = self._positions_of(B)
        data = np.empty(pos.size)
        _kselinv._gather(self._zx, pos, data)
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
        """
        out = np.empty(len(positions))
        _kselinv._gather(self._zx, positions, out)
        return out

    def quadratic_diag(self, A):
        """diag(A Q⁻¹ Aᵀ) for a sparse A whose AᵀA pattern lies within L's.

        The marginal variances of linear combinations η = A x (projection matrices
        of meshes, the linear predictor).

        Raises
        ------
        PatternError
            If a pair of columns used by one row of A is outside L's pattern.
        """
        A = sp.csr_matrix(A, dtype=np.float64)
        if A.ndim != 2 or A.shape[1] != self.n:
            raise InputError(f"A must have {self.n} columns; got shape {A.shape}.")
        A.sum_duplicates()
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
            A.indptr.astype(np.int64),
            A.indices.astype(np.int64),
            A.data,
            pos_ptr,
            pos,
            self._zx,
            out,
        )
        return out

    def __repr__(self):
        return f"SelectedInverse(n={self.n}, entries={self._zx.size})"


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
