"""gm.fit_many and gm.cross_validate: against loops of gm.fit written here, dense Gaussian
predictive densities and brute-force quadrature; serially, on a process pool and on Dask."""

import functools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import integrate, stats

import gmrf_core as gm
from gmrf_core import likelihoods, models


def smooth_counts(side, seed):
    """Poisson counts around a smooth log-intensity on a side × side lattice."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(0, 3, side), np.linspace(0, 3, side), indexing="ij")
    eta = 1.0 + 0.8 * np.sin(u + seed) * np.cos(v)
    return rng.poisson(np.exp(eta.ravel())).astype(float)


def poisson_model(side=10, seed=0):
    y = smooth_counts(side, seed)
    n = y.size
    return gm.LatentGaussianModel(
        models.Matern2D((side, side)), likelihoods.Poisson(y), X=np.ones((n, 1))
    )


@pytest.fixture
def data_sets():
    # fresh models: a model's warm start (its last inner mode) travels with it, and the
    # results are compared with fits that started from the same state
    return [poisson_model(side=9, seed=s) for s in range(3)]


@pytest.fixture(scope="module")
def reference_fits():
    return [gm.fit(poisson_model(side=9, seed=s), progress=False) for s in range(3)]


def assert_same_fits(fits, reference, rtol=1e-10):
    assert len(fits) == len(reference)
    for fit, ref in zip(fits, reference):
        assert fit.success == ref.success and fit.nit == ref.nit
        np.testing.assert_allclose(fit.theta, ref.theta, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(fit.fun, ref.fun, rtol=rtol)
        np.testing.assert_allclose(fit.std_err, ref.std_err, rtol=1e-8)
        np.testing.assert_allclose(fit.mode, ref.mode, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("kind", ["serial", "pool", "dask"])
def test_fit_many_equals_a_loop_of_fits(kind, data_sets, reference_fits, request):
    executor = None if kind == "serial" else request.getfixturevalue(kind.replace("dask", "client"))
    seen = []
    stats_out = {}
    fits = gm.fit_many(
        data_sets,
        executor=executor,
        progress=lambda done, total: seen.append(done),
        stats=stats_out,
    )
    assert_same_fits(fits, reference_fits)
    assert seen == [1, 2, 3] and stats_out["tasks"] == 3
    if kind == "serial":
        assert fits[0].approximation is not None if hasattr(fits[0], "approximation") else True
    else:
        assert getattr(fits[0], "approximation", None) is None


def test_fit_many_passes_fit_options(data_sets):
    fits = gm.fit_many(data_sets[:2], progress=False, std_err=False, maxiter=3)
    for fit in fits:
        assert fit.nit <= 3 and np.all(np.isnan(fit.std_err))


def test_fit_many_failure_names_the_model(pool):
    with pytest.raises(gm.TaskError, match="fit 1 failed twice"):
        gm.fit_many([poisson_model(side=5), "not a model"], executor=pool, progress=False)


# -- cross-validation ------------------------------------------------------------------------
def gaussian_model(side=7, seed=3):
    rng = np.random.default_rng(seed)
    n = side * side
    u = np.linspace(-1, 1, n)
    y = 0.5 + np.sin(3 * u) + 0.3 * rng.standard_normal(n)
    y[[4, 17]] = np.nan  # missing in the data: never held out
    X = np.column_stack([np.ones(n), u])
    return gm.LatentGaussianModel(models.Matern2D((side, side)), likelihoods.Gaussian(y), X=X)


def dense_gaussian_predictive(model, y, held, theta):
    """Exact held-out predictive N(y_i; m_i, s_i² + 1/τ) by dense linear algebra."""
    theta_prior, log_tau = theta[:-1], theta[-1]
    tau = np.exp(log_tau)
    Q = model.prior.precision(theta_prior).toarray()
    p = model.n_fixed
    Qt = np.zeros((model.n_total, model.n_total))
    Qt[: model.n_latent, : model.n_latent] = Q
    Qt[model.n_latent :, model.n_latent :] = model.fixed_precision * np.eye(p)
    A_full = sp.hstack([model.A, sp.csr_matrix(model.X)]).toarray()
    train = ~np.isnan(y) & ~held
    A_train = A_full[train]
    H = Qt + tau * A_train.T @ A_train
    mean = np.linalg.solve(H, tau * A_train.T @ y[train])
    cov = np.linalg.inv(H)
    index = np.flatnonzero(held)
    eta_mean = A_full[index] @ mean
    eta_var = np.einsum("ij,jk,ik->i", A_full[index], cov, A_full[index])
    return stats.norm.logpdf(y[index], eta_mean, np.sqrt(eta_var + 1.0 / tau))


def test_cross_validate_gaussian_matches_dense_predictive():
    model = gaussian_model()
    y = model.likelihood.y.copy()
    cv = gm.cross_validate(model, folds=4, rng=1, progress=False)
    assert cv.folds == 4
    assert np.all(np.isnan(cv.pointwise[[4, 17]])) and np.all(cv.fold[[4, 17]] == -1)
    observed = np.flatnonzero(~np.isnan(y))
    assert np.all(np.isfinite(cv.pointwise[observed]))
    # every observed y is held out exactly once, folds of near-equal size
    sizes = np.bincount(cv.fold[observed])
    assert sizes.sum() == observed.size and sizes.max() - sizes.min() <= 1
    total = 0.0
    for k, result in enumerate(cv.fits):
        held = cv.fold == k
        expected = dense_gaussian_predictive(model, y, held, result.theta)
        np.testing.assert_allclose(cv.pointwise[held], expected, rtol=1e-7, atol=1e-7)
        total += expected.sum()
    assert cv.log_predictive_density == pytest.approx(total, rel=1e-8)
    # the fold fits are refits on the training data: one rebuilt with NaN in y agrees
    y_train = np.where(cv.fold == 0, np.nan, y)
    refit = gm.fit(
        gm.LatentGaussianModel(model.prior, likelihoods.Gaussian(y_train), X=model.X),
        progress=False,
    )
    np.testing.assert_allclose(cv.fits[0].theta, refit.theta, rtol=1e-7, atol=1e-7)


def test_cross_validate_poisson_matches_quadrature():
    model = poisson_model(side=8, seed=2)
    y = model.likelihood.y
    cv = gm.cross_validate(model, folds=3, rng=5, progress=False, nodes=40)
    # reference for the first fold: a model built with NaN in y, its Laplace predictive of η
    # and scipy quadrature of p(y | η) N(η; m, s²)
    held = cv.fold == 0
    fold_model = gm.LatentGaussianModel(
        model.prior, likelihoods.Poisson(np.where(held, np.nan, y)), X=model.X
    )
    result = gm.fit(fold_model, progress=False)
    approx = fold_model.laplace(result.theta)
    mean = approx.linear_predictor
    sd = np.sqrt(approx.linear_predictor_variance())
    for i in np.flatnonzero(held)[:6]:

        def integrand(eta, i=i):
            return stats.poisson.pmf(y[i], np.exp(eta)) * stats.norm.pdf(eta, mean[i], sd[i])

        value, _err = integrate.quad(integrand, mean[i] - 12 * sd[i], mean[i] + 12 * sd[i])
        assert cv.pointwise[i] == pytest.approx(np.log(value), rel=1e-7, abs=1e-9)
        assert cv.predictive_mean[i] == pytest.approx(mean[i], rel=1e-7, abs=1e-9)


def test_cross_validate_same_on_a_pool(pool):
    model = poisson_model(side=8, seed=1)
    serial = gm.cross_validate(model, folds=3, rng=0, progress=False)
    pooled = gm.cross_validate(model, folds=3, rng=0, progress=False, executor=pool)
    np.testing.assert_array_equal(serial.fold, pooled.fold)
    np.testing.assert_allclose(pooled.pointwise, serial.pointwise, rtol=1e-10, atol=1e-10)


def gaussian_from_mask(train, side=7, seed=3):
    """gaussian_model's data with the observations outside ``train`` missing (a factory)."""
    full = gaussian_model(side, seed)
    if train is None:
        return full
    y = np.where(train, full.likelihood.y, np.nan)
    return gm.LatentGaussianModel(full.prior, likelihoods.Gaussian(y), X=full.X)


def test_cross_validate_with_a_model_factory():
    by_model = gm.cross_validate(gaussian_model(), folds=3, rng=2, progress=False)
    by_factory = gm.cross_validate(gaussian_from_mask, folds=3, rng=2, progress=False)
    np.testing.assert_array_equal(by_factory.fold, by_model.fold)
    np.testing.assert_allclose(by_factory.pointwise, by_model.pointwise, rtol=1e-7, atol=1e-9)
    with pytest.raises(gm.TaskError, match="must keep every observation"):
        gm.cross_validate(functools.partial(drop_rows, gaussian_from_mask), folds=2, progress=False)


def drop_rows(factory, train):
    """A bad factory: the training model leaves the held-out rows out instead of missing."""
    model = factory(None)
    if train is None:
        return model
    y = model.likelihood.y[train]
    n = y.size
    return gm.LatentGaussianModel(models.IID(n), likelihoods.Gaussian(y))


def test_cross_validate_bad_input():
    model = poisson_model(side=5)
    with pytest.raises(gm.InputError, match="folds"):
        gm.cross_validate(model, folds=1)
    with pytest.raises(gm.InputError, match="folds"):
        gm.cross_validate(model, folds=26)
    with pytest.raises(gm.InputError, match="nodes"):
        gm.cross_validate(model, folds=2, nodes=0)
    with pytest.raises(gm.InputError, match="LatentGaussianModel"):
        gm.cross_validate("model", folds=2)


def test_inla_many_equals_a_loop(client):
    from tests.inference.rw1_gaussian import model as rw1_gaussian

    loop = [gm.inla(rw1_gaussian(), integration="ccd", progress=False) for _ in range(2)]
    for executor in (None, client):
        runs = gm.inla_many(
            [rw1_gaussian(), rw1_gaussian()], executor=executor, progress=False, integration="ccd"
        )
        for run, ref in zip(runs, loop):
            assert run.log_marginal_likelihood == pytest.approx(
                ref.log_marginal_likelihood, rel=1e-10
            )
            np.testing.assert_allclose(run.latent_mean, ref.latent_mean, rtol=1e-9, atol=1e-10)
