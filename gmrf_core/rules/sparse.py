"""Derivative rules for sparse GMRF operations: log-determinant, solve, quadratic form, log-density.

Conventions
-----------
* Q is a sparse symmetric positive definite matrix stored in full (both
  triangles). Tangents ``Q_dot`` are sparse matrices whose pattern lies within
  Q's (a symmetric perturbation that stays on the pattern, e.g. dQ/dθ_k of a
  latent model).
* Cotangents ``Q_bar`` come back as CSC matrices on **Q's own sparsity pattern**
  (same indptr/indices as the canonical form of Q) and are **symmetric**: the
  entry stored at (i, j) is the derivative with respect to the entry (i, j) of
  the full symmetric storage, symmetrized. With this convention
  ``<Q_bar, Q_dot> = Σ_p Q_bar.data[p] * Q_dot.data[p]`` (a plain dot product
  of the stored values) equals the directional derivative for every symmetric
  ``Q_dot`` on the pattern. In particular an off-diagonal pair (i, j), (j, i)
  is *not* doubled: doubling is only right when a single number parameterizes
  both triangles (the classic factor-2 mistake is to do it twice).
* Entries of Q⁻¹ needed by the rules come from selected inversion
  (:meth:`gmrf_core.Factor.selected_inverse`): the pattern of L contains Q's,
  so tr(Q⁻¹ Q_dot) and Q⁻¹ restricted to Q's pattern never need a dense
  inverse. A zero cotangent returns zeros before any selected inversion.

References: Takahashi, Fagan & Chen (1973) for the selected inverse; Giles
(2008), "An extended collection of matrix derivative results for forward and
reverse mode algorithmic differentiation", for the matrix identities; Rue &
Held (2005) for the GMRF log-density.

Every function accepts an optional ``factor`` (a :class:`gmrf_core.Factor` of Q)
to reuse an existing factorization.

By-stored-position fast path: the cotangents' values are built by
:func:`inverse_at_positions` (ȳ Q⁻¹ gathered from a selected inverse at factor-storage
positions looked up once, :meth:`gmrf_core.Symbolic.positions`) and
:func:`outer_on_pattern` (½ȳ(u_i v_j + u_j v_i) at the stored entries of a fixed
pattern). The rules below use them on Q's own pattern; the library's Laplace and ELBO
gradients use them on the fixed pattern of Q̃ inside H, with positions computed at
set-up, so the tests of these rules protect those gradients.
"""

import numpy as np
import scipy.sparse as sp

from ..errors import InputError, NotSymmetricError, PatternError
from ..linalg import as_csc, cholesky

__all__ = [
    "inverse_at_positions",
    "outer_on_pattern",
    "logdet_jvp",
    "logdet_vjp",
    "solve_jvp",
    "solve_vjp",
    "quad_jvp",
    "quad_vjp",
    "gmrf_logpdf_jvp",
    "gmrf_logpdf_vjp",
]

_LOG_2PI = np.log(2.0 * np.pi)


# relative tolerance of the tangents' symmetry check (as the dense rules')
SYMMETRY_RTOL = 1e-8


def _prepare(Q, factor):
    Q = as_csc(Q, "Q")
    if factor is None:
        factor = cholesky(Q)
    elif factor.n != Q.shape[0]:
        raise InputError(f"factor is of order {factor.n} but Q has shape {Q.shape}.")
    elif not factor.symbolic.same_pattern(Q):
        raise InputError(
            "factor was not computed for a matrix with Q's pattern; pass the factor of Q."
        )
    return Q, factor


def _tangent_on_pattern(Q, Q_dot, name="Q_dot"):
    """Q_dot as canonical CSC with shape checks (its pattern may be a subset of Q's)."""
    if Q_dot is None:
        return None
    Q_dot = as_csc(Q_dot, name)
    if Q_dot.shape != Q.shape:
        raise InputError(f"{name} must have shape {Q.shape}; got {Q_dot.shape}.")
    if not np.all(np.isfinite(Q_dot.data)):
        raise InputError(f"{name} has NaN or infinite entries.")
    # the rules read Q⁻¹ only on Q's pattern (selected inversion), so a tangent entry off
    # that pattern would be silently dropped; a non-symmetric one is not a tangent of a
    # symmetric Q
    magnitude = abs(Q_dot)
    outside = sp.csc_matrix(magnitude - magnitude.multiply(_pattern_like(Q, np.ones(Q.nnz))))
    outside.eliminate_zeros()
    if outside.nnz:
        row, col = outside.nonzero()
        raise PatternError(
            f"{name} has a nonzero at ({row[0]}, {col[0]}), outside Q's sparsity pattern; "
            f"a tangent must lie on Q's pattern."
        )
    scale = float(magnitude.max()) if Q_dot.nnz else 0.0
    asymmetry = abs(Q_dot - Q_dot.T)
    if asymmetry.nnz and float(asymmetry.max()) > SYMMETRY_RTOL * scale:
        raise NotSymmetricError(
            f"{name} is not symmetric (max |{name} − {name}ᵀ| = {float(asymmetry.max()):.3g}); "
            f"a tangent of a symmetric Q must be symmetric."
        )
    return Q_dot


def _vector(value, n, name):
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (n,):
        raise InputError(f"{name} must have shape ({n},); got {value.shape}.")
    if not np.all(np.isfinite(value)):
        raise InputError(f"{name} has NaN or infinite entries.")
    return value


def _pattern_like(Q, data):
    return sp.csc_matrix((data, Q.indices.copy(), Q.indptr.copy()), shape=Q.shape)


def inverse_at_positions(selinv, positions, y_bar=1.0):
    """ȳ Q⁻¹ at factor-storage positions: the values of the log-determinant cotangent.

    Parameters
    ----------
    selinv : SelectedInverse
        Selected inverse of Q.
    positions : numpy.ndarray of int
        Positions in the factor's storage (:meth:`gmrf_core.Symbolic.positions`; Q's own
        pattern is ``symbolic.q_positions``), looked up once per pattern.
    y_bar : float

    Returns
    -------
    numpy.ndarray
        ȳ (Q⁻¹)_ij for every position, in the positions' order.
    """
    values = selinv.values_at_positions(positions)
    if y_bar != 1.0:
        values *= y_bar
    return values


def outer_on_pattern(indptr, indices, u, v, y_bar=1.0):
    """ȳ ½(u_i v_j + u_j v_i) at the stored entries (i, j) of a CSC pattern.

    The symmetrized cotangent of xᵀ Q y on a fixed pattern: with the plain-dot-product
    convention of this module, Σ_p out[p] Q̇.data[p] = ȳ ½(uᵀQ̇v + vᵀQ̇u) for any
    symmetric Q̇ on the pattern.
    """
    cols = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    rows = indices
    out = u[rows] * v[cols]
    out += u[cols] * v[rows]
    out *= 0.5 * y_bar
    return out


def _outer_on_pattern(Q, u, v):
    """Entries ½(u_i v_j + u_j v_i) at the stored positions (i, j) of Q."""
    return _pattern_like(Q, outer_on_pattern(Q.indptr, Q.indices, u, v))


def _inverse_on_pattern(Q, factor, scale):
    """scale · Q⁻¹ restricted to Q's pattern, from the selected inverse."""
    if not factor.symbolic.same_pattern(Q):
        raise InputError("factor was not computed for a matrix with Q's pattern.")
    positions = factor.symbolic.q_positions
    return _pattern_like(Q, inverse_at_positions(factor.selected_inverse(), positions, scale))


def _scalar_bar(y_bar):
    y_bar = float(y_bar)
    if not np.isfinite(y_bar):
        raise InputError("the cotangent must be finite.")
    return y_bar


# -- log-determinant --------------------------------------------------------------


def logdet_jvp(Q, Q_dot, *, factor=None):
    """Forward rule of y = log det Q.

    ẏ = tr(Q⁻¹ Q̇) (Jacobi's formula; Giles 2008, §3.1), computed from the
    selected inverse by :meth:`SelectedInverse.trace_product`.

    Parameters
    ----------
    Q : sparse matrix (n, n), symmetric positive definite
    Q_dot : sparse matrix (n, n) with pattern within Q's, or None (zero tangent)
    factor : Factor of Q, optional

    Returns
    -------
    (y, y_dot) : (float, float)
    """
    Q, factor = _prepare(Q, factor)
    Q_dot = _tangent_on_pattern(Q, Q_dot)
    y = factor.logdet()
    if Q_dot is None or Q_dot.nnz == 0 or not np.any(Q_dot.data):
        return y, 0.0
    return y, factor.selected_inverse().trace_product(Q_dot)


def logdet_vjp(Q, *, factor=None):
    """Reverse rule of y = log det Q.

    Q̄ = ȳ Q⁻¹, restricted to Q's pattern (selected inversion); see the module
    docstring for the symmetric-storage convention.

    Returns
    -------
    (y, pullback) : pullback(y_bar) -> (Q_bar,)
    """
    Q, factor = _prepare(Q, factor)
    y = factor.logdet()

    def logdet_pullback(y_bar):
        y_bar = _scalar_bar(y_bar)
        if y_bar == 0.0:
            return (_pattern_like(Q, np.zeros(Q.nnz)),)
        return (_inverse_on_pattern(Q, factor, y_bar),)

    return y, logdet_pullback


# -- solve ------------------------------------------------------------------------


def solve_jvp(Q, b, Q_dot, b_dot, *, factor=None):
    """Forward rule of x = Q⁻¹ b: ẋ = Q⁻¹ (ḃ − Q̇ x) (Giles 2008, §2.3.1).

    ``Q_dot`` or ``b_dot`` may be None (zero tangent). b has shape (n,).
    """
    Q, factor = _prepare(Q, factor)
    b = _vector(b, Q.shape[0], "b")
    Q_dot = _tangent_on_pattern(Q, Q_dot)
    x = factor.solve(b)
    rhs = np.zeros_like(b) if b_dot is None else _vector(b_dot, Q.shape[0], "b_dot").copy()
    if Q_dot is not None:
        rhs -= Q_dot @ x
    return x, factor.solve(rhs) if np.any(rhs) else np.zeros_like(b)


def solve_vjp(Q, b, *, factor=None):
    """Reverse rule of x = Q⁻¹ b (Giles 2008, §2.3.1).

    b̄ = Q⁻¹ x̄ (Q symmetric), Q̄ = −b̄ xᵀ restricted to Q's pattern and symmetrized.

    Returns
    -------
    (x, pullback) : pullback(x_bar) -> (Q_bar, b_bar)
    """
    Q, factor = _prepare(Q, factor)
    n = Q.shape[0]
    b = _vector(b, n, "b")
    x = factor.solve(b)

    def solve_pullback(x_bar):
        x_bar = _vector(x_bar, n, "x_bar")
        if not np.any(x_bar):
            return _pattern_like(Q, np.zeros(Q.nnz)), np.zeros(n)
        b_bar = factor.solve(x_bar)
        return _outer_on_pattern(Q, -b_bar, x), b_bar

    return x, solve_pullback


# -- quadratic form ------------------------------------------------------------------


def quad_jvp(Q, x, Q_dot, x_dot):
    """Forward rule of y = xᵀ Q x: ẏ = 2 xᵀ Q ẋ + xᵀ Q̇ x (Q symmetric)."""
    Q = as_csc(Q, "Q")
    x = _vector(x, Q.shape[0], "x")
    Q_dot = _tangent_on_pattern(Q, Q_dot)
    Qx = Q @ x
    y = float(x @ Qx)
    y_dot = 0.0
    if x_dot is not None:
        y_dot += 2.0 * float(Qx @ _vector(x_dot, Q.shape[0], "x_dot"))
    if Q_dot is not None:
        y_dot += float(x @ (Q_dot @ x))
    return y, y_dot


def quad_vjp(Q, x):
    """Reverse rule of y = xᵀ Q x: x̄ = 2 ȳ Q x, Q̄ = ȳ x xᵀ on Q's pattern.

    Returns
    -------
    (y, pullback) : pullback(y_bar) -> (Q_bar, x_bar)
    """
    Q = as_csc(Q, "Q")
    x = _vector(x, Q.shape[0], "x")
    Qx = Q @ x
    y = float(x @ Qx)

    def quad_pullback(y_bar):
        y_bar = _scalar_bar(y_bar)
        return _outer_on_pattern(Q, y_bar * x, x), 2.0 * y_bar * Qx

    return y, quad_pullback


# -- GMRF log-density ------------------------------------------------------------------


def gmrf_logpdf_jvp(x, mean, Q, x_dot, mean_dot, Q_dot, *, factor=None):
    """Forward rule of y = log N(x; μ, Q⁻¹) = −n/2 log 2π + ½ log|Q| − ½ dᵀQd, d = x − μ.

    ẏ = ½ tr(Q⁻¹ Q̇) − dᵀ Q (ẋ − μ̇) − ½ dᵀ Q̇ d (Rue & Held 2005, eq. 2.5;
    Jacobi's formula). Any tangent may be None (zero).
    """
    Q, factor = _prepare(Q, factor)
    n = Q.shape[0]
    x = _vector(x, n, "x")
    mean = _vector(mean, n, "mean")
    d = x - mean
    Qd = Q @ d
    y = -0.5 * n * _LOG_2PI + 0.5 * factor.logdet() - 0.5 * float(d @ Qd)
    d_dot = np.zeros(n)
    if x_dot is not None:
        d_dot += _vector(x_dot, n, "x_dot")
    if mean_dot is not None:
        d_dot -= _vector(mean_dot, n, "mean_dot")
    y_dot = -float(Qd @ d_dot)
    Q_dot = _tangent_on_pattern(Q, Q_dot)
    if Q_dot is not None and np.any(Q_dot.data):
        y_dot += 0.5 * factor.selected_inverse().trace_product(Q_dot) - 0.5 * float(d @ (Q_dot @ d))
    return y, y_dot


def gmrf_logpdf_vjp(x, mean, Q, *, factor=None):
    """Reverse rule of y = log N(x; μ, Q⁻¹).

    x̄ = −ȳ Q d, μ̄ = ȳ Q d, Q̄ = ȳ (½ Q⁻¹ − ½ d dᵀ) on Q's pattern (selected
    inversion for Q⁻¹; skipped when ȳ = 0).

    Returns
    -------
    (y, pullback) : pullback(y_bar) -> (x_bar, mean_bar, Q_bar)
    """
    Q, factor = _prepare(Q, factor)
    n = Q.shape[0]
    x = _vector(x, n, "x")
    mean = _vector(mean, n, "mean")
    d = x - mean
    Qd = Q @ d
    y = -0.5 * n * _LOG_2PI + 0.5 * factor.logdet() - 0.5 * float(d @ Qd)

    def gmrf_logpdf_pullback(y_bar):
        y_bar = _scalar_bar(y_bar)
        if y_bar == 0.0:
            return np.zeros(n), np.zeros(n), _pattern_like(Q, np.zeros(Q.nnz))
        Q_bar = _inverse_on_pattern(Q, factor, 0.5 * y_bar)
        Q_bar.data -= 0.5 * y_bar * _outer_on_pattern(Q, d, d).data
        return -y_bar * Qd, y_bar * Qd, Q_bar

    return y, gmrf_logpdf_pullback
