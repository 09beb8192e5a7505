"""θ-level tasks of :func:`gmrf_core.inla`: module-level functions ``f(model, item)``.

Each runs independently (serially, or on a worker through
:func:`gmrf_core.parallel.map_model`, which ships the model once per worker):

* :func:`gradient_task` — the exact gradient of −log π̃(θ | y) at one θ (the 2·dim θ
  central differences of the Hessian at the mode);
* :func:`axis_task` — the walk of the grid along one z-axis until the log-density drop
  exceeds the cut-off;
* :func:`point_task` — everything needed from one integration point θ_k: the Laplace
  approximation (Newton warm-started from the previous point in that process, the
  points being visited in nearest-neighbour order), marginal variances of z = (x, β) by
  selected inversion, the predictor variances diag(Ã Σ_c Ãᵀ), the simplified-Laplace
  corrections and the per-observation expectations of the model criteria.

Simplified Laplace (Rue, Martino & Chopin 2009, §3.2.3). Expanding log π(z | θ, y) to third
order around the mode, log π ≈ −½ uᵀ H u + ⅙ Σ_i ℓ'''_i (ã_iᵀ u)³ (u = z − z*, ℓ'''_i the
third η-derivative of the log-likelihood at η*), the first-order moments are

* mean shift δ = ½ Σ_c Ãᵀ (ℓ''' ⊙ diag(Ã Σ_c Ãᵀ)) — Rue et al.'s γ_s^(1) + γ_s^(3)/2 summed
  over every observation at once: one solve with the factor, no per-variable work;
* third cumulant κ₃(z_s) = Σ_i ℓ'''_i Cov(z_s, η_i)³ (Rue et al.'s γ_s^(3) σ_s³), summed here
  over the observations that load on z_s (ã_is ≠ 0), whose covariances Cov(z_s, η_i) =
  Σ_k ã_ik Σ_c,ks come from selected-inverse entries (pairs inside a row of Ã lie on the
  factor's pattern). This is exact for the fixed effects and for A = I when the posterior
  correlations between distinct latent variables given θ vanish (e.g. IID effects); it
  omits the (cubed, hence small) correlations of z_s with observations of other variables.

The marginal of z_s at θ_k is then the skew-normal with mean z*_s + δ_s, variance
Σ_c,ss and third cumulant κ₃ (Rue et al. 2009 fit a skew-normal to the same expansion).

Criteria (per observation, under η_i ~ N(η*_i + (Ãδ)_i, v_i) at θ_k, by Gauss–Hermite
quadrature): log E[p(y_i | η_i, θ)], log E[1/p], E[log p], E[(log p)²] and
log E[F(y_i)/p] with F the likelihood's distribution function (for the PIT).
"""

import time

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from ..errors import GMRFError
from .criteria import log_cdf

__all__ = ["gradient_task", "axis_task", "point_task", "constrained_of", "objective_of"]


def objective_of(model, approximation, theta):
    """−log π̃(θ | y) + const at θ, from the approximation when it carries its objective."""
    value = getattr(approximation, "objective", None)
    if value is None or callable(value):
        return float(model.objective(theta))
    value = float(value)
    default = getattr(model, "default_log_prior", None)
    return value - default(theta) if default is not None else value


def constrained_of(model, approximation):
    """The ConstrainedFactor of the approximation (H with the prior's constraints)."""
    constrained = getattr(approximation, "constrained", None)
    if constrained is not None:
        return constrained
    from ..constrained import ConstrainedFactor

    constraints = getattr(model.prior, "constraints", None)
    if constraints is not None:
        A, e = constraints
        A = A.toarray() if hasattr(A, "toarray") else np.asarray(A, dtype=float)
        A = np.hstack([np.atleast_2d(A), np.zeros((np.atleast_2d(A).shape[0], model.n_fixed))])
        constraints = (A, np.atleast_1d(np.asarray(e, dtype=float)))
    return ConstrainedFactor(approximation.factor, constraints)


def gradient_task(model, theta):
    """Exact gradient of the model's objective (defaults included) at θ, from
    ``model.gradient``: its inner Newton runs to the strict tolerance (value_and_grad's
    looser chord target leaves a gradient error of ~1e-12 relative, which the Hessian's
    central differences would magnify by 1/step)."""
    return np.asarray(model.gradient(np.asarray(theta, dtype=float)), dtype=float)


def axis_task(model, item):
    """Walk from the mode along one z-direction in steps of dz.

    ``item`` = (theta_mode, step (the θ-increment of one dz step), f_mode, cutoff,
    max_steps). Returns the list of objective values at steps 1, 2, ... up to and
    including the first one whose drop exceeds the cut-off (or that fails: +inf).
    """
    theta_mode, step, f_mode, cutoff, max_steps = item
    values = []
    for k in range(1, max_steps + 1):
        theta = np.asarray(theta_mode, dtype=float) + k * np.asarray(step, dtype=float)
        try:
            value = float(model.objective(theta))
        except GMRFError:
            value = np.inf
        values.append(value)
        if not np.isfinite(value) or value - f_mode > cutoff:
            break
    return values


def _skewness_terms(model, constrained, d3, observed):
    """κ₃(z_s) = Σ_{i: ã_is ≠ 0} ℓ'''_i Cov(z_s, η_i)³ (see the module docstring)."""
    A = model.A_full.tocsr()
    A.sum_duplicates()
    counts = np.diff(A.indptr).astype(np.int64)
    counts[~observed] = 0
    kappa = np.zeros(model.n_total)
    if not counts.any():
        return kappa
    rows = np.repeat(np.arange(A.shape[0]), counts * counts)
    pair_ptr = np.zeros(A.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts * counts, out=pair_ptr[1:])
    within = np.arange(pair_ptr[-1]) - pair_ptr[rows]
    r = counts[rows]
    u, v = within // r, within % r
    start = A.indptr[rows]
    s_col, k_col = A.indices[start + u], A.indices[start + v]
    selinv = constrained.selected_inverse()
    sigma = selinv.values_at_positions(constrained.factor.symbolic.positions(s_col, k_col))
    if getattr(constrained, "U", None) is not None:
        sigma = sigma - np.einsum("ij,ij->i", constrained.U[s_col], constrained.V[k_col])
    # Cov(z_s, η_i) = Σ_k ã_ik Σ_sk for every (i, s) with s in row i's support
    contrib = A.data[start + v] * sigma
    pair_key = rows * model.n_total + s_col
    keys, inverse = np.unique(pair_key, return_inverse=True)
    cov = np.zeros(keys.size)
    np.add.at(cov, inverse, contrib)
    obs_of = keys // model.n_total
    var_of = keys % model.n_total
    np.add.at(kappa, var_of, d3[obs_of] * cov**3)
    return kappa


def _log_mean_exp(weights, values, work):
    """log Σ_j w_j exp(values[j]) per column (a matrix-vector product with the weights
    after removing each column's maximum; ``work`` is scratch of values' shape)."""
    top = np.max(values, axis=0)
    top[~np.isfinite(top)] = 0.0
    np.subtract(values, top, out=work)
    np.exp(work, out=work)
    with np.errstate(divide="ignore"):
        return np.log(weights @ work) + top


def _criteria_terms(model, eta_mean, eta_var, theta_lik, nodes, with_cdf=True):
    """Per-observation Gauss–Hermite expectations at one θ (see the module docstring);
    the distribution-function term (PIT) only ``with_cdf``."""
    lik = model.likelihood
    t, w = hermegauss(nodes)
    weights = w / np.sqrt(2.0 * np.pi)
    sd = np.sqrt(np.maximum(eta_var, 0.0))
    logp = np.empty((nodes, eta_mean.size))
    logf = None
    for j in range(nodes):
        eta = eta_mean + sd * t[j]
        logp[j] = lik.pointwise_log_density(eta, theta_lik)
        lf = log_cdf(lik, eta, theta_lik) if with_cdf else None
        if lf is not None:
            if logf is None:
                logf = np.empty((nodes, eta_mean.size))
            logf[j] = lf
    work = np.empty_like(logp)
    out = {
        "log_mean_p": _log_mean_exp(weights, logp, work),
        "mean_logp": weights @ logp,
        "mean_logp2": weights @ (logp * logp),
    }
    np.negative(logp, out=logp)  # from here on logp holds −log p
    out["log_mean_inv_p"] = _log_mean_exp(weights, logp, work)
    if logf is not None:
        logf += logp
        out["log_mean_f_over_p"] = _log_mean_exp(weights, logf, work)
    else:
        out["log_mean_f_over_p"] = None
    return out


class _Stopwatch:
    """Wall seconds of the successive stages of one task (``laps``: name -> seconds)."""

    def __init__(self):
        self.laps = {}
        self._last = time.perf_counter()

    def lap(self, name):
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


def point_task(model, item):
    """Everything one integration point contributes (see the module docstring).

    ``item`` is a dict: ``theta``; ``f_mode`` and ``cutoff`` (skip the expensive part
    when the drop exceeds the cut-off; cutoff None: never skip); ``latent``
    ("gaussian" or "simplified_laplace"); ``criteria`` (bool); ``pit`` (bool: the
    distribution-function term too); ``nodes`` (Gauss–Hermite). The returned dict
    carries ``timings``: wall seconds of its stages ("laplace", "variance", "predictor
    variance", "simplified laplace", "criteria").
    """
    theta = np.asarray(item["theta"], dtype=float)
    clock = _Stopwatch()
    out = {"theta": theta, "value": np.inf, "full": False, "error": None, "timings": clock.laps}
    try:
        approximation = model.laplace(theta)
        value = objective_of(model, approximation, theta)
    except GMRFError as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    clock.lap("laplace")
    out["value"] = value
    cutoff = item.get("cutoff")
    if cutoff is not None and value - item["f_mode"] > cutoff:
        return out
    constrained = constrained_of(model, approximation)
    mode = np.asarray(approximation.mode, dtype=float)
    variance = np.asarray(approximation.marginal_variance(), dtype=float)
    clock.lap("variance")
    eta = np.asarray(approximation.linear_predictor, dtype=float)
    eta_var = np.asarray(approximation.linear_predictor_variance(), dtype=float)
    clock.lap("predictor variance")
    theta_lik = theta[model.n_theta_prior :]
    observed = np.asarray(getattr(model.likelihood, "observed", np.ones(model.n_obs, bool)))
    shift = np.zeros(model.n_total)
    kappa3 = np.zeros(model.n_total)
    if item["latent"] == "simplified_laplace":
        _d1, _d2, d3 = model.likelihood.eta_derivatives(eta, theta_lik)
        d3 = np.where(observed, d3, 0.0)
        if np.any(d3 != 0.0):
            b = 0.5 * (model.structure.A_full_T @ (d3 * np.where(observed, eta_var, 0.0)))
            shift = np.asarray(constrained.solve(b), dtype=float)
            kappa3 = _skewness_terms(model, constrained, d3, observed)
    eta_shift = np.asarray(model.A_full @ shift, dtype=float)
    clock.lap("simplified laplace")
    out.update(
        full=True,
        mode=mode,
        variance=variance,
        shift=shift,
        kappa3=kappa3,
        eta=eta,
        eta_var=eta_var,
        eta_shift=eta_shift,
        newton_iterations=getattr(approximation, "newton_iterations", None),
    )
    if item.get("criteria"):
        terms = _criteria_terms(
            model, eta + eta_shift, eta_var, theta_lik, item["nodes"], item.get("pit", True)
        )
        for key, values in terms.items():
            if values is not None:
                values = np.where(observed, values, np.nan)
            out[key] = values
        clock.lap("criteria")
    return out
