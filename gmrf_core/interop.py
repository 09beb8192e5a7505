"""Export posterior draws to ArviZ (``arviz.InferenceData``).

:func:`to_inference_data` turns an INLA result (θ integrated out) or a fit /
Laplace approximation (θ fixed at θ̂, empirical Bayes) into an ``InferenceData`` with

- ``posterior``: the hyperparameters on their natural scale (one variable per
  ``to_natural`` key, e.g. ``NAME.tau``, ``NAME.phi``), ``beta`` (dimension
  ``fixed_effect``, coordinates the fixed-effect names) and one variable per latent
  block, named after the formula's term (dimension ``<term>_level``, coordinates
  the term's levels; BYM2 also ``<term>.u``, its structured part); models not built
  by :func:`gmrf_core.formula` give one variable ``x`` instead;
- ``log_likelihood``: log p(y_i | η_i, θ) of every *observed* y_i for every draw
  (dimension ``obs``, coordinates the rows of the data), so that ``az.loo`` and
  ``az.waic`` work;
- ``observed_data``: the observed responses.

The draws are independent (not a Markov chain); they are split into ``chains``
equal chains only because ArviZ's layout asks for a chain dimension.
"""

import warnings

import numpy as np

from .errors import InputError
from .optimize import natural_scale

__all__ = ["to_inference_data", "posterior_draws"]


def _arviz():
    try:
        with warnings.catch_warnings():
            # arviz announces its refactor with a FutureWarning at import time
            warnings.simplefilter("ignore", FutureWarning)
            import arviz
    except ImportError as exc:  # pragma: no cover - optional extra
        raise InputError("to_inference_data needs arviz: pip install 'gmrf_core[frame]'.") from exc
    return arviz


def _model_of(result, model):
    if model is None:
        model = getattr(result, "model", None) or getattr(result, "_model", None)
    if model is None or not hasattr(model, "A_full"):
        raise InputError(
            f"to_inference_data: pass model= (the LatentGaussianModel this "
            f"{type(result).__name__} was computed for)."
        )
    return model


def posterior_draws(result, model=None, draws=1000, rng=None):
    """Joint draws (θ, z) from an INLA result, a FitResult or a LaplaceApproximation.

    Parameters
    ----------
    result : InlaResult, FitResult or LaplaceApproximation
    model : LatentGaussianModel, optional
        Required unless the result carries it (INLA results do).
    draws : int
    rng : None, int or numpy.random.Generator

    Returns
    -------
    theta : numpy.ndarray, shape (draws, d)
        Internal scale; every row θ̂ for a fit or Laplace approximation.
    z : numpy.ndarray, shape (draws, n_total)
        Draws of (x, β), the constraints honoured.
    method : str
        ``"inla"`` or ``"empirical_bayes"``.
    """
    model = _model_of(result, model)
    draws = int(draws)
    if draws < 1:
        raise InputError(f"draws must be a positive integer; got {draws}.")
    if hasattr(result, "sample") and hasattr(result, "latent_mean"):
        sample = result.sample(draws, rng=rng)
        theta = np.asarray(sample["theta"], float).reshape(draws, -1)
        z = np.hstack([np.asarray(sample["latent"], float), np.asarray(sample["fixed"], float)])
        return theta, z.reshape(draws, model.n_total), "inla"
    approximation = result if hasattr(result, "sample") else getattr(result, "approximation", None)
    if approximation is None:
        theta_hat = getattr(result, "theta", None)
        if theta_hat is None:
            raise InputError(
                f"to_inference_data: cannot draw from a {type(result).__name__}; pass an INLA "
                "result, a FitResult or a LaplaceApproximation."
            )
        approximation = model.laplace(theta_hat)
    z = np.asarray(approximation.sample(size=draws, rng=rng), float).reshape(draws, model.n_total)
    theta = np.tile(np.asarray(approximation.theta, float), (draws, 1))
    return theta, z, "empirical_bayes"


def _label(value):
    if isinstance(value, tuple):
        return "|".join(str(v) for v in value)
    return value


def _coordinate(levels):
    values = [_label(v) for v in list(levels)]
    array = np.asarray(values)
    return array if array.dtype.kind in "iufU" else array.astype(str)


def to_inference_data(result, model=None, draws=1000, chains=4, rng=None):
    """An ``arviz.InferenceData`` of posterior draws (see the module docstring).

    Parameters
    ----------
    result : InlaResult, FitResult or LaplaceApproximation
    model : LatentGaussianModel, optional
        Required unless the result carries it (INLA results do).
    draws : int
        Total number of draws (default 1000), split over ``chains``.
    chains : int
        Number of chains to lay the independent draws out in (default 4).
    rng : None, int or numpy.random.Generator

    Returns
    -------
    arviz.InferenceData
        Groups ``posterior``, ``log_likelihood``, ``observed_data``; the attribute
        ``inference`` (of the data and of the posterior group) is ``"inla"`` or
        ``"empirical_bayes"`` (θ fixed at θ̂).

    Raises
    ------
    InputError
        arviz missing, no model, ``draws`` not a multiple of ``chains``.
    """
    az = _arviz()
    model = _model_of(result, model)
    chains = int(chains)
    if chains < 1 or int(draws) % chains:
        raise InputError(f"draws ({draws}) must be a positive multiple of chains ({chains}).")
    theta, z, method = posterior_draws(result, model, draws=draws, rng=rng)
    per_chain = theta.shape[0] // chains

    def shaped(array):
        array = np.asarray(array, float)
        return array.reshape((chains, per_chain) + array.shape[1:])

    posterior, coords, dims = {}, {}, {}
    # hyperparameters on the natural scale, evaluated once per distinct θ
    unique, inverse = np.unique(theta, axis=0, return_inverse=True)
    natural = [natural_scale(model, row) for row in unique]
    for key in natural[0] if natural else ():
        values = np.array([float(entry[key]) for entry in natural])[np.ravel(inverse)]
        posterior[key] = shaped(values)
    terms = getattr(model, "terms", None)
    if terms is not None and hasattr(terms, "terms"):
        fixed_names = list(terms.fixed_names)
        fixed_positions = np.asarray(terms.fixed_positions)
        for name, term in terms.terms.items():
            dim = f"{name}_level"
            coords[dim] = _coordinate(term.levels)
            posterior[name] = shaped(z[:, term.positions])
            dims[name] = [dim]
            for part, positions in term.parts.items():
                key = f"{name}.{part}"
                posterior[key] = shaped(z[:, positions])
                dims[key] = [dim]
    else:
        n = model.n_latent
        fixed_names = list(getattr(model, "fixed_names", None) or [])
        if len(fixed_names) != model.n_fixed:
            fixed_names = [f"beta[{j}]" for j in range(model.n_fixed)]
        fixed_positions = n + np.arange(model.n_fixed)
        coords["x_dim"] = np.arange(n)
        posterior["x"] = shaped(z[:, :n])
        dims["x"] = ["x_dim"]
    if len(fixed_names):
        coords["fixed_effect"] = np.asarray(fixed_names, dtype=str)
        posterior["beta"] = shaped(z[:, fixed_positions])
        dims["beta"] = ["fixed_effect"]
    # pointwise log-likelihood of the observed responses
    likelihood = model.likelihood
    observed = np.asarray(likelihood.observed, bool)
    theta_lik = theta[:, model.n_theta_prior :]
    eta = np.asarray(model.A_full @ z.T).T + model.offset  # (draws, m), missing rows included
    log_lik = np.empty((theta.shape[0], int(observed.sum())))
    for i in range(theta.shape[0]):
        log_lik[i] = likelihood.pointwise_log_density(eta[i], theta_lik[i])[observed]
    index = getattr(terms, "index", None) if terms is not None else None
    rows = np.flatnonzero(observed)
    coords["obs"] = _coordinate(index[rows]) if index is not None else rows
    response = getattr(terms, "response", "y") if terms is not None else "y"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        data = az.from_dict(
            posterior=posterior,
            log_likelihood={response: shaped(log_lik)},
            observed_data={response: np.asarray(likelihood.y, float)[observed]},
            coords=coords,
            dims={**dims, response: ["obs"]},
            attrs={"inference": method, "library": "gmrf_core"},
        )
    for group in ("posterior", "log_likelihood"):
        data[group].attrs["inference"] = method
    return data
