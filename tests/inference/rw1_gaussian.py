"""The RW1 + intercept + Gaussian test model of the inference tests, and its exact posterior.

y = x + β + ε, x an RW1 (scaled, sum-to-zero) of n = 60 with precision τ, β ~ N(0, 1000),
ε ~ N(0, 1/τ_n), PC priors P(σ > 1) = 0.01 on both precisions. In the eigenbasis U of the
RW1 structure R (u₀ ∝ 1 spans its null space) the marginal covariance of y is diagonal:
c_j = 1/(τ λ_j) + 1/τ_n (j ≥ 1), c₀ = 1000 n + 1/τ_n, and given θ every coordinate's
posterior is a scalar Gaussian: log p(y | θ) and the posterior of (x, β) are closed forms
(dense linear algebra only, nothing from the library but the structure matrix R).
"""

import numpy as np

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.priors import PCPrecision

N = 60
RATE = -np.log(0.01)  # PC prior rate with u = 1, alpha = 0.01


def data():
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 1.0, N)
    return 1.0 + np.sin(2 * np.pi * t) + 0.5 * rng.standard_normal(N)


def model(with_priors=True):
    y = data()
    if with_priors:
        prior = models.RW1(N, prior=PCPrecision(1.0, 0.01))
        lik = likelihoods.Gaussian(y, prior=PCPrecision(1.0, 0.01))
    else:
        prior = models.RW1(N)
        lik = likelihoods.Gaussian(y)
    return gm.LatentGaussianModel(prior, lik, X=np.ones((N, 1)))


def log_pc(theta):
    """log density of the PC prior on a log precision, P(σ > 1) = 0.01."""
    return np.log(RATE / 2) - theta / 2 - RATE * np.exp(-theta / 2)


def exact_posterior(log_tau, log_noise):
    """At each θ = (log τ, log τ_n) (arrays of equal length): the log joint
    log p(y | θ) + log π(θ), and the Gaussian posterior of (x, β) given θ.

    Returns
    -------
    dict
        ``log_joint`` (G,), ``x_mean`` (G, n), ``x_var`` (G, n), ``beta_mean`` (G,),
        ``beta_var`` (G,), ``coord_var`` (G, n) posterior variances of the U-coordinates
        of x (0 for u₀), ``U`` (n, n).
    """
    y = data()
    R = models.RW1(N).precision(np.zeros(1)).toarray()
    lam, U = np.linalg.eigh(R)
    yt = U.T @ y
    tau = np.exp(np.asarray(log_tau, float))[:, None]
    tau_n = np.exp(np.asarray(log_noise, float))[:, None]
    c = np.empty((tau.size, N))
    c[:, 1:] = 1.0 / (tau * lam[None, 1:]) + 1.0 / tau_n
    c[:, :1] = 1000.0 * N + 1.0 / tau_n
    loglik = -0.5 * np.sum(np.log(2 * np.pi * c) + yt**2 / c, axis=1)
    log_joint = loglik + log_pc(np.asarray(log_tau)) + log_pc(np.asarray(log_noise))
    precision = np.empty_like(c)
    precision[:, 1:] = tau * lam[None, 1:] + tau_n
    precision[:, :1] = 1.0 / (1000.0 * N) + tau_n
    mean_t = tau_n * yt / precision
    var_t = 1.0 / precision
    beta_mean = mean_t[:, 0] * U[0, 0]  # β = b u₀ᵢ: the null-space coordinate is β's
    beta_var = var_t[:, 0] * U[0, 0] ** 2
    mean_t[:, 0] = 0.0
    var_t[:, 0] = 0.0
    return dict(
        log_joint=log_joint,
        x_mean=mean_t @ U.T,
        x_var=var_t @ (U**2).T,
        beta_mean=beta_mean,
        beta_var=beta_var,
        coord_var=var_t,
        U=U,
    )
