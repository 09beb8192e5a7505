"""Derivative rules of log-determinants ([Giles2008], result "Determinant").

:func:`logdet` for symmetric positive definite matrices (Cholesky) and :func:`slogdet` for
general nonsingular ones (LU). Both tangent maps are ``A_dot -> tr(A^{-1} A_dot)``, linear
in ``A_dot``; their transposes are ``value_bar -> value_bar A^{-T}``. One factorization
per call (:func:`_spd_logdet`, :func:`_lu_logdet`).
"""

import numpy as np

from ...errors import InputError
from ._common import (
    cholesky_lower,
    like_primal,
    lu_factor,
    lu_solve,
    scalar_cotangent,
    spd_inverse,
    square_matrix,
    triangular_solve,
)

__all__ = ["logdet", "logdet_jvp", "logdet_vjp", "slogdet", "slogdet_jvp", "slogdet_vjp"]


# ----------------------------------------------------------------------------------
# symmetric positive definite: Cholesky


def _spd_logdet(A):
    """Validated ``A``, its lower Cholesky factor ``L`` and ``log det A = 2 sum(log diag L)``."""
    matrix = square_matrix(A, "A")
    factor = cholesky_lower(matrix, "A")
    return matrix, factor, float(2.0 * np.sum(np.log(np.diag(factor))))


def _spd_tangent(factor, matrix_dot):
    """``tr(A^{-1} A_dot) = tr(L^{-1} A_dot L^{-T})``: two triangular solves, no inverse."""
    half = triangular_solve(factor, matrix_dot)
    return float(np.trace(triangular_solve(factor, half.T)))


def logdet(A):
    """Log-determinant ``log det A`` of a symmetric positive definite matrix (Cholesky).

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive definite matrix (only symmetry up to :data:`SYMMETRY_RTOL`).

    Returns
    -------
    float
        ``2 sum(log(diag(L)))`` with ``A = L L^T``.

    Raises
    ------
    InputError
        Bad shape or NaN/inf.
    NotSymmetricError
        ``A`` is not symmetric.
    NotPositiveDefiniteError
        ``A`` is not positive definite; ``.column`` is where the factorization failed.
    """
    return _spd_logdet(A)[2]


def logdet_jvp(A, A_dot):
    """Forward rule of the SPD log-determinant: ``d log det A = tr(A^{-1} A_dot)``.

    Source: [Giles2008], result "Determinant" (``d det A = det A tr(A^{-1} dA)``).
    The formula is the derivative of ``log|det A|`` on all matrices, so ``A_dot`` need not
    be symmetric (for a symmetric ``A_dot`` it is the derivative along SPD matrices).

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive definite matrix.
    A_dot : (n, n) array_like or None
        Tangent of ``A``; None means zero.

    Returns
    -------
    value : float
        ``log det A``.
    value_dot : float
        ``tr(A^{-1} A_dot)``.

    Raises
    ------
    InputError, NotSymmetricError, NotPositiveDefiniteError
        As :func:`logdet`; InputError also for a bad ``A_dot``.
    """
    matrix, factor, value = _spd_logdet(A)
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    if matrix_dot is None:
        return value, 0.0
    return value, _spd_tangent(factor, matrix_dot)


def logdet_vjp(A):
    """Reverse rule of the SPD log-determinant: ``A_bar = value_bar A^{-1}``.

    Source: [Giles2008], result "Determinant"; ``A^{-T} = A^{-1}`` for symmetric
    ``A``, so the cotangent is symmetric.

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive definite matrix.

    Returns
    -------
    value : float
        ``log det A``.
    pullback : callable
        ``pullback(value_bar) -> (A_bar,)`` for a scalar ``value_bar``.

    Raises
    ------
    InputError, NotSymmetricError, NotPositiveDefiniteError
        As :func:`logdet`.
    """
    _, factor, value = _spd_logdet(A)
    inverse = []  # the transpose value_bar A^{-1}: computed on the first pullback, reused

    def pullback(value_bar):
        scale = scalar_cotangent(value_bar, "value_bar")
        if not inverse:
            inverse.append(spd_inverse(factor))
        return (scale * inverse[0],)

    return value, pullback


# ----------------------------------------------------------------------------------
# general nonsingular: LU


def _sign_and_logabsdet(factors):
    lu, piv = factors
    diagonal = np.diag(lu)
    swaps = np.count_nonzero(piv != np.arange(piv.size))
    sign = float(np.prod(np.sign(diagonal))) * (-1.0 if swaps % 2 else 1.0)
    return sign, float(np.sum(np.log(np.abs(diagonal))))


def _lu_logdet(A):
    """Validated ``A``, its LU factors and ``(sign, log|det A|)``."""
    matrix = square_matrix(A, "A")
    factors = lu_factor(matrix, "A")
    return matrix, factors, _sign_and_logabsdet(factors)


def slogdet(A):
    """Sign and log of the absolute determinant of a general square matrix (LU).

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.

    Returns
    -------
    sign : float
        +1.0 or -1.0.
    logabsdet : float
        ``log|det A|``.

    Raises
    ------
    InputError
        Bad shape, NaN/inf, or ``A`` singular to working precision (where ``log|det A|``
        is ``-inf`` and has no derivative).
    """
    return _lu_logdet(A)[2]


def slogdet_jvp(A, A_dot):
    """Forward rule of ``slogdet``: ``sign_dot = 0``, ``logabsdet_dot = tr(A^{-1} A_dot)``.

    Source: [Giles2008], result "Determinant"; the sign is locally constant.

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.
    A_dot : (n, n) array_like or None
        Tangent of ``A``; None means zero.

    Returns
    -------
    (sign, logabsdet) : tuple of float
    (sign_dot, logabsdet_dot) : tuple of float
        ``(0.0, tr(A^{-1} A_dot))``.

    Raises
    ------
    InputError
        As :func:`slogdet`, or a bad ``A_dot``.
    """
    matrix, factors, out = _lu_logdet(A)
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    if matrix_dot is None:
        return out, (0.0, 0.0)
    return out, (0.0, float(np.trace(lu_solve(factors, matrix_dot))))


def slogdet_vjp(A):
    """Reverse rule of ``slogdet``: ``A_bar = logabsdet_bar A^{-T}``.

    Source: [Giles2008], result "Determinant". The sign is locally constant, so
    ``sign_bar`` does not contribute.

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.

    Returns
    -------
    (sign, logabsdet) : tuple of float
    pullback : callable
        ``pullback((sign_bar, logabsdet_bar)) -> (A_bar,)``; ``sign_bar`` may be None.

    Raises
    ------
    InputError
        As :func:`slogdet`; from the pullback if the cotangent is not a pair.
    """
    matrix, factors, out = _lu_logdet(A)

    def pullback(out_bar):
        if not isinstance(out_bar, (tuple, list)) or len(out_bar) != 2:
            raise InputError(
                "slogdet's output is the pair (sign, logabsdet), so its cotangent must be a "
                "pair (sign_bar, logabsdet_bar); sign_bar is ignored and may be None, "
                "e.g. pullback((None, g))"
            )
        logabsdet_bar = scalar_cotangent(out_bar[1], "logabsdet_bar")
        inverse_t = lu_solve(factors, np.eye(matrix.shape[0]), trans=1)
        return (logabsdet_bar * inverse_t,)

    return out, pullback
