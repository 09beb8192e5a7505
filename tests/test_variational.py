"""Natural-gradient variational inference: exactness for Gaussian data, the ELBO against dense
computations (on the constraint surface), the bound against numerically integrated marginal
likelihoods, monotone ascent, the θ-gradient against finite differences, and bad input."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.polynomial.hermite_e import hermegauss
from scipy.linalg import null_space
from scipy.special import gammaln, logsumexp

import gmrf_core as gm
from bench import plain_gradient  # the plain-gradient baseline natural gradients are compared with
from gmrf_core import likelihoods, models
from gmrf_core import variational as vi


# -- helpers ------------------------------------------------------------------------------
def constraint_matrix(model):
    """A_c padded with zeros for the fixed effects, or None."""
    if model.prior.constraints is None:
        return None
    a = np.atleast_2d(np.asarray(model.prior.constraints[0], dtype=float))
    return np.hstack([a, np.zeros((a.shape[0], model.n_fixed))])


def null_basis(model):
    ac = constraint_matrix(model)
    return np.eye(model.n_total) if ac is None else null_space(ac)


def random_q(model, theta, rng, low=0.2):
    """A q with random sites and a random feasible mean."""
    lam = low + 2.0 * rng.random(model.n_obs)
    gam = rng.standard_normal(model.n_obs)
    mean = null_basis(model) @ rng.standard_normal(null_basis(model).shape[1])
    return vi.initial_q(model, theta, site_precision=lam, site_linear=gam, mean=mean)


def dense_covariance(model, q):
    """Σ_c = B (BᵀΛB)⁻¹ Bᵀ, computed densely."""
    basis = null_basis(model)
    precision = q.precision().toarray()
    return basis @ np.linalg.solve(basis.T @ precision @ basis, basis.T)


def dense_kl(model, theta, q):
    """KL(q ‖ p) in the coordinates u of the constraint null space (z = B u, e = 0)."""
    basis = null_basis(model)
    theta_prior = theta[: model.n_theta_prior]
    Q_tilde = model.structure.prior_precision(theta_prior).toarray()
    mu = model.structure.prior_mean(theta_prior)
    p_prior = basis.T @ Q_tilde @ basis
    p_q = basis.T @ q.precision().toarray() @ basis
    d = basis.T @ (q.mean - mu)
    cov_q = np.linalg.inv(p_q)
    return 0.5 * (
        np.trace(p_prior @ cov_q)
        + d @ p_prior @ d
        - basis.shape[1]
        + np.linalg.slogdet(p_q)[1]
        - np.linalg.slogdet(p_prior)[1]
    )


def grid_sample(prior, rng):
    return gm.cholesky(prior.precision(prior.theta0)).sample(rng=rng)


# -- Gaussian observations: one natural-gradient step is exact ---------------------------------
def gaussian_case(name):
    rng = np.random.default_rng(11)
    if name == "matern":
        prior = models.Matern2D((6, 5))
        y = grid_sample(prior, rng) + 0.5 * rng.standard_normal(prior.n)
        return gm.LatentGaussianModel(prior, likelihoods.Gaussian(y)), np.r_[prior.theta0, 1.0]
    if name == "matern-fixed-effects":
        prior = models.Matern2D((6, 5))
        X = np.c_[np.ones(prior.n), rng.standard_normal(prior.n)]
        y = 1.0 + grid_sample(prior, rng) + 0.5 * rng.standard_normal(prior.n)
        y[4] = np.nan  # a missing observation
        model = gm.LatentGaussianModel(prior, likelihoods.Gaussian(y), X=X)
        return model, np.r_[prior.theta0 + 0.1, 0.5]
    if name == "projection":
        prior = models.Matern2D((7, 6))
        A = sp.random(30, prior.n, density=0.1, random_state=3, format="csr")
        X = rng.standard_normal((30, 2))
        offset = 0.1 * rng.standard_normal(30)
        y = rng.standard_normal(30)
        model = gm.LatentGaussianModel(prior, likelihoods.Gaussian(y), A=A, X=X, offset=offset)
        return model, np.r_[prior.theta0, 0.7]
    if name == "rw1-constrained":
        n = 15
        prior = models.RW1(n)
        y = np.sin(np.linspace(0, 3, n)) + 0.3 * rng.standard_normal(n)
        model = gm.LatentGaussianModel(prior, likelihoods.Gaussian(y), X=np.ones((n, 1)))
        return model, np.array([0.5, 1.0])
    raise KeyError(name)


GAUSSIAN_CASES = ["matern", "matern-fixed-effects", "projection", "rw1-constrained"]


@pytest.mark.parametrize("name", GAUSSIAN_CASES)
def test_gaussian_single_full_step_gives_the_exact_posterior(name):
    model, theta = gaussian_case(name)
    rng = np.random.default_rng(5)
    q0 = random_q(model, theta, rng)
    q1 = vi.natural_gradient_step(model, theta, q0, 1.0)
    exact = model.laplace(theta)  # exact for Gaussian observations
    scale = np.max(np.abs(exact.mode))
    np.testing.assert_allclose(q1.mean, exact.mode, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(q1.marginal_variance(), exact.marginal_variance(), rtol=1e-10)
    # dense reference for the covariance
    np.testing.assert_allclose(
        q1.marginal_variance(), np.diag(dense_covariance(model, q1)), rtol=1e-9
    )
    # the ELBO of the exact posterior is the exact log marginal likelihood
    log_marginal = -model.objective(theta)
    assert vi.elbo(model, theta, q1) == pytest.approx(log_marginal, rel=1e-10)
    assert vi.elbo(model, theta, q0) < log_marginal - 1e-3
    ac = constraint_matrix(model)
    if ac is not None:
        np.testing.assert_allclose(ac @ q1.mean, 0.0, atol=1e-12)


def test_gaussian_posterior_matches_dense_computation():
    model, theta = gaussian_case("projection")
    q = vi.natural_gradient_step(model, theta, random_q(model, theta, np.random.default_rng(1)))
    Q_tilde = model.structure.prior_precision(theta[:2]).toarray()
    a = model.A_full.toarray()
    tau = np.exp(theta[2])
    precision = Q_tilde + tau * a.T @ a
    mean = np.linalg.solve(precision, tau * a.T @ (model.likelihood.y - model.offset))
    np.testing.assert_allclose(q.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(q.marginal_variance(), np.diag(np.linalg.inv(precision)), rtol=1e-9)


# -- the ELBO against a dense computation ---------------------------------------------------------
def poisson_rw1_model():
    rng = np.random.default_rng(2)
    n = 12
    prior = models.RW1(n)
    y = rng.poisson(np.exp(0.5 + 0.6 * np.sin(np.linspace(0, 4, n)))).astype(float)
    y[3] = np.nan
    offset = 0.2 * rng.standard_normal(n)
    return gm.LatentGaussianModel(
        prior, likelihoods.Poisson(y), X=np.ones((n, 1)), offset=offset
    ), np.array([0.3])


def test_elbo_matches_dense_computation_on_the_constraint_surface():
    model, theta = poisson_rw1_model()
    q = random_q(model, theta, np.random.default_rng(3))
    cov = dense_covariance(model, q)
    a = model.A_full.toarray()
    eta_mean = a @ q.mean + model.offset
    eta_var = np.einsum("ij,jk,ik->i", a, cov, a)
    np.testing.assert_allclose(q.marginal_variance(), np.diag(cov), rtol=1e-9)
    observed = model.likelihood.observed
    np.testing.assert_allclose(
        q.linear_predictor_variance()[observed], eta_var[observed], rtol=1e-9
    )
    y = model.likelihood.y[observed]
    # Poisson: E[y η − e^η − log y!] in closed form
    expected = np.sum(
        y * eta_mean[observed]
        - np.exp(eta_mean[observed] + 0.5 * eta_var[observed])
        - gammaln(y + 1.0)
    )
    reference = expected - dense_kl(model, theta, q)
    assert vi.elbo(model, theta, q) == pytest.approx(reference, rel=1e-10)


def test_elbo_of_the_prior_is_the_expected_log_likelihood():
    """q = p (zero sites, a proper prior): KL = 0, and E[log p(y | z)] is closed-form."""
    prior = models.AR1(10)
    y = np.arange(10.0)
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y))
    theta = np.array([0.3, 0.4])
    q = vi.initial_q(model, theta, "prior")
    np.testing.assert_allclose(q.mean, 0.0)
    cov = np.linalg.inv(prior.precision(theta).toarray())
    np.testing.assert_allclose(q.marginal_variance(), np.diag(cov), rtol=1e-10)
    expected = np.sum(-np.exp(0.5 * np.diag(cov)) - gammaln(y + 1.0))
    assert vi.elbo(model, theta, q) == pytest.approx(expected, rel=1e-10)


# -- the bound: ELBO ≤ log p(y | θ), integrated numerically ---------------------------------------
def quadrature_log_marginal(model, theta, points=24):
    """log ∫ p(y | z) p(z) dz on the constraint surface, by tensor Gauss–Hermite quadrature
    centred at the mode of the integrand in the null-space coordinates u (z = B u)."""
    basis = null_basis(model)
    theta_prior, theta_lik = theta[: model.n_theta_prior], theta[model.n_theta_prior :]
    p_prior = basis.T @ model.structure.prior_precision(theta_prior).toarray() @ basis
    a = model.A_full.toarray() @ basis
    lik = model.likelihood
    logdet_prior = np.linalg.slogdet(p_prior)[1]
    d = basis.shape[1]

    def log_joint(u):
        eta = a @ u + model.offset
        return (
            lik.log_density(eta, theta_lik)
            + 0.5 * logdet_prior
            - 0.5 * d * np.log(2 * np.pi)
            - 0.5 * u @ p_prior @ u
        )

    u = np.zeros(d)
    for _ in range(50):
        d1, d2, _d3 = lik.eta_derivatives(a @ u + model.offset, theta_lik)
        hess = a.T @ (-d2[:, None] * a) + p_prior
        u = u + np.linalg.solve(hess, a.T @ d1 - p_prior @ u)
    chol = np.linalg.cholesky(np.linalg.inv(hess))
    nodes, weights = hermegauss(points)
    grids = np.meshgrid(*([nodes] * d), indexing="ij")
    t = np.stack([g.ravel() for g in grids], axis=1)
    log_w = sum(np.log(w) for w in np.meshgrid(*([weights] * d), indexing="ij")).ravel()
    log_w -= 0.5 * d * np.log(2 * np.pi)
    logdet_cov = 2.0 * np.sum(np.log(np.diag(chol)))
    values = []
    for tk in t:
        z = u + chol @ tk
        log_normal = -0.5 * d * np.log(2 * np.pi) - 0.5 * logdet_cov - 0.5 * tk @ tk
        values.append(log_joint(z) - log_normal)
    return float(logsumexp(log_w + np.array(values)))


def bound_case(name):
    rng = np.random.default_rng(21)
    if name == "ar1-poisson":
        prior = models.AR1(3)
        model = gm.LatentGaussianModel(prior, likelihoods.Poisson(np.array([0.0, 3.0, 7.0])))
        return model, np.array([-0.5, 0.8])
    if name == "iid-bernoulli":
        prior = models.IID(2)
        model = gm.LatentGaussianModel(prior, likelihoods.Bernoulli(np.array([1.0, 0.0])))
        return model, np.array([-1.0])
    if name == "rw1-binomial":
        prior = models.RW1(3)
        y, trials = np.array([1.0, 4.0, 2.0]), np.array([6, 5, 7])
        model = gm.LatentGaussianModel(prior, likelihoods.Binomial(y, trials))
        return model, np.array([0.2])
    if name == "iid-poisson-1d":
        prior = models.IID(1)
        y = rng.poisson(2.0, 1).astype(float)
        return gm.LatentGaussianModel(prior, likelihoods.Poisson(y), offset=0.3), np.array([0.4])
    raise KeyError(name)


@pytest.mark.parametrize("name", ["ar1-poisson", "iid-bernoulli", "rw1-binomial", "iid-poisson-1d"])
def test_elbo_is_below_the_numerically_integrated_marginal_likelihood(name):
    model, theta = bound_case(name)
    result = vi.optimize_q(model, theta, tol=1e-12)
    assert result.converged
    exact = quadrature_log_marginal(model, theta)
    # the quadrature itself is accurate: fewer points change nothing that matters here
    assert quadrature_log_marginal(model, theta, points=20) == pytest.approx(exact, abs=1e-6)
    if name == "iid-bernoulli":
        # a symmetric prior around η = 0: p(y_i = 1) = ½ for each observation
        assert exact == pytest.approx(2.0 * np.log(0.5), abs=1e-7)
    assert result.elbo <= exact
    assert exact - result.elbo < 0.05  # a tight bound for these small models
    print(
        f"{name}: ELBO {result.elbo:.8f}  log p(y) {exact:.8f}  "
        f"Laplace {-model.objective(theta):.8f}"
    )


# -- ascent, convergence and stationarity ----------------------------------------------------
def matern_bernoulli():
    rng = np.random.default_rng(7)
    prior = models.Matern2D((8, 8))
    x = grid_sample(prior, rng)
    y = (rng.random(prior.n) < 1.0 / (1.0 + np.exp(-x))).astype(float)
    return gm.LatentGaussianModel(prior, likelihoods.Bernoulli(y)), prior.theta0


def matern_poisson():
    rng = np.random.default_rng(8)
    prior = models.Matern2D((8, 8))
    x = grid_sample(prior, rng)
    y = rng.poisson(np.exp(1.0 + x)).astype(float)
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
    return model, prior.theta0


def iid_poisson():
    rng = np.random.default_rng(9)
    prior = models.IID(40)
    y = rng.poisson(np.exp(0.5 + rng.standard_normal(40))).astype(float)
    return gm.LatentGaussianModel(prior, likelihoods.Poisson(y)), np.array([0.0])


@pytest.mark.parametrize("case", [matern_bernoulli, iid_poisson, matern_poisson])
def test_elbo_increases_monotonically_for_small_steps(case):
    model, theta = case()
    init = "laplace" if model.n_fixed else "prior"
    q = vi.initial_q(model, theta, init)
    values = [vi.elbo(model, theta, q)]
    for _ in range(12):
        q = vi.natural_gradient_step(model, theta, q, 0.2)
        values.append(vi.elbo(model, theta, q))
    steps = np.diff(values)
    assert np.all(steps > 0), steps
    # and the fixed point reached with full steps is above every one of them
    final = vi.optimize_q(model, theta, q)
    assert final.converged and final.elbo >= values[-1]


@pytest.mark.parametrize("case", [matern_bernoulli, matern_poisson])
def test_natural_gradients_need_far_fewer_iterations_than_plain_gradients(case):
    model, theta = case()
    q0 = vi.initial_q(model, theta, "laplace")
    best = vi.optimize_q(model, theta, q0, tol=1e-12).elbo
    target = best - 1e-7 * abs(best)

    def reached(iteration, q, value):
        return value >= target

    natural = vi.optimize_q(model, theta, q0, callback=reached, tol=1e-14)
    plain = plain_gradient.optimize_q_plain(
        model, theta, q0, step=1e-2, callback=reached, tol=1e-14, maxiter=150
    )
    print(
        f"{case.__name__}: natural gradient {natural.nit} iterations, "
        f"plain gradient {plain.nit} iterations ({plain.message}, ELBO gap "
        f"{best - plain.elbo:.2e})"
    )
    assert natural.elbo >= target
    assert natural.nit * 4 <= plain.nit


def test_natural_gradient_fixed_point_is_a_stationary_point_of_the_elbo():
    model, theta = matern_bernoulli()
    q = vi.optimize_q(model, theta, tol=1e-12).q
    grad_mean, grad_lam = plain_gradient.elbo_grad_q(model, theta, q)
    assert np.max(np.abs(grad_mean)) < 1e-8
    assert np.max(np.abs(grad_lam)) < 1e-8
    # the sites are the expected curvatures at the fixed point
    again = vi.natural_gradient_step(model, theta, q, 1.0)
    np.testing.assert_allclose(again.site_precision, q.site_precision, rtol=1e-8)
    np.testing.assert_allclose(again.mean, q.mean, atol=1e-9)


# -- gradients ------------------------------------------------------------------------------------
def test_plain_gradient_matches_dense_formula_and_finite_differences():
    model, theta = poisson_rw1_model()
    rng = np.random.default_rng(4)
    q = random_q(model, theta, rng, low=0.5)
    grad_mean, grad_lam = plain_gradient.elbo_grad_q(model, theta, q)
    # dense: ∂L/∂λ_i = −½ ã_iᵀ Σ_c Ãᵀ diag(E[ℓ''] + λ) Ã Σ_c ã_i (base = prior here)
    cov = dense_covariance(model, q)
    a = model.A_full.toarray()
    eta_mean = a @ q.mean + model.offset
    eta_var = np.einsum("ij,jk,ik->i", a, cov, a)
    e2 = np.where(model.likelihood.observed, -np.exp(eta_mean + 0.5 * eta_var), 0.0)  # E[ℓ'']
    m = a.T @ np.diag(e2 + q.site_precision) @ a
    dense_lam = -0.5 * np.einsum("ij,jk,ik->i", a @ cov, m, a @ cov)
    dense_lam[~model.likelihood.observed] = 0.0
    # central differences of the selected inverse: ~1e-8 relative to the largest entry
    np.testing.assert_allclose(grad_lam, dense_lam, rtol=0, atol=1e-6 * np.abs(dense_lam).max())

    def elbo_of_sites(lam):
        return vi.elbo(
            model,
            theta,
            vi.initial_q(model, theta, site_precision=lam, site_linear=q.site_linear, mean=q.mean),
        )

    observed = model.likelihood.observed
    lam0 = q.site_precision.copy()

    def f_observed(lam_obs):
        lam = lam0.copy()
        lam[observed] = lam_obs
        return elbo_of_sites(lam)

    gm.testing.check_grad(
        f_observed, lambda _lam: grad_lam[observed], lam0[observed], rtol=1e-5, rng=0
    )
    # the mean gradient along feasible directions u of the null space
    basis = null_basis(model)

    def elbo_of_u(u):
        return vi.elbo(
            model,
            theta,
            vi.initial_q(
                model, theta, site_precision=lam0, site_linear=q.site_linear, mean=basis @ u
            ),
        )

    u0 = basis.T @ q.mean
    gm.testing.check_grad(elbo_of_u, lambda _u: basis.T @ grad_mean, u0, rtol=1e-6, rng=0)


class ShiftedIID(models.IID):
    """IID with a prior mean c·θ (to exercise the ∂μ̃/∂θ term)."""

    has_mean = True

    def __init__(self, n):
        super().__init__(n)
        self._direction = np.linspace(-1.0, 1.0, n)

    def mean(self, theta):
        return self._direction * float(np.asarray(theta)[0])

    def mean_grad(self, theta):
        return self._direction[None, :].copy()


def theta_case(name):
    rng = np.random.default_rng(31)
    if name == "matern-poisson-fixed-effects":
        model, theta = matern_poisson()
        return model, theta + np.array([0.2, -0.1])
    if name == "negbin-iid":
        prior = models.IID(25)
        y = rng.poisson(3.0, 25).astype(float)
        y[2] = np.nan
        model = gm.LatentGaussianModel(prior, likelihoods.NegativeBinomial(y), X=np.ones((25, 1)))
        return model, np.array([0.3, 0.7])
    if name == "rw1-gaussian":
        model, _theta = gaussian_case("rw1-constrained")
        return model, np.array([0.2, 0.8])
    if name == "shifted-mean-poisson":
        prior = ShiftedIID(20)
        y = rng.poisson(2.0, 20).astype(float)
        return gm.LatentGaussianModel(prior, likelihoods.Poisson(y)), np.array([0.4])
    raise KeyError(name)


@pytest.mark.parametrize(
    "name", ["matern-poisson-fixed-effects", "negbin-iid", "rw1-gaussian", "shifted-mean-poisson"]
)
def test_elbo_gradient_in_theta_matches_finite_differences(name):
    model, theta = theta_case(name)
    q = vi.optimize_q(model, theta, maxiter=3).q  # an arbitrary (not optimal) q
    value, grad = vi.elbo_and_grad_theta(model, theta, q)
    assert value == vi.elbo(model, theta, q)
    gm.testing.check_grad(
        lambda t: vi.elbo(model, t, q),
        lambda t: vi.elbo_grad_theta(model, t, q),
        theta,
        full=True,
        rtol=1e-6,
        rng=0,
    )
    # at another θ than q's own (q fixed)
    shifted = theta + 0.15
    gm.testing.check_grad(
        lambda t: vi.elbo(model, t, q),
        lambda t: vi.elbo_grad_theta(model, t, q),
        shifted,
        full=True,
        rtol=1e-6,
        rng=1,
    )


# -- hyperparameter learning ---------------------------------------------------------------------
def test_fit_variational_on_gaussian_data_recovers_the_marginal_likelihood_fit():
    model, _theta = gaussian_case("rw1-constrained")
    laplace_fit = gm.fit(model, progress=False, std_err=False)
    fit = vi.fit_variational(model, progress=False)
    assert fit.success
    np.testing.assert_allclose(fit.theta, laplace_fit.theta, atol=2e-4)
    assert fit.fun == pytest.approx(laplace_fit.fun, rel=1e-8)
    np.testing.assert_allclose(fit.mean, laplace_fit.mode, atol=1e-4)
    np.testing.assert_allclose(fit.marginal_sd, laplace_fit.marginal_sd, rtol=1e-3)
    assert fit.natgrad_steps >= fit.nfev


def test_fit_variational_bernoulli():
    model, _theta = matern_bernoulli()
    fit = vi.fit_variational(model, std_err=True, progress=False)
    assert fit.success, fit.message
    assert np.linalg.norm(fit.grad) < 1e-3
    assert fit.elbo == pytest.approx(vi.elbo(model, fit.theta, fit.q), rel=1e-12)
    assert fit.fun == pytest.approx(-fit.elbo)
    assert np.all(np.isfinite(fit.std_err)) and np.all(fit.std_err > 0)
    # the ELBO optimum over θ is not below the ELBO at the start θ with its own optimal q
    start = vi.optimize_q(model, model.theta0).elbo
    assert fit.elbo >= start - 1e-9
    assert "-ELBO" in fit.summary()
    assert fit.mean.shape == (model.n_total,) and fit.marginal_sd.shape == (model.n_total,)


# -- the q object and bad input ------------------------------------------------------------------
def test_q_object():
    model, theta = poisson_rw1_model()
    q = vi.initial_q(model, theta)
    lam, gam = q.sites
    observed = model.likelihood.observed
    assert np.all(lam[observed] > 0) and lam[~observed] == 0 and gam[~observed] == 0
    # the Laplace initialisation: q's mean is the Laplace mode, its precision the Hessian
    approx = model.laplace(theta)
    np.testing.assert_allclose(q.mean, approx.mode, atol=1e-10)
    np.testing.assert_allclose(q.marginal_variance(), approx.marginal_variance(), rtol=1e-9)
    np.testing.assert_allclose(q.marginal_sd() ** 2, q.marginal_variance())
    assert q.latent.size == model.n_latent and q.fixed_effects.size == model.n_fixed
    assert "VariationalGaussian" in repr(q)


def test_bad_input():
    model, theta = poisson_rw1_model()
    q = vi.initial_q(model, theta)
    with pytest.raises(gm.InputError, match="theta must have 1"):
        vi.elbo(model, np.zeros(3), q)
    with pytest.raises(gm.InputError, match="theta must have 1"):
        vi.natural_gradient_step(model, np.zeros(2), q)
    with pytest.raises(gm.InputError, match="theta must have 1"):
        vi.initial_q(model, [])
    lam = np.ones(model.n_obs)
    lam[5] = -0.5
    with pytest.raises(gm.InputError, match="non-negative"):
        vi.initial_q(model, theta, site_precision=lam)
    with pytest.raises(gm.InputError, match="one entry per observation"):
        vi.initial_q(model, theta, site_precision=np.ones(3))
    with pytest.raises(gm.InputError, match="finite"):
        vi.initial_q(model, theta, site_linear=np.full(model.n_obs, np.inf))
    for step in (0.0, -0.1, 1.5, np.nan, "big"):
        with pytest.raises(gm.InputError, match="step"):
            vi.natural_gradient_step(model, theta, q, step)
    with pytest.raises(gm.InputError, match="constraints"):
        vi.initial_q(model, theta, mean=np.ones(model.n_total))
    with pytest.raises(gm.InputError, match="init"):
        vi.initial_q(model, theta, "newton")
    with pytest.raises(gm.InputError, match="quadrature"):
        vi.elbo(model, theta, q, quadrature=0)
    with pytest.raises(gm.InputError, match="learning_rate"):
        plain_gradient.gradient_ascent_step(model, theta, q, -1.0)
    with pytest.raises(gm.InputError, match="method"):
        vi.optimize_q(model, theta, q, method="adam")
    other, _ = poisson_rw1_model()
    with pytest.raises(gm.InputError, match="different model"):
        vi.elbo(other, theta, q)
    with pytest.raises(gm.InputError, match="VariationalGaussian"):
        vi.elbo(model, theta, model.laplace(theta))
    with pytest.raises(gm.InputError, match="LatentGaussianModel"):
        vi.elbo(object(), theta, q)
    with pytest.raises(gm.InputError, match="theta0"):
        vi.fit_variational(model, theta0=np.zeros(4))
    # an intrinsic prior without observations of its null space cannot be the start q
    with pytest.raises(gm.NotPositiveDefiniteError):
        vi.initial_q(model, theta, "prior")


def test_fit_variational_reports_an_unconverged_inner_problem():
    model, _theta = matern_bernoulli()
    fit = vi.fit_variational(model, max_natgrad=1, tol=1e-14, maxiter=3, init="prior")
    assert not fit.success
    assert "did not converge" in fit.message
