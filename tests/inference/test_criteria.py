"""DIC, WAIC, CPO and PIT of gm.inla against closed forms on the exact RW1 + Gaussian posterior.

For y_i | η_i ~ N(η_i, 1/τ_n) and η_i | θ, y ~ N(m, v) (exact here), with r = y_i − η_i ~
N(μ, v), μ = y_i − m: E[log p] = ½ log(τ_n/2π) − ½ τ_n (μ² + v), E[(log p)²] from
E[r⁴] = μ⁴ + 6μ²v + 3v², E[p] = N(y_i; m, v + 1/τ_n), and with s = 1 − τ_n v > 0,
E[1/p] = √(2π/τ_n) exp(½ τ_n μ²/s)/√s and E[Φ(√τ_n r)/p] = E[1/p] Φ(√τ_n (μ/s)/√(1 + τ_n v/s)).
The mixture over θ uses a fine θ grid (the brute-force posterior), not the integration points.
"""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from tests.inference.rw1_gaussian import N, data, exact_posterior


@pytest.fixture(scope="module")
def reference(grid_result):
    a = np.linspace(-3.0, 6.0, 241)
    b = np.linspace(-0.5, 7.0, 241)
    A, B = np.meshgrid(a, b, indexing="ij")
    post = exact_posterior(A.ravel(), B.ravel())
    w = np.exp(post["log_joint"] - logsumexp(post["log_joint"]))
    y = data()
    m = post["x_mean"] + post["beta_mean"][:, None]
    # Var(η_i) = Var(x_i) + Var(β) (independent coordinates in the eigenbasis)
    v = post["x_var"] + post["beta_var"][:, None]
    tau = np.exp(B.ravel())[:, None]
    mu = y[None, :] - m
    log_p_mean = 0.5 * np.log(tau / (2 * np.pi)) - 0.5 * tau * (mu**2 + v)
    r2 = mu**2 + v
    r4 = mu**4 + 6 * mu**2 * v + 3 * v**2
    c0 = 0.5 * np.log(tau / (2 * np.pi))
    log_p_sq = c0**2 - c0 * tau * r2 + 0.25 * tau**2 * r4
    mean_p = norm.pdf(y[None, :], m, np.sqrt(v + 1.0 / tau))
    s = 1.0 - tau * v
    assert np.all(s > 0)
    inv_p = np.sqrt(2 * np.pi / tau) * np.exp(0.5 * tau * mu**2 / s) / np.sqrt(s)
    f_over_p = inv_p * norm.cdf(np.sqrt(tau) * (mu / s) / np.sqrt(1 + tau * v / s))
    E = lambda q: w @ q  # noqa: E731
    mean_logp = E(log_p_mean)
    p_waic = np.sum(E(log_p_sq) - mean_logp**2)
    lppd = np.sum(np.log(E(mean_p)))
    eta_mean = E(m)
    theta_lik = grid_result.theta_mode[1]
    tau_mode = np.exp(theta_lik)
    d_hat = -2 * np.sum(0.5 * np.log(tau_mode / (2 * np.pi)) - 0.5 * tau_mode * (y - eta_mean) ** 2)
    d_bar = -2 * np.sum(mean_logp)
    return dict(
        dic=2 * d_bar - d_hat,
        p_d=d_bar - d_hat,
        waic=-2 * (lppd - p_waic),
        p_waic=p_waic,
        cpo=1.0 / E(inv_p),
        pit=E(f_over_p) / E(inv_p),
    )


def test_criteria_equal_direct_computation(grid_result, reference):
    res = grid_result
    assert np.isfinite(res.dic) and np.isfinite(res.waic)
    assert abs(res.dic - reference["dic"]) < 2e-3 * abs(reference["dic"]) + 1e-2
    assert abs(res.criteria["dic"]["p_d"] - reference["p_d"]) < 1e-2
    assert abs(res.waic - reference["waic"]) < 2e-3 * abs(reference["waic"]) + 1e-2
    assert abs(res.criteria["waic"]["p_waic"] - reference["p_waic"]) < 1e-2
    assert res.cpo.shape == (N,) and np.all(np.isfinite(res.cpo))
    np.testing.assert_allclose(res.cpo, reference["cpo"], rtol=2e-3)
    np.testing.assert_allclose(res.pit, reference["pit"], atol=2e-3)
    assert np.all((res.pit > 0) & (res.pit < 1))


def test_missing_observations_get_nan_and_a_predictor():
    import gmrf_core as gm
    from gmrf_core import likelihoods, models
    from gmrf_core.priors import PCPrecision

    y = data().copy()
    y[[5, 30]] = np.nan
    model = gm.LatentGaussianModel(
        models.RW1(N, prior=PCPrecision(1.0, 0.01)),
        likelihoods.Gaussian(y, prior=PCPrecision(1.0, 0.01)),
        X=np.ones((N, 1)),
    )
    res = gm.inla(model, integration="ccd", progress=False, compute=("dic", "waic", "cpo"))
    assert np.isnan(res.cpo[[5, 30]]).all() and np.isnan(res.pit[[5, 30]]).all()
    assert np.isfinite(np.delete(res.cpo, [5, 30])).all()
    assert np.isfinite(res.dic) and np.isfinite(res.waic)
    # the predictor at a missing observation is informed by its neighbours only
    assert res.predictor_sd[5] > np.median(res.predictor_sd)
