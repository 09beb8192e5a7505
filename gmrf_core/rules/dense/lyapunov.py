"""Derivative rules of the continuous and discrete Lyapunov equations ([Sarkka2019]).

Both equations are linear in ``X`` and ``C``: ``A X + X A^T = C`` (continuous) and
``A X A^T - X + C = 0`` (discrete, Stein). A tangent is one more solve of the same
equation with a tangent right-hand side (implicit differentiation, [Giles2008]); the
pullback solves the transposed (adjoint) equation once, ``C_bar = Lambda``, and reads
``A_bar`` off the transpose of the tangent right-hand side. The continuous rules share
one real Schur form of ``A`` between primal, tangent and adjoint solves
([BartelsStewart1972]).
"""

import warnings

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from ...errors import InputError
from ._common import EPS, as_real_array, check_finite, like_primal, square_matrix

__all__ = [
    "solve_continuous_lyapunov",
    "solve_continuous_lyapunov_jvp",
    "solve_continuous_lyapunov_vjp",
    "solve_discrete_lyapunov",
    "solve_discrete_lyapunov_jvp",
    "solve_discrete_lyapunov_vjp",
    "lyap",
    "lyap_jvp",
    "lyap_vjp",
    "dlyap",
    "dlyap_jvp",
    "dlyap_vjp",
]


def _lyapunov_operands(A, C):
    matrix = square_matrix(A, "A")
    rhs = as_real_array(C, "C")
    if rhs.shape != matrix.shape:
        raise InputError(f"C must have the shape of A {matrix.shape}, got {rhs.shape}")
    check_finite(rhs, "C")
    return matrix, rhs


# ----------------------------------------------------------------------------------
# continuous: A X + X A^T = C


def _schur_eigenvalues(quasi_triangular):
    """Eigenvalues of a real quasi-upper-triangular Schur factor (1x1 and 2x2 blocks)."""
    n = quasi_triangular.shape[0]
    eigenvalues = np.empty(n, dtype=np.complex128)
    i = 0
    while i < n:
        if i + 1 < n and quasi_triangular[i + 1, i] != 0.0:
            block = quasi_triangular[i : i + 2, i : i + 2]
            half_trace = 0.5 * (block[0, 0] + block[1, 1])
            det = block[0, 0] * block[1, 1] - block[0, 1] * block[1, 0]
            root = np.sqrt(complex(half_trace * half_trace - det))
            eigenvalues[i] = half_trace + root
            eigenvalues[i + 1] = half_trace - root
            i += 2
        else:
            eigenvalues[i] = quasi_triangular[i, i]
            i += 1
    return eigenvalues


class _ContinuousLyapunov:
    """Solver for A X + X A^T = C and its adjoint A^T Y + Y A = D sharing one Schur form.

    Bartels-Stewart [BartelsStewart1972]: A = U T U^T (real Schur), then LAPACK dtrsyl on
    the quasi-triangular T. The equation has a unique solution iff no two eigenvalues of A
    sum to zero; that is checked once here so no solve returns a meaningless matrix.
    """

    def __init__(self, matrix, name):
        self.schur, self.basis = sla.schur(matrix, output="real", check_finite=False)
        eigenvalues = _schur_eigenvalues(self.schur)
        pair_sums = np.abs(eigenvalues[:, None] + eigenvalues[None, :])
        gap = float(np.min(pair_sums))
        tolerance = 100.0 * matrix.shape[0] * EPS * max(np.linalg.norm(matrix, 1), 1e-300)
        if not gap > tolerance:
            raise InputError(
                f"the continuous Lyapunov equation {name} X + X {name}^T = C has no unique "
                f"solution: two eigenvalues of {name} sum to {gap:.2e} (~0), e.g. a zero or "
                f"a +-lambda pair; use a matrix with no such pairs (e.g. a stable one)"
            )

    def _solve_schur(self, rhs, adjoint):
        transformed = self.basis.T @ rhs @ self.basis
        trans_a, trans_b = ("T", "N") if adjoint else ("N", "T")
        solution, scale, info = lapack.dtrsyl(
            self.schur, self.schur, transformed, trana=trans_a, tranb=trans_b, isgn=1
        )
        if info < 0:
            raise InputError(f"LAPACK dtrsyl rejected argument {-info}")
        if info == 1:
            raise InputError(
                "the Lyapunov equation is too close to singular: LAPACK dtrsyl had to perturb "
                "eigenvalues that (nearly) sum to zero"
            )
        return self.basis @ (solution / scale) @ self.basis.T

    def solve(self, rhs):
        """X with A X + X A^T = rhs."""
        return self._solve_schur(rhs, adjoint=False)

    def solve_adjoint(self, rhs):
        """Y with A^T Y + Y A = rhs (the adjoint operator of X -> A X + X A^T)."""
        return self._solve_schur(rhs, adjoint=True)


def _continuous(A, C):
    """Validated ``A``, ``C``, the Schur-form solver of ``A`` and ``X``."""
    matrix, rhs = _lyapunov_operands(A, C)
    solver = _ContinuousLyapunov(matrix, "A")
    return matrix, rhs, solver, solver.solve(rhs)


def solve_continuous_lyapunov(A, C):
    """Solution ``X`` of the continuous Lyapunov equation ``A X + X A^T = C``.

    Same convention as :func:`scipy.linalg.solve_continuous_lyapunov`. The stationary
    covariance of ``dx = F x dt + L dW`` (diffusion ``q``) is
    ``solve_continuous_lyapunov(F, -L q L^T)`` ([Sarkka2019]).

    Parameters
    ----------
    A : (n, n) array_like
        Matrix with no two eigenvalues summing to zero (e.g. stable).
    C : (n, n) array_like
        Right-hand side.

    Returns
    -------
    X : (n, n) ndarray

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or an equation without a unique solution.
    """
    return _continuous(A, C)[3]


def solve_continuous_lyapunov_jvp(A, C, A_dot, C_dot):
    """Forward rule of ``A X + X A^T = C``.

    Differentiating the equation: ``A X_dot + X_dot A^T = C_dot - A_dot X - X A_dot^T``,
    one more Lyapunov solve with the same ``A`` (its Schur form is reused). Source: implicit
    differentiation as in [Giles2008], with the Bartels-Stewart solver
    [BartelsStewart1972]; see [Sarkka2019] for the Kalman use.

    Parameters
    ----------
    A, C : (n, n) array_like
        Equation data.
    A_dot, C_dot : (n, n) array_like or None
        Tangents; None means zero.

    Returns
    -------
    X : (n, n) ndarray
    X_dot : (n, n) ndarray

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or an equation without a unique solution.
    """
    matrix, rhs, solver, solution = _continuous(A, C)
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    rhs_dot = like_primal(C_dot, matrix.shape, "C_dot", "C")
    tangent_rhs = np.zeros_like(rhs) if rhs_dot is None else rhs_dot.copy()
    if matrix_dot is not None:
        tangent_rhs -= matrix_dot @ solution + solution @ matrix_dot.T
    return solution, solver.solve(tangent_rhs)


def solve_continuous_lyapunov_vjp(A, C):
    """Reverse rule of ``A X + X A^T = C`` through the adjoint Lyapunov equation.

    Solve ``A^T Lambda + Lambda A = X_bar`` (the adjoint of ``X -> A X + X A^T``), then
    ``C_bar = Lambda`` and ``A_bar = -(Lambda X^T + Lambda^T X)``. One Schur form of ``A``
    serves the primal and the adjoint solve. Source: adjoint of the implicit function (as
    in [Giles2008]), Bartels-Stewart [BartelsStewart1972]; adjoint Lyapunov equations as in
    Kalman-filter sensitivity analysis ([Sarkka2019]).

    Parameters
    ----------
    A, C : (n, n) array_like
        Equation data.

    Returns
    -------
    X : (n, n) ndarray
    pullback : callable
        ``pullback(X_bar) -> (A_bar, C_bar)``.

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or an equation without a unique solution.
    """
    matrix, rhs, solver, solution = _continuous(A, C)

    def pullback(X_bar):
        solution_bar = like_primal(X_bar, solution.shape, "X_bar", "X")
        if solution_bar is None:
            return np.zeros_like(matrix), np.zeros_like(rhs)
        adjoint = solver.solve_adjoint(solution_bar)
        return -(adjoint @ solution.T + adjoint.T @ solution), adjoint

    return solution, pullback


# ----------------------------------------------------------------------------------
# discrete: A X A^T - X + C = 0


def _check_discrete_solvable(matrix, name):
    eigenvalues = np.linalg.eigvals(matrix)
    gap = float(np.min(np.abs(1.0 - eigenvalues[:, None] * eigenvalues[None, :])))
    tolerance = 100.0 * matrix.shape[0] * EPS * (1.0 + np.linalg.norm(matrix, 1) ** 2)
    if not gap > tolerance:
        raise InputError(
            f"the discrete Lyapunov equation {name} X {name}^T - X + C = 0 has no unique "
            f"solution: a product of two eigenvalues of {name} is {gap:.2e} away from 1; use a "
            f"matrix with spectral radius < 1 (a stable transition matrix)"
        )


def _discrete_lyapunov(matrix, rhs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return sla.solve_discrete_lyapunov(matrix, rhs)
        except (RuntimeWarning, sla.LinAlgWarning, np.linalg.LinAlgError) as exc:
            raise InputError(
                f"the discrete Lyapunov equation is numerically singular: {exc}"
            ) from exc


def _discrete(A, C):
    """Validated ``A``, ``C`` (solvability checked once) and ``X``."""
    matrix, rhs = _lyapunov_operands(A, C)
    _check_discrete_solvable(matrix, "A")
    return matrix, rhs, _discrete_lyapunov(matrix, rhs)


def solve_discrete_lyapunov(A, C):
    """Solution ``X`` of the discrete Lyapunov (Stein) equation ``A X A^T - X + C = 0``.

    Same convention as :func:`scipy.linalg.solve_discrete_lyapunov` (which is used).

    Parameters
    ----------
    A : (n, n) array_like
        Matrix with no two eigenvalues whose product is 1 (e.g. spectral radius < 1).
    C : (n, n) array_like
        Right-hand side.

    Returns
    -------
    X : (n, n) ndarray

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or an equation without a unique solution.
    """
    return _discrete(A, C)[2]


def solve_discrete_lyapunov_jvp(A, C, A_dot, C_dot):
    """Forward rule of ``A X A^T - X + C = 0``.

    Differentiating: ``A X_dot A^T - X_dot + (C_dot + A_dot X A^T + A X A_dot^T) = 0``, a
    second Stein equation with the same ``A``. Source: implicit differentiation (as in
    [Giles2008]); discrete-time Kalman/Riccati sensitivity literature.

    Parameters
    ----------
    A, C : (n, n) array_like
        Equation data.
    A_dot, C_dot : (n, n) array_like or None
        Tangents; None means zero.

    Returns
    -------
    X : (n, n) ndarray
    X_dot : (n, n) ndarray

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or an equation without a unique solution.
    """
    matrix, rhs, solution = _discrete(A, C)
    matrix_dot = like_primal(A_dot, matrix.shape, "A_dot", "A")
    rhs_dot = like_primal(C_dot, matrix.shape, "C_dot", "C")
    tangent_rhs = np.zeros_like(rhs) if rhs_dot is None else rhs_dot.copy()
    if matrix_dot is not None:
        product = matrix_dot @ solution @ matrix.T
        tangent_rhs += product + matrix @ solution @ matrix_dot.T
    return solution, _discrete_lyapunov(matrix, tangent_rhs)


def solve_discrete_lyapunov_vjp(A, C):
    """Reverse rule of ``A X A^T - X + C = 0`` through the adjoint Stein equation.

    Solve ``A^T Lambda A - Lambda + X_bar = 0`` (the adjoint of ``X -> X - A X A^T``), then
    ``C_bar = Lambda`` and ``A_bar = Lambda A X^T + Lambda^T A X``. Source: adjoint of the
    implicit function (as in [Giles2008]); discrete-time Kalman sensitivity literature.

    Parameters
    ----------
    A, C : (n, n) array_like
        Equation data.

    Returns
    -------
    X : (n, n) ndarray
    pullback : callable
        ``pullback(X_bar) -> (A_bar, C_bar)``.

    Raises
    ------
    InputError
        Bad shapes, NaN/inf, or an equation without a unique solution.
    """
    matrix, rhs, solution = _discrete(A, C)

    def pullback(X_bar):
        solution_bar = like_primal(X_bar, solution.shape, "X_bar", "X")
        if solution_bar is None:
            return np.zeros_like(matrix), np.zeros_like(rhs)
        adjoint = _discrete_lyapunov(matrix.T, solution_bar)
        matrix_bar = adjoint @ matrix @ solution.T + adjoint.T @ matrix @ solution
        return matrix_bar, adjoint

    return solution, pullback


# MATLAB / Julia style short names (the design document calls them "lyap").
lyap = solve_continuous_lyapunov
lyap_jvp = solve_continuous_lyapunov_jvp
lyap_vjp = solve_continuous_lyapunov_vjp
dlyap = solve_discrete_lyapunov
dlyap_jvp = solve_discrete_lyapunov_jvp
dlyap_vjp = solve_discrete_lyapunov_vjp
