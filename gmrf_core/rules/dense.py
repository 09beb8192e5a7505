"""Derivative rules for dense linear algebra.

Every operation ``op`` comes as three public functions:

``op(*primals)``
    the validated primal computation;
``op_jvp(*primals, *tangents) -> (out, out_dot)``
    forward mode: the Fréchet derivative of ``op`` at the primals applied to the
    tangents. A tangent given as ``None`` means zero (that argument is held fixed);
``op_vjp(*primals) -> (out, pullback)``
    reverse mode: ``pullback(out_bar)`` returns a tuple with one cotangent per
    primal, the adjoint of the Fréchet derivative applied to ``out_bar``.

Cotangents are gradients with respect to the Frobenius inner product
``<X, Y> = sum(X * Y) = tr(X^T Y)``, so for every rule
``<out_bar, out_dot> = sum_i <primal_bar_i, primal_dot_i>`` (the dot-product test,
see :func:`gmrf_core.testing.check_vjp`).

Operations: :func:`inv`, :func:`solve`, :func:`logdet` (symmetric positive definite,
via Cholesky), :func:`slogdet` (general, via LU), :func:`cholesky`, :func:`expm`,
:func:`solve_continuous_lyapunov` and :func:`solve_discrete_lyapunov` (same equations as
in :mod:`scipy.linalg`; aliases ``lyap`` and ``dlyap``).

References
----------
.. [Giles2008] M. B. Giles, "An extended collection of matrix derivative results for
   forward and reverse mode automatic differentiation", Oxford University Computing
   Laboratory, Report NA-08/01, 2008.
.. [Murray2016] I. Murray, "Differentiation of the Cholesky decomposition",
   arXiv:1602.07527, 2016.
.. [AlMohyHigham2009] A. H. Al-Mohy and N. J. Higham, "Computing the Fréchet derivative
   of the matrix exponential, with an application to condition number estimation",
   SIAM J. Matrix Anal. Appl. 30(4), 1639-1657, 2009.
.. [Higham2008] N. J. Higham, "Functions of Matrices: Theory and Computation", SIAM,
   2008 (Chapter 3: the Fréchet derivative, its block-matrix formula, Theorem 3.6).
.. [BartelsStewart1972] R. H. Bartels and G. W. Stewart, "Solution of the matrix
   equation AX + XB = C", Comm. ACM 15(9), 820-826, 1972.
.. [Sarkka2019] S. Särkkä and A. Solin, "Applied Stochastic Differential Equations",
   Cambridge University Press, 2019 (linear SDEs: discretisation by the matrix
   exponential, stationary covariance from the Lyapunov equation), used with the adjoint
   (reverse-mode) Lyapunov equations as in Kalman-filter sensitivity analysis.
"""

import warnings

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg import lapack

from ..errors import InputError, NotPositiveDefiniteError, NotSymmetricError

__all__ = [
    "SYMMETRY_RTOL",
    "inv",
    "inv_jvp",
    "inv_vjp",
    "solve",
    "solve_jvp",
    "solve_vjp",
    "logdet",
    "logdet_jvp",
    "logdet_vjp",
    "slogdet",
    "slogdet_jvp",
    "slogdet_vjp",
    "cholesky",
    "cholesky_jvp",
    "cholesky_vjp",
    "expm",
    "expm_jvp",
    "expm_vjp",
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

_EPS = np.finfo(np.float64).eps

#: Relative tolerance, ``max|A - A^T| <= SYMMETRY_RTOL * max|A|``, under which a matrix
#: counts as symmetric for :func:`logdet` and :func:`cholesky`.
SYMMETRY_RTOL = 1e-8

# Below this size the Fréchet derivative of expm is taken from one exponential of a
# 2n x 2n block matrix: fewer Python-level operations than scipy's expm_frechet
# (measured 40 us vs 250 us at n = 2, 260 us vs 420 us at n = 20).
_BLOCK_FRECHET_MAX_N = 20


# ----------------------------------------------------------------------------------
# validation


def _array(value, name):
    if sp.issparse(value):
        raise InputError(
            f"{name} is a scipy.sparse matrix, but the dense rules need a dense array: "
            f"pass {name}.toarray(), or use gmrf_core.rules.sparse for sparse matrices"
        )
    array = np.asarray(value)
    if array.dtype.kind == "c":
        raise InputError(f"{name} is complex; the dense rules support real matrices only")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    return np.asarray(array, dtype=np.float64)


def _check_finite(array, name):
    if not np.isfinite(array).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise InputError(
            f"{name} contains NaN or inf (first at index {bad}); all entries must be finite"
        )


def _square(value, name):
    """Validate a finite, non-empty, square real matrix and return it as float64."""
    matrix = _array(value, name)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"{name} must be a square 2-D array, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise InputError(f"{name} is empty (shape {matrix.shape}); need at least 1 x 1")
    _check_finite(matrix, name)
    return matrix


def _like(value, shape, name, primal_name):
    """Validate a tangent or cotangent of a primal of the given shape; None stays None."""
    if value is None:
        return None
    array = _array(value, name)
    if array.shape != tuple(shape):
        raise InputError(
            f"{name} has shape {array.shape} but {primal_name} has shape {tuple(shape)}; "
            f"they must match"
        )
    _check_finite(array, name)
    return array


def _scalar_cotangent(value, name):
    array = _array(value, name)
    if array.size != 1:
        raise InputError(f"{name} must be a scalar (the output is a scalar), got {array.shape}")
    scalar = float(array.reshape(()))
    if not np.isfinite(scalar):
        raise InputError(f"{name} is {scalar}; it must be finite")
    return scalar


def _check_symmetric(matrix, name):
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


def _lu(matrix, name):
    """LU factors of a square matrix; InputError if it is singular to working precision.

    LAPACK is called directly: the scipy.linalg wrappers cost ~40 us per call, which
    dominates for the small matrices of state-space models.
    """
    lu, piv, info = lapack.dgetrf(matrix)
    if info < 0:  # only possible for malformed arguments, which _square excludes
        raise InputError(f"LAPACK dgetrf rejected argument {-info} for {name}")
    rcond = 0.0
    if info == 0:
        norm_1 = np.max(np.sum(np.abs(matrix), axis=0))
        rcond, info = lapack.dgecon(lu, norm_1, norm="1")
    if info != 0 or not rcond > _EPS:
        raise InputError(
            f"{name} is singular to working precision (reciprocal condition number "
            f"{rcond:.1e} <= machine epsilon {_EPS:.1e}); its inverse, solves, log-determinant "
            f"and their derivatives do not exist"
        )
    return lu, piv


def _lu_solve(factors, rhs, trans=0):
    """Solve A x = rhs (trans=0) or A^T x = rhs (trans=1) from the LU factors of A."""
    lu, piv = factors
    solution, info = lapack.dgetrs(lu, piv, rhs, trans=trans)
    if info != 0:
        raise InputError(f"LAPACK dgetrs rejected argument {-info}")
    return solution


def _triangular_solve(factor, rhs, trans=0):
    """Solve L x = rhs (trans=0) or L^T x = rhs (trans=1) for a lower triangular L."""
    solution, info = lapack.dtrtrs(factor, rhs, lower=1, trans=trans)
    if info != 0:  # a zero pivot in a factor dpotrf accepted cannot happen
        raise InputError(f"LAPACK dtrtrs failed with info = {info}")
    return solution


def _cholesky_lower(matrix, name):
    """Lower Cholesky factor; NotPositiveDefiniteError with the failing column."""
    _check_symmetric(matrix, name)
    factor, info = lapack.dpotrf(matrix, lower=1, clean=1, overwrite_a=0)
    if info > 0:
        raise NotPositiveDefiniteError(
            f"{name} is not positive definite: the Cholesky factorization broke down at "
            f"column {info - 1} (the leading {info} x {info} minor is not positive definite)",
            column=info - 1,
        )
    if info < 0:  # only possible for malformed arguments, which _square excludes
        raise InputError(f"LAPACK dpotrf rejected argument {-info} for {name}")
    return factor


def _spd_inverse(factor):
    """A^{-1} from the lower Cholesky factor of A (LAPACK dpotri), as a full symmetric array."""
    lower, info = lapack.dpotri(factor, lower=1)
    if info != 0:  # a zero diagonal in a factor dpotrf accepted cannot happen
        raise InputError(f"LAPACK dpotri failed with info = {info}")
    lower = np.tril(lower)
    return lower + np.tril(lower, -1).T


def _phi(matrix):
    """Lower triangle with the diagonal halved, Phi in [Murray2016]."""
    result = np.tril(matrix)
    result[np.diag_indices_from(result)] *= 0.5
    return result


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
        tolerance = 100.0 * matrix.shape[0] * _EPS * max(np.linalg.norm(matrix, 1), 1e-300)
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


def _check_discrete_solvable(matrix, name):
    eigenvalues = np.linalg.eigvals(matrix)
    gap = float(np.min(np.abs(1.0 - eigenvalues[:, None] * eigenvalues[None, :])))
    tolerance = 100.0 * matrix.shape[0] * _EPS * (1.0 + np.linalg.norm(matrix, 1) ** 2)
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


# ----------------------------------------------------------------------------------
# inverse


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
    matrix = _square(A, "A")
    return _lu_solve(_lu(matrix, "A"), np.eye(matrix.shape[0]))


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
    matrix = _square(A, "A")
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
    inverse = _lu_solve(_lu(matrix, "A"), np.eye(matrix.shape[0]))
    if matrix_dot is None:
        return inverse, np.zeros_like(inverse)
    return inverse, -(inverse @ matrix_dot @ inverse)


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
    matrix = _square(A, "A")
    inverse = _lu_solve(_lu(matrix, "A"), np.eye(matrix.shape[0]))

    def pullback(Y_bar):
        inverse_bar = _like(Y_bar, inverse.shape, "Y_bar", "Y = inv(A)")
        if inverse_bar is None:
            return (np.zeros_like(inverse),)
        return (-(inverse.T @ inverse_bar @ inverse.T),)

    return inverse, pullback


# ----------------------------------------------------------------------------------
# linear solve


def _solve_operands(A, b):
    matrix = _square(A, "A")
    rhs = _array(b, "b")
    if rhs.ndim not in (1, 2) or rhs.shape[0] != matrix.shape[0]:
        raise InputError(
            f"b must have shape ({matrix.shape[0]},) or ({matrix.shape[0]}, k) to match A "
            f"of shape {matrix.shape}, got {rhs.shape}"
        )
    _check_finite(rhs, "b")
    return matrix, rhs


def _outer_or_product(left, right):
    """left right^T for matrices, outer(left, right) for vectors."""
    if left.ndim == 1:
        return np.outer(left, right)
    return left @ right.T


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
    matrix, rhs = _solve_operands(A, b)
    return _lu_solve(_lu(matrix, "A"), rhs)


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
    matrix, rhs = _solve_operands(A, b)
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
    rhs_dot = _like(b_dot, rhs.shape, "b_dot", "b")
    factors = _lu(matrix, "A")
    solution = _lu_solve(factors, rhs)
    tangent_rhs = np.zeros_like(rhs) if rhs_dot is None else rhs_dot.copy()
    if matrix_dot is not None:
        tangent_rhs -= matrix_dot @ solution
    return solution, _lu_solve(factors, tangent_rhs)


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
    matrix, rhs = _solve_operands(A, b)
    factors = _lu(matrix, "A")
    solution = _lu_solve(factors, rhs)

    def pullback(x_bar):
        solution_bar = _like(x_bar, solution.shape, "x_bar", "x = solve(A, b)")
        if solution_bar is None:
            return np.zeros_like(matrix), np.zeros_like(rhs)
        rhs_bar = _lu_solve(factors, solution_bar, trans=1)
        return -_outer_or_product(rhs_bar, solution), rhs_bar

    return solution, pullback


# ----------------------------------------------------------------------------------
# log-determinants


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
    factor = _cholesky_lower(_square(A, "A"), "A")
    return float(2.0 * np.sum(np.log(np.diag(factor))))


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
    matrix = _square(A, "A")
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
    factor = _cholesky_lower(matrix, "A")
    value = float(2.0 * np.sum(np.log(np.diag(factor))))
    if matrix_dot is None:
        return value, 0.0
    # tr(A^{-1} A_dot) = tr(L^{-1} A_dot L^{-T}): two triangular solves, no explicit inverse
    half = _triangular_solve(factor, matrix_dot)
    whitened = _triangular_solve(factor, half.T)
    return value, float(np.trace(whitened))


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
    matrix = _square(A, "A")
    factor = _cholesky_lower(matrix, "A")
    value = float(2.0 * np.sum(np.log(np.diag(factor))))
    inverse = []  # computed on the first pullback only, then reused

    def pullback(value_bar):
        scale = _scalar_cotangent(value_bar, "value_bar")
        if not inverse:
            inverse.append(_spd_inverse(factor))
        return (scale * inverse[0],)

    return value, pullback


def _sign_and_logabsdet(factors):
    lu, piv = factors
    diagonal = np.diag(lu)
    swaps = np.count_nonzero(piv != np.arange(piv.size))
    sign = float(np.prod(np.sign(diagonal))) * (-1.0 if swaps % 2 else 1.0)
    return sign, float(np.sum(np.log(np.abs(diagonal))))


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
    matrix = _square(A, "A")
    return _sign_and_logabsdet(_lu(matrix, "A"))


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
    matrix = _square(A, "A")
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
    factors = _lu(matrix, "A")
    out = _sign_and_logabsdet(factors)
    if matrix_dot is None:
        return out, (0.0, 0.0)
    trace = float(np.trace(_lu_solve(factors, matrix_dot)))
    return out, (0.0, trace)


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
    matrix = _square(A, "A")
    factors = _lu(matrix, "A")
    out = _sign_and_logabsdet(factors)

    def pullback(out_bar):
        if not isinstance(out_bar, (tuple, list)) or len(out_bar) != 2:
            raise InputError(
                "slogdet's output is the pair (sign, logabsdet), so its cotangent must be a "
                "pair (sign_bar, logabsdet_bar); sign_bar is ignored and may be None, "
                "e.g. pullback((None, g))"
            )
        logabsdet_bar = _scalar_cotangent(out_bar[1], "logabsdet_bar")
        inverse_t = _lu_solve(factors, np.eye(matrix.shape[0]), trans=1)
        return (logabsdet_bar * inverse_t,)

    return out, pullback


# ----------------------------------------------------------------------------------
# Cholesky factor


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
    return _cholesky_lower(_square(A, "A"), "A")


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
    matrix = _square(A, "A")
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
    factor = _cholesky_lower(matrix, "A")
    if matrix_dot is None:
        return factor, np.zeros_like(factor)
    _check_symmetric(matrix_dot, "A_dot")
    half = _triangular_solve(factor, matrix_dot)
    whitened = _triangular_solve(factor, half.T).T
    return factor, factor @ _phi(whitened)


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
    factor = _cholesky_lower(_square(A, "A"), "A")

    def pullback(L_bar):
        factor_bar = _like(L_bar, factor.shape, "L_bar", "L = cholesky(A)")
        if factor_bar is None:
            return (np.zeros_like(factor),)
        middle = _phi(factor.T @ np.tril(factor_bar))
        middle = 0.5 * (middle + middle.T)
        # L^{-T} middle L^{-1} via two triangular solves
        left = _triangular_solve(factor, middle, trans=1)
        matrix_bar = _triangular_solve(factor, left.T, trans=1).T
        return (0.5 * (matrix_bar + matrix_bar.T),)

    return factor, pullback


# ----------------------------------------------------------------------------------
# matrix exponential


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
    return sla.expm(_square(A, "A"))


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
    matrix = _square(A, "A")
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
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
    matrix = _square(A, "A")
    exp_a = sla.expm(matrix)

    def pullback(E_bar):
        exp_bar = _like(E_bar, exp_a.shape, "E_bar", "E = expm(A)")
        if exp_bar is None:
            return (np.zeros_like(matrix),)
        return (_expm_frechet(matrix.T, exp_bar, compute_expm=False)[1],)

    return exp_a, pullback


# ----------------------------------------------------------------------------------
# Lyapunov equations


def _lyapunov_operands(A, C):
    matrix = _square(A, "A")
    rhs = _array(C, "C")
    if rhs.shape != matrix.shape:
        raise InputError(f"C must have the shape of A {matrix.shape}, got {rhs.shape}")
    _check_finite(rhs, "C")
    return matrix, rhs


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
    matrix, rhs = _lyapunov_operands(A, C)
    return _ContinuousLyapunov(matrix, "A").solve(rhs)


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
    matrix, rhs = _lyapunov_operands(A, C)
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
    rhs_dot = _like(C_dot, matrix.shape, "C_dot", "C")
    solver = _ContinuousLyapunov(matrix, "A")
    solution = solver.solve(rhs)
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
    matrix, rhs = _lyapunov_operands(A, C)
    solver = _ContinuousLyapunov(matrix, "A")
    solution = solver.solve(rhs)

    def pullback(X_bar):
        solution_bar = _like(X_bar, solution.shape, "X_bar", "X")
        if solution_bar is None:
            return np.zeros_like(matrix), np.zeros_like(rhs)
        adjoint = solver.solve_adjoint(solution_bar)
        return -(adjoint @ solution.T + adjoint.T @ solution), adjoint

    return solution, pullback


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
    matrix, rhs = _lyapunov_operands(A, C)
    _check_discrete_solvable(matrix, "A")
    return _discrete_lyapunov(matrix, rhs)


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
    matrix, rhs = _lyapunov_operands(A, C)
    matrix_dot = _like(A_dot, matrix.shape, "A_dot", "A")
    rhs_dot = _like(C_dot, matrix.shape, "C_dot", "C")
    _check_discrete_solvable(matrix, "A")
    solution = _discrete_lyapunov(matrix, rhs)
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
    matrix, rhs = _lyapunov_operands(A, C)
    _check_discrete_solvable(matrix, "A")
    solution = _discrete_lyapunov(matrix, rhs)

    def pullback(X_bar):
        solution_bar = _like(X_bar, solution.shape, "X_bar", "X")
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
