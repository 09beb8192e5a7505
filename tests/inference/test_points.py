"""The per-point simplified-Laplace terms against dense linear algebra."""

import numpy as np

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.inference.points import point_task
from gmrf_core.priors import PCPrecision


def _item(theta):
    return {
        "theta": theta,
        "f_mode": 0.0,
        "cutoff": None,
        "latent": "simplified_laplace",
        "criteria": True,
        "nodes": 20,
    }


def test_mean_shift_and_skewness_match_dense_formulas():
    rng = np.random.default_rng(3)
    n = 25
    counts = rng.poisson(np.exp(0.2 + 0.5 * np.sin(np.linspace(0, 6, n))))
    model = gm.LatentGaussianModel(
        models.AR1(n, prior={"log_tau": PCPrecision(1.0, 0.01)}),
        likelihoods.Poisson(counts),
        X=np.ones((n, 1)),
    )
    theta = np.array([0.3, 0.8])
    out = point_task(model, _item(theta))
    # dense: H = Q̃ + Ãᵀ W Ã at the mode, Σ = H⁻¹
    Q = model.prior.precision(theta).toarray()
    A = np.hstack([np.eye(n), np.ones((n, 1))])
    Qt = np.zeros((n + 1, n + 1))
    Qt[:n, :n] = Q
    Qt[n, n] = 1e-3
    eta = A @ out["mode"]
    rate = np.exp(eta)
    Sigma = np.linalg.inv(Qt + A.T @ (rate[:, None] * A))
    np.testing.assert_allclose(out["variance"], np.diag(Sigma), rtol=1e-10)
    d3 = -rate
    v = np.einsum("ij,jk,ik->i", A, Sigma, A)
    np.testing.assert_allclose(out["shift"], 0.5 * Sigma @ A.T @ (d3 * v), rtol=1e-9, atol=1e-14)
    cov = Sigma @ A.T  # Cov(z_s, η_i)
    # κ₃ over the observations loading on each variable: η_s for x_s, all for β
    kappa_x = d3 * np.diag(cov[:n]) ** 3
    kappa_beta = np.sum(d3 * cov[n] ** 3)
    np.testing.assert_allclose(out["kappa3"][:n], kappa_x, rtol=1e-9)
    np.testing.assert_allclose(out["kappa3"][n], kappa_beta, rtol=1e-9)
    np.testing.assert_allclose(out["eta_shift"], A @ out["shift"], rtol=1e-12)


def test_iid_skewness_is_the_exact_third_cumulant_term():
    rng = np.random.default_rng(4)
    n = 10
    counts = rng.poisson(2.0, size=n)
    model = gm.LatentGaussianModel(models.IID(n), likelihoods.Poisson(counts))
    theta = np.array([0.5])
    out = point_task(model, _item(theta))
    # x_i independent given θ: Var = 1/(τ + e^x), κ₃ = ℓ''' Var³ exactly
    rate = np.exp(out["mode"])
    var = 1.0 / (np.exp(0.5) + rate)
    np.testing.assert_allclose(out["variance"], var, rtol=1e-12)
    np.testing.assert_allclose(out["kappa3"], -rate * var**3, rtol=1e-10)
    np.testing.assert_allclose(out["shift"], 0.5 * var * (-rate * var), rtol=1e-10)


def test_log_mean_exp_matches_logsumexp_with_infinities():
    from scipy.special import logsumexp

    from gmrf_core.inference.points import _log_mean_exp

    rng = np.random.default_rng(5)
    values = rng.normal(0.0, 30.0, size=(7, 40))
    values[:, 3] = -np.inf  # every node -inf: log 0
    values[2, 5] = -np.inf  # one node -inf
    values[:, 6] += 800.0  # beyond exp's range without the shift
    weights = rng.uniform(0.1, 1.0, size=7)
    out = _log_mean_exp(weights, values, np.empty_like(values))
    expected = logsumexp(np.log(weights)[:, None] + values, axis=0)
    assert out[3] == -np.inf
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-13)
    assert np.array_equal(np.isfinite(out), finite)


def test_point_task_times_its_stages_and_inla_sums_them():
    rng = np.random.default_rng(6)
    n = 12
    counts = rng.poisson(2.0, size=n)
    model = gm.LatentGaussianModel(
        models.IID(n, prior={"log_tau": PCPrecision(1.0, 0.01)}), likelihoods.Poisson(counts)
    )
    out = point_task(model, _item(np.array([0.5])))
    stages = ["laplace", "variance", "predictor variance", "simplified laplace", "criteria"]
    assert list(out["timings"]) == stages
    assert all(seconds >= 0.0 for seconds in out["timings"].values())
    res = gm.inla(model, integration="grid", progress=False)
    assert list(res.point_timings) == stages
    assert 0.0 < sum(res.point_timings.values()) <= res.timings["points"]
