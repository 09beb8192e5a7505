"""Tests of gmrf_core.interop: posterior draws as ArviZ InferenceData."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm, poisson

import gmrf_core as gm
from gmrf_core.errors import InputError
from gmrf_core.formula import fixed_table, formula
from gmrf_core.interop import posterior_draws, to_inference_data

pd = pytest.importorskip("pandas")
pytest.importorskip("formulaic")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    az = pytest.importorskip("arviz")


@pytest.fixture(scope="module")
def poisson_panel():
    rng = np.random.default_rng(11)
    m = 90
    df = pd.DataFrame(
        {
            "group": rng.choice(["u", "v", "w", "z"], m),
            "t": rng.integers(1, 8, m),
            "x": rng.normal(size=m),
        }
    )
    effect = {"u": -0.4, "v": 0.1, "w": 0.5, "z": -0.2}
    eta = 0.6 + 0.3 * df["x"] + df["group"].map(effect) + 0.1 * np.sin(df["t"])
    df["y"] = rng.poisson(np.exp(eta)).astype(float)
    df.loc[7, "y"] = np.nan  # missing: predicted, not in the log-likelihood
    model = formula(
        "y ~ 1 + x + f(group, model='iid') + f(t, model='rw1')", data=df, family="poisson"
    )
    fit = gm.fit(model, progress=False)
    return df, model, fit


def test_groups_names_and_coordinates(poisson_panel):
    df, model, fit = poisson_panel
    data = to_inference_data(fit, model, draws=400, chains=4, rng=0)
    assert set(data.groups()) >= {"posterior", "log_likelihood", "observed_data"}
    posterior = data.posterior
    assert dict(posterior.sizes)["chain"] == 4 and dict(posterior.sizes)["draw"] == 100
    assert list(posterior["group"].coords["group_level"].values) == ["u", "v", "w", "z"]
    assert list(posterior["t"].coords["t_level"].values) == list(range(1, 8))
    assert list(posterior["beta"].coords["fixed_effect"].values) == ["Intercept", "x"]
    assert {"group.tau", "t.tau"} <= set(posterior.data_vars)
    np.testing.assert_allclose(posterior["t.tau"].values, fit.theta_natural["t.tau"])
    observed = df["y"].notna().to_numpy()
    assert data.log_likelihood["y"].shape == (4, 100, int(observed.sum()))
    np.testing.assert_array_equal(data.observed_data["y"].values, df["y"][observed])
    assert 7 not in list(data.log_likelihood["y"].coords["obs"].values)
    assert data.posterior.attrs["inference"] == "empirical_bayes"


def test_log_likelihood_is_the_poisson_pmf_of_the_drawn_predictor(poisson_panel):
    df, model, fit = poisson_panel
    data = to_inference_data(fit, model, draws=40, chains=2, rng=1)
    beta = data.posterior["beta"].values.reshape(40, 2)
    group = data.posterior["group"].values.reshape(40, 4)
    walk = data.posterior["t"].values.reshape(40, 7)
    codes = df["group"].map({"u": 0, "v": 1, "w": 2, "z": 3}).to_numpy()
    eta = beta[:, [0]] + beta[:, [1]] * df["x"].to_numpy() + group[:, codes]
    eta += walk[:, df["t"].to_numpy() - 1]
    observed = df["y"].notna().to_numpy()
    reference = poisson.logpmf(df["y"].to_numpy()[observed], np.exp(eta[:, observed]))
    np.testing.assert_allclose(data.log_likelihood["y"].values.reshape(40, -1), reference)
    # the random walk's sum-to-zero constraint holds in every draw
    np.testing.assert_allclose(walk.sum(axis=1), 0.0, atol=1e-9)


def test_draws_follow_the_laplace_approximation(poisson_panel):
    _, model, fit = poisson_panel
    theta, z, method = posterior_draws(fit, model, draws=4000, rng=2)
    assert method == "empirical_bayes"
    np.testing.assert_array_equal(theta, np.tile(fit.theta, (4000, 1)))
    sd = fit.marginal_sd
    # Monte Carlo error of a mean of 4000 draws: sd / 63; five of them allowed
    assert np.all(np.abs(z.mean(axis=0) - fit.mode) <= 5 * sd / np.sqrt(4000) + 1e-12)
    spread = z.std(axis=0)
    free = sd > 1e-8
    assert np.all(np.abs(spread[free] / sd[free] - 1) < 0.1)


def test_loo_and_waic_agree_with_direct_formulas(poisson_panel):
    _, model, fit = poisson_panel
    data = to_inference_data(fit, model, draws=800, chains=4, rng=3)
    matrix = data.log_likelihood["y"].values.reshape(800, -1)
    # WAIC (Watanabe 2010; Vehtari, Gelman & Gabry 2017 eq. 12): lppd - p_waic
    lppd = logsumexp(matrix, axis=0) - np.log(800)
    p_waic = matrix.var(axis=0)  # arviz divides by the number of draws
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # arviz's own diagnostic for observations with large pointwise variance
        warnings.filterwarnings("ignore", "For one or more samples", UserWarning)
        waic = az.waic(data)
        loo = az.loo(data)
    np.testing.assert_allclose(waic.elpd_waic, np.sum(lppd - p_waic), rtol=1e-10)
    # PSIS-LOO is close to the plain importance-sampling estimate on this easy problem
    plain = -np.sum(logsumexp(-matrix, axis=0) - np.log(800))
    assert abs(loo.elpd_loo - plain) < 0.5
    assert np.all(loo.pareto_k.values < 0.7)


def test_gaussian_family_has_the_noise_precision(poisson_panel):
    df = poisson_panel[0].dropna()
    model = formula("x ~ 1 + f(group, model='iid')", data=df, family="gaussian")
    fit = gm.fit(model, progress=False)
    data = to_inference_data(fit, model, draws=100, chains=1, rng=4)
    names = set(data.posterior.data_vars)
    assert "group.tau" in names and len(names) == 4  # group.tau, noise precision, group, beta
    matrix = data.log_likelihood["x"].values.reshape(100, -1)
    beta = data.posterior["beta"].values.reshape(100)
    group = data.posterior["group"].values.reshape(100, 4)
    codes = df["group"].map({"u": 0, "v": 1, "w": 2, "z": 3}).to_numpy()
    noise_sd = 1 / np.sqrt(np.exp(fit.theta[-1]))
    reference = norm.logpdf(df["x"].to_numpy(), beta[:, None] + group[:, codes], noise_sd)
    np.testing.assert_allclose(matrix, reference, rtol=1e-10)


def test_plain_model_and_errors(poisson_panel):
    _, model, fit = poisson_panel
    plain = gm.LatentGaussianModel(gm.models.IID(5), gm.likelihoods.Poisson(np.arange(5.0)))
    approximation = plain.laplace(plain.theta0)
    data = to_inference_data(approximation, plain, draws=20, chains=2, rng=5)
    assert data.posterior["x"].shape == (2, 10, 5)
    with pytest.raises(InputError, match="pass model="):
        to_inference_data(fit, draws=10)
    with pytest.raises(InputError, match="multiple of chains"):
        to_inference_data(fit, model, draws=10, chains=4)


def test_inla_result_draws_integrate_over_theta(poisson_panel):
    _, model, _ = poisson_panel
    result = gm.inla(model, progress=False, rng=6, compute=())
    data = to_inference_data(result, draws=400, chains=4, rng=7)
    assert data.posterior.attrs["inference"] == "inla"
    tau = data.posterior["t.tau"].values.ravel()
    assert np.unique(tau).size > 1  # θ varies over the integration points
    beta = data.posterior["beta"].values.reshape(400, 2)
    fixed = result.fixed
    np.testing.assert_allclose(beta.mean(axis=0), fixed["mean"], atol=5 * fixed["sd"].max() / 20)


def test_inla_result_methods_label_terms_and_export(poisson_panel):
    _, model, _ = poisson_panel
    result = gm.inla(model, progress=False, rng=8, compute=())
    table = result.latent("group")
    assert list(table.index) == ["u", "v", "w", "z"]
    np.testing.assert_allclose(table["mean"], result.latent_mean[:4])
    np.testing.assert_allclose(table["sd"], result.latent_sd[:4])
    np.testing.assert_allclose(table["q0.975"], result.latent_quantiles([0.975])[0, :4])
    assert list(result.fixed.index) == ["Intercept", "x"]
    np.testing.assert_allclose(fixed_table(result, model).to_numpy(), result.fixed.to_numpy())
    data = result.to_inference_data(draws=200, chains=2, rng=9)
    assert data.posterior["t"].shape == (2, 100, 7)
