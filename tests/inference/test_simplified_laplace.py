"""Simplified Laplace latent marginals against a long MCMC written here, and the
GaussianMarkovRandomFields.jl IID Poisson tutorial example.

MCMC: at θ fixed at the mode (``integration="eb"``, so both sides target π(x, β | θ*, y)),
an independence Metropolis–Hastings chain on (u, β), x = B u with B an orthonormal basis of
the sum-to-zero constraint's null space, proposing from a widened Gaussian at the mode found
by a dense Newton iteration written here.
"""

import numpy as np
import pytest
from scipy.special import gammaln

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.priors import NormalPrior, PCPrecision
from tests._references import poisson_mode

N = 40


def _poisson_rw1():
    rng = np.random.default_rng(7)
    t = np.linspace(0.0, 1.0, N)
    counts = rng.poisson(np.exp(-0.7 + 0.8 * np.sin(2 * np.pi * t)))
    prior = models.RW1(N, prior=PCPrecision(1.0, 0.01))
    return counts, gm.LatentGaussianModel(prior, likelihoods.Poisson(counts), X=np.ones((N, 1)))


def _mcmc_means(counts, Q, draws=200_000, seed=11):
    """Posterior means of (x, β) given θ by independence MH (dense linear algebra only)."""
    ones = np.ones((N, 1)) / np.sqrt(N)
    B = np.linalg.svd(np.eye(N) - ones @ ones.T)[0][:, : N - 1]  # orthonormal, ⊥ 1
    P = np.zeros((N, N))  # precision of w = (u, β)
    P[: N - 1, : N - 1] = B.T @ Q @ B
    P[N - 1, N - 1] = 1e-3
    M = np.hstack([B, np.ones((N, 1))])  # η = M w

    def log_target(w):
        eta = w @ M.T
        quad = np.einsum("...i,ij,...j->...", w, P, w)
        return np.sum(counts * eta - np.exp(eta) - gammaln(counts + 1), axis=-1) - 0.5 * quad

    w, hess = poisson_mode(M, counts, P, 1e-12)
    cov = 1.2 * np.linalg.inv(hess)
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(seed)
    proposals = w + rng.standard_normal((draws, N)) @ chol.T
    inv = np.linalg.inv(cov)
    d = proposals - w
    log_q = -0.5 * np.einsum("ij,jk,ik->i", d, inv, d)
    log_ratio = log_target(proposals) - log_q
    accept_u = np.log(rng.uniform(size=draws))
    current = 0
    index = np.empty(draws, dtype=np.int64)
    accepted = 0
    for k in range(draws):
        if accept_u[k] < log_ratio[k] - log_ratio[current]:
            current = k
            accepted += 1
        index[k] = current
    assert accepted / draws > 0.25  # a well-mixing chain
    chain = proposals[index[1000:]]
    x = chain[:, : N - 1] @ B.T
    return np.concatenate([x.mean(axis=0), [chain[:, -1].mean()]]), np.concatenate(
        [x.std(axis=0), [chain[:, -1].std()]]
    )


@pytest.mark.slow
def test_simplified_laplace_closer_to_mcmc_than_gaussian():
    counts, model = _poisson_rw1()
    gaussian = gm.inla(model, integration="eb", latent="gaussian", progress=False, compute=())
    simplified = gm.inla(model, integration="eb", latent="auto", progress=False, compute=())
    assert simplified.latent_strategy == "simplified_laplace"
    theta = gaussian.theta_mode
    Q = model.prior.precision(theta).toarray()
    mean, sd = _mcmc_means(counts, Q)
    g = np.concatenate([gaussian.latent_mean, gaussian.fixed["mean"].to_numpy()])
    s = np.concatenate([simplified.latent_mean, simplified.fixed["mean"].to_numpy()])
    error_gaussian = np.abs(g - mean) / sd
    error_simplified = np.abs(s - mean) / sd
    # the Gaussian marginals are centred at the mode; the correction moves them to the mean
    assert np.mean(error_simplified) < 0.5 * np.mean(error_gaussian)
    assert np.max(error_simplified) < np.max(error_gaussian)
    # quantiles of the skewed marginals: finite, ordered
    q = simplified.latent_quantiles([0.025, 0.5, 0.975])
    assert np.all(np.isfinite(q)) and np.all(q[0] < q[1]) and np.all(q[1] < q[2])


def test_gmrf_jl_iid_poisson_example_covers_the_truth():
    # GaussianMarkovRandomFields.jl tutorial: x_i ~ N(μ, 1/τ) iid, y_i ~ Poisson(exp(x_i)),
    # n = 50, τ = 4, μ = 5
    rng = np.random.default_rng(2024)
    n, tau, mu = 50, 4.0, 5.0
    x = mu + rng.standard_normal(n) / np.sqrt(tau)
    y = rng.poisson(np.exp(x))
    prior = models.IID(
        n, mean_param=True, prior={"log_tau": PCPrecision(1.0, 0.01), "mu": NormalPrior(0, 10)}
    )
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y))
    res = gm.inla(model, progress=False)
    assert res.integration == "grid" and res.latent_strategy == "simplified_laplace"
    table = res.hyperparameters
    assert list(table.index) == ["tau", "mu"]
    for name, truth in (("tau", tau), ("mu", mu)):
        assert table.loc[name, "q0.025"] < truth < table.loc[name, "q0.975"]
    # latent 95% intervals cover most of the true x_i
    q = res.latent_quantiles([0.025, 0.975])
    coverage = np.mean((q[0] < x) & (x < q[1]))
    assert coverage > 0.85
    assert np.all(np.isfinite(res.cpo)) and np.all((res.pit >= 0) & (res.pit <= 1))
