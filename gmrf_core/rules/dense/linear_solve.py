"""Derivative rules of the linear solve ``x = A^{-1} b`` ([Giles2008], "Matrix inverse product").

The solve is linear in ``b``, so its transpose is the transposed solve: the pullback of
``b`` is ``A^{-T} x_bar`` from the same LU factors. The tangent map
``(A_dot, b_dot) -> A^{-1} (b_dot - A_dot x)`` transposes to
``x_bar -> (-b_bar x^T, b_bar)``. One LU factorization per call (:func:`_solution`).
"""

import numpy as np

from ...errors import InputError
from ._common import as_real_array, check_finite, like_primal, lu_factor, lu_solve, square_matrix

__all__ = ["solve", "solve_jvp", "solve_vjp"]


def _solve_operands(A, b):
    matrix = square_matrix(A, "A")
    rhs = as_real_array(b, "b")
    if rhs.ndim not in (1, 2) or rhs.shape[0] != matrix.shape[0]:
        raise InputError(
            f"b must have shape ({matrix.shape[0]},) or ({matrix.shape[0]}, k) to match A "
            f"of shape {matrix.shape}, got {rhs.shape}"
        )
    check_finite(rhs, "b")
    return matrix, rhs


def _outer_or_product(left, right):
    """left right^T for matrices, outer(left, right) for vectors."""
    if left.ndim == 1:
        return np.outer(left, right)
    return left @ right.T


def _solution(A, b):
    """Validated ``A``, ``b``, the LU factors of ``A`` and ``x = A^{-1} b``."""
    matrix, rhs = _solve_operands(A, b)
    factors = lu_factor(matrix, "A")
    return matrix, rhs, factors, lu_solve(factors, rhs)


def _tangent(factors, solution, matrix_dot, rhs_dot):
    """``A^{-1} (b_dot - A_dot x)``, linear in ``(A_dot, b_dot)`` (None means zero)."""
    tangent_rhs = np.zeros_like(solution) if rhs_dot is None else rhs_dot.copy()
    if matrix_dot is not None:
        tangent_rhs -= matrix_dot @ solution
    return lu_solve(factors, tangent_rhs)


def _transpose(factors, solution, solution_bar):
    """The transpose of :func:`_tangent`: ``b_bar = A^{-T} x_bar``, ``A_bar = -b_bar x^T``."""
    rhs_bar = lu_solve(factors, solution_bar, trans=1)
    return -_outer_or_product(rhs_bar, solution), rhs_bar


def solve(A, b):
    """Solution ``x = A^{-1} b`` of a square linear system.

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.
    b : (n,) or (n, k) array_like
        Right-hand side(s).

    Returns
    -------
    x : ndarray, shape of ``b``

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or singular ``A``.
    """
    return _solution(A, b)[3]


def solve_jvp(A, b, A_dot, b_dot):
    """Forward rule of the linear solve: ``x_dot = A^{-1} (b_dot - A_dot x)``.

    Source: [Giles2008], result "Matrix inverse product".

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.
    b : (n,) or (n, k) array_like
        Right-hand side(s).
    A_dot : (n, n) array_like or None
        Tangent of ``A``; None means zero.
    b_dot : array_like or None
        Tangent of ``b`` (shape of ``b``); None means zero.

    Returns
    -------
    x : ndarray
        ``A^{-1} b``.
    x_dot : ndarray
        ``A^{-1} (b_dot - A_dot x)``.

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or singular ``A``.
    """
    matrix, rhs, factors, solution = _solution(A, b)
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    rhs_dot = like_primal(b_dot, rhs.shape, "b_dot", "b")
    return solution, _tangent(factors, solution, matrix_dot, rhs_dot)


def solve_vjp(A, b):
    """Reverse rule of the linear solve: ``b_bar = A^{-T} x_bar``, ``A_bar = -b_bar x^T``.

    Source: [Giles2008], result "Matrix inverse product".

    Parameters
    ----------
    A : (n, n) array_like
        Nonsingular matrix.
    b : (n,) or (n, k) array_like
        Right-hand side(s).

    Returns
    -------
    x : ndarray
        ``A^{-1} b``.
    pullback : callable
        ``pullback(x_bar) -> (A_bar, b_bar)``.

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or singular ``A``.
    """
    matrix, rhs, factors, solution = _solution(A, b)

    def pullback(x_bar):
        solution_bar = like_primal(x_bar, solution.shape, "x_bar", "x = solve(A, b)")
        if solution_bar is None:
            return np.zeros_like(matrix), np.zeros_like(rhs)
        return _transpose(factors, solution, solution_bar)

    return solution, pullback
