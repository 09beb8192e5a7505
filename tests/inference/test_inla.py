"""gm.inla on a Gaussian model where π(θ | y) is exact: brute-force quadrature references.

Model: y = x + β + ε, x an RW1 (scaled, sum-to-zero) of n = 60 with precision τ,
β ~ N(0, 1000), ε ~ N(0, 1/τ_n), PC priors P(σ > 1) = 0.01 on both precisions. In the
eigenbasis U of the RW1 structure R (u₀ ∝ 1 spans its null space) the marginal covariance
of y is diagonal: c_j = 1/(τ λ_j) + 1/τ_n (j ≥ 1), c₀ = 1000 n + 1/τ_n, and the posterior
of every coordinate given θ is a scalar Gaussian, so log p(y | θ) and the posterior moments
of x and β are exact closed forms, evaluated on a fine θ grid (dense linear algebra only).
"""

import numpy as np
import pytest
from scipy.special import logsumexp

import gmrf_core as gm
from tests.inference.rw1_gaussian import N, exact_posterior, model


@pytest.fixture(scope="module")
def reference():
    a = np.linspace(-4.0, 8.0, 801)
    b = np.linspace(-1.5, 9.0, 801)
    A, B = np.meshgrid(a, b, indexing="ij")
    post = exact_posterior(A.ravel(), B.ravel())
    logpost = post["log_joint"]
    mlik = logsumexp(logpost) + np.log((a[1] - a[0]) * (b[1] - b[0]))
    w = np.exp(logpost - logsumexp(logpost))
    Ex, Vx = post["x_mean"], post["x_var"]
    x_mean = w @ Ex
    x_sd = np.sqrt(w @ (Vx + Ex**2) - x_mean**2)
    beta_mean = w @ post["beta_mean"]
    beta_sd = np.sqrt(w @ (post["beta_var"] + post["beta_mean"] ** 2) - beta_mean**2)
    theta = np.column_stack([A.ravel(), B.ravel()])
    theta_mean = w @ theta
    theta_sd = np.sqrt(w @ theta**2 - theta_mean**2)
    natural = np.exp(theta)
    nat_mean = w @ natural
    nat_sd = np.sqrt(w @ natural**2 - nat_mean**2)
    quantiles = []
    for values, axis in ((a, 1), (b, 0)):
        marginal = w.reshape(A.shape).sum(axis=axis)
        cdf = np.cumsum(marginal) - 0.5 * marginal
        quantiles.append(np.exp(np.interp([0.025, 0.5, 0.975], cdf, values)))
    return dict(
        mlik=mlik,
        x_mean=x_mean,
        x_sd=x_sd,
        beta_mean=beta_mean,
        beta_sd=beta_sd,
        theta_mean=theta_mean,
        theta_sd=theta_sd,
        nat_mean=nat_mean,
        nat_sd=nat_sd,
        nat_quantiles=np.array(quantiles),
    )


@pytest.fixture(scope="module")
def ccd_result():
    return gm.inla(model(), integration="ccd", progress=False)


def test_grid_matches_brute_force(grid_result, reference):
    res = grid_result
    ref = reference
    assert res.integration == "grid" and res.latent_strategy == "gaussian"
    assert res.defaults_applied == []
    assert abs(res.log_marginal_likelihood - ref["mlik"]) < 1e-3
    mean = res.weights @ res.points
    sd = np.sqrt(res.weights @ res.points**2 - mean**2)
    np.testing.assert_allclose(mean, ref["theta_mean"], rtol=1e-3)
    np.testing.assert_allclose(sd, ref["theta_sd"], rtol=1e-3)
    table = res.hyperparameters
    assert list(table.index) == ["tau", "noise_precision"]
    # natural scale: τ's mean and sd; quantiles of both (the noise precision's posterior
    # mean is infinite: its PC prior's tail τ^(-3/2) survives where the likelihood flattens)
    assert abs(table["mean"].iloc[0] / ref["nat_mean"][0] - 1) < 1e-3
    assert abs(table["sd"].iloc[0] / ref["nat_sd"][0] - 1) < 1e-3
    quantiles = table[["q0.025", "q0.5", "q0.975"]].to_numpy()
    np.testing.assert_allclose(quantiles, ref["nat_quantiles"], rtol=2e-3)
    # every x_i: sds to 1e-3 relative, means to 1e-3 of their sd (some means are near 0)
    np.testing.assert_allclose(res.latent_sd, ref["x_sd"], rtol=1e-3)
    assert np.max(np.abs(res.latent_mean - ref["x_mean"]) / ref["x_sd"]) < 1e-3
    fixed = res.fixed
    assert abs(fixed["mean"].iloc[0] - ref["beta_mean"]) < 1e-3 * ref["beta_sd"]
    assert abs(fixed["sd"].iloc[0] / ref["beta_sd"] - 1) < 1e-3
    # η = x + β for every observation
    eta_sd = res.predictor_sd
    assert eta_sd.shape == (N,) and np.all(eta_sd > 0)
    np.testing.assert_allclose(
        res.predictor_mean, res.latent_mean + fixed["mean"].iloc[0], atol=1e-10
    )


def test_grid_default_cutoff_is_rinla_like_and_coarser(reference):
    res = gm.inla(model(), integration="grid", progress=False)
    # the default cut-off (R-INLA's diff.logdens = 6) drops the tails beyond a drop of 6
    assert abs(res.log_marginal_likelihood - reference["mlik"]) < 0.01
    np.testing.assert_allclose(res.latent_sd, reference["x_sd"], rtol=0.01)


def test_ccd_agrees_with_grid(grid_result, ccd_result, reference):
    grid, ccd = grid_result, ccd_result
    assert ccd.integration == "ccd" and len(ccd.weights) == 9
    np.testing.assert_allclose(ccd.weights.sum(), 1.0)
    assert abs(ccd.log_marginal_likelihood - grid.log_marginal_likelihood) < 0.05
    assert np.max(np.abs(ccd.latent_mean - grid.latent_mean) / grid.latent_sd) < 0.02
    np.testing.assert_allclose(ccd.latent_sd, grid.latent_sd, rtol=0.02)
    # the asymmetric-Gaussian θ marginals: means and sds within a few percent of the truth
    table = ccd.hyperparameters
    assert abs(table["mean"].iloc[0] / reference["nat_mean"][0] - 1) < 0.05
    assert abs(table["sd"].iloc[0] / reference["nat_sd"][0] - 1) < 0.1
    quantiles = table[["q0.025", "q0.5", "q0.975"]].to_numpy()
    np.testing.assert_allclose(quantiles, reference["nat_quantiles"], rtol=0.05)


def test_hyperparameter_marginals_are_densities(grid_result, ccd_result):
    for res in (grid_result, ccd_result):
        for name in res.natural_names:
            values, density = res.hyperparameter_marginal(name)
            assert np.all(np.diff(values) > 0) and np.all(density >= 0)
            assert abs(np.trapezoid(density, values) - 1.0) < 5e-3
            t, dens = res.hyperparameter_marginal(name, scale="internal")
            assert abs(np.trapezoid(dens, t) - 1.0) < 1e-10
        table = res.hyperparameters
        assert np.all(table["q0.025"] < table["q0.5"]) and np.all(table["q0.5"] < table["q0.975"])


def test_latent_quantiles_match_the_gaussian_mixture(grid_result):
    res = grid_result
    q = res.latent_quantiles([0.025, 0.5, 0.975])
    assert q.shape == (3, N)
    # independent check: the mixture CDF at the returned quantile, by direct summation
    from scipy.stats import norm

    means = res._means[:, :N]
    sds = res._sds[:, :N]
    for level, row in zip((0.025, 0.5, 0.975), q):
        cdf = res.weights @ norm.cdf((row[None, :] - means) / sds)
        np.testing.assert_allclose(cdf, level, atol=1e-9)


def test_eb_equals_fit():
    lgm = model()
    res = gm.inla(lgm, integration="eb", progress=False)
    fitted = gm.fit(lgm, progress=False)
    np.testing.assert_allclose(res.theta_mode, fitted.theta, rtol=0, atol=1e-10)
    assert len(res.weights) == 1
    approximation = lgm.laplace(fitted.theta)
    np.testing.assert_allclose(res.latent_mean, approximation.mode[:N], atol=1e-8)
    np.testing.assert_allclose(res.latent_sd, approximation.marginal_sd()[:N], rtol=1e-8)
    # covariance = inverse of the finite-difference Hessian of the objective
    np.testing.assert_allclose(res.theta_covariance @ res.hessian, np.eye(2), atol=1e-8)


def test_defaults_are_applied_and_reported():
    res = gm.inla(model(with_priors=False), integration="eb", progress=False, compute=())
    assert [line.split(":")[0] for line in res.defaults_applied] == [
        "log_tau",
        "log_noise_precision",
    ]
    assert res.dic is None and res.waic is None and res.cpo is None
    text = res.summary()
    assert "Default priors applied" in text and "noise_precision" in text


def test_bad_options_raise():
    lgm = model()
    with pytest.raises(gm.InputError, match="integration"):
        gm.inla(lgm, integration="laplace", progress=False)
    with pytest.raises(gm.InputError, match="latent"):
        gm.inla(lgm, latent="full", progress=False)
    with pytest.raises(gm.InputError, match="compute"):
        gm.inla(lgm, compute=("bic",), progress=False)
    with pytest.raises(gm.InputError, match="dz"):
        gm.inla(lgm, dz=0.0, progress=False)
