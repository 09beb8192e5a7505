"""Gaussian Markov random fields x ~ N(μ, Q⁻¹), optionally under hard linear constraints.

Everything is done with one sparse Cholesky factor of Q: log-densities, samples
(Rue & Held 2005, Alg. 2.4), marginal variances (selected inversion), the
Gaussian posterior given linear observations (information form), and hard
constraints A x = e by conditioning by kriging (Rue & Held 2005, §2.3.3).
"""

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .linalg import analyze, as_csc

__all__ = ["GMRF"]

_LOG_2PI = np.log(2.0 * np.pi)


def _as_vector(value, n, name):
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        value = np.full(n, float(value))
    if value.shape != (n,):
        raise InputError(f"{name} must have shape ({n},); got {value.shape}.")
    if not np.all(np.isfinite(value)):
        raise InputError(f"{name} has NaN or infinite entries.")
    return value


def _constraint_arrays(constraints, n):
    if constraints is None:
        return None, None
    try:
        A, e = constraints
    except (TypeError, ValueError) as exc:
        raise InputError("constraints must be a pair (A, e) meaning A x = e.") from exc
    A = A.toarray() if sp.issparse(A) else np.asarray(A, dtype=np.float64)
    A = np.atleast_2d(A).astype(np.float64)
    if A.shape[1] != n:
        raise InputError(f"constraint matrix A must have {n} columns; got shape {A.shape}.")
    e = np.atleast_1d(np.asarray(e, dtype=np.float64))
    if e.shape != (A.shape[0],):
        raise InputError(
            f"constraint right-hand side e must have shape ({A.shape[0]},); got {e.shape}."
        )
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(e))):
        raise InputError("constraints have NaN or infinite entries.")
    if np.linalg.matrix_rank(A) < A.shape[0]:
        raise InputError("the constraint matrix A must have full row rank (remove redundant rows).")
    return A, e


class GMRF:
    """A Gaussian Markov random field x ~ N(mean, precision⁻¹), optionally constrained.

    Parameters
    ----------
    mean : array_like, shape (n,) or scalar
    precision : scipy.sparse matrix, shape (n, n)
        Symmetric positive definite precision Q (full symmetric storage).
    constraints : tuple (A, e), optional
        Hard linear constraints A x = e with A of shape (k, n) (dense or sparse,
        full row rank), e.g. a sum-to-zero constraint ``(np.ones((1, n)), 0)``.
        The constrained field is handled by conditioning by kriging (Rue & Held
        2005, §2.3.3): mean, samples, marginal variances and log-density are
        those of x | A x = e.
    ordering : str, optional
        Fill-reducing ordering for the Cholesky factor (see :func:`gmrf_core.analyze`).

    Raises
    ------
    InputError, NotSymmetricError, NotPositiveDefiniteError
        For bad shapes or values, a non-symmetric or non-positive-definite precision.
    """

    def __init__(self, mean, precision, constraints=None, *, ordering="auto", _symbolic=None):
        Q = as_csc(precision, "precision")
        if Q.shape[0] != Q.shape[1]:
            raise InputError(f"precision must be square; got shape {Q.shape}.")
        n = Q.shape[0]
        self.n = n
        self.precision = Q
        self._mean = _as_vector(mean, n, "mean")
        self._A, self._e = _constraint_arrays(constraints, n)
        symbolic = _symbolic if _symbolic is not None else analyze(Q, ordering=ordering)
        self.factor = symbolic.factorize(Q)
        self._selinv = None
        self._kriging = None

    @property
    def constraints(self):
        """(A, e) or None."""
        return None if self._A is None else (self._A, self._e)

    # -- conditioning by kriging ------------------------------------------------
    def _kriging_parts(self):
        """V = Q⁻¹Aᵀ, S = A V and its Cholesky factor (computed once)."""
        if self._kriging is None:
            V = self.factor.solve(self._A.T)
            S = self._A @ V
            S = 0.5 * (S + S.T)
            chol = np.linalg.cholesky(S)
            self._kriging = (V, S, chol)
        return self._kriging

    def _correct(self, x):
        """x - V S⁻¹ (A x - e) for x of shape (n,) or (n, m)."""
        V, _S, chol = self._kriging_parts()
        resid = self._A @ x - (self._e if x.ndim == 1 else self._e[:, None])
        w = np.linalg.solve(chol.T, np.linalg.solve(chol, resid))
        return x - V @ w

    @property
    def mean(self):
        """Mean of x (of x | A x = e when constrained)."""
        if self._A is None:
            return self._mean.copy()
        return self._correct(self._mean)

    # -- densities and draws -------------------------------------------------------
    def logpdf(self, x, *, atol=1e-8):
        """Log-density with every constant, for x of shape (n,) or (m, n).

        Unconstrained: −n/2 log 2π + ½ log|Q| − ½ (x−μ)ᵀ Q (x−μ). Constrained
        (Rue & Held 2005, eq. 2.32): log π(x) − log π_{Ax}(e) − ½ log|A Aᵀ|, the
        density on the affine subspace A x = e; −inf for x off the subspace
        (beyond ``atol`` relative to the scale of A x).
        """
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        X = np.atleast_2d(x)
        if X.ndim != 2 or X.shape[1] != self.n:
            raise InputError(f"x must have shape ({self.n},) or (m, {self.n}); got {x.shape}.")
        if not np.all(np.isfinite(X)):
            raise InputError("x has NaN or infinite entries.")
        D = X - self._mean
        quad = np.einsum("ij,ij->i", D, (self.precision @ D.T).T)
        out = -0.5 * self.n * _LOG_2PI + 0.5 * self.factor.logdet() - 0.5 * quad
        if self._A is not None:
            V, S, chol = self._kriging_parts()
            k = self._A.shape[0]
            # log N(e; Aμ, S) of the constraint's prior distribution
            r = self._e - self._A @ self._mean
            z = np.linalg.solve(chol, r)
            logdet_S = 2.0 * np.sum(np.log(np.diag(chol)))
            log_pe = -0.5 * k * _LOG_2PI - 0.5 * logdet_S - 0.5 * z @ z
            _sign, logdet_AAt = np.linalg.slogdet(self._A @ self._A.T)
            out = out - log_pe - 0.5 * logdet_AAt
            resid = np.abs(X @ self._A.T - self._e).max(axis=1)
            scale = 1.0 + np.abs(X).max(axis=1) * np.abs(self._A).sum(axis=1).max()
            out = np.where(resid <= atol * scale, out, -np.inf)
        return float(out[0]) if single else out

    def sample(self, size=None, rng=None):
        """Draws of x (of x | A x = e when constrained, by kriging each draw).

        Returns shape (n,) for ``size=None``, else (size, n).
        """
        z = self.factor.sample(size=size, rng=rng)
        X = np.atleast_2d(z) + self._mean
        if self._A is not None:
            X = self._correct(X.T).T
        return X[0] if size is None else X

    # -- variances -------------------------------------------------------------------
    def selected_inverse(self):
        """Selected inverse of the (unconstrained) precision, computed once."""
        if self._selinv is None:
            self._selinv = self.factor.selected_inverse()
        return self._selinv

    def marginal_variance(self, A=None):
        """Marginal variances of x, or of η = A x for a sparse A (diag(A Σ Aᵀ)).

        With constraints, Σ = Q⁻¹ − V S⁻¹ Vᵀ (V = Q⁻¹ Aᵀ_c, S = A_c V); the
        correction is a rank-k update.
        """
        selinv = self.selected_inverse()
        if A is None:
            var = selinv.diag()
            if self._A is not None:
                V, _S, chol = self._kriging_parts()
                W = np.linalg.solve(chol, V.T)  # chol⁻¹ Vᵀ
                var = var - np.einsum("ij,ij->j", W, W)
            return var
        A = sp.csr_matrix(A, dtype=np.float64)
        var = selinv.quadratic_diag(A)
        if self._A is not None:
            V, _S, chol = self._kriging_parts()
            W = np.linalg.solve(chol, (A @ V).T)
            var = var - np.einsum("ij,ij->j", W, W)
        return var

    def marginal_sd(self, A=None):
        """Square roots of :meth:`marginal_variance`."""
        return np.sqrt(np.maximum(self.marginal_variance(A), 0.0))

    # -- observations ------------------------------------------------------------------
    def condition(self, A, y, noise_precision):
        """Posterior of x given y = A x + ε, ε ~ N(0, R⁻¹), in information form.

        Q_post = Q + Aᵀ R A and Q_post μ_post = Q μ + Aᵀ R y (Rue & Held 2005, §2.3.2).
        Constraints carry over.

        Parameters
        ----------
        A : sparse or dense matrix, shape (m, n)
        y : array_like, shape (m,)
        noise_precision : float, array of shape (m,), or sparse (m, m) matrix R

        Returns
        -------
        GMRF
        """
        A = sp.csr_matrix(A, dtype=np.float64)
        if A.shape[1] != self.n:
            raise InputError(f"A must have {self.n} columns; got shape {A.shape}.")
        m = A.shape[0]
        y = _as_vector(y, m, "y")
        if sp.issparse(noise_precision):
            R = sp.csr_matrix(noise_precision, dtype=np.float64)
            if R.shape != (m, m):
                raise InputError(f"noise_precision must have shape ({m}, {m}); got {R.shape}.")
        else:
            r = _as_vector(noise_precision, m, "noise_precision")
            if np.any(r < 0):
                raise InputError("noise_precision must be non-negative.")
            R = sp.diags_array(r).tocsr()
        AtR = sp.csr_matrix(A.T @ R)
        Q_post = sp.csc_matrix(self.precision + AtR @ A)
        b = self.precision @ self._mean + AtR @ y
        post = GMRF(np.zeros(self.n), Q_post, self.constraints)
        post._mean = post.factor.solve(b)
        return post

    def __repr__(self):
        k = 0 if self._A is None else self._A.shape[0]
        return f"GMRF(n={self.n}, nnz(Q)={self.precision.nnz}, constraints={k})"
