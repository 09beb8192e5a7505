"""Model criteria of :func:`gmrf_core.inla`: DIC, WAIC, CPO and PIT, as R-INLA defines them.

With the posterior π(η, θ | y) approximated by the mixture over the integration points
(weights w_k) of the Gaussian (or simplified-Laplace-shifted) marginals of η_i at θ_k, and
the expectations over η_i done by Gauss–Hermite quadrature at each point
(:mod:`gmrf_core.inference.points`):

* DIC (Spiegelhalter et al. 2002; R-INLA ``control.compute(dic = TRUE)``): with the
  deviance D = −2 Σ_i log p(y_i | η_i, θ), D̄ = E[D | y], D̂ = D at the posterior mean of η
  and the posterior mode of θ, p_D = D̄ − D̂ and DIC = D̄ + p_D.
* WAIC (Watanabe 2010; Gelman, Hwang & Vehtari 2014, as R-INLA): lppd = Σ_i log E[p(y_i |
  η_i, θ) | y], p_WAIC = Σ_i Var[log p(y_i | η_i, θ) | y], WAIC = −2 (lppd − p_WAIC).
* CPO (Pettit 1990; Held, Schrödle & Rue 2010, R-INLA's ``cpo``):
  CPO_i = p(y_i | y_−i) = 1 / E[1/p(y_i | η_i, θ) | y].
* PIT (Dawid 1984; Held et al. 2010): PIT_i = P(Y_i ≤ y_i | y_−i) =
  E[F(y_i | η_i, θ)/p(y_i | η_i, θ) | y] · CPO_i, with F the distribution function
  (P(Y ≤ y) for discrete data, without randomisation, as R-INLA).

Missing observations get NaN and are left out of the sums.
"""

import numpy as np
from scipy import stats
from scipy.special import expit, logsumexp

__all__ = ["log_cdf", "combine_criteria"]


def log_cdf(likelihood, eta, theta_lik):
    """log F(y_i | η_i, θ) for the library's likelihoods, None for other families."""
    name = type(likelihood).__name__
    y = np.where(likelihood.observed, likelihood.y, 0.0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if name == "Gaussian":
            scale = np.where(np.isnan(likelihood.scale), 1.0, likelihood.scale)
            precision = np.exp(theta_lik[0]) * scale
            return stats.norm.logcdf((y - eta) * np.sqrt(precision))
        if name == "Poisson":
            exposure = np.where(np.isnan(likelihood.exposure), 1.0, likelihood.exposure)
            return stats.poisson.logcdf(y, exposure * np.exp(eta))
        if name in ("Binomial", "Bernoulli"):
            trials = getattr(likelihood, "trials", None)
            trials = np.ones_like(y) if trials is None else np.where(np.isnan(trials), 0, trials)
            return stats.binom.logcdf(y, trials, expit(eta))
        if name == "NegativeBinomial":
            exposure = getattr(likelihood, "exposure", None)
            exposure = 1.0 if exposure is None else np.where(np.isnan(exposure), 1.0, exposure)
            size = np.exp(theta_lik[0])
            mean = exposure * np.exp(eta)
            return stats.nbinom.logcdf(y, size, size / (size + mean))
    return None


def _mix_log(log_weights, key, points):
    """log Σ_k w_k exp(points[k][key]) per observation (NaN stays NaN)."""
    stack = np.stack([p[key] for p in points])
    return logsumexp(log_weights[:, None] + stack, axis=0)


def combine_criteria(likelihood, points, weights, eta_mean, theta_mode_lik, compute):
    """DIC, WAIC, CPO and PIT from the per-point expectations (module docstring).

    Returns
    -------
    dict
        ``dic`` (dict: dic, p_d, mean_deviance, deviance_of_mean), ``waic`` (dict: waic,
        p_waic, lppd), ``cpo`` (array, NaN where missing), ``pit`` (array or None when
        the likelihood has no distribution function here), ``local`` (per-observation
        terms: cpo, lppd, p_waic, mean deviance).
    """
    observed = np.asarray(likelihood.observed, bool)
    log_w = np.log(np.asarray(weights, dtype=float))
    mean_logp = sum(w * p["mean_logp"] for w, p in zip(weights, points))
    mean_logp2 = sum(w * p["mean_logp2"] for w, p in zip(weights, points))
    out = {}
    if "dic" in compute:
        mean_deviance = -2.0 * float(np.nansum(mean_logp[observed]))
        at_mean = likelihood.pointwise_log_density(eta_mean, theta_mode_lik)
        deviance_of_mean = -2.0 * float(np.sum(at_mean[observed]))
        p_d = mean_deviance - deviance_of_mean
        out["dic"] = {
            "dic": mean_deviance + p_d,
            "p_d": p_d,
            "mean_deviance": mean_deviance,
            "deviance_of_mean": deviance_of_mean,
        }
    if "waic" in compute:
        lppd_i = _mix_log(log_w, "log_mean_p", points)
        p_waic_i = np.maximum(mean_logp2 - mean_logp**2, 0.0)
        lppd = float(np.sum(lppd_i[observed]))
        p_waic = float(np.sum(p_waic_i[observed]))
        out["waic"] = {"waic": -2.0 * (lppd - p_waic), "p_waic": p_waic, "lppd": lppd}
    if "cpo" in compute or "pit" in compute:
        log_inv = _mix_log(log_w, "log_mean_inv_p", points)
        cpo = np.where(observed, np.exp(-log_inv), np.nan)
        out["cpo"] = cpo
        if all(p.get("log_mean_f_over_p") is not None for p in points):
            log_f = _mix_log(log_w, "log_mean_f_over_p", points)
            out["pit"] = np.where(observed, np.minimum(np.exp(log_f - log_inv), 1.0), np.nan)
        else:
            out["pit"] = None
    return out
