"""Fitting driver: L-BFGS-B on the Laplace objective with exact gradients."""

import sys
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from .errors import GMRFError, InputError

__all__ = [
    "fit",
    "FitResult",
    "natural_scale",
    "estimates_table",
    "hessian_from_gradient",
    "standard_errors",
    "minimize_hyperparameters",
    "DriverResult",
]

# A fit is a success only when the optimizer's own test passed and the Newton decrement in θ,
# gᵀ H⁻¹ g (H: the Hessian from the standard errors, else L-BFGS-B's inverse-Hessian
# estimate), is at most this: θ̂ is then within ~0.1 standard errors of the stationary point.
_DECREMENT_TOL = 1e-2


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
    history : list of (iteration, objective, |grad|)
    approximation : LaplaceApproximation
        The Gaussian approximation at θ̂, from the optimizer's own evaluation there
        (not recomputed).
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
    approximation: object = None

    def summary(self):
        """A readable table of the estimates and standard errors."""
        lines = estimates_table(self.theta_names, self.theta, self.std_err, self.theta_natural)
        lines += self._fixed_effect_lines()
        if not self.success:
            lines.append(f"NOT CONVERGED: {self.message}")
        lines.append(
            f"objective {self.fun:.6f}, |grad| {np.linalg.norm(self.grad):.2e}, {self.nit} "
            f"iterations, {self.nfev} evaluations, {self.time:.1f} s, success={self.success}"
        )
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def _fixed_effect_lines(self):
        """Posterior mode and sd of the fixed effects at θ̂, named when the model names them."""
        model = getattr(self.approximation, "_model", None)
        p = 0 if model is None else int(model.n_fixed)
        if p == 0:
            return []
        names = list(getattr(model, "fixed_names", None) or [])
        if len(names) != p:
            names = [f"beta[{j}]" for j in range(p)]
        width = max([len(n) for n in names] + [12])
        lines = [f"{'fixed effect':<{width}}  {'mode':>12}  {'sd':>10}"]
        start = model.n_latent
        for j, name in enumerate(names):
            mode, sd = self.mode[start + j], self.marginal_sd[start + j]
            lines.append(f"{name:<{width}}  {mode:>12.5f}  {sd:>10.5f}")
        return lines + ["-" * (width + 26)]

    def latent(self, name, model=None, part=None):
        """Summaries of the f() term ``name`` of a :func:`gmrf_core.formula` model at θ̂,
        indexed by the term's levels (see :func:`gmrf_core.formula.latent_table`); the
        model defaults to the one this fit's approximation belongs to."""
        from .formula import latent_table

        model = model if model is not None else getattr(self.approximation, "_model", None)
        return latent_table(self, model, name, part=part)


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


def central_difference_points(theta, step):
    """The 2·dim θ points of a central-difference Hessian of a gradient at θ.

    Parameters
    ----------
    theta : numpy.ndarray, shape (p,)
    step : float
        Relative step: ``h_k = step · max(1, |θ_k|)``.

    Returns
    -------
    steps : numpy.ndarray, shape (p,)
        The steps ``h_k``.
    points : list of numpy.ndarray
        ``[θ + h_0 e_0, θ − h_0 e_0, θ + h_1 e_1, θ − h_1 e_1, ...]``.
    """
    p = theta.size
    steps = step * np.maximum(1.0, np.abs(theta))
    points = []
    for k in range(p):
        e = np.zeros(p)
        e[k] = steps[k]
        points += [theta + e, theta - e]
    return steps, points


def central_difference_hessian(grads, steps):
    """Symmetrized Hessian from the gradients at :func:`central_difference_points`.

    ``H[:, k] = (∇f(θ + h_k e_k) − ∇f(θ − h_k e_k)) / (2 h_k)``, returned as ½(H + Hᵀ).

    Parameters
    ----------
    grads : sequence of numpy.ndarray, shape (p,)
        The gradients at the points, in their order.
    steps : numpy.ndarray, shape (p,)

    Returns
    -------
    numpy.ndarray, shape (p, p)
    """
    p = steps.size
    hess = np.empty((p, p))
    for k in range(p):
        hess[:, k] = (grads[2 * k] - grads[2 * k + 1]) / (2.0 * steps[k])
    return 0.5 * (hess + hess.T)


def hessian_from_gradient(gradient, theta, step=1e-4):
    """Symmetrized central-difference Jacobian of an exact gradient."""
    steps, points = central_difference_points(theta, step)
    return central_difference_hessian([gradient(point) for point in points], steps)


def standard_errors(gradient, theta):
    """Standard errors of θ from the inverse of the central-difference Hessian of an
    exact gradient -> (std_err, hessian); NaN where the Hessian is not positive definite
    or a gradient evaluation failed."""
    p = theta.size
    try:
        hess = hessian_from_gradient(gradient, theta)
    except GMRFError:
        return np.full(p, np.nan), np.full((p, p), np.nan)
    try:
        np.linalg.cholesky(hess)
        se = np.sqrt(np.diag(np.linalg.inv(hess)))
    except np.linalg.LinAlgError:
        se = np.full(p, np.nan)
    return se, hess


@dataclass
class DriverResult:
    """Result of :func:`minimize_hyperparameters`: the best point reached and how."""

    theta: np.ndarray
    fun: float
    grad: np.ndarray
    nit: int
    nfev: int
    success: bool
    message: str
    history: list
    hess_inv: object
    failures: int


def check_bounds(bounds, p):
    if bounds is None:
        return None
    try:
        bounds = [tuple(b) for b in bounds]
    except TypeError as exc:
        raise InputError("bounds must be a sequence of (low, high) pairs.") from exc
    if len(bounds) != p or any(len(b) != 2 for b in bounds):
        raise InputError(f"bounds must have one (low, high) pair per hyperparameter ({p}).")
    out = []
    for k, (low, high) in enumerate(bounds):
        low = -np.inf if low is None else float(low)
        high = np.inf if high is None else float(high)
        if np.isnan(low) or np.isnan(high) or low > high:
            raise InputError(f"bounds[{k}] = ({low}, {high}) is not an interval (low <= high).")
        out.append((low, high))
    return out


_FTOL_REL = 2.220446049250313e-09  # L-BFGS-B's default (factr 1e7)
_FTOL_ABS = 1e-4


def _inside(theta, bounds):
    return bounds is None or all(low <= t <= high for t, (low, high) in zip(theta, bounds))


def _projected_gradient(theta, grad, bounds):
    """The gradient with the components that push against an active bound set to 0."""
    if bounds is None:
        return grad
    pg = grad.copy()
    for k, (low, high) in enumerate(bounds):
        if (theta[k] <= low and grad[k] > 0) or (theta[k] >= high and grad[k] < 0):
            pg[k] = 0.0
    return pg


def minimize_hyperparameters(
    fun_and_grad,
    theta0,
    *,
    bounds=None,
    maxiter=200,
    gtol=1e-5,
    progress=False,
    stream=None,
    label="objective",
    max_restarts=12,
):
    """The one minimize driver of :func:`fit` and :func:`~gmrf_core.variational.fit_variational`.

    L-BFGS-B (scipy.optimize) on exact gradients. An evaluation that raises a
    :class:`~gmrf_core.GMRFError` (a θ where the inner problem fails) is a failed trial
    point, never a result: L-BFGS-B sees +inf there, and when a run ends after failed
    trials it is restarted from the best point reached inside a box (trust region)
    of half the distance to the nearest failure, widened again (×4) when a run ends on
    the box's edge, until a run ends without failures inside the box.

    Parameters
    ----------
    fun_and_grad : callable
        θ -> (value, gradient).
    theta0 : numpy.ndarray
    bounds : list of (low, high), optional
    maxiter : int
        L-BFGS-B iterations in all.
    gtol : float
        Projected-gradient tolerance of L-BFGS-B.
    progress : bool
        Print iteration, value and gradient norm per iteration.
    stream : file-like, optional
    label : str
        Name of the value in progress lines.
    max_restarts : int

    Returns
    -------
    DriverResult
        The best point evaluated successfully. ``success`` is the optimizer's verdict
        only (see :func:`fit` for the stationarity check).

    Raises
    ------
    GMRFError
        The evaluation at θ0 fails (its error is the user's to see).
    """
    stream = sys.stdout if stream is None else stream
    p = theta0.size
    start = time.perf_counter()
    state = {"nfev": 0, "failures": [], "best": None, "last": None}
    history = []

    def record(theta, value, grad):
        state["last"] = (theta.copy(), value, grad)
        if state["best"] is None or value < state["best"][1]:
            state["best"] = (theta.copy(), value, grad)

    def fun(theta):
        cached = state.pop("theta0", None)
        if cached is not None and np.array_equal(cached[0], theta):
            return cached[1], cached[2]  # L-BFGS-B starts where the driver already evaluated
        state["nfev"] += 1
        try:
            value, grad = fun_and_grad(theta)
            value = float(value)
            grad = np.asarray(grad, dtype=float)
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                raise GMRFError("the value or gradient is not finite")
        except GMRFError:
            state["failures"].append(theta.copy())
            return np.inf, np.zeros(p)
        record(theta, value, grad)
        return value, grad

    def callback(intermediate):
        theta, value, grad = state["last"]
        history.append((len(history) + 1, value, float(np.linalg.norm(grad))))
        if progress:
            print(
                f"iter {len(history):4d}  {label} {value:16.6f}  "
                f"|grad| {np.linalg.norm(grad):10.3e}  ({time.perf_counter() - start:7.1f} s)",
                file=stream,
                flush=True,
            )

    # the evaluation at θ0 must succeed: its errors are the user's to see
    state["nfev"] += 1
    value0, grad0 = fun_and_grad(theta0)
    record(theta0, float(value0), np.asarray(grad0, dtype=float))
    state["theta0"] = state["last"]
    # L-BFGS-B also stops when a step lowers f by less than ftol·|f|: with its default
    # ftol (2.2e-9) a Laplace objective of 10⁶ observations (|f| ≈ 2e6) stops on a
    # reduction of 4e-3, short of the optimum (the stationarity test asks for a
    # remaining reduction below 5e-3); the reduction is held at _FTOL_ABS absolute
    ftol = min(_FTOL_REL, _FTOL_ABS / max(1.0, abs(float(value0))))
    full = [(-np.inf, np.inf)] * p if bounds is None else bounds
    x = theta0.copy()
    radius = None
    nit = 0
    result = None
    message = ""
    clean = False  # the last run ended without failed trials, inside its box
    for _attempt in range(max_restarts + 1):
        box = full
        if radius is not None:
            box = [
                (max(low, x[k] - radius), min(high, x[k] + radius))
                for k, (low, high) in enumerate(full)
            ]
        failed_before = len(state["failures"])
        result = minimize(
            fun,
            x,
            jac=True,
            method="L-BFGS-B",
            bounds=None if (radius is None and bounds is None) else box,
            callback=callback,
            options={"maxiter": max(maxiter - nit, 1), "gtol": gtol, "ftol": ftol},
        )
        nit += int(result.nit)
        message = str(result.message)
        x = state["best"][0].copy()
        new_failures = state["failures"][failed_before:]
        on_edge = radius is not None and any(
            (np.isfinite(low) and x[k] <= low and low > full[k][0])
            or (np.isfinite(high) and x[k] >= high and high < full[k][1])
            for k, (low, high) in enumerate(box)
        )
        if not new_failures and not on_edge:
            clean = True
            break
        if nit >= maxiter:
            message += f"; stopped at maxiter = {maxiter} after failed evaluations"
            break
        if new_failures:
            distance = min(float(np.max(np.abs(f - x))) for f in new_failures)
            radius = 0.5 * distance if distance > 0 else 0.5 * (radius or 1.0)
        else:
            radius *= 4.0
    theta, value, grad = state["best"]
    success = bool(result.success) and clean
    if not clean:
        message += "; failed evaluations kept the optimizer from converging"
    if state["failures"]:
        message += f" ({len(state['failures'])} failed evaluations backtracked from)"
    return DriverResult(
        theta=theta,
        fun=value,
        grad=grad,
        nit=nit,
        nfev=state["nfev"],
        success=success,
        message=message,
        history=history,
        hess_inv=getattr(result, "hess_inv", None),
        failures=len(state["failures"]),
    )


def stationarity(driver, bounds, hessian=None):
    """(small, decrement): the Newton decrement gᵀH⁻¹g of the projected gradient at θ̂
    (H from ``hessian`` when positive definite, else the optimizer's inverse-Hessian
    estimate) and whether it is at most the tolerance."""
    pg = _projected_gradient(driver.theta, driver.grad, bounds)
    decrement = None
    if hessian is not None and np.all(np.isfinite(hessian)):
        try:
            decrement = float(pg @ np.linalg.solve(hessian, pg))
            np.linalg.cholesky(hessian)
        except np.linalg.LinAlgError:
            decrement = None
    if decrement is None and driver.hess_inv is not None:
        decrement = float(pg @ driver.hess_inv.matvec(pg)) if pg.size else 0.0
    if decrement is None:
        decrement = float(pg @ pg)
    return decrement <= _DECREMENT_TOL, decrement


def check_theta0(model, theta0, *, from_data=False):
    """θ0 (model.theta0 when None, or the model's start from the data with
    ``from_data``) as a finite vector of the model's length."""
    if theta0 is None:
        start = getattr(model, "start_from_data", None) if from_data else None
        return np.array(model.theta0 if start is None else start(), dtype=float)
    try:
        theta0 = np.asarray(theta0, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"theta0 must be a vector of numbers; got {theta0!r}.") from exc
    if theta0.shape != model.theta0.shape or not np.all(np.isfinite(theta0)):
        raise InputError(f"theta0 must be a finite vector of length {model.theta0.size}.")
    return theta0


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

    L-BFGS-B (scipy.optimize) on ``model.value_and_grad`` (exact gradients), through
    :func:`minimize_hyperparameters` (failed evaluations are backtracked from). The
    inner Newton problems are warm-started from the previous mode; the Laplace
    approximation of the evaluation at θ̂ is kept and returned, not recomputed.

    Parameters
    ----------
    model : LatentGaussianModel
    theta0 : array_like, optional
        Starting values (internal scale); by default
        ``model.start_from_data()``: moment-based values from the data where the
        prior supports them (range and σ of :class:`~gmrf_core.models.Matern2D` with
        A the identity), else ``model.theta0``.
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
        ``success`` is True only when L-BFGS-B converged, moved from θ0 and θ̂ is
        stationary: the Newton decrement gᵀH⁻¹g of the projected gradient is at most
        1e-2 (θ̂ within about 0.1 standard errors of the optimum); otherwise
        ``message`` says why.

    Raises
    ------
    InputError
        Not a LatentGaussianModel, a bad θ0 or bad bounds.
    GMRFError
        The objective cannot be evaluated at θ0.
    """
    from .laplace import LatentGaussianModel

    if not isinstance(model, LatentGaussianModel):
        raise InputError(f"model must be a gmrf_core.LatentGaussianModel; got {model!r}.")
    given = theta0 is not None
    theta0 = check_theta0(model, theta0, from_data=True)
    bounds = check_bounds(bounds, theta0.size)
    if not given and not _inside(theta0, bounds):
        theta0 = check_theta0(model, None)  # the data's start lies outside: the default
    if not _inside(theta0, bounds):
        raise InputError("theta0 lies outside the bounds.")
    stream = sys.stdout if stream is None else stream
    start = time.perf_counter()
    kept = {"approximation": None, "modes": {}}

    def fun_and_grad(theta):
        # the previous approximation's factor goes back to the pool before the next
        # evaluation, so a fit holds one factor of H at a time
        if kept["approximation"] is not None:
            kept["approximation"]._release()
            kept["approximation"] = None
        value, grad, approximation = model._value_grad_approximation(theta)
        kept["approximation"] = approximation
        best = kept["modes"].get("best")
        if best is None or value < best[1]:
            kept["modes"]["best"] = (theta.copy(), value, approximation.mode.copy())
        return value, grad

    if progress:
        print(f"fitting {len(theta0)} hyperparameters {model.theta_names}", file=stream, flush=True)
    driver = minimize_hyperparameters(
        fun_and_grad,
        theta0,
        bounds=bounds,
        maxiter=maxiter,
        gtol=gtol,
        progress=progress,
        stream=stream,
        label="objective",
    )
    theta = driver.theta
    approximation = kept["approximation"]
    if approximation is None or not np.array_equal(approximation.theta, theta):
        if approximation is not None:
            approximation._release()
        best = kept["modes"].get("best")
        if best is not None and np.array_equal(best[0], theta):
            # Newton from the mode found at θ̂ itself: converged at once
            model._last_mode, model._last_linearization = best[2], None
        approximation = model.laplace(theta)
    if std_err:
        # the marginal sds from the evaluation's own selected inverse, then its factor goes
        # back to the model for the Hessian's evaluations: a fit holds one factor of H at a
        # time (the approximation refactorizes H at the mode when it is next used)
        approximation.marginal_sd()
        approximation._release()
        se, hess = standard_errors(model.gradient, theta)
    else:
        hess = np.full((theta.size, theta.size), np.nan)
        se = np.full(theta.size, np.nan)
    success, message = fit_verdict(driver, bounds, hess if std_err else None)
    out = FitResult(
        theta=theta,
        theta_natural=natural_scale(model, theta),
        theta_names=model.theta_names,
        fun=float(driver.fun),
        grad=driver.grad,
        nit=driver.nit,
        nfev=driver.nfev,
        success=success,
        message=message,
        std_err=se,
        hessian=hess,
        mode=approximation.mode,
        marginal_sd=approximation.marginal_sd(),
        time=time.perf_counter() - start,
        history=driver.history,
        approximation=approximation,
    )
    if progress:
        print(out.summary(), file=stream, flush=True)
    return out


def fit_verdict(driver, bounds, hessian):
    """(success, message): the optimizer's verdict and the stationarity check."""
    small, decrement = stationarity(driver, bounds, hessian)
    message = driver.message
    if not driver.success:
        return False, message
    if driver.nit == 0:
        return False, (
            f"{message}; but the optimizer did not move from theta0 (|grad| = "
            f"{np.linalg.norm(driver.grad):.3g}): theta0 may lie on a plateau of the objective; "
            "try another theta0 (if theta0 is already the optimum, this is expected)"
        )
    if not small:
        return False, (
            f"{message}; but θ̂ is not a stationary point: the Newton decrement of the "
            f"projected gradient is {decrement:.3g} > {_DECREMENT_TOL:g} (try another theta0, "
            "bounds, or a smaller gtol)"
        )
    return True, message
