"""Many independent fits: ``gm.fit_many``, ``gm.inla_many`` and ``gm.cross_validate``.

Each fit is one task of :func:`gmrf_core.parallel.map_model`, so the same call runs serially,
on a ``concurrent.futures`` executor or on a Dask cluster (``executor=``), and the results come
back in the order of the inputs.
"""

import copy
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from .errors import InputError
from .parallel import is_dask_client, map_model

__all__ = ["fit_many", "inla_many", "cross_validate", "CrossValidationResult"]


def _keep_approximation(executor, approximation):
    # a LaplaceApproximation holds its model and factor: shipping it back from a worker costs
    # as much as the model itself, so by default only a serial run keeps it
    return executor is None if approximation is None else bool(approximation)


def _strip(result, keep):
    if not keep and getattr(result, "approximation", None) is not None:
        result = copy.copy(result)
        result.approximation = None
    return result


def _fit_task(options, model):
    from .optimize import fit

    kwargs, keep = options
    return _strip(fit(model, progress=False, **kwargs), keep)


def fit_many(
    models,
    executor=None,
    progress=True,
    *,
    approximation=None,
    threads_per_worker=None,
    stream=None,
    stats=None,
    **fit_kwargs,
):
    """:func:`gmrf_core.fit` on many independent models, serially or on workers.

    Parameters
    ----------
    models : iterable of LatentGaussianModel
        Independent models (data sets, regions, species, simulation replicates); each goes
        to one worker, once.
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        See :func:`gmrf_core.parallel.map_model`.
    progress : bool or callable
        Report each fit as it finishes (``"fit k/N done"``); the fits themselves are quiet.
    approximation : bool, optional
        Keep ``FitResult.approximation`` (the Laplace approximation at θ̂, which holds the
        model and its factor). Default: kept for a serial run, dropped (None) for an
        executor, where sending it back would cost as much as sending the model.
    threads_per_worker, stream, stats
        See :func:`gmrf_core.parallel.map_model`.
    **fit_kwargs
        Passed to :func:`gmrf_core.fit` (``theta0``, ``bounds``, ``maxiter``, ``gtol``,
        ``std_err``); the fits run quietly.

    Returns
    -------
    list of FitResult
        In the order of ``models``.

    Raises
    ------
    TaskError
        A fit failed twice; names which (index) and carries the original error.
    """
    models = list(models)
    keep = _keep_approximation(executor, approximation)
    return map_model(
        _fit_task,
        (fit_kwargs, keep),
        models,
        executor=executor,
        progress=progress,
        label="fit",
        threads_per_worker=threads_per_worker,
        stream=stream,
        stats=stats,
        scatter_items=is_dask_client(executor),
    )


def _inla_task(options, model):
    from .inference import inla

    return inla(model, progress=False, **options)


def inla_many(
    models,
    executor=None,
    progress=True,
    *,
    threads_per_worker=None,
    stream=None,
    stats=None,
    **inla_kwargs,
):
    """:func:`gmrf_core.inla` on many independent models, one model per task.

    Each run is serial inside its worker (the parallelism is across models); use
    ``gm.inla(model, executor=...)`` to spread one run's θ-level work instead.

    Parameters
    ----------
    models : iterable of LatentGaussianModel
    executor : None, concurrent.futures.Executor or dask.distributed.Client
        See :func:`gmrf_core.parallel.map_model`.
    progress : bool or callable
        Report each run as it finishes (``"inla k/N done"``); the runs themselves are quiet.
    threads_per_worker, stream, stats
        See :func:`gmrf_core.parallel.map_model`.
    **inla_kwargs
        Passed to :func:`gmrf_core.inla` (``integration``, ``latent``, ``compute``, ...).

    Returns
    -------
    list
        The results of :func:`gmrf_core.inla`, in the order of ``models``.

    Raises
    ------
    TaskError
        A run failed twice.
    """
    return map_model(
        _inla_task,
        inla_kwargs,
        list(models),
        executor=executor,
        progress=progress,
        label="inla",
        threads_per_worker=threads_per_worker,
        stream=stream,
        stats=stats,
        scatter_items=is_dask_client(executor),
    )


# -- cross-validation ------------------------------------------------------------------------
@dataclass
class CrossValidationResult:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    log_predictive_density : float
        Σ_i log p(y_i | y_{−fold(i)}) over every held-out observation (larger is better).
    pointwise : numpy.ndarray, shape (n_obs,)
        The per-observation terms; NaN for observations missing in the data (never held out).
    fold : numpy.ndarray of int, shape (n_obs,)
        The fold each observation was held out in; −1 for missing ones.
    fits : list of FitResult
        The fit on each fold's training data (``approximation`` dropped).
    predictive_mean, predictive_sd : numpy.ndarray, shape (n_obs,)
        Mean and sd of the Laplace-approximate predictive distribution of η_i used for
        observation i (from the fit that held it out); NaN for missing observations.
    """

    log_predictive_density: float
    pointwise: np.ndarray
    fold: np.ndarray
    fits: list = field(repr=False)
    predictive_mean: np.ndarray = field(repr=False)
    predictive_sd: np.ndarray = field(repr=False)

    @property
    def folds(self):
        return len(self.fits)


def _fold_model(model, held):
    """The model with the observations ``held`` (boolean mask) treated as missing."""
    from .laplace import LatentGaussianModel

    likelihood = copy.copy(model.likelihood)
    # the likelihood masks every quantity with .observed; y shows the held-out entries as NaN
    likelihood.observed = np.asarray(model.likelihood.observed, bool) & ~held
    likelihood.y = np.where(held, np.nan, model.likelihood.y)
    return LatentGaussianModel(
        model.prior,
        likelihood,
        A=model.A,
        X=model.X if model.n_fixed else None,
        offset=model.offset,
        fixed_precision=model.fixed_precision,
        # Ã's pattern covers missing rows too, so H's pattern and its ordering are unchanged
        ordering=model.symbolic.perm,
        newton_tol=model.newton_tol,
        max_newton=model.max_newton,
        threads=model.symbolic.threads,
    )


def held_out_log_density(likelihood, y_index, eta_mean, eta_sd, theta_lik, nodes=32):
    """log ∫ p(y_i | η, θ) N(η; m_i, s_i²) dη for the observations ``y_index``.

    Adaptive Gauss–Hermite quadrature (Liu & Pierce 1994, Biometrika 81(3)): the nodes are
    centred at the mode η̂ of g(η) = log p(y_i | η, θ) − (η − m_i)² / (2 s_i²) and scaled by
    ŝ = (−g''(η̂))^{−1/2}, so a likelihood much sharper than the predictive (a precise
    Gaussian observation) is integrated as accurately as a flat one:

        ∫ p(y_i | η) N(η; m_i, s_i²) dη ≈ ŝ / (√π s_i) Σ_j w_j exp(g(η̂ + √2 ŝ t_j) + t_j²)

    with (t_j, w_j) the Gauss–Hermite rule of ``nodes`` points.

    Parameters
    ----------
    likelihood : Likelihood
        With the data of every observation in ``y_index`` observed.
    y_index : array of int
    eta_mean, eta_sd : arrays, shape (n_obs,)
        Predictive mean and sd (> 0) of η for every observation (only ``y_index`` is used).
    theta_lik : array
        The likelihood's hyperparameters.
    nodes : int

    Returns
    -------
    numpy.ndarray, shape (len(y_index),)
    """
    y_index = np.asarray(y_index, dtype=np.int64)
    base = np.asarray(eta_mean, dtype=float).copy()
    m = base[y_index]
    s = np.maximum(np.asarray(eta_sd, dtype=float)[y_index], 1e-300)
    precision = 1.0 / s**2

    def derivatives(values):
        eta = base.copy()
        eta[y_index] = values
        d1, d2, _d3 = likelihood.eta_derivatives(eta, theta_lik)
        return d1[y_index], d2[y_index]

    # Newton for the mode of g, from the predictive mean; the likelihoods are log-concave in
    # η, so −g'' ≥ 1/s² > 0 and the steps are well defined (clipped to a few sds for safety)
    mode = m.copy()
    for _ in range(50):
        d1, d2 = derivatives(mode)
        curvature = precision - d2
        curvature = np.where(curvature > 0, curvature, precision)
        step = (d1 - (mode - m) * precision) / curvature
        step = np.clip(step, -4.0 * s, 4.0 * s)
        mode = mode + step
        if np.all(np.abs(step) <= 1e-12 * (1.0 + np.abs(mode))):
            break
    _d1, d2 = derivatives(mode)
    curvature = precision - d2
    scale = 1.0 / np.sqrt(np.where(curvature > 0, curvature, precision))
    t, w = np.polynomial.hermite.hermgauss(int(nodes))
    terms = np.empty((t.size, y_index.size))
    for j in range(t.size):
        eta = base.copy()
        values = mode + np.sqrt(2.0) * scale * t[j]
        eta[y_index] = values
        log_lik = likelihood.pointwise_log_density(eta, theta_lik)[y_index]
        terms[j] = log_lik - 0.5 * (values - m) ** 2 * precision + t[j] ** 2
    log_integral = logsumexp(terms + np.log(w)[:, None], axis=0)
    return log_integral + np.log(scale) - np.log(s) - 0.5 * np.log(np.pi)


def _score_fold(fold_model, likelihood, n_theta_prior, held_index, fit_kwargs, nodes):
    from .optimize import fit

    result = fit(fold_model, progress=False, **fit_kwargs)
    approximation = getattr(result, "approximation", None)
    if approximation is None:
        approximation = fold_model.laplace(result.theta)
    eta_mean = np.asarray(approximation.linear_predictor, dtype=float)
    eta_sd = np.sqrt(np.maximum(approximation.linear_predictor_variance(), 0.0))
    theta_lik = result.theta[n_theta_prior:]
    lpd = held_out_log_density(likelihood, held_index, eta_mean, eta_sd, theta_lik, nodes)
    return _strip(result, False), lpd, eta_mean[held_index], eta_sd[held_index]


def _fold_task(model, item):
    held_index, fit_kwargs, nodes = item
    held = np.zeros(model.n_obs, dtype=bool)
    held[held_index] = True
    fold_model = _fold_model(model, held)
    return _score_fold(
        fold_model, model.likelihood, model.n_theta_prior, held_index, fit_kwargs, nodes
    )


def _factory_fold_task(shared, item):
    factory, likelihood, n_theta_prior = shared
    held_index, fit_kwargs, nodes = item
    train = np.asarray(likelihood.observed, bool).copy()
    train[held_index] = False
    fold_model = factory(train)
    _check_model(fold_model, likelihood.n, "model_factory(train)")
    return _score_fold(fold_model, likelihood, n_theta_prior, held_index, fit_kwargs, nodes)


def _check_model(model, n_obs, what):
    for attr in ("likelihood", "n_obs", "prior", "symbolic", "n_theta_prior", "laplace"):
        if not hasattr(model, attr):
            raise InputError(f"{what} must be a LatentGaussianModel (missing .{attr}).")
    if n_obs is not None and model.n_obs != n_obs:
        raise InputError(
            f"{what} must keep every observation ({n_obs}, the held-out ones missing); "
            f"it has {model.n_obs}."
        )


def cross_validate(
    model,
    folds=5,
    *,
    rng=0,
    executor=None,
    progress=True,
    nodes=32,
    threads_per_worker=None,
    stream=None,
    stats=None,
    **fit_kwargs,
):
    """K-fold cross-validation of a model's observations: held-out log predictive density.

    The observed entries of y are split at random into ``folds`` folds. For each fold the
    model is refitted (:func:`gmrf_core.fit`) with that fold's observations missing (NaN
    in a copy of the likelihood; the latent structure is unchanged), and each held-out
    y_i is scored by its Laplace-approximate predictive density

        log p(y_i | y_train) ≈ log ∫ p(y_i | η_i, θ̂) N(η_i; η*_i, σ²_i) dη_i,

    with θ̂ the fold's empirical-Bayes estimate, η*_i and σ²_i the predictor's mean and
    variance under the Laplace approximation at θ̂ (available at missing rows), and the
    integral by adaptive Gauss–Hermite quadrature (``nodes`` points, see
    :func:`held_out_log_density`). θ's uncertainty is not
    integrated over (empirical Bayes), as in R-INLA's ``control.predictor`` with
    ``int.strategy = "eb"``.

    Parameters
    ----------
    model : LatentGaussianModel or callable
        The model on all data; it goes to each worker once, the folds are built there. Or a
        model factory ``model_factory(train)``: ``train`` None gives the model on all data,
        ``train`` a boolean mask over the observations gives the model with every observation
        where ``train`` is False missing (NaN), all observations kept as rows (e.g. a model
        built from a data frame; a module-level function or ``functools.partial``, since it
        is pickled for the workers).
    folds : int
        Number of folds K (2 ≤ K ≤ number of observed y).
    rng : int or numpy.random.Generator
        Seed of the fold assignment.
    executor, progress, threads_per_worker, stream, stats
        See :func:`gmrf_core.parallel.map_model` (one task per fold).
    nodes : int
        Gauss–Hermite nodes.
    **fit_kwargs
        Passed to :func:`gmrf_core.fit` for each fold (``theta0``, ``maxiter``, ...).

    Returns
    -------
    CrossValidationResult

    Raises
    ------
    InputError
        Bad ``folds`` or ``nodes``, or a model without the needed attributes.
    TaskError
        A fold's fit failed twice.
    """
    factory = None
    if callable(model) and not hasattr(model, "laplace"):
        factory = model
        model = factory(None)
        _check_model(model, None, "model_factory(None)")
    else:
        _check_model(model, None, "model")
    observed = np.flatnonzero(np.asarray(model.likelihood.observed, bool))
    if int(folds) != folds or not 2 <= folds <= observed.size:
        raise InputError(
            f"folds must be an integer between 2 and the {observed.size} observed values; "
            f"got {folds!r}."
        )
    if int(nodes) != nodes or nodes < 1:
        raise InputError(f"nodes must be a positive integer; got {nodes!r}.")
    generator = np.random.default_rng(rng)
    shuffled = generator.permutation(observed)
    parts = [np.sort(part) for part in np.array_split(shuffled, int(folds))]
    items = [(part, fit_kwargs, int(nodes)) for part in parts]
    if factory is None:
        task, shared = _fold_task, model
    else:
        task, shared = _factory_fold_task, (factory, model.likelihood, model.n_theta_prior)
    out = map_model(
        task,
        shared,
        items,
        executor=executor,
        progress=progress,
        label="fold",
        threads_per_worker=threads_per_worker,
        stream=stream,
        stats=stats,
    )
    m = model.n_obs
    pointwise = np.full(m, np.nan)
    mean = np.full(m, np.nan)
    sd = np.full(m, np.nan)
    fold = np.full(m, -1, dtype=int)
    fits = []
    for k, (part, (result, lpd, eta_mean, eta_sd)) in enumerate(zip(parts, out)):
        pointwise[part] = lpd
        mean[part] = eta_mean
        sd[part] = eta_sd
        fold[part] = k
        fits.append(result)
    return CrossValidationResult(
        log_predictive_density=float(np.nansum(pointwise)),
        pointwise=pointwise,
        fold=fold,
        fits=fits,
        predictive_mean=mean,
        predictive_sd=sd,
    )
