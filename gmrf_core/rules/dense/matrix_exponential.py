"""Derivative rules of the matrix exponential ([AlMohyHigham2009], [Higham2008] ch. 3).

The tangent map is the Fréchet derivative ``A_dot -> L(A, A_dot)``, linear in ``A_dot``;
its transpose under ``<X, Y> = tr(X^T Y)`` is ``L(A^T, .)``, so the pullback is one more
Fréchet derivative at ``A^T``. The forward rule computes ``exp(A)`` and ``L(A, A_dot)``
together (one block exponential or one ``expm_frechet``).
"""

import numpy as np
import scipy.linalg as sla

from ._common import like_primal, square_matrix

__all__ = ["expm", "expm_jvp", "expm_vjp"]

# Below this size the Fréchet derivative of expm is taken from one exponential of a
# 2n x 2n block matrix: fewer Python-level operations than scipy's expm_frechet
# (measured 40 us vs 250 us at n = 2, 260 us vs 420 us at n = 20).
_BLOCK_FRECHET_MAX_N = 20


def _expm_frechet(matrix, direction, compute_expm=True):
    """exp(A) and its Fréchet derivative L(A, E).

    For n <= ``_BLOCK_FRECHET_MAX_N`` uses exp([[A, E], [0, A]]) = [[e^A, L(A, E)], [0, e^A]]
    ([Higham2008], Theorem 3.6) with E rescaled to the norm of A (L is linear in E, and a
    comparable norm keeps the scaling-and-squaring of expm from over-squaring); otherwise
    scipy.linalg.expm_frechet, the scaling-and-squaring algorithm of [AlMohyHigham2009].
    """
    n = matrix.shape[0]
    direction_norm = np.max(np.sum(np.abs(direction), axis=0))
    if direction_norm == 0.0:
        exp_a = sla.expm(matrix) if compute_expm else None
        return exp_a, np.zeros_like(matrix)
    if n > _BLOCK_FRECHET_MAX_N:
        if compute_expm:
            return sla.expm_frechet(matrix, direction, compute_expm=True, check_finite=False)
        return None, sla.expm_frechet(matrix, direction, compute_expm=False, check_finite=False)
    matrix_norm = np.max(np.sum(np.abs(matrix), axis=0))
    scale = (matrix_norm if matrix_norm > 0.0 else 1.0) / direction_norm
    block = np.zeros((2 * n, 2 * n))
    block[:n, :n] = matrix
    block[n:, n:] = matrix
    block[:n, n:] = scale * direction
    exp_block = sla.expm(block)
    exp_a = exp_block[:n, :n].copy() if compute_expm else None
    return exp_a, exp_block[:n, n:] / scale


def expm(A):
    """Matrix exponential ``exp(A)`` (scipy.linalg.expm, scaling and squaring).

    Parameters
    ----------
    A : (n, n) array_like
        Square finite matrix.

    Returns
    -------
    (n, n) ndarray

    Raises
    ------
    InputError
        Bad shape or NaN/inf.
    """
    return sla.expm(square_matrix(A, "A"))


def expm_jvp(A, A_dot):
    """Forward rule of the matrix exponential: ``E_dot = L(A, A_dot)``, the Fréchet derivative.

    ``L(A, E) = int_0^1 exp(s A) E exp((1 - s) A) ds``, computed by the scaling-and-squaring
    algorithm of [AlMohyHigham2009] (scipy.linalg.expm_frechet) or, for n <= 20, from
    ``exp([[A, E], [0, A]]) = [[exp(A), L(A, E)], [0, exp(A)]]`` ([Higham2008], Theorem 3.6),
    which is faster at small n.

    Parameters
    ----------
    A : (n, n) array_like
        Square finite matrix.
    A_dot : (n, n) array_like or None
        Tangent of ``A``; None means zero.

    Returns
    -------
    E : (n, n) ndarray
        ``exp(A)``.
    E_dot : (n, n) ndarray
        ``L(A, A_dot)``.

    Raises
    ------
    InputError
        Bad shapes or NaN/inf.
    """
    matrix = square_matrix(A, "A")
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    if matrix_dot is None:
        return sla.expm(matrix), np.zeros_like(matrix)
    return _expm_frechet(matrix, matrix_dot, compute_expm=True)


def expm_vjp(A):
    """Reverse rule of the matrix exponential: ``A_bar = L(A^T, E_bar)``.

    The adjoint of ``E -> L(A, E)`` under ``<X, Y> = tr(X^T Y)`` is ``L(A^T, .)``: transpose
    the integrand of ``L(A, E) = int_0^1 exp(s A) E exp((1 - s) A) ds``
    ([Higham2008], Chapter 3; [AlMohyHigham2009] for the algorithm).

    Parameters
    ----------
    A : (n, n) array_like
        Square finite matrix.

    Returns
    -------
    E : (n, n) ndarray
        ``exp(A)``.
    pullback : callable
        ``pullback(E_bar) -> (A_bar,)``.

    Raises
    ------
    InputError
        Bad shape or NaN/inf.
    """
    matrix = square_matrix(A, "A")
    exp_a = sla.expm(matrix)

    def pullback(E_bar):
        exp_bar = like_primal(E_bar, exp_a.shape, "E_bar", "E = expm(A)")
        if exp_bar is None:
            return (np.zeros_like(matrix),)
        # the transpose of L(A, .) is L(A^T, .)
        return (_expm_frechet(matrix.T, exp_bar, compute_expm=False)[1],)

    return exp_a, pullback
