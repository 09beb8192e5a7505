"""Derivative rules of the lower Cholesky factor ``A = L L^T`` ([Murray2016], Section 3).

Tangent map ``A_dot -> L Phi(L^{-1} A_dot L^{-T})`` (``Phi``: lower triangle, halved
diagonal), linear in the symmetric ``A_dot``; the pullback is its transpose restricted to
symmetric directions, ``L_bar -> L^{-T} sym(Phi(L^T tril(L_bar))) L^{-1}``. One
factorization per call (:func:`_factor`).
"""

import numpy as np

from ._common import check_symmetric, cholesky_lower, like_primal, square_matrix, triangular_solve

__all__ = ["cholesky", "cholesky_jvp", "cholesky_vjp"]


def _phi(matrix):
    """Lower triangle with the diagonal halved, Phi in [Murray2016]."""
    result = np.tril(matrix)
    result[np.diag_indices_from(result)] *= 0.5
    return result


def _factor(A):
    """Validated ``A`` and its lower Cholesky factor."""
    matrix = square_matrix(A, "A")
    return matrix, cholesky_lower(matrix, "A")


def _tangent(factor, matrix_dot):
    """``L Phi(L^{-1} A_dot L^{-T})`` for a symmetric ``A_dot``."""
    half = triangular_solve(factor, matrix_dot)
    whitened = triangular_solve(factor, half.T).T
    return factor @ _phi(whitened)


def _transpose(factor, factor_bar):
    """The transpose of :func:`_tangent` on symmetric directions (a symmetric ``A_bar``)."""
    middle = _phi(factor.T @ np.tril(factor_bar))
    middle = 0.5 * (middle + middle.T)
    # L^{-T} middle L^{-1} via two triangular solves
    left = triangular_solve(factor, middle, trans=1)
    matrix_bar = triangular_solve(factor, left.T, trans=1).T
    return 0.5 * (matrix_bar + matrix_bar.T)


def cholesky(A):
    """Lower Cholesky factor ``L`` with ``A = L L^T``.

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive definite matrix (the lower triangle is read).

    Returns
    -------
    L : (n, n) ndarray
        Lower triangular with positive diagonal; upper triangle zero.

    Raises
    ------
    InputError
        Bad shape or NaN/inf.
    NotSymmetricError
        ``A`` is not symmetric.
    NotPositiveDefiniteError
        ``A`` is not positive definite; ``.column`` is where the factorization failed.
    """
    return _factor(A)[1]


def cholesky_jvp(A, A_dot):
    """Forward rule of the Cholesky factor: ``L_dot = L Phi(L^{-1} A_dot L^{-T})``.

    ``Phi`` takes the lower triangle and halves the diagonal.
    Source: [Murray2016], Section 3 (symbolic forward-mode result).

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive definite matrix.
    A_dot : (n, n) array_like or None
        Symmetric tangent of ``A`` (a perturbation that keeps ``A`` symmetric); None means
        zero.

    Returns
    -------
    L : (n, n) ndarray
        Lower Cholesky factor.
    L_dot : (n, n) ndarray
        Lower triangular tangent.

    Raises
    ------
    InputError, NotSymmetricError, NotPositiveDefiniteError
        As :func:`cholesky`; NotSymmetricError also for a non-symmetric ``A_dot`` (the
        derivative of the factor along a non-symmetric direction is not defined).
    """
    matrix, factor = _factor(A)
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    if matrix_dot is None:
        return factor, np.zeros_like(factor)
    check_symmetric(matrix_dot, "A_dot")
    return factor, _tangent(factor, matrix_dot)


def cholesky_vjp(A):
    """Reverse rule of the Cholesky factor (symmetric cotangent).

    ``A_bar = L^{-T} sym(Phi(L^T tril(L_bar))) L^{-1}`` with ``sym(P) = (P + P^T) / 2`` and
    ``Phi`` the lower triangle with halved diagonal. ``tril`` drops the cotangent of the
    structurally zero upper triangle of ``L``. Symmetrizing gives the cotangent that pairs
    with symmetric ``A_dot`` in ``<A_bar, A_dot> = <L_bar, L_dot>``.
    Source: [Murray2016], Section 3 (symbolic reverse-mode result, symmetric variant).

    Parameters
    ----------
    A : (n, n) array_like
        Symmetric positive definite matrix.

    Returns
    -------
    L : (n, n) ndarray
        Lower Cholesky factor.
    pullback : callable
        ``pullback(L_bar) -> (A_bar,)``; ``A_bar`` is symmetric.

    Raises
    ------
    InputError, NotSymmetricError, NotPositiveDefiniteError
        As :func:`cholesky`.
    """
    _, factor = _factor(A)

    def pullback(L_bar):
        factor_bar = like_primal(L_bar, factor.shape, "L_bar", "L = cholesky(A)")
        if factor_bar is None:
            return (np.zeros_like(factor),)
        return (_transpose(factor, factor_bar),)

    return factor, pullback
