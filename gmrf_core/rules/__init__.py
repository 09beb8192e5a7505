"""Hand-derived derivative rules: ``<op>_jvp(primals, tangents)`` and ``<op>_vjp(primals)``.

:mod:`~gmrf_core.rules.dense` covers dense linear algebra (inv, solve, logdet, cholesky,
expm, Lyapunov); :mod:`~gmrf_core.rules.sparse` the sparse GMRF operations (logdet,
solve, quadratic form, GMRF log-density) through selected inversion.
"""

from . import dense, sparse

__all__ = ["dense", "sparse"]
