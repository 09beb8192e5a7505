"""Variational estimate of θ: L-BFGS-B on the profile −ELBO(θ, q*(θ)) − log π(θ)."""

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..optimize import (
    check_bounds,
    check_theta0,
    estimates_table,
    fit_verdict,
    minimize_hyperparameters,
    natural_scale,
    standard_errors,
)
from .elbo import DEFAULT_QUADRATURE, _check_quadrature, elbo_and_grad_theta
from .q import VariationalGaussian, _check_model, _check_q, _check_step, initial_q
from .steps import optimize_q

__all__ = ["VariationalFitResult", "fit_variational"]


# -- hyperparameters ----------------------------------------------------------------------------
@dataclass
class VariationalFitResult:
    """Result of :func:`fit_variational` (in the style of :class:`gmrf_core.FitResult`).

    Attributes
    ----------
    theta : numpy.ndarray
        Estimated hyperparameters (internal scale).
    theta_natural : dict
        The same on the natural scale.
    theta_names : tuple of str
    fun : float
        −ELBO(θ, q*) − log π(θ) at the optimum.
    elbo : float
        The ELBO at the optimum.
    grad : numpy.ndarray
        Gradient of ``fun`` at the optimum.
    nit, nfev : int
        L-BFGS-B iterations and profile evaluations.
    natgrad_steps : int
        Natural-gradient steps taken in all.
    success : bool
    message : str
    std_err : numpy.ndarray
        From the central-difference Hessian of the profile gradient (NaN when not
        requested or not positive definite).
    hessian : numpy.ndarray
    mean : numpy.ndarray
        Variational mean of (x, β).
    marginal_sd : numpy.ndarray
        Variational marginal standard deviations of (x, β).
    q : VariationalGaussian
    time : float
    history : list of (iteration, fun, |grad|)
    """

    theta: np.ndarray
    theta_natural: dict
    theta_names: tuple
    fun: float
    elbo: float
    grad: np.ndarray
    nit: int
    nfev: int
    natgrad_steps: int
    success: bool
    message: str
    std_err: np.ndarray
    hessian: np.ndarray
    mean: np.ndarray
    marginal_sd: np.ndarray
    q: VariationalGaussian
    time: float
    history: list = field(default_factory=list)

    def summary(self):
        """A readable table of the estimates and standard errors."""
        lines = estimates_table(self.theta_names, self.theta, self.std_err, self.theta_natural)
        lines.append(
            f"-ELBO {self.fun:.6f}, |grad| {np.linalg.norm(self.grad):.2e}, {self.nit} "
            f"iterations, {self.nfev} evaluations, {self.natgrad_steps} natural-gradient "
            f"steps, {self.time:.1f} s, success={self.success}"
        )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def fit_variational(
    model,
    theta0=None,
    *,
    q0=None,
    init="laplace",
    step=1.0,
    tol=1e-10,
    max_natgrad=200,
    bounds=None,
    maxiter=200,
    gtol=1e-5,
    std_err=True,
    quadrature=DEFAULT_QUADRATURE,
    progress=True,
    stream=None,
):
    """Variational estimate of θ: maximise the ELBO jointly over q and θ.

    L-BFGS-B (scipy.optimize) on the profile F(θ) = −L(θ, q*(θ)) − log π(θ), where
    q*(θ) is found by natural-gradient steps (:func:`optimize_q`) warm-started from
    the q of the previous evaluation, so q and θ updates interleave as GPflow's
    NaturalGradient + Adam do. By the envelope theorem ∇F(θ) = −∂L/∂θ at fixed q*(θ)
    − ∇log π(θ) (:func:`elbo_and_grad_theta`), exact up to the inner tolerance.

    Parameters
    ----------
    model : LatentGaussianModel
    theta0 : array_like, optional
        Starting θ (internal scale); ``model.theta0`` by default.
    q0 : VariationalGaussian, optional
        Starting q; ``initial_q(model, theta0, init)`` by default.
    init : {"laplace", "prior"}
        How the default q0 is built.
    step : float in (0, 1]
        Largest natural-gradient step.
    tol : float
        Inner convergence tolerance (relative change of (m, λ) per unit step).
    max_natgrad : int
        Natural-gradient steps per profile evaluation at most.
    bounds : sequence of (low, high), optional
        Bounds on θ for L-BFGS-B.
    maxiter, gtol : int, float
        L-BFGS-B options.
    std_err : bool
        Standard errors from a central-difference Hessian of the profile gradient
        (2p extra evaluations; default True, as in :func:`gmrf_core.fit`).
    quadrature : int
    progress : bool
        Print iteration, −ELBO and gradient norm per iteration (default True, as in
        :func:`gmrf_core.fit`).
    stream : file-like, optional

    Returns
    -------
    VariationalFitResult

    Raises
    ------
    InputError
        Bad arguments.
    ConvergenceError
        The profile cannot be evaluated at θ0.
    """
    _check_model(model)
    theta0 = check_theta0(model, theta0)
    step = _check_step(step)
    points = _check_quadrature(quadrature)
    if not (isinstance(max_natgrad, (int, np.integer)) and max_natgrad >= 1):
        raise InputError(f"max_natgrad must be a positive integer; got {max_natgrad!r}.")
    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    q = initial_q(model, theta0, init) if q0 is None else q0
    _check_q(model, q)
    state = {"q": q, "natgrad": 0, "inner": {}}

    def profile(theta):
        inner = optimize_q(
            model, theta, state["q"], step=step, tol=tol, maxiter=max_natgrad, quadrature=points
        )
        state["natgrad"] += inner.nit
        value, grad = elbo_and_grad_theta(model, theta, inner.q, quadrature=points)
        return inner, -value - model.log_prior(theta), -grad - model.log_prior_grad(theta)

    def fun_and_grad(theta):
        inner, value, grad = profile(theta)
        # warm start of the next evaluation; the q of each θ is kept for the result
        state["q"] = inner.q
        state["inner"] = {"theta": theta.copy(), "q": inner.q, "converged": inner.converged}
        return value, grad

    if progress:
        print(
            f"variational fit of {len(theta0)} hyperparameters {model.theta_names}",
            file=stream,
            flush=True,
        )
    driver = minimize_hyperparameters(
        fun_and_grad,
        theta0,
        bounds=check_bounds(bounds, theta0.size),
        maxiter=maxiter,
        gtol=gtol,
        progress=progress,
        stream=stream,
        label="-ELBO",
    )
    theta, value, grad = driver.theta, driver.fun, driver.grad
    if np.array_equal(state["inner"].get("theta"), theta):
        q_final, inner_converged = state["inner"]["q"], state["inner"]["converged"]
    else:
        inner, value, grad = profile(theta)
        q_final, inner_converged = inner.q, inner.converged
    state["q"] = q_final
    p = theta.size
    if std_err:
        se, hess = standard_errors(lambda t: profile(t)[2], theta)
    else:
        hess = np.full((p, p), np.nan)
        se = np.full(p, np.nan)
    driver.grad = grad
    success, message = fit_verdict(driver, check_bounds(bounds, p), hess if std_err else None)
    if not inner_converged:
        # the gradient is exact only at the optimal q: report an unconverged inner problem
        success = False
        message += f"; natural-gradient steps did not converge in max_natgrad = {max_natgrad}"
    out = VariationalFitResult(
        theta=theta,
        theta_natural=natural_scale(model, theta),
        theta_names=model.theta_names,
        fun=float(value),
        elbo=float(-value - model.log_prior(theta)),
        grad=grad,
        nit=driver.nit,
        nfev=driver.nfev,
        natgrad_steps=int(state["natgrad"]),
        success=success,
        message=message,
        std_err=se,
        hessian=hess,
        mean=q_final.mean.copy(),
        marginal_sd=q_final.marginal_sd(),
        q=q_final,
        time=time.perf_counter() - start,
        history=driver.history,
    )
    if progress:
        print(out.summary(), file=stream, flush=True)
    return out
