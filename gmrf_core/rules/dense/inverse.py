"""Derivative rules of the matrix inverse ``Y = A^{-1}`` ([Giles2008], result "Inverse").

The tangent map ``A_dot -> -Y A_dot Y`` is linear; the pullback is its transpose under
``<X, Y> = tr(X^T Y)``, ``Y_bar -> -Y^T Y_bar Y^T``. The primal (one LU factorization)
is computed once per call by :func:`_inverse`.
"""

import numpy as np

from ._common import like_primal, lu_factor, lu_solve, square_matrix

__all__ = ["inv", "inv_jvp", "inv_vjp"]


def _inverse(A):
    """Validated ``A`` and ``A^{-1}`` (LU); InputError if ``A`` is singular."""
    matrix = square_matrix(A, "A")
    return matrix, lu_solve(lu_factor(matrix, "A"), np.eye(matrix.shape[0]))


def _tangent(inverse, matrix_dot):
    """``-Y A_dot Y``, linear in ``A_dot``."""
    return -(inverse @ matrix_dot @ inverse)


def _transpose(inverse, inverse_bar):
    """The transpose of :func:`_tangent`: ``-Y^T Y_bar Y^T``."""
    return -(inverse.T @ inverse_bar @ inverse.T)


def inv(A):
    """Matrix inverse ``Y = A^{-1}``.

    Parameters
    ----------
    A : (n, n) array_like
        Square, finite, nonsingular matrix.

    Returns
    -------
    Y : (n, n) ndarray

    Raises
    ------
    InputError
        If ``A`` is not a finite square real matrix or is singular to working precision.
    """
    return _inverse(A)[1]


def inv_jvp(A, A_dot):
    """Forward rule of the inverse: ``Y_dot = -Y A_dot Y`` with ``Y = A^{-1}``.

    Source: [Giles2008], result "Inverse".

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.
    A_dot : (n, n) array_like or None
        Tangent of ``A``; None means zero.

    Returns
    -------
    Y : (n, n) ndarray
        ``A^{-1}``.
    Y_dot : (n, n) ndarray
        ``-Y A_dot Y``.

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or singular ``A``.
    """
    matrix, inverse = _inverse(A)
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    if matrix_dot is None:
        return inverse, np.zeros_like(inverse)
    return inverse, _tangent(inverse, matrix_dot)


def inv_vjp(A):
    """Reverse rule of the inverse: ``A_bar = -Y^T Y_bar Y^T`` with ``Y = A^{-1}``.

    Source: [Giles2008], result "Inverse".

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.

    Returns
    -------
    Y : (n, n) ndarray
        ``A^{-1}``.
    pullback : callable
        ``pullback(Y_bar) -> (A_bar,)``.

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or singular ``A``.
    """
    _, inverse = _inverse(A)

    def pullback(Y_bar):
        inverse_bar = like_primal(Y_bar, inverse.shape, "Y_bar", "Y = inv(A)")
        if inverse_bar is None:
            return (np.zeros_like(inverse),)
        return (_transpose(inverse, inverse_bar),)

    return inverse, pullback
