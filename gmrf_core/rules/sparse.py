"""Derivative rules for sparse GMRF operations: log-determinant, solve, quadratic form,
log-density, and the log-determinant of a Laplace-type Hessian Q + Aᵀ diag(w) A.

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
to reuse an existing factorization. The solve and the weighted log-determinant also
take hard ``constraints`` (A_c, e): then Q⁻¹ is replaced by the covariance on the
constraint surface Σ_c = Q⁻¹ − V S⁻¹ Vᵀ (V = Q⁻¹A_cᵀ, S = A_c V) and log det Q by
log det(BᵀQB), B an orthonormal basis of ker A_c (Rue & Held 2005, §2.3.3 and eq. 2.32),
through :class:`gmrf_core.constrained.ConstrainedFactor`.

By-stored-position fast path: the cotangents' values are built by
:func:`inverse_at_positions` (ȳ Q⁻¹ gathered from a selected inverse at factor-storage
positions looked up once, :meth:`gmrf_core.Symbolic.positions`) and
:func:`outer_on_pattern` (½ȳ(u_i v_j + u_j v_i) at the stored entries of a fixed
pattern), :func:`quadratic_diag_at_positions` (ȳ diag(A Q⁻¹ Aᵀ) gathered at the
positions of the pairs of every row of A) and :func:`inverse_apply` (Σ_c v, the linear
part of the solve). The rules below use them on Q's own pattern; the library's Laplace and
ELBO gradients use them on the fixed patterns of Q̃ and Ã inside H, with positions computed
at set-up, so the tests of these rules protect those gradients:

* ½ log det(BᵀHB), H = Q̃ + Ãᵀ diag(w) Ã, is :func:`weighted_logdet_vjp` with ȳ = ½:
  Q̄ = ½ Σ_c on Q̃'s pattern (:func:`inverse_at_positions`, less the constraints'
  low-rank part) and w̄ = ½ diag(Ã Σ_c Ãᵀ) (:func:`quadratic_diag_at_positions`, idem);
* the adjoint λ = Σ_c v of the mode's implicit dependence on θ is the b-cotangent of
  :func:`solve_vjp` (:func:`inverse_apply`), the tangent ż = −Σ_c ḃ of :meth:`jvp` the
  b-part of :func:`solve_jvp`;
* ½ r rᵀ on Q̃'s pattern is the Q-cotangent of ½ rᵀQ̃r (:func:`quad_vjp`), and
  −sym(λ rᵀ) that of −λᵀQ̃r, the prior's part of the implicit term (the same outer
  product as the Q-cotangent −sym(b̄ xᵀ) of :func:`solve_vjp`): :func:`outer_on_pattern`.
"""

import numpy as np
import scipy.sparse as sp

from ..constrained import ConstrainedFactor
from ..errors import InputError, NotSymmetricError, PatternError
from ..kernels import assemble as _kasm
from ..linalg import as_csc, cholesky
from ..pattern import FixedPattern

__all__ = [
    "inverse_at_positions",
    "outer_on_pattern",
    "quadratic_diag_at_positions",
    "row_pairs",
    "inverse_apply",
    "logdet_jvp",
    "logdet_vjp",
    "solve_jvp",
    "solve_vjp",
    "quad_jvp",
    "quad_vjp",
    "gmrf_logpdf_jvp",
    "gmrf_logpdf_vjp",
    "weighted_logdet_jvp",
    "weighted_logdet_vjp",
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
    u = np.ascontiguousarray(u, dtype=np.float64)
    v = np.ascontiguousarray(v, dtype=np.float64)
    out = np.zeros(int(indptr[-1]))
    _kasm._add_outer_on_pattern(indptr, indices, u, v, float(y_bar), out)
    return out


def row_pairs(A):
    """The pairs (k, l) of columns of every row i of a sparse A, and their products.

    Returns
    -------
    (rows, cols, obs, values) : numpy.ndarray
        For every row i and every ordered pair (k, l) of its stored columns (row-major,
        k outer): k, l, i and a_ik a_il; Σ_t values[t] M[rows[t], cols[t]] over the
        pairs of row i is (A M Aᵀ)_ii.
    """
    A = sp.csr_matrix(A)
    counts = np.diff(A.indptr)
    row_of = np.repeat(np.arange(A.shape[0]), counts)  # the row of every stored entry
    repeat = counts[row_of]  # each entry pairs with every entry of its row
    first = np.repeat(np.arange(A.nnz), repeat)
    starts = np.cumsum(repeat) - repeat
    second = A.indptr[row_of].repeat(repeat) + (np.arange(first.size) - starts.repeat(repeat))
    return (
        A.indices[first].astype(np.int64),
        A.indices[second].astype(np.int64),
        row_of[first].astype(np.int64),
        A.data[first] * A.data[second],
    )


def quadratic_diag_at_positions(selinv, positions, obs, values, size, y_bar=1.0):
    """ȳ diag(A Q⁻¹ Aᵀ) gathered from a selected inverse: the values of the weight
    cotangent of log det(Q + Aᵀ diag(w) A) (see :func:`weighted_logdet_vjp`).

    Parameters
    ----------
    selinv : SelectedInverse
        Selected inverse of the matrix (e.g. H = Q + Aᵀ diag(w) A).
    positions : numpy.ndarray of int
        Factor-storage positions of the pairs (k, l) of every row of A
        (:func:`row_pairs`, :meth:`gmrf_core.Symbolic.positions`), looked up once.
    obs, values : numpy.ndarray
        The row i and the product a_ik a_il of every pair (:func:`row_pairs`).
    size : int
        Number of rows of A.
    y_bar : float

    Returns
    -------
    numpy.ndarray, shape (size,)
    """
    sigma = selinv.values_at_positions(positions)
    out = np.empty(size)
    _kasm._row_quadratic(obs, values, sigma, out)
    if y_bar != 1.0:
        out *= y_bar
    return out


def inverse_apply(factor, v):
    """Σ_c v, the linear part of the (constrained) solve x = argmin ½xᵀQx − bᵀx, A_c x = e.

    The b-tangent of :func:`solve_jvp` is ẋ = Σ_c ḃ and the b-cotangent of
    :func:`solve_vjp` is b̄ = Σ_c x̄ (Σ_c symmetric): one solve with ``factor`` (a
    :class:`~gmrf_core.constrained.ConstrainedFactor`, or a Factor: Σ_c = Q⁻¹).
    """
    return factor.solve(v)


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


def _constrained(factor, constraints):
    return ConstrainedFactor(factor, constraints) if constraints is not None else factor


def solve_jvp(Q, b, Q_dot, b_dot, *, constraints=None, factor=None):
    """Forward rule of x = Q⁻¹ b: ẋ = Q⁻¹ (ḃ − Q̇ x) (Giles 2008, §2.3.1).

    With ``constraints`` (A_c, e), x = argmin ½xᵀQx − bᵀx subject to A_c x = e
    (x = Σ_c b + V S⁻¹ e, the kriging solution): differentiating the KKT system gives
    ẋ = Σ_c (ḃ − Q̇ x) (Rue & Held 2005, §2.3.3). ``Q_dot`` or ``b_dot`` may be None
    (zero tangent). b has shape (n,).
    """
    Q, factor = _prepare(Q, factor)
    b = _vector(b, Q.shape[0], "b")
    Q_dot = _tangent_on_pattern(Q, Q_dot)
    cf = _constrained(factor, constraints)
    x = factor.solve(b) if constraints is None else cf.project(factor.solve(b))
    rhs = np.zeros_like(b) if b_dot is None else _vector(b_dot, Q.shape[0], "b_dot").copy()
    if Q_dot is not None:
        rhs -= Q_dot @ x
    return x, inverse_apply(cf, rhs) if np.any(rhs) else np.zeros_like(b)


def solve_vjp(Q, b, *, constraints=None, factor=None):
    """Reverse rule of x = Q⁻¹ b (Giles 2008, §2.3.1).

    b̄ = Σ_c x̄ (Q symmetric; Σ_c = Q⁻¹ without constraints, see :func:`solve_jvp`),
    Q̄ = −b̄ xᵀ restricted to Q's pattern and symmetrized.

    Returns
    -------
    (x, pullback) : pullback(x_bar) -> (Q_bar, b_bar)
    """
    Q, factor = _prepare(Q, factor)
    n = Q.shape[0]
    b = _vector(b, n, "b")
    cf = _constrained(factor, constraints)
    x = factor.solve(b) if constraints is None else cf.project(factor.solve(b))

    def solve_pullback(x_bar):
        x_bar = _vector(x_bar, n, "x_bar")
        if not np.any(x_bar):
            return _pattern_like(Q, np.zeros(Q.nnz)), np.zeros(n)
        b_bar = inverse_apply(cf, x_bar)
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


# -- log-determinant of a Laplace-type Hessian Q + Aᵀ diag(w) A ---------------------------------


def _weighted_prepare(Q, w, A, constraints, factor):
    """Validated (Q, w, A), the (constrained) factor of H = Q + Aᵀ diag(w) A, and the
    factor-storage positions of Q's entries and of the row pairs of A."""
    Q = as_csc(Q, "Q")
    n = Q.shape[0]
    if A is None:
        raise InputError("A is required: the matrix of H = Q + Aᵀ diag(w) A.")
    A = sp.csr_matrix(A, dtype=np.float64)
    if A.shape[1] != n:
        raise InputError(f"A must have {n} columns; got shape {A.shape}.")
    if not np.all(np.isfinite(A.data)):
        raise InputError("A has NaN or infinite entries.")
    w = _vector(w, A.shape[0], "w")
    ones = sp.csr_matrix((np.ones(A.nnz), A.indices, A.indptr), shape=A.shape)
    pattern = FixedPattern([Q, sp.csc_matrix(ones.T @ ones)], n)
    H = pattern.matrix(pattern.data_of(Q + A.T @ sp.diags(w) @ A, "Q + Aᵀ diag(w) A"))
    if factor is None:
        factor = cholesky(H)
    elif factor.n != n or not factor.symbolic.same_pattern(H):
        raise InputError(
            "factor was not computed for a matrix with the pattern of Q + Aᵀ diag(w) A; pass "
            "the factor of H."
        )
    q_positions = factor.symbolic.positions(Q.indices, np.repeat(np.arange(n), np.diff(Q.indptr)))
    rows, cols, obs, values = row_pairs(A)
    pairs = (factor.symbolic.positions(rows, cols), obs, values)
    return Q, w, A, ConstrainedFactor(factor, constraints), q_positions, pairs


def _weight_cotangent(cf, A, pairs, y_bar):
    """ȳ diag(A Σ_c Aᵀ) (by stored position, less the constraints' low-rank part)."""
    positions, obs, values = pairs
    w_bar = quadratic_diag_at_positions(cf.selected_inverse(), positions, obs, values, A.shape[0])
    if cf.has_constraints:
        w_bar -= cf.lowrank_diag(A)
    return y_bar * w_bar if y_bar != 1.0 else w_bar


def weighted_logdet_jvp(Q, w, Q_dot, w_dot, *, A, constraints=None, factor=None):
    """Forward rule of y = log det(Bᵀ H B), H = Q + Aᵀ diag(w) A.

    ẏ = tr(Σ_c Q̇) + Σ_i ẇ_i (A Σ_c Aᵀ)_ii, since Ḣ = Q̇ + Aᵀ diag(ẇ) A (Jacobi's formula,
    Giles 2008, §3.1; on the constraint surface, Rue & Held 2005, eq. 2.32: Σ_c =
    B(BᵀHB)⁻¹Bᵀ, and B = I without ``constraints``). This is ½ log|H| of the Laplace
    approximation (Rue, Martino & Chopin 2009) in the direction of its weights
    W = −∂²ℓ/∂η² and of the prior precision. The diagonal diag(A Σ_c Aᵀ) is gathered
    from the selected inverse of H by :func:`quadratic_diag_at_positions`.

    Parameters
    ----------
    Q : sparse matrix (n, n), symmetric positive (semi-)definite
    w : array (m,) of weights, H positive definite (on the constraint surface)
    Q_dot : sparse matrix on Q's pattern, or None
    w_dot : array (m,), or None
    A : sparse matrix (m, n)
    constraints : (A_c, e), optional
    factor : Factor of H, optional

    Returns
    -------
    (y, y_dot) : (float, float)
    """
    Q, w, A, cf, _q_positions, pairs = _weighted_prepare(Q, w, A, constraints, factor)
    Q_dot = _tangent_on_pattern(Q, Q_dot)
    y = cf.logdet()
    y_dot = 0.0
    if Q_dot is not None and np.any(Q_dot.data):
        y_dot += cf.selected_inverse().trace_product(Q_dot)
        y_dot -= float(cf.lowrank_traces(Q_dot.indptr, Q_dot.indices, [Q_dot.data])[0])
    if w_dot is not None:
        w_dot = _vector(w_dot, A.shape[0], "w_dot")
        if np.any(w_dot):
            y_dot += float(_weight_cotangent(cf, A, pairs, 1.0) @ w_dot)
    return y, y_dot


def weighted_logdet_vjp(Q, w, *, A, constraints=None, factor=None):
    """Reverse rule of y = log det(Bᵀ H B), H = Q + Aᵀ diag(w) A (see
    :func:`weighted_logdet_jvp`).

    Q̄ = ȳ Σ_c on Q's pattern (:func:`inverse_at_positions` less the constraints'
    low-rank part), w̄ = ȳ diag(A Σ_c Aᵀ) (:func:`quadratic_diag_at_positions`, idem);
    nothing is inverted for ȳ = 0.

    Returns
    -------
    (y, pullback) : pullback(y_bar) -> (Q_bar, w_bar)
    """
    Q, w, A, cf, q_positions, pairs = _weighted_prepare(Q, w, A, constraints, factor)
    y = cf.logdet()

    def weighted_logdet_pullback(y_bar):
        y_bar = _scalar_bar(y_bar)
        if y_bar == 0.0:
            return _pattern_like(Q, np.zeros(Q.nnz)), np.zeros(A.shape[0])
        values = inverse_at_positions(cf.selected_inverse(), q_positions)
        if cf.has_constraints:
            values -= cf.lowrank_pairs(Q.indptr, Q.indices)
        return _pattern_like(Q, y_bar * values), _weight_cotangent(cf, A, pairs, y_bar)

    return y, weighted_logdet_pullback
