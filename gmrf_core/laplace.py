"""Laplace-approximate marginal likelihood of latent Gaussian models, with exact gradients.

Model (the latent vector z = (x, β) stacks the latent field and the fixed effects)::

    x | θ ~ N(μ(θ), Q(θ)⁻¹)  (optionally with hard constraints A_c x = e)
    β     ~ N(0, τ_β⁻¹ I)     (vague; τ_β = ``fixed_precision``)
    η = A x + X β + offset,   y_i | η_i, θ ~ p(y_i | η_i, θ_lik)

For each θ the posterior mode z* is found by Newton's method on the fixed sparsity
pattern of H = Q̃ + Ãᵀ W Ã (Q̃ = blockdiag(Q, τ_β I), Ã = [A X], W = −∂²ℓ/∂η²),
with one symbolic analysis per model and a numeric refactorization per step.
The objective is the Laplace approximation of −log p(y | θ) with every constant
(Tierney & Kadane 1986; Rue, Martino & Chopin 2009)::

    f(θ) = −ℓ(η*) + ½ (z*−μ̃)ᵀ Q̃ (z*−μ̃) − ½ log det(BᵀQ̃B) + ½ log|H|
           [+ ½ log|A_c H⁻¹ A_cᵀ| − ½ log|A_c A_cᵀ| with constraints]  − log π(θ)

where B is an orthonormal basis of the constraint null space (B = I without
constraints), so the densities of the prior and of the Gaussian approximation
are both taken on the constraint surface (Rue & Held 2005, eq. 2.32).

The gradient is exact and reverse-mode (cost independent of the number of
hyperparameters): with Σ_c = H⁻¹ − V S⁻¹ Vᵀ (V = H⁻¹A_cᵀ, S = A_c V) the
covariance of the (constrained) Gaussian approximation,

* ½ tr(Σ_c ∂H/∂θ_k) from the selected inverse of H (the ∂Q/∂θ_k part through
  its entries on Q's pattern, the likelihood part through diag(Ã Σ_c Ãᵀ));
* ½ d log det(BᵀQ̃B)/dθ_k analytically from the model when available, else from
  the selected inverse of Q;
* the implicit dependence of z* on θ through one adjoint solve
  λ = Σ_c v,  v = ½ Ãᵀ (diag(Ã Σ_c Ãᵀ) ⊙ ∂W/∂η)  (the third derivative of ℓ),
  contributing −λᵀ ∂(∇_z g)/∂θ_k, g the negative log joint density.

:meth:`LatentGaussianModel.jvp` computes the same directional derivative in
forward mode: one tangent solve ż = −Σ_c ∂(∇_z g)/∂θ · v per direction.
"""

import numpy as np
import scipy.sparse as sp

from .errors import ConvergenceError, InputError, NotPositiveDefiniteError
from .kernels import assemble as _kasm
from .linalg import analyze, as_csc

__all__ = ["LatentGaussianModel", "LaplaceApproximation"]


def _append_diagonal(M, diagonal):
    """blockdiag(M, diag(diagonal)) for a canonical CSC matrix M, without a general
    block_diag (whose COO round trip costs more than the rest of the assembly); the
    diagonal's entries are stored even where they are zero."""
    n0, k = M.shape[0], diagonal.size
    index = np.int64 if M.nnz + k >= 2**31 - 1 else M.indices.dtype
    indptr = np.concatenate([M.indptr, M.indptr[-1] + np.arange(1, k + 1, dtype=index)])
    indices = np.concatenate([M.indices, np.arange(n0, n0 + k, dtype=index)])
    data = np.concatenate([M.data, diagonal])
    return sp.csc_matrix((data, indices, indptr), shape=(n0 + k, n0 + k))


class LaplaceApproximation:
    """The Gaussian approximation N(z*, Σ_c) of p(z | y, θ) at one θ.

    Attributes
    ----------
    theta : numpy.ndarray
        Hyperparameters (internal scale) it was computed at.
    mode : numpy.ndarray
        Posterior mode z* = (x*, β*) of the latent field and fixed effects.
    latent, fixed_effects : numpy.ndarray
        The two parts of ``mode``.
    linear_predictor : numpy.ndarray
        η* = A x* + X β* + offset.
    factor : Factor
        Cholesky factor of H = Q̃ + Ãᵀ W Ã at the mode (a private copy).
    newton_iterations : int
    """

    def __init__(self, model, theta, state):
        self._model = model
        self.theta = np.array(theta, dtype=float)
        self.mode = state["z"].copy()
        self.latent = self.mode[: model.prior.n]
        self.fixed_effects = self.mode[model.prior.n :]
        self.linear_predictor = state["eta"].copy()
        self.factor = state["factor"].copy()
        self.newton_iterations = state["iterations"]
        self._V = state["V"]
        self._chol_S = state["chol_S"]
        self._variance = None

    def marginal_variance(self):
        """Marginal variances of z = (x, β) under the approximation (selected inversion)."""
        if self._variance is None:
            var = self.factor.selected_inverse().diag()
            if self._V is not None:
                W = np.linalg.solve(self._chol_S, self._V.T)
                var = var - np.einsum("ij,ij->j", W, W)
            self._variance = var
        return self._variance.copy()

    def marginal_sd(self):
        """Square roots of :meth:`marginal_variance`."""
        return np.sqrt(np.maximum(self.marginal_variance(), 0.0))

    def linear_predictor_variance(self):
        """Variances of η = A x + X β + offset, for every observation (missing ones too)."""
        A = self._model.A_full
        var = self.factor.selected_inverse().quadratic_diag(A)
        if self._V is not None:
            W = np.linalg.solve(self._chol_S, (A @ self._V).T)
            var = var - np.einsum("ij,ij->j", W, W)
        return var


class LatentGaussianModel:
    """Latent Gaussian model: a GMRF prior, a likelihood and a linear predictor.

    Parameters
    ----------
    prior : gmrf_core.models.LatentModel
        Latent field x (n variables) with hyperparameters ``prior.theta_names``.
    likelihood : gmrf_core.likelihoods.Likelihood
        Observation model of the m observations (NaN = missing).
    A : sparse matrix (m, n), optional
        Projection of the latent field onto the observations; identity when None
        (then m must equal n).
    X : array (m, p), optional
        Design matrix of fixed effects β, carried in the latent vector.
    offset : array (m,), optional
    fixed_precision : float
        Precision τ_β of the vague N(0, τ_β⁻¹) prior on each fixed effect
        (default 1e-3, R-INLA's default for fixed effects).
    ordering : str
        Fill-reducing ordering of H (see :func:`gmrf_core.analyze`).
    newton_tol : float
        Newton stops when the decrement λ²/2 = −½ ∇gᵀ Δ falls below
        ``newton_tol * max(1, |g|)``, after one more full step (the objective's
        log|H| term depends on the mode to first order, so the mode is polished to
        near machine precision).
    max_newton : int
        Newton iterations before :class:`ConvergenceError`.
    threads : int
        Threads for factorizations and selected inversions (subtree parallelism and
        BLAS threads, see :func:`gmrf_core.analyze`).

    Notes
    -----
    θ is the prior's hyperparameters followed by the likelihood's
    (:attr:`theta_names`, :attr:`theta0`). Log-priors of θ enter the objective
    only where the prior or likelihood was given one.
    """

    def __init__(
        self,
        prior,
        likelihood,
        A=None,
        X=None,
        offset=None,
        *,
        fixed_precision=1e-3,
        ordering="auto",
        newton_tol=1e-12,
        max_newton=50,
        threads=1,
    ):
        for attr in ("n", "theta0", "precision", "precision_grad"):
            if not hasattr(prior, attr):
                raise InputError(f"prior must be a latent model (missing .{attr}); got {prior!r}.")
        for attr in ("n", "theta0", "log_density", "eta_derivatives", "theta_derivatives"):
            if not hasattr(likelihood, attr):
                raise InputError(f"likelihood must be a Likelihood (missing .{attr}).")
        self.prior = prior
        self.likelihood = likelihood
        n, m = int(prior.n), int(likelihood.n)
        if A is None:
            if m != n:
                raise InputError(
                    f"without a projection A the likelihood needs one observation per latent "
                    f"variable ({n}); it has {m}. Pass A of shape ({m}, {n})."
                )
            A = sp.eye(n, format="csr")
        else:
            A = sp.csr_matrix(A, dtype=np.float64)
            if A.shape != (m, n):
                raise InputError(f"A must have shape ({m}, {n}); got {A.shape}.")
            if not np.all(np.isfinite(A.data)):
                raise InputError("A has NaN or infinite entries.")
        if X is None:
            X = np.zeros((m, 0))
        else:
            X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
            if X.ndim == 1:
                X = X[:, None]
            if X.ndim != 2 or X.shape[0] != m:
                raise InputError(f"X must have shape ({m}, p); got {X.shape}.")
            if not np.all(np.isfinite(X)):
                raise InputError("X has NaN or infinite entries.")
        if offset is None:
            offset = np.zeros(m)
        offset = np.asarray(offset, dtype=np.float64)
        if offset.ndim == 0:
            offset = np.full(m, float(offset))
        if offset.shape != (m,) or not np.all(np.isfinite(offset)):
            raise InputError(f"offset must be a finite array of shape ({m},).")
        if not (np.isfinite(fixed_precision) and fixed_precision > 0):
            raise InputError(f"fixed_precision must be positive; got {fixed_precision}.")
        self.n_latent = n
        self.n_fixed = X.shape[1]
        self.n_total = n + self.n_fixed
        self.n_obs = m
        self.A = A
        self.X = X
        self.offset = offset
        self.fixed_precision = float(fixed_precision)
        self.newton_tol = float(newton_tol)
        self.max_newton = int(max_newton)
        self.n_theta_prior = len(prior.theta0)
        self.n_theta_lik = len(likelihood.theta0)
        self.theta_names = tuple(prior.theta_names) + tuple(likelihood.theta_names)
        self.theta0 = np.concatenate(
            [np.asarray(prior.theta0, float), np.asarray(likelihood.theta0, float)]
        )
        # missing observations contribute nothing: their rows are dropped from Ã
        observed = np.asarray(getattr(likelihood, "observed", np.ones(m, bool)), bool)
        keep = sp.diags_array(observed.astype(float)).tocsr()
        self.A_full = sp.csr_matrix(sp.hstack([A, sp.csr_matrix(X)]))
        self.A_full.sort_indices()
        a_obs = sp.csr_matrix(keep @ self.A_full)
        a_obs.eliminate_zeros()
        a_obs.sort_indices()
        self._A_obs = a_obs
        self._setup_constraints()
        self._setup_pattern(ordering, threads)
        self._last_mode = None

    # -- set-up ------------------------------------------------------------------------
    def _setup_constraints(self):
        constraints = getattr(self.prior, "constraints", None)
        if constraints is None:
            self._Ac = None
            self._e = None
            return
        Ac, e = constraints
        Ac = Ac.toarray() if sp.issparse(Ac) else np.asarray(Ac, dtype=float)
        Ac = np.atleast_2d(Ac)
        if Ac.shape[1] != self.n_latent:
            raise InputError(f"prior constraints must have {self.n_latent} columns.")
        self._Ac = np.hstack([Ac, np.zeros((Ac.shape[0], self.n_fixed))])
        self._e = np.atleast_1d(np.asarray(e, dtype=float))
        _s, self._logdet_AAt = np.linalg.slogdet(self._Ac @ self._Ac.T)

    def _prior_blocks(self, theta_prior):
        Q = as_csc(self.prior.precision(theta_prior), "prior.precision(theta)")
        if Q.shape != (self.n_latent, self.n_latent):
            raise InputError(
                f"prior.precision returned shape {Q.shape}, expected n = {self.n_latent}."
            )
        if self.n_fixed:
            Q = _append_diagonal(Q, np.full(self.n_fixed, self.fixed_precision))
        return Q

    def _setup_pattern(self, ordering, threads):
        theta_prior = self.theta0[: self.n_theta_prior]
        Qt = self._prior_blocks(theta_prior)
        ones_q = sp.csc_matrix((np.ones(Qt.nnz), Qt.indices, Qt.indptr), shape=Qt.shape)
        # the pattern covers every row of Ã, missing ones too, so that predictive variances
        # at unobserved locations are available from the selected inverse
        a_all = self.A_full
        a_abs = sp.csr_matrix((np.ones(a_all.nnz), a_all.indices, a_all.indptr), shape=a_all.shape)
        pattern = sp.csc_matrix(ones_q + sp.csc_matrix(a_abs.T @ a_abs) + sp.eye(self.n_total))
        pattern.sort_indices()
        self._H = sp.csc_matrix(
            (
                np.zeros(pattern.nnz),
                pattern.indices.astype(np.int32),
                pattern.indptr.astype(np.int32),
            ),
            shape=pattern.shape,
        )
        h_ptr = self._H.indptr.astype(np.int64)
        h_idx = self._H.indices.astype(np.int64)
        self._q_pattern = (Qt.indptr.copy(), Qt.indices.copy())
        # the prior's own pattern: Q̃'s first n_latent columns (the fixed block comes last)
        indptr, indices = self._q_pattern
        self._prior_pattern = (
            indptr[: self.n_latent + 1],
            indices[: indptr[self.n_latent]],
        )
        self._q_pattern64 = (Qt.indptr.astype(np.int64), Qt.indices.astype(np.int64))
        self._q_pos = np.empty(Qt.nnz, dtype=np.int64)
        code, _column = _kasm._subpattern_positions(
            self.n_total,
            *self._q_pattern64,
            h_ptr,
            h_idx,
            self._q_pos,
        )
        if code != _kasm.OK:  # pragma: no cover - H's pattern contains Q's by construction
            raise RuntimeError("internal: Q̃'s pattern is not inside H's.")
        a = self._A_obs
        count = int(_kasm._product_count(a.indptr.astype(np.int64)))
        self._trip_pos = np.empty(count, dtype=np.int64)
        self._trip_obs = np.empty(count, dtype=np.int64)
        self._trip_val = np.empty(count)
        code, _row = _kasm._product_positions(
            a.indptr.astype(np.int64),
            a.indices.astype(np.int64),
            a.data,
            h_ptr,
            h_idx,
            self._trip_pos,
            self._trip_obs,
            self._trip_val,
        )
        if code != _kasm.OK:  # pragma: no cover - H's pattern contains AᵀA's by construction
            raise RuntimeError("internal: AᵀA's pattern is not inside H's.")
        self.symbolic = analyze(self._H, ordering=ordering, threads=threads)
        self._factor = None
        # positions in the factor storage, for entries of Σ = H⁻¹ on Q̃'s pattern and on
        # the products a_ik a_il (diag(Ã Σ Ãᵀ))
        q_cols = np.repeat(np.arange(self.n_total), np.diff(Qt.indptr))
        self._q_store = self.symbolic.positions(Qt.indices, q_cols)
        h_cols = np.repeat(np.arange(self.n_total), np.diff(h_ptr))
        self._trip_store = self.symbolic.positions(h_idx[self._trip_pos], h_cols[self._trip_pos])
        self._q_factor = None  # factor of Q̃ itself, only when its log-det is not analytic

    # -- θ handling ----------------------------------------------------------------------
    def _split(self, theta):
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.size != len(self.theta0):
            raise InputError(
                f"theta must have {len(self.theta0)} entries {self.theta_names}; got {theta.size}."
            )
        if not np.all(np.isfinite(theta)):
            raise InputError(f"theta must be finite; got {theta}.")
        return theta, theta[: self.n_theta_prior], theta[self.n_theta_prior :]

    def _prior_mean(self, theta_prior):
        mu = np.zeros(self.n_total)
        mu[: self.n_latent] = self.prior.mean(theta_prior)
        return mu

    def _prior_mean_grad(self, theta_prior):
        grad = np.zeros((self.n_theta_prior, self.n_total))
        if self.n_theta_prior:
            grad[:, : self.n_latent] = self.prior.mean_grad(theta_prior)
        return grad

    def _precision_grads(self, theta_prior):
        grads = []
        for k, dQ in enumerate(self.prior.precision_grad(theta_prior)):
            dQ = as_csc(dQ, f"precision_grad[{k}]")
            if self.n_fixed:
                if np.array_equal(dQ.indptr, self._prior_pattern[0]) and np.array_equal(
                    dQ.indices, self._prior_pattern[1]
                ):
                    # on the prior's own pattern: Q̃'s values are dQ's and the zero diagonal of
                    # the fixed effects, appended without assembling a matrix
                    grads.append(np.concatenate([dQ.data, np.zeros(self.n_fixed)]))
                    continue
                # explicit zeros on the fixed effects' diagonal: dQ then has Q̃'s pattern
                dQ = _append_diagonal(dQ, np.zeros(self.n_fixed))
            data = self._on_q_pattern(dQ, f"precision_grad[{k}]")
            grads.append(data)
        return grads

    def _on_q_pattern(self, M, name):
        indptr, indices = self._q_pattern
        if np.array_equal(M.indptr, indptr) and np.array_equal(M.indices, indices):
            return M.data
        # a sub-pattern (e.g. entries the model leaves out): map entry by entry
        pos = np.empty(M.nnz, dtype=np.int64)
        code, _column = _kasm._subpattern_positions(
            M.shape[0],
            M.indptr.astype(np.int64),
            M.indices.astype(np.int64),
            *self._q_pattern64,
            pos,
        )
        if code != _kasm.OK:
            raise InputError(f"{name} has entries outside the prior's fixed sparsity pattern.")
        data = np.zeros(indices.size)
        np.add.at(data, pos, M.data)
        return data

    # -- the inner problem ----------------------------------------------------------------
    def _eta(self, z):
        return self.A_full @ z + self.offset

    def _neg_log_joint(self, z, Qt, mu, theta_lik):
        r = z - mu
        ll = self.likelihood.log_density(self._eta(z), theta_lik)
        return -ll + 0.5 * float(r @ (Qt @ r))

    def _feasible(self, z):
        if self._Ac is None:
            return z
        resid = self._Ac @ z - self._e
        return z - self._Ac.T @ np.linalg.solve(self._Ac @ self._Ac.T, resid)

    def _refactorize(self, Qt, weights):
        _kasm._assemble(
            self._H.data,
            self._q_pos,
            Qt.data,
            self._trip_pos,
            self._trip_obs,
            self._trip_val,
            weights,
        )
        try:
            if self._factor is None:
                self._factor = self.symbolic.factorize(self._H)
            else:
                self._factor.refactorize(self._H)
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(
                f"the Laplace Hessian H = Q + Aᵀ W A is not positive definite ({exc}). For an "
                "intrinsic prior every direction of its null space must be observed or "
                "constrained.",
                exc.column,
            ) from exc
        return self._factor

    def _kriging(self, factor):
        if self._Ac is None:
            return None, None
        V = factor.solve(self._Ac.T)
        S = self._Ac @ V
        return V, np.linalg.cholesky(0.5 * (S + S.T))

    @staticmethod
    def _project(x, V, chol_S, Ac):
        """Σ_c-projection: x − V S⁻¹ (A_c x) for x = H⁻¹ b (kriging correction)."""
        if V is None:
            return x
        return x - V @ np.linalg.solve(chol_S.T, np.linalg.solve(chol_S, Ac @ x))

    def _newton(self, theta_lik, Qt, mu, z0):
        lik = self.likelihood
        z = self._feasible(z0)
        g = self._neg_log_joint(z, Qt, mu, theta_lik)
        if not np.isfinite(g):
            z = self._feasible(mu.copy())
            g = self._neg_log_joint(z, Qt, mu, theta_lik)
        decrement = np.inf
        polish = False
        for iteration in range(1, self.max_newton + 2):
            eta = self._eta(z)
            d1, d2, _d3 = lik.eta_derivatives(eta, theta_lik)
            weights = -d2
            if np.any(weights < 0) or not np.all(np.isfinite(weights)):
                raise ConvergenceError(
                    "the likelihood's curvature −∂²ℓ/∂η² is negative or not finite at "
                    f"Newton iteration {iteration}; the Laplace approximation needs a "
                    "log-concave likelihood in η."
                )
            grad = -(self.A_full.T @ d1) + Qt @ (z - mu)
            factor = self._refactorize(Qt, weights)
            V, chol_S = self._kriging(factor)
            step = -self._project(factor.solve(grad), V, chol_S, self._Ac)
            decrement = -float(grad @ step)
            if polish:
                return z, eta, d1, d2, factor, V, chol_S, iteration
            if decrement / 2.0 <= self.newton_tol * max(1.0, abs(g)):
                # ½ log|H| depends on z to first order, so the objective is only as
                # accurate as the mode itself: one more full step in the quadratic
                # region squares the error (Newton's quadratic convergence).
                polish = True
                z = self._feasible(z + step)
                g = self._neg_log_joint(z, Qt, mu, theta_lik)
                continue
            t = 1.0
            slope = float(grad @ step)
            for _ in range(40):
                z_new = z + t * step
                g_new = self._neg_log_joint(z_new, Qt, mu, theta_lik)
                if np.isfinite(g_new) and g_new <= g + 1e-4 * t * slope:
                    break
                t *= 0.5
            else:
                if decrement / 2.0 <= 1e-6 * max(1.0, abs(g)):
                    # rounding prevents further decrease: the mode is as accurate as it gets
                    return z, eta, d1, d2, factor, V, chol_S, iteration
                raise ConvergenceError(
                    f"Newton's line search failed at iteration {iteration} (decrement "
                    f"{decrement:.3e}); the objective could not be decreased along the Newton "
                    "direction."
                )
            if self._Ac is not None:
                z_new = self._feasible(z_new)  # remove rounding drift off the constraint
            z, g = z_new, g_new
        raise ConvergenceError(
            f"Newton's method did not converge in {self.max_newton} iterations (last decrement "
            f"λ²/2 = {decrement / 2.0:.3e}, tolerance {self.newton_tol:g}·max(1, |g|)). Try "
            "other hyperparameters, a larger max_newton, or check the data."
        )

    # -- building blocks (also used by gmrf_core.variational) ------------------------------
    def split_theta(self, theta):
        """Validate θ and split it -> (theta, theta_prior, theta_lik)."""
        return self._split(theta)

    def prior_precision(self, theta_prior):
        """Q̃ = blockdiag(Q(θ), τ_β I) on its fixed pattern (CSC)."""
        Qt = self._prior_blocks(theta_prior)
        data = self._on_q_pattern(Qt, "prior.precision(theta)").copy()
        return sp.csc_matrix((data, self._q_pattern[1], self._q_pattern[0]), shape=Qt.shape)

    def prior_precision_grad(self, theta_prior):
        """dQ̃/dθ_k as value arrays on the pattern of :meth:`prior_precision`."""
        if not self.n_theta_prior:
            return []
        return self._precision_grads(theta_prior)

    def prior_mean(self, theta_prior):
        """μ̃ = (μ(θ), 0) of the latent vector z = (x, β)."""
        return self._prior_mean(theta_prior)

    def prior_mean_grad(self, theta_prior):
        """dμ̃/dθ_k, shape (n_theta_prior, n_total)."""
        return self._prior_mean_grad(theta_prior)

    def prior_logdet(self, theta_prior, Qt):
        """log det(BᵀQ̃B) of the prior on the constraint surface (see module docstring)."""
        return self._prior_logdet(theta_prior, Qt)

    def prior_logdet_grad(self, theta_prior, Qt, dQ):
        """Gradient of :meth:`prior_logdet` (dQ from :meth:`prior_precision_grad`)."""
        return self._prior_logdet_grad(theta_prior, Qt, dQ)

    def factorize_precision(self, Qt, weights):
        """Factor of Q̃ + Ãᵀ diag(weights) Ã on the model's fixed pattern.

        ``weights`` has one entry per observation (ignored where missing). The
        returned Factor is reused and overwritten by the next call of this method
        or of the objective: copy it (``factor.copy()``) to keep it.
        """
        weights = np.asarray(weights, dtype=float)
        if weights.shape != (self.n_obs,):
            raise InputError(f"weights must have shape ({self.n_obs},); got {weights.shape}.")
        return self._refactorize(Qt, weights)

    def kriging(self, factor):
        """(V, chol(S)), V = H⁻¹A_cᵀ, S = A_c V, for the prior's constraints; else (None, None)."""
        return self._kriging(factor)

    def constrained_solve(self, factor, V, chol_S, b):
        """Σ_c b = H⁻¹b − V S⁻¹ Vᵀ b: a solve with H restricted to the constraint surface."""
        return self._project(factor.solve(b), V, chol_S, self._Ac)

    def constrained_logdet_terms(self, chol_S):
        """½ log|A_c H⁻¹ A_cᵀ| − ½ log|A_c A_cᵀ| (0 without constraints)."""
        if chol_S is None:
            return 0.0
        return float(np.sum(np.log(np.diag(chol_S)))) - 0.5 * self._logdet_AAt

    def predictor_variance(self, selinv, V=None, chol_S=None):
        """diag(Ã Σ_c Ãᵀ) for the observed rows (0 where missing).

        ``selinv`` is a selected inverse of H = Q̃ + Ãᵀ W Ã (any W) on this model's
        pattern; V, chol_S are the kriging parts of :meth:`kriging`.
        """
        sigma = selinv.values_at_positions(self._trip_store)
        out = np.empty(self.n_obs)
        _kasm._row_quadratic(self._trip_obs, self._trip_val, sigma, out)
        if V is not None:
            W = np.linalg.solve(chol_S, (self._A_obs @ V).T)
            out -= np.einsum("ij,ij->j", W, W)
        return out

    def prior_traces(self, selinv, dQ, V=None, chol_S=None):
        """tr(Σ_c dQ̃_k) for each k, from a selected inverse of H (and kriging parts)."""
        sigma_q = selinv.values_at_positions(self._q_store)
        traces = np.array([float(sigma_q @ d) for d in dQ])
        if V is not None and len(dQ):
            traces -= self._lowrank_traces(V, chol_S, dQ)
        return traces

    def feasible(self, z):
        """Project z orthogonally onto the constraint surface A_c z = e."""
        return self._feasible(z)

    def linear_predictor(self, z):
        """η = A x + X β + offset for z = (x, β)."""
        return self._eta(z)

    def _evaluate(self, theta):
        theta, theta_prior, theta_lik = self._split(theta)
        Qt = self.prior_precision(theta_prior)
        mu = self._prior_mean(theta_prior)
        z0 = self._last_mode if self._last_mode is not None else mu.copy()
        z, eta, d1, d2, factor, V, chol_S, iterations = self._newton(theta_lik, Qt, mu, z0)
        self._last_mode = z.copy()
        r = z - mu
        ll = self.likelihood.log_density(eta, theta_lik)
        value = -ll + 0.5 * float(r @ (Qt @ r)) + 0.5 * factor.logdet()
        prior_logdet = self._prior_logdet(theta_prior, Qt)
        value -= 0.5 * prior_logdet
        value += self.constrained_logdet_terms(chol_S)
        value -= self.log_prior(theta)
        return dict(
            theta=theta,
            theta_prior=theta_prior,
            theta_lik=theta_lik,
            Qt=Qt,
            mu=mu,
            z=z,
            r=r,
            eta=eta,
            d1=d1,
            d2=d2,
            factor=factor,
            V=V,
            chol_S=chol_S,
            value=value,
            iterations=iterations,
        )

    # -- prior log-determinant on the constraint surface -------------------------------
    def _analytic_prior_logdet(self, theta_prior):
        logdet = getattr(self.prior, "constrained_logdet", None)
        if logdet is None:
            logdet = self.prior.logdet if self._Ac is None else None
        value = logdet(theta_prior) if logdet is not None else None
        return value

    def _prior_logdet(self, theta_prior, Qt):
        """log det(BᵀQ̃B): analytic when the model provides it, else from a factorization."""
        fixed = self.n_fixed * np.log(self.fixed_precision)
        value = self._analytic_prior_logdet(theta_prior)
        if value is not None:
            return float(value) + fixed
        if getattr(self.prior, "rank_deficiency", 0):
            raise InputError(
                "an intrinsic prior must provide its (constrained) log-determinant analytically."
            )
        factor = self._prior_factor(Qt)
        value = factor.logdet()
        if self._Ac is not None:
            Vq = factor.solve(self._Ac.T)
            _s, logdet_S = np.linalg.slogdet(self._Ac @ Vq)
            value += logdet_S - self._logdet_AAt
        return value

    def _prior_factor(self, Qt):
        if self._q_factor is None:
            self._q_factor = analyze(Qt, threads=self.symbolic.threads).factorize(Qt)
        else:
            self._q_factor.refactorize(Qt)
        return self._q_factor

    def _prior_logdet_grad(self, theta_prior, Qt, dQ):
        if self._analytic_prior_logdet(theta_prior) is not None:
            grad_fn = getattr(self.prior, "constrained_logdet_grad", None)
            if grad_fn is None and self._Ac is None:
                grad_fn = self.prior.logdet_grad
            grad = grad_fn(theta_prior) if grad_fn is not None else None
            if grad is None:
                raise InputError("the prior gives an analytic log-determinant but no gradient.")
            return np.asarray(grad, dtype=float)
        factor = self._prior_factor(Qt)
        selinv = factor.selected_inverse()
        q_positions = factor.symbolic.q_positions
        inv_on_q = selinv.values_at_positions(q_positions)
        grad = np.array([float(inv_on_q @ d) for d in dQ])
        if self._Ac is not None:
            Vq = factor.solve(self._Ac.T)
            Sq = self._Ac @ Vq
            grad -= self._lowrank_traces(Vq, np.linalg.cholesky(0.5 * (Sq + Sq.T)), dQ)
        return grad

    def _lowrank_traces(self, V, chol_S, dQ):
        """tr(V S⁻¹ Vᵀ dQ_k) for each dQ_k on Q̃'s pattern."""
        U = np.linalg.solve(chol_S.T, np.linalg.solve(chol_S, V.T)).T  # V S⁻¹
        indptr, indices = self._q_pattern
        cols = np.repeat(np.arange(self.n_total), np.diff(indptr))
        pair = np.einsum("ij,ij->i", U[indices], V[cols])
        return np.array([float(pair @ d) for d in dQ])

    # -- public API ----------------------------------------------------------------------
    def log_prior(self, theta):
        """log π(θ) from the prior's and the likelihood's hyperparameter priors (0 if none)."""
        theta, theta_prior, theta_lik = self._split(theta)
        value = 0.0
        if self.n_theta_prior:
            value += float(self.prior.log_prior(theta_prior))
        if self.n_theta_lik:
            value += float(self.likelihood.log_prior(theta_lik))
        return value

    def log_prior_grad(self, theta):
        """Gradient of :meth:`log_prior`."""
        theta, theta_prior, theta_lik = self._split(theta)
        parts = []
        if self.n_theta_prior:
            parts.append(np.asarray(self.prior.log_prior_grad(theta_prior), dtype=float))
        if self.n_theta_lik:
            parts.append(np.asarray(self.likelihood.log_prior_grad(theta_lik), dtype=float))
        return np.concatenate(parts) if parts else np.zeros(0)

    def objective(self, theta):
        """Laplace approximation of −log p(y | θ) (every constant), minus log π(θ) if set."""
        return self._evaluate(theta)["value"]

    def laplace(self, theta):
        """The Gaussian approximation at θ -> :class:`LaplaceApproximation`."""
        return LaplaceApproximation(self, theta, self._evaluate(theta))

    def _sensitivities(self, state):
        """Quantities shared by the reverse and forward derivatives at the mode."""
        factor, V, chol_S = state["factor"], state["V"], state["chol_S"]
        theta_lik = state["theta_lik"]
        _d1, _d2, d3 = self.likelihood.eta_derivatives(state["eta"], theta_lik)
        selinv = factor.selected_inverse()
        dvec = self.predictor_variance(selinv, V, chol_S)
        # v = ∇_z of ½ log|H| (+ ½ log|S|): W = −ℓ'' so ∂W/∂η = −ℓ'''
        v = 0.5 * (self._A_obs.T @ (dvec * -d3))
        return dict(dvec=dvec, selinv=selinv, v=v)

    def _direct_partials(self, state, sens, dQ, dmu):
        """∂F/∂θ_k at fixed z, and the vectors b_k = ∂(∇_z g)/∂θ_k."""
        Qt, r = state["Qt"], state["r"]
        theta_prior, theta_lik = state["theta_prior"], state["theta_lik"]
        V, chol_S = state["V"], state["chol_S"]
        partial = np.zeros(len(self.theta0))
        rhs = np.zeros((len(self.theta0), self.n_total))
        indptr, indices = self._q_pattern
        if self.n_theta_prior:
            prior_logdet_grad = self._prior_logdet_grad(theta_prior, Qt, dQ)
            trace_h = self.prior_traces(sens["selinv"], dQ, V, chol_S)
            Qr = Qt @ r
            for k, d in enumerate(dQ):
                dQk = sp.csc_matrix((d, indices, indptr), shape=Qt.shape)
                dQr = dQk @ r
                partial[k] = (
                    0.5 * float(r @ dQr)
                    - float(Qr @ dmu[k])
                    - 0.5 * prior_logdet_grad[k]
                    + 0.5 * trace_h[k]
                )
                rhs[k] = dQr - Qt @ dmu[k]
        if self.n_theta_lik:
            g, g_eta, g_eta2 = self.likelihood.theta_derivatives(state["eta"], theta_lik)
            for j in range(self.n_theta_lik):
                k = self.n_theta_prior + j
                partial[k] = -float(g[j]) - 0.5 * float(sens["dvec"] @ g_eta2[j])
                rhs[k] = -(self.A_full.T @ g_eta[j])
        partial -= self.log_prior_grad(state["theta"])
        return partial, rhs

    def value_and_grad(self, theta):
        """Objective and its exact gradient (reverse mode).

        Cost: the objective, one selected inversion of H (and of Q when its
        log-determinant is not analytic), one adjoint solve, and O(nnz) work per
        hyperparameter. Works with ``scipy.optimize.minimize(..., jac=True)``.
        """
        state = self._evaluate(theta)
        sens = self._sensitivities(state)
        dQ = self.prior_precision_grad(state["theta_prior"])
        dmu = self._prior_mean_grad(state["theta_prior"])
        partial, rhs = self._direct_partials(state, sens, dQ, dmu)
        factor = state["factor"]
        adjoint = self._project(factor.solve(sens["v"]), state["V"], state["chol_S"], self._Ac)
        grad = partial - rhs @ adjoint
        return state["value"], grad

    def gradient(self, theta):
        """Exact gradient of :meth:`objective` (see :meth:`value_and_grad`)."""
        return self.value_and_grad(theta)[1]

    def jvp(self, theta, theta_dot):
        """Forward-mode directional derivative ⟨∇f(θ), θ̇⟩ (one tangent solve with H)."""
        theta_dot = np.asarray(theta_dot, dtype=float).reshape(-1)
        if theta_dot.shape != self.theta0.shape or not np.all(np.isfinite(theta_dot)):
            raise InputError(f"theta_dot must be a finite vector of length {self.theta0.size}.")
        state = self._evaluate(theta)
        sens = self._sensitivities(state)
        dQ = self.prior_precision_grad(state["theta_prior"])
        dmu = self._prior_mean_grad(state["theta_prior"])
        partial, rhs = self._direct_partials(state, sens, dQ, dmu)
        tangent_rhs = theta_dot @ rhs
        z_dot = -self._project(
            state["factor"].solve(tangent_rhs), state["V"], state["chol_S"], self._Ac
        )
        return state["value"], float(partial @ theta_dot + sens["v"] @ z_dot)

    def __repr__(self):
        return (
            f"LatentGaussianModel(prior={self.prior!r}, "
            f"likelihood={type(self.likelihood).__name__}, "
            f"n_latent={self.n_latent}, n_fixed={self.n_fixed}, n_obs={self.n_obs})"
        )
