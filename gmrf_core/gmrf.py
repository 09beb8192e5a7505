"""Gaussian Markov random fields x ~ N(μ, Q⁻¹), optionally under hard linear constraints.

Everything is done with one sparse Cholesky factor of Q: log-densities, samples
(Rue & Held 2005, Alg. 2.4), marginal variances (selected inversion), the
Gaussian posterior given linear observations (information form), and hard
constraints A x = e by conditioning by kriging (Rue & Held 2005, §2.3.3).
"""

import numpy as np
import scipy.sparse as sp

from .constrained import ConstrainedFactor, as_constraints
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

    def __init__(self, mean, precision, constraints=None, *, ordering="auto"):
        Q = as_csc(precision, "precision")
        if Q.shape[0] != Q.shape[1]:
            raise InputError(f"precision must be square; got shape {Q.shape}.")
        n = Q.shape[0]
        self.n = n
        self.precision = Q
        self._mean = _as_vector(mean, n, "mean")
        self._constraints = as_constraints(constraints, n)
        self.factor = analyze(Q, ordering=ordering).factorize(Q)
        self._constrained = None

    @property
    def constraints(self):
        """(A, e) or None."""
        return None if self._constraints is None else self._constraints.as_pair()

    @property
    def constrained(self):
        """The :class:`~gmrf_core.constrained.ConstrainedFactor` of Q with the constraints
        (kriging parts computed once)."""
        if self._constrained is None:
            self._constrained = ConstrainedFactor(self.factor, self._constraints)
        return self._constrained

    @property
    def mean(self):
        """Mean of x (of x | A x = e when constrained)."""
        if self._constraints is None:
            return self._mean.copy()
        return self.constrained.project(self._mean)

    # -- densities and draws -------------------------------------------------------
    def logpdf(self, x, *, atol=1e-8):
        """Log-density with every constant, for x of shape (n,) or (m, n).

        Naming: distributions of the latent field (this class) have ``logpdf``; a
        likelihood's ``log_density(η, θ)`` is the density of the data given the linear
        predictor, a different concept, hence a different name.

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
        if self._constraints is not None:
            # log π(x) − log π_{Ax}(e) − ½ log|A Aᵀ| (Rue & Held 2005, eq. 2.32)
            log_pe = self.constrained.constraint_logpdf(self._mean)
            out = out - log_pe - 0.5 * self._constraints.logdet_AAt
            A, e = self._constraints.A, self._constraints.e
            resid = np.abs(X @ A.T - e).max(axis=1)
            scale = 1.0 + np.abs(X).max(axis=1) * np.abs(A).sum(axis=1).max()
            out = np.where(resid <= atol * scale, out, -np.inf)
        return float(out[0]) if single else out

    def sample(self, size=None, rng=None):
        """Draws of x (of x | A x = e when constrained, by kriging each draw).

        Returns shape (n,) for ``size=None``, else (size, n).
        """
        return self.constrained.sample(size=size, rng=rng, mean=self._mean)

    # -- variances -------------------------------------------------------------------
    def selected_inverse(self):
        """Selected inverse of the (unconstrained) precision, computed once."""
        return self.constrained.selected_inverse()

    def marginal_variance(self, A=None):
        """Marginal variances of x, or of η = A x for a sparse A (diag(A Σ Aᵀ)).

        With constraints, Σ = Q⁻¹ − V S⁻¹ Vᵀ (V = Q⁻¹ Aᵀ_c, S = A_c V); the
        correction is a rank-k update.
        """
        return self.constrained.marginal_variance(A)

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
        post = GMRF(np.zeros(self.n), Q_post, self._constraints)
        post._mean = post.factor.solve(b)
        return post

    def __repr__(self):
        k = 0 if self._constraints is None else self._constraints.k
        return f"GMRF(n={self.n}, nnz(Q)={self.precision.nnz}, constraints={k})"
