"""Fitting driver: L-BFGS-B on the Laplace objective with exact gradients."""

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from .errors import GMRFError, InputError

__all__ = ["fit", "FitResult", "natural_scale", "estimates_table", "hessian_from_gradient"]


@dataclass
class FitResult:
    """Result of :func:`fit`.

    Attributes
    ----------
    theta : numpy.ndarray
        Estimated hyperparameters on the internal (unconstrained) scale.
    theta_natural : dict
        The same on the natural scale (precisions, ranges, standard deviations, ...).
    theta_names : tuple of str
    fun : float
        Objective at the optimum (Laplace −log p(y | θ) − log π(θ)).
    grad : numpy.ndarray
        Gradient at the optimum.
    nit, nfev : int
        Optimizer iterations and objective/gradient evaluations.
    success : bool
    message : str
    std_err : numpy.ndarray
        Standard errors of θ (internal scale) from the inverse Hessian of the
        objective, built by central differences of the exact gradient; NaN when
        the Hessian is not positive definite.
    hessian : numpy.ndarray
    mode : numpy.ndarray
        Posterior mode of the latent vector (x, β) at the optimum.
    marginal_sd : numpy.ndarray
        Posterior marginal standard deviations of (x, β) under the Laplace
        approximation (selected inversion).
    time : float
        Wall time in seconds.
    """

    theta: np.ndarray
    theta_natural: dict
    theta_names: tuple
    fun: float
    grad: np.ndarray
    nit: int
    nfev: int
    success: bool
    message: str
    std_err: np.ndarray
    hessian: np.ndarray
    mode: np.ndarray
    marginal_sd: np.ndarray
    time: float
    history: list = field(default_factory=list)

    def summary(self):
        """A readable table of the estimates and standard errors."""
        lines = estimates_table(self.theta_names, self.theta, self.std_err, self.theta_natural)
        lines.append(
            f"objective {self.fun:.6f}, |grad| {np.linalg.norm(self.grad):.2e}, {self.nit} "
            f"iterations, {self.nfev} evaluations, {self.time:.1f} s, success={self.success}"
        )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def estimates_table(theta_names, theta, std_err, theta_natural):
    """Lines of a table of estimates and standard errors, then the natural-scale values."""
    width = max([len(n) for n in theta_names] + [9])
    lines = [f"{'parameter':<{width}}  {'estimate':>12}  {'std.err':>10}", "-" * (width + 26)]
    for name, value, se in zip(theta_names, theta, std_err):
        lines.append(f"{name:<{width}}  {value:>12.5f}  {se:>10.5f}")
    lines.append("-" * (width + 26))
    natural = ", ".join(f"{k} = {v:.5g}" for k, v in theta_natural.items())
    lines.append(f"natural scale: {natural}")
    return lines


def natural_scale(model, theta):
    """Hyperparameters of a LatentGaussianModel on their natural scale, as a dict.

    Uses the prior's and likelihood's ``to_natural`` where they have one; other
    hyperparameters keep their internal names and values.
    """
    out = {}
    for part, values in (
        (model.prior, theta[: model.n_theta_prior]),
        (model.likelihood, theta[model.n_theta_prior :]),
    ):
        to_natural = getattr(part, "to_natural", None)
        if to_natural is not None and len(values):
            try:
                out.update(to_natural(values))
                continue
            except TypeError:
                pass
        names = part.theta_names
        out.update({name: float(v) for name, v in zip(names, values)})
    return out


def hessian_from_gradient(gradient, theta, step=1e-4):
    """Symmetrized central-difference Jacobian of an exact gradient."""
    p = theta.size
    hess = np.zeros((p, p))
    for k in range(p):
        h = step * max(1.0, abs(theta[k]))
        e = np.zeros(p)
        e[k] = h
        hess[:, k] = (gradient(theta + e) - gradient(theta - e)) / (2.0 * h)
    return 0.5 * (hess + hess.T)


def fit(
    model,
    theta0=None,
    *,
    bounds=None,
    progress=True,
    maxiter=200,
    gtol=1e-5,
    std_err=True,
    stream=None,
):
    """Maximise the Laplace marginal likelihood over the hyperparameters.

    L-BFGS-B (scipy.optimize) on ``model.value_and_grad`` (exact gradients). The
    inner Newton problems are warm-started from the previous mode.

    Parameters
    ----------
    model : LatentGaussianModel
    theta0 : array_like, optional
        Starting values (internal scale); ``model.theta0`` by default.
    bounds : sequence of (low, high), optional
        Bounds on θ (internal scale), None for unbounded sides.
    progress : bool
        Print iteration, objective and gradient norm per iteration.
    maxiter : int
    gtol : float
        Projected-gradient tolerance of L-BFGS-B.
    std_err : bool
        Compute standard errors from the Hessian (2p extra gradient evaluations).
    stream : file-like, optional
        Where progress goes (default sys.stdout).

    Returns
    -------
    FitResult
    """
    theta0 = model.theta0 if theta0 is None else np.asarray(theta0, dtype=float).reshape(-1)
    if theta0.shape != model.theta0.shape or not np.all(np.isfinite(theta0)):
        raise InputError(f"theta0 must be a finite vector of length {model.theta0.size}.")
    stream = sys.stdout if stream is None else stream
    history = []
    state = {"nfev": 0, "last": None}
    start = time.perf_counter()

    def fun(theta):
        state["nfev"] += 1
        try:
            value, grad = model.value_and_grad(theta)
        except GMRFError:
            # a step into a region where the inner problem fails: report it as
            # infinite so the line search backs off
            return np.inf, np.zeros_like(theta)
        state["last"] = (theta.copy(), value, grad)
        return value, grad

    def callback(intermediate):
        theta, value, grad = state["last"]
        history.append((len(history) + 1, value, float(np.linalg.norm(grad))))
        if progress:
            print(
                f"iter {len(history):4d}  objective {value:16.6f}  "
                f"|grad| {np.linalg.norm(grad):10.3e}"
                f"  ({time.perf_counter() - start:7.1f} s)",
                file=stream,
                flush=True,
            )

    if progress:
        print(f"fitting {len(theta0)} hyperparameters {model.theta_names}", file=stream, flush=True)
    result = minimize(
        fun,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        callback=callback,
        options={"maxiter": maxiter, "gtol": gtol},
    )
    theta = np.asarray(result.x, dtype=float)
    value, grad = model.value_and_grad(theta)
    approximation = model.laplace(theta)
    if std_err:
        hess = hessian_from_gradient(model.gradient, theta)
        try:
            np.linalg.cholesky(hess)
            se = np.sqrt(np.diag(np.linalg.inv(hess)))
        except np.linalg.LinAlgError:
            se = np.full(theta.size, np.nan)
    else:
        hess = np.full((theta.size, theta.size), np.nan)
        se = np.full(theta.size, np.nan)
    elapsed = time.perf_counter() - start
    out = FitResult(
        theta=theta,
        theta_natural=natural_scale(model, theta),
        theta_names=model.theta_names,
        fun=float(value),
        grad=grad,
        nit=int(result.nit),
        nfev=int(state["nfev"]),
        success=bool(result.success),
        message=str(result.message),
        std_err=se,
        hessian=hess,
        mode=approximation.mode,
        marginal_sd=approximation.marginal_sd(),
        time=elapsed,
        history=history,
    )
    if progress:
        print(out.summary(), file=stream, flush=True)
    return out
