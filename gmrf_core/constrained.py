"""The Gaussian conditioned on hard linear constraints A_c x = e, from one sparse factor.

For x ~ N(μ, M⁻¹) with a Cholesky factor of M (a GMRF precision, a Laplace Hessian
H, a variational precision Λ) and k hard constraints A_c x = e (A_c of shape
(k, n), full row rank), conditioning by kriging (Rue & Held 2005, §2.3.3) gives::

    V = M⁻¹ A_cᵀ,   S = A_c V,   U = V S⁻¹
    x | A_c x = e  =  x − U (A_c x − e)                      (kriging correction)
    Σ_c = M⁻¹ − V S⁻¹ Vᵀ                                     (rank-k update)
    log det(Bᵀ M B) = log|M| + log|S| − log|A_c A_cᵀ|        (B orthonormal basis of
                                                              ker A_c; eq. 2.32)

Every place in the library that needs these (:class:`gmrf_core.GMRF`, the Laplace
approximation, variational inference) uses :class:`ConstrainedFactor`; the
constraints themselves are validated once, by :class:`Constraints`.
"""

import threading

import numpy as np
import scipy.sparse as sp
from scipy.linalg import cho_solve, solve_triangular

from .errors import InputError, NotPositiveDefiniteError

__all__ = ["Constraints", "ConstrainedFactor", "as_constraints"]

_LOG_2PI = np.log(2.0 * np.pi)


class Constraints:
    """Validated hard linear constraints A x = e on n variables.

    The one place where constraints are checked: shape, finiteness and full row
    rank (a redundant row would make S = A M⁻¹ Aᵀ singular).

    Parameters
    ----------
    A : array_like or sparse matrix, shape (k, n)
    e : array_like or scalar, shape (k,)
    n : int
        Number of variables.

    Attributes
    ----------
    A : numpy.ndarray, shape (k, n)
        Dense (k is small: sum-to-zero rows, one per connected component).
    e : numpy.ndarray, shape (k,)
    k, n : int
    logdet_AAt : float
        log det(A Aᵀ), the Jacobian term of the density on the constraint surface.

    Raises
    ------
    InputError
        Wrong shapes, NaN/inf entries, or rows that are linearly dependent.
    """

    def __init__(self, A, e, n):
        A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=np.float64)
        A = np.atleast_2d(A).astype(np.float64)
        if A.ndim != 2 or A.shape[1] != n:
            raise InputError(f"constraint matrix A must have {n} columns; got shape {A.shape}.")
        if A.shape[0] == 0:
            raise InputError("constraint matrix A has no rows; pass constraints=None instead.")
        e = np.atleast_1d(np.asarray(e, dtype=np.float64))
        if e.size == 1 and A.shape[0] > 1:
            e = np.full(A.shape[0], float(e[0]))
        if e.shape != (A.shape[0],):
            raise InputError(
                f"constraint right-hand side e must have shape ({A.shape[0]},); got {e.shape}."
            )
        if not (np.all(np.isfinite(A)) and np.all(np.isfinite(e))):
            raise InputError("constraints have NaN or infinite entries.")
        if np.linalg.matrix_rank(A) < A.shape[0]:
            raise InputError(
                "the constraint matrix A must have full row rank (remove redundant rows)."
            )
        self._set(np.ascontiguousarray(A), e)

    def _set(self, A, e):
        self.A = A
        self.e = e
        self.k, self.n = A.shape
        AAt = A @ A.T
        self._chol_AAt = np.linalg.cholesky(0.5 * (AAt + AAt.T))
        self.logdet_AAt = 2.0 * float(np.sum(np.log(np.diag(self._chol_AAt))))

    @classmethod
    def _trusted(cls, A, e):
        """Constraints from arrays that are already valid (no second validation)."""
        self = cls.__new__(cls)
        self._set(A, e)
        return self

    def padded(self, n_total):
        """The same constraints on (x, β) with n_total − n extra unconstrained variables."""
        if n_total == self.n:
            return self
        A = np.hstack([self.A, np.zeros((self.k, n_total - self.n))])
        return Constraints._trusted(A, self.e.copy())

    def as_pair(self):
        """(A, e)."""
        return self.A, self.e

    def residual(self, x):
        """A x − e for x of shape (n,) or (n, m)."""
        return self.A @ x - (self.e if x.ndim == 1 else self.e[:, None])

    def feasible(self, x):
        """Orthogonal projection of x onto the surface A x = e (x of shape (n,) or (n, m))."""
        return x - self.A.T @ cho_solve((self._chol_AAt, True), self.residual(x))

    def __repr__(self):
        return f"Constraints(k={self.k}, n={self.n})"


def as_constraints(constraints, n):
    """None, a pair (A, e) or a :class:`Constraints` -> validated Constraints or None.

    Raises
    ------
    InputError
        Not a pair, or the checks of :class:`Constraints`.
    """
    if constraints is None or isinstance(constraints, Constraints):
        if constraints is not None and constraints.n != n:
            raise InputError(f"constraints act on {constraints.n} variables; expected {n}.")
        return constraints
    try:
        A, e = constraints
    except (TypeError, ValueError) as exc:
        raise InputError("constraints must be a pair (A, e) meaning A x = e.") from exc
    return Constraints(A, e, n)


def _symmetric_cholesky(S, message, index):
    """Lower Cholesky factor of ½(S + Sᵀ).

    Raises
    ------
    NotPositiveDefiniteError
        ½(S + Sᵀ) is not positive definite; ``message`` and ``index`` describe why.
    """
    try:
        return np.linalg.cholesky(0.5 * (S + S.T))
    except np.linalg.LinAlgError as exc:
        raise NotPositiveDefiniteError(message, index) from exc


class ConstrainedFactor:
    """N(·, M⁻¹) conditioned on A_c x = e, from a Cholesky factor of M.

    Parameters
    ----------
    factor : gmrf_core.Factor
        Factor of M. It is used, not copied: refactorizing it afterwards makes this
        object stale (the Laplace approximation and GMRF keep private factors).
    constraints : None, pair (A_c, e) or :class:`Constraints`
        Validated once here (a :class:`Constraints` is trusted as it is).
    ground : tuple (rows, delta), optional
        The factor is of M + Σ_j δ_j e_{rows_j} e_{rows_j}ᵀ rather than of M (an
        intrinsic M that is singular along a constrained direction, grounded to be
        factorizable); every result is corrected exactly to M's on the surface.

    Attributes
    ----------
    factor : Factor
    n : int
    constraints : tuple (A_c, e) or None

    Raises
    ------
    InputError
        Bad constraints (see :class:`Constraints`).
    NotPositiveDefiniteError
        S = A_c M⁻¹ A_cᵀ is not numerically positive definite.

    Notes
    -----
    Without constraints every method reduces to the plain factor's (Σ_c = M⁻¹).
    The selected inverse of M is computed on first use and kept (thread-safe).
    """

    def __init__(self, factor, constraints=None, *, ground=None):
        self.factor = factor
        self.n = factor.n
        self._constraints = as_constraints(constraints, self.n)
        self._selinv = None
        self._lock = threading.Lock()
        self.V = self.U = self._chol_S = self.R = None
        self.logdet_S = 0.0
        self._logdet_ground = 0.0
        if self._constraints is not None:
            A = self._constraints.A
            V = factor.solve(np.ascontiguousarray(A.T)).reshape(self.n, -1)
            S = A @ V
            chol_S = _symmetric_cholesky(
                S,
                "the constraint covariance S = A_c M⁻¹ A_cᵀ is not positive definite; the "
                "constraints are (numerically) dependent given the precision.",
                -1,
            )
            self.V = V
            self._chol_S = chol_S
            self.U = cho_solve((chol_S, True), V.T).T  # V S⁻¹
            self.logdet_S = 2.0 * float(np.sum(np.log(np.diag(chol_S))))
        if ground is not None:
            self._setup_ground(*ground)

    def _setup_ground(self, rows, delta):
        """The factor is of M + Σ_j δ_j e_{r_j} e_{r_j}ᵀ: undo that on the constraint surface.

        With Σ'_c the constrained covariance from the factor, Y = Σ'_c E (E = [e_{r_j}])
        and K = (D⁻¹ − EᵀΣ'_c E)⁻¹ (D = diag δ), Woodbury on the surface gives
        Σ_c = Σ'_c + Y K Yᵀ and log det(BᵀMB) = log det(BᵀM'B) + log|D| − log|K|, exact;
        K is positive definite exactly when M is on the surface.
        """
        rows = np.asarray(rows, dtype=np.int64)
        delta = np.asarray(delta, dtype=np.float64)
        E = np.zeros((self.n, rows.size))
        E[rows, np.arange(rows.size)] = 1.0
        Y = self.solve(E).reshape(self.n, -1)
        K_inv = np.diag(1.0 / delta) - Y[rows]
        chol_K_inv = _symmetric_cholesky(
            K_inv,
            "the precision is not positive definite on the constraint surface (a direction "
            "that is neither observed nor constrained).",
            int(rows[0]),
        )
        # R Rᵀ = Y K Yᵀ with K = (L Lᵀ)⁻¹: R = Y L⁻ᵀ
        self.R = solve_triangular(chol_K_inv, Y.T, lower=True).T
        self._logdet_ground = float(np.sum(np.log(delta))) + 2.0 * float(
            np.sum(np.log(np.diag(chol_K_inv)))
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def copy(self):
        """The same conditioned Gaussian on a private copy of the factor (the kriging and
        grounding parts, never modified, are shared)."""
        other = self.shallow()
        other.factor = self.factor.copy()
        return other

    def shallow(self):
        """The same conditioned Gaussian on the same factor (not copied), without this
        object's selected inverse: solves only, for a holder that must not keep the
        selected inverse's storage alive."""
        other = object.__new__(ConstrainedFactor)
        other.__dict__.update(self.__dict__)
        other._selinv = None
        other._lock = threading.Lock()
        return other

    @property
    def constraints(self):
        """(A_c, e), or None without constraints."""
        return None if self._constraints is None else self._constraints.as_pair()

    @property
    def has_constraints(self):
        return self._constraints is not None

    @property
    def _lowrank(self):
        return self._constraints is not None or self.R is not None

    # -- solves --------------------------------------------------------------------------
    def project(self, x):
        """Kriging correction x − V S⁻¹ (A_c x − e) for x of shape (n,) or (n, m).

        Maps a draw (or the mean) of N(μ, M⁻¹) to one of the conditional distribution.
        """
        x = np.asarray(x, dtype=np.float64)
        if self._constraints is None:
            return x
        return x - self.U @ self._constraints.residual(x)

    def solve(self, b):
        """Σ_c b = M⁻¹b − V S⁻¹ Vᵀ b for b of shape (n,) or (n, m)."""
        x = self.factor.solve(b)
        if self._constraints is not None:
            x = x - self.U @ (self._constraints.A @ x)
        if self.R is not None:
            x = x + self.R @ (self.R.T @ b)
        return x

    # -- variances -------------------------------------------------------------------------
    def selected_inverse(self):
        """Selected inverse of M (unconstrained), computed once."""
        with self._lock:
            if self._selinv is None:
                self._selinv = self.factor.selected_inverse()
            return self._selinv

    def lowrank_diag(self, B=None):
        """diag(B (M⁻¹ − Σ_c) Bᵀ) (B = I when None): what the constraints remove from the
        variances (V S⁻¹ Vᵀ, less the grounding correction)."""
        size = self.n if B is None else B.shape[0]
        out = np.zeros(size)
        if self._constraints is not None:
            BV = self.V if B is None else np.asarray(B @ self.V)
            W = solve_triangular(self._chol_S, BV.T, lower=True)
            out += np.einsum("ij,ij->j", W, W)
        if self.R is not None:
            BR = self.R if B is None else np.asarray(B @ self.R)
            out -= np.einsum("ij,ij->i", BR, BR)
        return out

    def marginal_variance(self, A=None):
        """diag(Σ_c), or diag(A Σ_c Aᵀ) for a sparse A (n columns).

        Selected inversion of M plus the rank-k correction of the constraints.
        """
        selinv = self.selected_inverse()
        if A is None:
            var = selinv.diag()
        else:
            A = sp.csr_matrix(A, dtype=np.float64)
            if A.shape[1] != self.n:
                raise InputError(f"A must have {self.n} columns; got shape {A.shape}.")
            var = selinv.quadratic_diag(A)
        if self._lowrank:
            var = var - self.lowrank_diag(A)
        return var

    def lowrank_pairs(self, indptr, indices):
        """(M⁻¹ − Σ_c)_ij at every stored (i, j) of a CSC pattern (zeros without
        constraints or grounding): Σ_c on the pattern is the selected inverse minus this."""
        pair = np.zeros(indices.size)
        if not self._lowrank:
            return pair
        cols = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
        if self._constraints is not None:
            pair += np.einsum("ij,ij->i", self.U[indices], self.V[cols])
        if self.R is not None:
            pair -= np.einsum("ij,ij->i", self.R[indices], self.R[cols])
        return pair

    def lowrank_traces(self, indptr, indices, values):
        """tr((M⁻¹ − Σ_c) D_k) for symmetric D_k stored on one CSC pattern (indptr, indices).

        ``values`` is a sequence of value arrays on that pattern. tr(Σ_c D) is
        tr(M⁻¹ D) (selected inverse) minus this term (V S⁻¹ Vᵀ without grounding).
        """
        values = list(values)
        if not self._lowrank or not values:
            return np.zeros(len(values))
        pair = self.lowrank_pairs(indptr, indices)
        return np.array([float(pair @ d) for d in values])

    # -- densities and draws -----------------------------------------------------------------
    def logdet(self):
        """log det(Bᵀ M B) = log|M| + log|S| − log|A_c A_cᵀ| (log|M| without constraints)."""
        value = self.factor.logdet()
        if self._constraints is not None:
            value += self.logdet_S - self._constraints.logdet_AAt
        return value + self._logdet_ground

    def constraint_logpdf(self, mean):
        """log π_{A_c x}(e) for x ~ N(mean, M⁻¹): the density of the constraint's value."""
        if self._constraints is None:
            return 0.0
        r = self._constraints.e - self._constraints.A @ mean
        w = solve_triangular(self._chol_S, r, lower=True)
        k = self._constraints.k
        return float(-0.5 * k * _LOG_2PI - 0.5 * self.logdet_S - 0.5 * w @ w)

    def sample(self, size=None, rng=None, mean=None):
        """Draws of N(mean, M⁻¹) conditioned on A_c x = e (by kriging each draw).

        When ``mean`` is feasible (A_c mean = e) these are draws of N(mean, Σ_c);
        ``mean=None`` is the zero vector.

        Returns
        -------
        numpy.ndarray
            Shape (n,) for ``size=None``, else (size, n).
        """
        rng = np.random.default_rng(rng)  # one stream for both parts of a draw
        draws = self.factor.sample(size=size, rng=rng)
        if mean is not None:
            mean = np.asarray(mean, dtype=np.float64)
            if mean.shape != (self.n,) or not np.all(np.isfinite(mean)):
                raise InputError(f"mean must be a finite vector of length {self.n}.")
            draws = draws + mean
        if self._constraints is not None:
            draws = self.project(draws.T).T
        if self.R is not None:
            extra = rng.standard_normal((1 if size is None else int(size), self.R.shape[1]))
            draws = draws + (extra @ self.R.T).reshape(draws.shape)
        return draws

    def __repr__(self):
        k = 0 if self._constraints is None else self._constraints.k
        return f"ConstrainedFactor(n={self.n}, constraints={k})"
