"""Derivative rules for dense linear algebra, one module per operation family.

Modules: :mod:`.inverse`, :mod:`.linear_solve`, :mod:`.log_determinant` (``logdet`` and
``slogdet``), :mod:`.cholesky_factor`, :mod:`.matrix_exponential`, :mod:`.lyapunov`
(continuous and discrete); shared validation and LAPACK wrappers in :mod:`._common`.
Every name is re-exported here, so ``gmrf_core.rules.dense.<op>_jvp`` is the public path.

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

from ._common import SYMMETRY_RTOL
from .cholesky_factor import cholesky, cholesky_jvp, cholesky_vjp
from .inverse import inv, inv_jvp, inv_vjp
from .linear_solve import solve, solve_jvp, solve_vjp
from .log_determinant import logdet, logdet_jvp, logdet_vjp, slogdet, slogdet_jvp, slogdet_vjp
from .lyapunov import (
    dlyap,
    dlyap_jvp,
    dlyap_vjp,
    lyap,
    lyap_jvp,
    lyap_vjp,
    solve_continuous_lyapunov,
    solve_continuous_lyapunov_jvp,
    solve_continuous_lyapunov_vjp,
    solve_discrete_lyapunov,
    solve_discrete_lyapunov_jvp,
    solve_discrete_lyapunov_vjp,
)
from .matrix_exponential import expm, expm_jvp, expm_vjp

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
