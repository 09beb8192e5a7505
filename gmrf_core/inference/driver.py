"""gm.inla: integrated nested Laplace approximation over θ with exact gradients.

Method (Rue, Martino & Chopin 2009, JRSS B 71(2), 319–392; Martins, Simpson, Lindgren &
Rue 2013, CSDA 67, 68–83):

1. mode θ* of π̃(θ | y) ∝ p̃(y | θ) π(θ) (Laplace approximation p̃, every constant) by
   L-BFGS on the exact reverse-mode gradient (:func:`gmrf_core.fit`);
2. Hessian of −log π̃ at θ* by central differences of the exact gradient: 2·dim θ
   independent gradient evaluations (tasks of :func:`gmrf_core.parallel.map_model`);
3. standardised coordinates z and integration points (grid or CCD,
   :mod:`~gmrf_core.inference.design`);
4. at each point: the Laplace approximation, marginal and predictor variances by
   selected inversion, the simplified-Laplace corrections and the criteria's
   expectations (:mod:`~gmrf_core.inference.points`);
5. θ marginals (interpolated grid or asymmetric Gaussian) on the natural scale, latent
   marginals as mixtures over points, log p(y) by the integration rule, DIC / WAIC /
   CPO / PIT (:mod:`~gmrf_core.inference.criteria`).
"""

import contextlib
import math
import sys
import time

import numpy as np
from scipy.special import logsumexp

from ..errors import ConvergenceError, InputError
from ..optimize import (
    central_difference_hessian,
    central_difference_points,
    check_theta0,
    minimize_hyperparameters,
    stationarity,
)
from ..parallel import map_model, ship
from .criteria import combine_criteria
from .design import ZCoordinates, ccd_design, ccd_weights, grid_box
from .hyperpriors import WithDefaultPriors, default_priors
from .marginals import ccd_theta_marginals, grid_theta_marginals, natural_maps
from .points import axis_task, gradient_task, point_task
from .result import InlaResult

__all__ = ["inla"]

_INTEGRATIONS = ("auto", "eb", "grid", "ccd")
_LATENT = ("auto", "gaussian", "simplified_laplace")
_CRITERIA = ("dic", "waic", "cpo", "pit")


def _map(function, model, items, executor, label, shipment):
    """The θ-level tasks through :func:`gmrf_core.parallel.map_model` (serial for None);
    ``shipment``: the model on its way to the workers (:func:`_shipped`)."""
    return map_model(function, model, items, executor=executor, label=label, shipment=shipment)


def _shipped(model, executor):
    """The model sent to the executor's workers in the background while the body runs
    (:func:`gmrf_core.parallel.ship`; None serially), its files removed at the end."""
    if executor is None:
        return contextlib.nullcontext()
    return ship(model, executor, label="gm.inla")


def _nearest_neighbour_order(z):
    """Visit order of points starting at the one nearest 0, each next the nearest unvisited
    (so each Newton solve starts from a nearby mode)."""
    z = np.asarray(z, dtype=float)
    remaining = list(range(len(z)))
    current = int(np.argmin(np.sum(z * z, axis=1)))
    order = [current]
    remaining.remove(current)
    while remaining:
        rest = np.array(remaining)
        distance = np.sum((z[rest] - z[current]) ** 2, axis=1)
        current = int(rest[int(np.argmin(distance))])
        order.append(current)
        remaining.remove(current)
    return np.array(order)


def _log(progress, stream, message):
    if progress:
        print(message, file=stream, flush=True)


def inla(
    model,
    integration="auto",
    latent="auto",
    *,
    executor=None,
    progress=True,
    compute=("dic", "waic", "cpo"),
    rng=None,
    dz=0.75,
    diff_logdens=6.0,
    f0=1.1,
    hessian_step=1e-3,
    quadrature_nodes=20,
    theta0=None,
    stream=None,
):
    """Full Bayesian inference over the hyperparameters of a latent Gaussian model (INLA).

    Parameters
    ----------
    model : LatentGaussianModel
    integration : {"auto", "eb", "grid", "ccd"}
        "eb": the mode only (empirical Bayes); "grid": the lattice of Rue et al. (2009)
        §3.1 with step ``dz`` and cut-off ``diff_logdens`` (R-INLA's ``dz``,
        ``diff.logdens``); "ccd": the central composite design (§6.5, radius factor
        ``f0``); "auto": grid for dim θ ≤ 2, else CCD.
    latent : {"auto", "gaussian", "simplified_laplace"}
        Latent marginals at each point: Gaussian, or skew-corrected (Rue et al. 2009,
        §3.2.3). "auto": gaussian for a Gaussian likelihood, else simplified_laplace.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        Where the θ-level tasks (Hessian, grid walks, points) run
        (:func:`gmrf_core.parallel.map_model`); None runs them in this process. The model
        is sent to the workers in the background when the run starts
        (:func:`gmrf_core.parallel.ship`), so it is there, unpickled, when the Hessian's
        gradients begin after the mode search.
    progress : bool
        Print the stages.
    compute : sequence of {"dic", "waic", "cpo", "pit"}
        Criteria to compute ("cpo" includes the PIT).
    rng : None, int or Generator
        Default random source of :meth:`InlaResult.sample`.
    dz, diff_logdens : float
        Grid step and cut-off (R-INLA's defaults 0.75 and 6).
    f0 : float
        CCD radius factor (R-INLA's default 1.1).
    hessian_step : float
        Central-difference step of the Hessian, times max(1, |θ*_k|).
    quadrature_nodes : int
        Gauss–Hermite nodes for the criteria's expectations over η_i.
    theta0 : array, optional
        Starting values of the mode search; by default ``model.start_from_data()``
        (moment-based values from the data where the prior has them, else
        ``model.theta0``), as :func:`gmrf_core.fit` does.
    stream : file-like, optional
        Where progress goes (default stdout).

    Returns
    -------
    InlaResult
        Its ``timings`` are the wall seconds of the stages; ``point_timings`` splits the
        points' stage into the parts of :func:`~gmrf_core.inference.points.point_task`
        (Laplace, variance, predictor variance, simplified laplace, criteria), summed over
        the points.

    Raises
    ------
    InputError
        Unknown options; a Hessian at the mode that is not positive definite.
    ConvergenceError
        The mode search failed (gradient not small), or the central point failed.
    """
    if integration not in _INTEGRATIONS:
        raise InputError(f"integration must be one of {_INTEGRATIONS}; got {integration!r}.")
    if latent not in _LATENT:
        raise InputError(f"latent must be one of {_LATENT}; got {latent!r}.")
    compute = tuple(compute or ())
    unknown = [c for c in compute if c not in _CRITERIA]
    if unknown:
        raise InputError(f"compute accepts {_CRITERIA}; got unknown {unknown}.")
    for name, value in (("dz", dz), ("diff_logdens", diff_logdens), ("hessian_step", hessian_step)):
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive number; got {value!r}.")
    if not (np.isfinite(f0) and f0 > 1):
        raise InputError(f"f0 must be > 1; got {f0!r}.")
    quadrature_nodes = int(quadrature_nodes)
    if quadrature_nodes < 3:
        raise InputError("quadrature_nodes must be at least 3.")
    stream = sys.stdout if stream is None else stream
    d = len(model.theta0)
    if d == 0:
        raise InputError("the model has no hyperparameters: use model.laplace(theta) directly.")
    if integration == "auto":
        integration = "grid" if d <= 2 else "ccd"
    if latent == "auto":
        gaussian = type(model.likelihood).__name__ == "Gaussian"
        latent = "gaussian" if gaussian else "simplified_laplace"
    timings = {}
    notes = []

    # -- 1. priors and mode --------------------------------------------------------------
    defaults = default_priors(model)
    proxy = WithDefaultPriors(model, defaults)
    defaults_applied = [f"{name}: {description}" for _k, name, _p, description in defaults]
    for line in defaults_applied:
        _log(progress, stream, f"default prior  {line}")
    # the workers idle during the mode search: the model goes to them meanwhile (unpickled
    # there, their kernels loaded, when the Hessian's gradients begin); its Newton warm
    # start, which the mode search moves, goes apart with each map
    with _shipped(proxy, executor) as shipment:
        start = time.perf_counter()
        theta0 = check_theta0(model, theta0, from_data=True)
        # the driver of gm.fit (L-BFGS-B on the exact gradient, restarts after failed trials),
        # on the objective with the default priors
        fitted = minimize_hyperparameters(
            proxy.value_and_grad, theta0, progress=progress, stream=stream, label="-log pi(theta|y)"
        )
        theta_mode = np.asarray(fitted.theta, dtype=float)
        f_mode = float(fitted.fun)
        if not fitted.success:
            raise ConvergenceError(
                f"the mode of pi(theta | y) was not found ({fitted.message}; |grad| = "
                f"{np.linalg.norm(fitted.grad):.3e}). Try other starting values (theta0=)."
            )
        timings["mode"] = time.perf_counter() - start

        # -- 2. Hessian by central differences of the exact gradient --------------------------
        start = time.perf_counter()
        steps, items = central_difference_points(theta_mode, hessian_step)
        grads = _map(gradient_task, proxy, items, executor, "hessian", shipment)
        hessian = central_difference_hessian(grads, steps)
        coordinates = ZCoordinates(theta_mode, hessian)
        stationary, decrement = stationarity(fitted, None, hessian)
        if not stationary:
            raise ConvergenceError(
                f"the optimizer stopped at theta = {theta_mode}, which is not the mode of "
                f"pi(theta | y): the Newton decrement of the gradient is {decrement:.3g}. Try "
                "other starting values (theta0=)."
            )
        timings["hessian"] = time.perf_counter() - start
        _log(
            progress, stream, f"Hessian at the mode ({2 * d} gradients, {timings['hessian']:.1f} s)"
        )

        # -- 3./4. integration points --------------------------------------------------------
        start = time.perf_counter()
        criteria = bool(compute)
        base_item = {
            "f_mode": f_mode,
            "latent": latent,
            "criteria": criteria,
            "pit": "cpo" in compute or "pit" in compute,
            "nodes": quadrature_nodes,
        }
        grid_state = None
        if integration == "eb":
            z_points = np.zeros((1, d))
            volume = np.ones(1)
            cutoff = None
        elif integration == "ccd":
            z_points = ccd_design(d, f0)
            volume = ccd_weights(len(z_points), d, f0)
            cutoff = None
        else:
            walks = []
            for j in range(d):
                for sign in (1.0, -1.0):
                    walks.append(
                        (theta_mode, sign * dz * coordinates.scale[:, j], f_mode, diff_logdens, 40)
                    )
            walked = _map(axis_task, proxy, walks, executor, "grid axes", shipment)
            upper = [len(walked[2 * j]) for j in range(d)]
            lower = [-len(walked[2 * j + 1]) for j in range(d)]
            z_points, shape = grid_box(lower, upper, dz)
            volume = np.full(len(z_points), dz**d)
            cutoff = diff_logdens
            grid_state = (lower, upper)
        theta_points = coordinates.theta(z_points)
        order = _nearest_neighbour_order(z_points)
        items = [dict(base_item, theta=theta_points[i], cutoff=cutoff) for i in order]
        _log(progress, stream, f"{integration}: {len(items)} point(s) in {d}-dimensional θ")
        results = [None] * len(items)
        for i, out in zip(order, _map(point_task, proxy, items, executor, "points", shipment)):
            results[i] = out
        timings["points"] = time.perf_counter() - start
        point_timings = {}
        for r in results:
            for part, seconds in r.get("timings", {}).items():
                point_timings[part] = point_timings.get(part, 0.0) + seconds
        _log(progress, stream, f"points done ({timings['points']:.1f} s)")

    # -- 5. weights, mlik, θ marginals --------------------------------------------------
    start = time.perf_counter()
    values = np.array([r["value"] for r in results])
    failed = [r for r in results if r["error"] is not None]
    if failed:
        notes.append(
            f"{len(failed)} point(s) failed and got weight 0 (first: {failed[0]['error']})"
        )
    full = np.array([r["full"] for r in results])
    center = int(np.argmin(np.sum(z_points**2, axis=1)))
    if not full[center]:
        raise ConvergenceError(
            f"the Laplace approximation failed at the mode of theta: {results[center]['error']}"
        )
    used = np.flatnonzero(full)
    log_terms = -(values[used] - f_mode) + np.log(volume[used])
    log_mlik = float(-f_mode + logsumexp(log_terms) + coordinates.log_jacobian)
    weights = np.exp(log_terms - logsumexp(log_terms))
    if integration == "eb":
        log_mlik = float(-f_mode + 0.5 * d * math.log(2 * math.pi) + coordinates.log_jacobian)
    moments = None
    if integration == "grid":
        lower, upper = grid_state
        theta_marginals, moments = grid_theta_marginals(
            coordinates, lower, upper, dz, values, f_mode
        )
    else:
        sigma_minus = np.ones(d)
        sigma_plus = np.ones(d)
        if integration == "ccd":
            radius = f0 * math.sqrt(d)
            for j in range(d):
                for sign, target in ((1, sigma_plus), (-1, sigma_minus)):
                    index = 1 + j if sign > 0 else 1 + d + j
                    drop = values[index] - f_mode
                    if np.isfinite(drop) and drop > 0:
                        target[j] = radius / math.sqrt(2.0 * drop)
                    else:
                        notes.append(
                            f"the log-density does not drop at CCD star point {index}: "
                            "Gaussian scale 1 used on that side"
                        )
        theta_marginals = ccd_theta_marginals(coordinates, sigma_minus, sigma_plus)
    maps = natural_maps(model, theta_mode)
    timings["hyperparameter marginals"] = time.perf_counter() - start

    # -- latent mixtures -------------------------------------------------------------------
    start = time.perf_counter()
    kept = [results[i] for i in used]
    means = np.stack([r["mode"] + r["shift"] for r in kept])
    sds = np.sqrt(np.maximum(np.stack([r["variance"] for r in kept]), 0.0))
    kappa3 = np.stack([r["kappa3"] for r in kept]) if latent == "simplified_laplace" else None
    eta_means = np.stack([r["eta"] + r["eta_shift"] for r in kept])
    eta_sds = np.sqrt(np.maximum(np.stack([r["eta_var"] for r in kept]), 0.0))
    shifts = np.stack([r["shift"] for r in kept])
    timings["latent marginals"] = time.perf_counter() - start

    start = time.perf_counter()
    crit = {}
    if criteria:
        crit = combine_criteria(
            model.likelihood,
            kept,
            weights,
            weights @ eta_means,
            theta_mode[model.n_theta_prior :],
            set(compute) | ({"cpo"} if "pit" in compute else set()),
        )
        if crit.get("pit", 1) is None and ("cpo" in compute or "pit" in compute):
            notes.append(
                f"no PIT: no distribution function for {type(model.likelihood).__name__} here"
            )
    timings["criteria"] = time.perf_counter() - start
    fixed_names = getattr(model, "fixed_names", None)
    if fixed_names is None or len(fixed_names) != model.n_fixed:
        fixed_names = [f"beta[{j}]" for j in range(model.n_fixed)]
    result = InlaResult(
        _model=proxy,
        _rng=rng,
        _theta_marginals=theta_marginals,
        _theta_moments=moments,
        _natural_maps=maps,
        _means=means,
        _sds=sds,
        _kappa3=kappa3,
        _eta_means=eta_means,
        _eta_sds=eta_sds,
        _shifts=shifts,
        model=model,
        theta_names=tuple(model.theta_names),
        natural_names=tuple(name for name, _g in maps),
        fixed_names=tuple(fixed_names),
        n_latent=model.n_latent,
        n_fixed=model.n_fixed,
        n_total=model.n_total,
        integration=integration,
        latent_strategy=latent,
        theta_mode=theta_mode,
        theta_covariance=coordinates.covariance,
        hessian=hessian,
        coordinates=coordinates,
        fit=fitted,
        points=theta_points[used],
        weights=weights,
        log_density=-(values[used] - f_mode),
        log_marginal_likelihood=log_mlik,
        criteria=crit,
        dic=crit["dic"]["dic"] if "dic" in crit else None,
        waic=crit["waic"]["waic"] if "waic" in crit else None,
        cpo=crit.get("cpo"),
        pit=crit.get("pit"),
        defaults_applied=defaults_applied,
        timings=timings,
        point_timings=point_timings,
        notes=notes,
        n_evaluated=len(results),
    )
    if progress:
        print(result.summary(), file=stream, flush=True)
    return result
