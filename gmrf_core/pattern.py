"""One fixed sparsity pattern, and the mapping of matrices onto it.

Model precisions Q(θ), their derivatives dQ/dθ_k and the Laplace Hessian H all live
on patterns fixed once per model, so that the Cholesky analysis is done once and
values can be paired position by position (selected-inverse entries with dQ/dθ_k,
tangents with primals). :class:`FixedPattern` is the one implementation of "a CSC
pattern fixed once" and of "the values of this matrix on that pattern"; an entry
outside the pattern raises :class:`~gmrf_core.errors.PatternError`.
"""

import threading

import numpy as np
import scipy.sparse as sp

from .errors import InputError, NotSymmetricError, PatternError
from .kernels import assemble as _kasm
from .linalg import as_csc

__all__ = ["FixedPattern"]

# guards the arrays a pattern derives on first use: threads may share a pattern
_derived_lock = threading.Lock()


def _canonical_csc(matrix, name):
    """``matrix`` as validated CSC with sorted, unique row indices (a copy only when needed)."""
    if not (sp.issparse(matrix) or isinstance(matrix, np.ndarray)):
        raise InputError(
            f"{name} must be a scipy.sparse matrix or a numpy array, got {type(matrix).__name__}."
        )
    return as_csc(matrix, name)  # the one validator: index structure, canonical form


class FixedPattern:
    """A CSC sparsity pattern of an m × n matrix, fixed once and for all.

    The pattern is the union of the structural entries of ``matrices`` (explicit
    zeros included, so no cancellation can remove an entry) and, with ``diagonal``,
    of the diagonal. Matrices on the pattern are made by filling a ``data`` array
    (:meth:`matrix`); any matrix whose nonzeros lie inside the pattern is mapped
    onto it by :meth:`data_of`.

    Parameters
    ----------
    matrices : sequence of scipy.sparse matrices (or dense arrays)
        Matrices whose structures are united (all of shape ``shape``).
    n : int or tuple of int
        Matrix size n (square) or shape (m, n).
    diagonal : bool
        Include the diagonal (default True; square patterns only).

    Attributes
    ----------
    shape : tuple of int
    n : int
        Number of rows.
    indptr, indices : numpy.ndarray
        CSC index arrays, sorted row indices (int32 when nnz fits, else int64).
    nnz : int
        Number of stored positions.

    Raises
    ------
    InputError
        A matrix of another shape.
    """

    def __init__(self, matrices, n, diagonal=True):
        shape = (int(n), int(n)) if np.ndim(n) == 0 else tuple(int(s) for s in n)
        if len(shape) != 2 or min(shape) < 0:
            raise InputError(f"a pattern shape must be (rows, columns) >= 0, got {n!r}.")
        if diagonal and shape[0] != shape[1]:
            raise InputError(f"a pattern with its diagonal must be square, got shape {shape}.")
        total = sp.csc_matrix(shape, dtype=float)
        if diagonal:
            total = sp.csc_matrix(sp.identity(shape[0], format="csc", dtype=float))
        for k, matrix in enumerate(matrices):
            matrix = _canonical_csc(matrix, f"pattern matrix {k}")
            if matrix.shape != shape:
                raise InputError(f"pattern matrix {k} has shape {matrix.shape}; expected {shape}.")
            # ones on the structure: explicit zeros stay in the union
            total = total + sp.csc_matrix(
                (np.ones(matrix.indices.size), matrix.indices, matrix.indptr), shape=shape
            )
        total = sp.csc_matrix(total)
        total.sum_duplicates()
        index_dtype = np.int32 if max(total.nnz, max(shape)) < 2**31 - 1 else np.int64
        self.shape = shape
        self.n = shape[0]
        self.indptr = np.ascontiguousarray(total.indptr, dtype=index_dtype)
        self.indices = np.ascontiguousarray(total.indices, dtype=index_dtype)
        self.nnz = int(self.indices.size)
        self._columns = None
        self._transpose = None

    @classmethod
    def of(cls, matrix, diagonal=False):
        """The pattern of the structural entries of one matrix (its own shape)."""
        return cls([matrix], matrix.shape, diagonal=diagonal)

    # -- building matrices --------------------------------------------------------------
    def matrix(self, data):
        """CSC matrix with this pattern and the given ``data`` (index arrays copied)."""
        data = np.asarray(data, dtype=float)
        if data.shape != (self.nnz,):
            raise InputError(f"pattern data must have shape ({self.nnz},), got {data.shape}.")
        return sp.csc_matrix((data, self.indices.copy(), self.indptr.copy()), shape=self.shape)

    @property
    def columns(self):
        """Column index of every stored position (int64). Derived from :attr:`indptr` on
        first use (not pickled: a copy derives its own, equal to it)."""
        if self._columns is None:
            with _derived_lock:
                if self._columns is None:
                    self._columns = np.repeat(np.arange(self.shape[1]), np.diff(self.indptr))
        return self._columns

    def __getstate__(self):
        # the derived arrays are rebuilt from indptr and indices faster than they travel
        state = dict(self.__dict__)
        state["_columns"] = state["_transpose"] = None
        return state

    # -- mapping matrices onto the pattern ---------------------------------------------------
    def holds(self, matrix):
        """True when ``matrix`` is a canonical CSC matrix stored exactly on this pattern."""
        return (
            sp.issparse(matrix)
            and matrix.format == "csc"
            and matrix.shape == self.shape
            and matrix.has_canonical_format
            and np.array_equal(matrix.indptr, self.indptr)
            and np.array_equal(matrix.indices, self.indices)
        )

    def data_of(self, matrix, name="matrix", hint=""):
        """The values of ``matrix`` stored on this pattern (a new array, pattern order).

        Duplicate entries are summed; positions of the pattern the matrix leaves out
        get 0; explicit zeros outside the pattern are dropped (they change nothing).

        Parameters
        ----------
        matrix : scipy.sparse matrix or numpy array
            Of shape :attr:`shape`.
        name : str
            How the matrix is named in error messages.
        hint : str
            What the user should do, appended to the PatternError message.

        Returns
        -------
        numpy.ndarray of shape (nnz,)

        Raises
        ------
        InputError
            Not a matrix, or of the wrong shape.
        PatternError
            A nonzero outside the pattern (the message gives its row and column).
        """
        matrix = _canonical_csc(matrix, name)
        if matrix.shape != self.shape:
            raise InputError(f"{name} has shape {matrix.shape}; expected {self.shape}.")
        if np.array_equal(matrix.indptr, self.indptr) and np.array_equal(
            matrix.indices, self.indices
        ):
            return np.array(matrix.data, dtype=float)  # already on the pattern
        positions = self._positions(matrix)
        if positions is None:  # explicit zeros outside the pattern are harmless
            matrix = matrix.copy()
            matrix.eliminate_zeros()
            positions = self._positions(matrix)
            if positions is None:
                row, column = self._first_outside(matrix)
                message = (
                    f"{name} has a nonzero at ({row}, {column}) outside the sparsity pattern "
                    "fixed for it."
                )
                raise PatternError(f"{message} {hint}".strip())
        data = np.zeros(self.nnz)
        data[positions] = matrix.data
        return data

    def stored_positions(self, matrix, name="matrix"):
        """Position in this pattern of every stored entry of ``matrix``, in its stored order.

        For matrices in any sparse format (COO, CSR, CSC, duplicates allowed): entry p
        of ``matrix.tocoo()`` sits at position ``stored_positions(matrix)[p]``.

        Raises
        ------
        PatternError
            A stored entry outside the pattern.
        """
        coo = matrix.tocoo(copy=False) if matrix.format != "coo" else matrix
        if coo.shape != self.shape:
            raise InputError(f"{name} has shape {coo.shape}; expected {self.shape}.")
        rows = np.asarray(coo.row, dtype=np.int64)
        keys = np.asarray(coo.col, dtype=np.int64) * self.shape[0] + rows
        # CSC order with sorted rows is the order of the linear keys col * m + row
        pattern_keys = self.columns * self.shape[0] + self.indices
        positions = np.searchsorted(pattern_keys, keys)
        clipped = np.minimum(positions, max(self.nnz - 1, 0))
        inside = (pattern_keys[clipped] == keys) if self.nnz else np.zeros(keys.size, bool)
        if not np.all(inside):
            p = int(np.flatnonzero(~inside)[0])
            raise PatternError(
                f"{name} has an entry at ({int(coo.row[p])}, {int(coo.col[p])}) outside the "
                "sparsity pattern fixed for it."
            )
        return positions

    def _positions(self, matrix):
        """pos[p] of entry p of a canonical CSC matrix, or None if one lies outside."""
        positions = np.empty(matrix.nnz, dtype=np.int64)
        code, _column = _kasm._subpattern_positions(
            self.shape[1], matrix.indptr, matrix.indices, self.indptr, self.indices, positions
        )
        return None if code != _kasm.OK else positions

    def _first_outside(self, matrix):
        for column in range(self.shape[1]):
            rows = matrix.indices[matrix.indptr[column] : matrix.indptr[column + 1]]
            own = self.indices[self.indptr[column] : self.indptr[column + 1]]
            outside = np.setdiff1d(rows, own)
            if outside.size:
                return int(outside[0]), column
        return -1, -1  # pragma: no cover - only called when an entry is outside

    # -- symmetry ------------------------------------------------------------------------------
    @property
    def transpose_positions(self):
        """Permutation t with ``data[t]`` the data of the transpose (symmetric patterns).

        Raises
        ------
        NotSymmetricError
            If the pattern is not symmetric.
        """
        if self._transpose is None:
            if self.shape[0] != self.shape[1]:
                raise NotSymmetricError(f"a pattern of shape {self.shape} is not symmetric.")
            columns = self.columns
            with _derived_lock:
                if self._transpose is None:
                    keys = columns * self.n + self.indices
                    transposed = self.indices.astype(np.int64) * self.n + columns
                    pos = np.searchsorted(keys, transposed)
                    pos = np.minimum(pos, max(keys.size - 1, 0))
                    if keys.size and np.any(keys[pos] != transposed):
                        raise NotSymmetricError("the sparsity pattern is not symmetric.")
                    self._transpose = pos
        return self._transpose
