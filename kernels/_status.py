"""The one status encoding of every kernel that can fail.

Such a kernel returns a pair ``(code, where)``:

- ``code == OK`` (0): success, and ``where`` is -1;
- ``code < 0``: what went wrong, one of the constants below, and ``where`` the
  place it concerns (its meaning is given next to each code: a column, a pivot,
  an entry, a row or a supernode; -1 where there is no place).

Kernels never raise; :mod:`gmrf_core.linalg` turns a pair into an exception
through one table (``_ERRORS``), the way scikit-sparse's ``_handle_errors``
turns CHOLMOD's status into Python errors. Codes are plain module constants,
so Numba freezes them into the compiled kernels.
"""

OK = 0
# the sparsity pattern differs from its transpose; where: a column of the mismatch
NOT_SYMMETRIC = -1
# a NaN or infinite value; where: its column
NOT_FINITE = -2
# a pair of values differs beyond the tolerance; where: the column
VALUES_NOT_SYMMETRIC = -3
# a pivot is zero, negative or not finite; where: the pivot (column in the factor's ordering)
NOT_POSITIVE_DEFINITE = -4
# an entry lies outside a fixed pattern; where: the entry (or row/column, per kernel)
OUTSIDE_PATTERN = -5
# a row index is negative or not below the number of rows; where: its column
INDEX_OUT_OF_RANGE = -6
# the column pointers do not start at 0, decrease, or overrun the index array;
# where: the first column whose pointer is wrong
BAD_POINTERS = -7
# row indices of a column are unsorted or repeated; where: the column
UNSORTED = -8
# a work space is too small (the caller may enlarge it and retry); where: -1
WORKSPACE_TOO_SMALL = -9
# an internal consistency check failed (a bug, never expected); where: the place
INCONSISTENT = -10
