"""Hand-derived derivative rules: ``<op>_jvp(primals, tangents)`` and ``<op>_vjp(primals)``.

:mod:`~gmrf_core.rules.dense` covers dense linear algebra, one module per operation family
(inverse, linear_solve, log_determinant, cholesky_factor, matrix_exponential, lyapunov), all
re-exported as ``dense.<op>``, ``dense.<op>_jvp``, ``dense.<op>_vjp``;
:mod:`~gmrf_core.rules.sparse` the sparse GMRF operations (logdet, solve, quadratic form,
GMRF log-density, the log-determinant of a Laplace-type Hessian Q + Aᵀ diag(w) A) through
selected inversion; :mod:`~gmrf_core.rules.likelihood` the likelihood terms (the
log-likelihood with its score and curvature weights in (η, θ), and its Gauss–Hermite
expectation under a Gaussian η). The Laplace and ELBO gradients are built from the last
two.
"""

from . import dense, likelihood, sparse

__all__ = ["dense", "likelihood", "sparse"]
