"""Hand-derived derivative rules: ``<op>_jvp(primals, tangents)`` and ``<op>_vjp(primals)``.

:mod:`~gmrf_core.rules.dense` covers dense linear algebra, one module per operation family
(inverse, linear_solve, log_determinant, cholesky_factor, matrix_exponential, lyapunov), all
re-exported as ``dense.<op>``, ``dense.<op>_jvp``, ``dense.<op>_vjp``;
:mod:`~gmrf_core.rules.sparse` the sparse GMRF operations (logdet, solve, quadratic form,
GMRF log-density) through selected inversion.
"""

from . import dense, sparse

__all__ = ["dense", "sparse"]
