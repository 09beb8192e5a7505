"""Validation and LAPACK factorizations shared by the dense derivative rules.

Every public rule validates its primals and tangents here once (finite, real, dense, the
right shapes) and factorizes through these LAPACK wrappers, which raise the package's
errors (:class:`~gmrf_core.errors.InputError`, :class:`~gmrf_core.errors.NotSymmetricError`,
:class:`~gmrf_core.errors.NotPositiveDefiniteError`) instead of returning garbage.
"""

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from ...errors import InputError, NotPositiveDefiniteError, NotSymmetricError

__all__ = [
    "EPS",
    "SYMMETRY_RTOL",
    "as_real_array",
    "real_array",
    "check_finite",
    "square_matrix",
    "like_primal",
    "scalar_cotangent",
    "check_symmetric",
    "lu_factor",
    "lu_solve",
    "triangular_solve",
    "cholesky_lower",
    "spd_inverse",
]

EPS = np.finfo(np.float64).eps

#: Relative tolerance, ``max|A - A^T| <= SYMMETRY_RTOL * max|A|``, under which a matrix
#: counts as symmetric for :func:`logdet` and :func:`cholesky`.
SYMMETRY_RTOL = 1e-8


# ----------------------------------------------------------------------------------
# validation


def real_array(value, name, who="the dense rules"):
    """``value`` as a float64 array; complex or non-numeric values are an InputError saying
    that ``who`` (the dense rules, the derivative checkers) support real values only."""
    array = np.asarray(value)
    if array.dtype.kind == "c":
        raise InputError(f"{name} is complex; {who} support real values only")
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{name} must be a real numeric array, got dtype {array.dtype} ({type(value).__name__})"
        )
    return np.asarray(array, dtype=np.float64)


def as_real_array(value, name):
    if sp.issparse(value):
        raise InputError(
            f"{name} is a scipy.sparse matrix, but the dense rules need a dense array: "
            f"pass {name}.toarray(), or use gmrf_core.rules.sparse for sparse matrices"
        )
    return real_array(value, name)


def check_finite(array, name):
    if not np.isfinite(array).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise InputError(
            f"{name} contains NaN or inf (first at index {bad}); all entries must be finite"
        )


def square_matrix(value, name):
    """Validate a finite, non-empty, square real matrix and return it as float64."""
    matrix = as_real_array(value, name)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{name} must be a square 2-D array, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise InputError(f"{name} is empty (shape {matrix.shape}); need at least 1 x 1")
    check_finite(matrix, name)
    return matrix


def like_primal(value, shape, name, primal_name):
    """Validate a tangent or cotangent of a primal of the given shape; None stays None."""
    if value is None:
        return None
    array = as_real_array(value, name)
    if array.shape != tuple(shape):
        raise InputError(
            f"{name} has shape {array.shape} but {primal_name} has shape {tuple(shape)}; "
            f"they must match"
        )
    check_finite(array, name)
    return array


def scalar_cotangent(value, name):
    array = as_real_array(value, name)
    if array.size != 1:
        raise InputError(f"{name} must be a scalar (the output is a scalar), got {array.shape}")
    scalar = float(array.reshape(()))
    if not np.isfinite(scalar):
        raise InputError(f"{name} is {scalar}; it must be finite")
    return scalar


def check_symmetric(matrix, name):
    asymmetry = np.max(np.abs(matrix - matrix.T))
    scale = np.max(np.abs(matrix))
    if asymmetry > SYMMETRY_RTOL * scale:
        raise NotSymmetricError(
            f"{name} must be symmetric, but max|{name} - {name}^T| = {asymmetry:.3e} "
            f"exceeds {SYMMETRY_RTOL:g} * max|{name}| = {SYMMETRY_RTOL * scale:.3e}; "
            f"symmetrize it with ({name} + {name}.T) / 2 if the asymmetry is rounding"
        )


# ----------------------------------------------------------------------------------
# factorizations shared by the rules


def lu_factor(matrix, name):
    """LU factors of a square matrix; InputError if it is singular to working precision.

    LAPACK is called directly: the scipy.linalg wrappers cost ~40 us per call, which
    dominates for the small matrices of state-space models.
    """
    lu, piv, info = lapack.dgetrf(matrix)
    if info < 0:  # only possible for malformed arguments, which square_matrix excludes
        raise InputError(f"LAPACK dgetrf rejected argument {-info} for {name}")
    rcond = 0.0
    if info == 0:
        norm_1 = np.max(np.sum(np.abs(matrix), axis=0))
        rcond, info = lapack.dgecon(lu, norm_1, norm="1")
    if info != 0 or not rcond > EPS:
        raise InputError(
            f"{name} is singular to working precision (reciprocal condition number "
            f"{rcond:.1e} <= machine epsilon {EPS:.1e}); its inverse, solves, log-determinant "
            f"and their derivatives do not exist"
        )
    return lu, piv


def lu_solve(factors, rhs, trans=0):
    """Solve A x = rhs (trans=0) or A^T x = rhs (trans=1) from the LU factors of A."""
    lu, piv = factors
    solution, info = lapack.dgetrs(lu, piv, rhs, trans=trans)
    if info != 0:
        raise InputError(f"LAPACK dgetrs rejected argument {-info}")
    return solution


def triangular_solve(factor, rhs, trans=0):
    """Solve L x = rhs (trans=0) or L^T x = rhs (trans=1) for a lower triangular L."""
    solution, info = lapack.dtrtrs(factor, rhs, lower=1, trans=trans)
    if info != 0:  # a zero pivot in a factor dpotrf accepted cannot happen
        raise InputError(f"LAPACK dtrtrs failed with info = {info}")
    return solution


def cholesky_lower(matrix, name):
    """Lower Cholesky factor; NotPositiveDefiniteError with the failing column."""
    check_symmetric(matrix, name)
    factor, info = lapack.dpotrf(matrix, lower=1, clean=1, overwrite_a=0)
    if info > 0:
        raise NotPositiveDefiniteError(
            f"{name} is not positive definite: the Cholesky factorization broke down at "
            f"column {info - 1} (the leading {info} x {info} minor is not positive definite)",
            column=info - 1,
        )
    if info < 0:  # only possible for malformed arguments, which square_matrix excludes
        raise InputError(f"LAPACK dpotrf rejected argument {-info} for {name}")
    return factor


def spd_inverse(factor):
    """A^{-1} from the lower Cholesky factor of A (LAPACK dpotri), as a full symmetric array."""
    lower, info = lapack.dpotri(factor, lower=1)
    if info != 0:  # a zero diagonal in a factor dpotrf accepted cannot happen
        raise InputError(f"LAPACK dpotri failed with info = {info}")
    lower = np.tril(lower)
    return lower + np.tril(lower, -1).T
