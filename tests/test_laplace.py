"""Laplace objective, exact gradients (reverse and forward) against finite differences and dense
references, on models whose factors have fill-in."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.testing import counting_factorizations


def grid_adjacency(side):
    path = sp.diags_array([np.ones(side - 1), np.ones(side - 1)], offsets=[-1, 1])
    return sp.csr_matrix(sp.kron(path, sp.eye_array(side)) + sp.kron(sp.eye_array(side), path))


def fd_gradient(model, theta, h=1e-5):
    grad = np.zeros(theta.size)
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = h
        grad[k] = (model.objective(theta + e) - model.objective(theta - e)) / (2 * h)
    return grad


def assert_exact_gradient(model, theta, rtol=1e-6):
    value, grad = model.value_and_grad(theta)
    assert value == pytest.approx(model.objective(theta), rel=1e-12)
    fd = fd_gradient(model, theta)
    scale = max(np.abs(fd).max(), 1e-3)
    assert np.abs(grad - fd).max() <= rtol * scale, (grad, fd)
    # forward mode agrees with reverse mode: <∇f, v> = jvp
    v = np.random.default_rng(0).standard_normal(theta.size)
    _value, directional = model.jvp(theta, v)
    assert directional == pytest.approx(grad @ v, rel=1e-9, abs=1e-9 * scale)


def _matern(rng):
    prior = models.Matern2D((9, 8))
    x = gm.cholesky(prior.precision(prior.theta0)).sample(rng=rng)
    return prior, x


def make_case(name):
    rng = np.random.default_rng(1)
    if name == "matern-poisson":
        prior, x = _matern(rng)
        y = rng.poisson(np.exp(0.5 + x))
        model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
        return model, prior.theta0 + 0.2
    if name == "matern-gaussian-projection":
        prior, x = _matern(rng)
        A = sp.random(40, prior.n, density=0.05, random_state=2, format="csr")
        y = A @ x + 0.3 * rng.standard_normal(40)
        model = gm.LatentGaussianModel(
            prior, likelihoods.Gaussian(y), A=A, X=rng.standard_normal((40, 2))
        )
        return model, np.r_[prior.theta0, 1.5]
    if name == "matern-bernoulli":
        prior, x = _matern(rng)
        y = (rng.random(prior.n) < 1 / (1 + np.exp(-x))).astype(float)
        return gm.LatentGaussianModel(prior, likelihoods.Bernoulli(y)), prior.theta0 - 0.1
    if name == "besag-binomial":
        prior = models.Besag(grid_adjacency(6))
        trials = rng.integers(1, 12, prior.n)
        y = rng.binomial(trials, 0.3)
        model = gm.LatentGaussianModel(
            prior, likelihoods.Binomial(y, trials), X=np.ones((prior.n, 1))
        )
        return model, np.array([0.4])
    if name == "bym2-negbin":
        prior = models.BYM2(grid_adjacency(5))
        areas = prior.n // 2
        A = sp.csr_matrix(sp.hstack([sp.eye_array(areas), sp.csr_matrix((areas, areas))]))
        y = rng.poisson(4.0, areas).astype(float)
        y[3] = np.nan  # missing observation
        model = gm.LatentGaussianModel(
            prior,
            likelihoods.NegativeBinomial(y, exposure=np.full(areas, 2.0)),
            A=A,
            X=np.ones((areas, 1)),
        )
        return model, np.array([0.2, -0.3, 1.2])
    if name == "kronecker-poisson":
        prior = models.Kronecker(models.AR1(4), models.Matern2D((5, 4)))
        y = rng.poisson(2.0, prior.n)
        return gm.LatentGaussianModel(prior, likelihoods.Poisson(y)), prior.theta0 + 0.1
    if name == "rw2-gaussian":
        prior = models.RW2(30)
        t = np.linspace(0, 1, 30)
        y = np.sin(6 * t) + 0.2 * rng.standard_normal(30)
        return gm.LatentGaussianModel(prior, likelihoods.Gaussian(y)), np.array([1.0, 2.0])
    raise KeyError(name)


CASES = [
    "matern-poisson",
    "matern-gaussian-projection",
    "matern-bernoulli",
    "besag-binomial",
    "bym2-negbin",
    "kronecker-poisson",
    "rw2-gaussian",
]


@pytest.mark.parametrize("name", CASES)
def test_gradient_matches_finite_differences(name):
    model, theta = make_case(name)
    assert_exact_gradient(model, theta)


def test_gaussian_objective_is_the_exact_marginal_likelihood():
    rng = np.random.default_rng(3)
    prior = models.Matern2D((7, 6))
    n = prior.n
    A = sp.random(30, n, density=0.1, random_state=3, format="csr")
    X = rng.standard_normal((30, 2))
    offset = 0.1 * rng.standard_normal(30)
    y = rng.standard_normal(30)
    theta = np.r_[prior.theta0, 0.7]
    model = gm.LatentGaussianModel(prior, likelihoods.Gaussian(y), A=A, X=X, offset=offset)
    cov_x = np.linalg.inv(prior.precision(theta[:2]).toarray())
    cov_y = A.toarray() @ cov_x @ A.T.toarray() + X @ X.T / 1e-3 + np.eye(30) / np.exp(0.7)
    exact = -stats.multivariate_normal(offset, cov_y).logpdf(y)
    assert model.objective(theta) == pytest.approx(exact, rel=1e-11)


def test_gaussian_with_constraints_matches_dense():
    """An intrinsic RW1 prior (sum-to-zero) and Gaussian data: exact marginal likelihood of
    y given the constrained prior, computed densely in the constraint's null space."""
    rng = np.random.default_rng(4)
    n = 12
    prior = models.RW1(n)
    y = rng.standard_normal(n)
    theta = np.array([0.5, 1.0])
    model = gm.LatentGaussianModel(prior, likelihoods.Gaussian(y))
    Q = prior.precision(theta[:1]).toarray()
    basis = np.linalg.svd(np.ones((1, n)))[2][1:].T  # orthonormal basis of {sum x = 0}
    cov_x = basis @ np.linalg.inv(basis.T @ Q @ basis) @ basis.T
    cov_y = cov_x + np.eye(n) / np.exp(1.0)
    exact = -stats.multivariate_normal(np.zeros(n), cov_y).logpdf(y)
    assert model.objective(theta) == pytest.approx(exact, rel=1e-10)


def test_laplace_approximation_object():
    model, theta = make_case("besag-binomial")
    approx = model.laplace(theta)
    assert approx.mode.shape == (model.n_total,)
    assert abs(approx.latent.sum()) < 1e-9  # sum-to-zero constraint holds at the mode
    var = approx.marginal_variance()
    assert np.all(var > 0)
    # dense reference: constrained covariance of the Gaussian approximation
    H = approx.factor.L() @ approx.factor.L().T
    p = approx.factor.perm
    Hd = np.empty(H.shape)
    Hd[np.ix_(p, p)] = H.toarray()
    Ac = np.zeros((1, model.n_total))
    Ac[0, : model.n_latent] = 1.0
    cov = np.linalg.inv(Hd)
    V = cov @ Ac.T
    cov_c = cov - V @ np.linalg.solve(Ac @ V, V.T)
    np.testing.assert_allclose(var, np.diag(cov_c), rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(approx.marginal_sd(), np.sqrt(np.diag(cov_c)), rtol=1e-9)


def test_works_with_scipy_minimize():
    from scipy.optimize import minimize

    model, _theta = make_case("matern-poisson")
    result = minimize(model.value_and_grad, model.theta0, jac=True, method="L-BFGS-B")
    assert result.success
    assert np.linalg.norm(result.jac) < 1e-3


def test_newton_non_convergence_raises():
    model, theta = make_case("matern-poisson")
    model.max_newton = 1
    model._last_mode = None
    with pytest.raises(gm.ConvergenceError, match="did not converge in 1 iterations"):
        model.objective(theta + 3.0)


def test_bad_input():
    prior = models.IID(5)
    lik = likelihoods.Poisson(np.arange(4))
    with pytest.raises(gm.InputError, match="projection A"):
        gm.LatentGaussianModel(prior, lik)
    with pytest.raises(gm.InputError, match="shape"):
        gm.LatentGaussianModel(prior, lik, A=sp.eye(5, format="csr"))
    with pytest.raises(gm.InputError, match="X must"):
        gm.LatentGaussianModel(prior, likelihoods.Poisson(np.arange(5)), X=np.ones((3, 1)))
    with pytest.raises(gm.InputError, match="offset"):
        gm.LatentGaussianModel(prior, likelihoods.Poisson(np.arange(5)), offset=np.ones(2))
    with pytest.raises(gm.InputError, match="latent model"):
        gm.LatentGaussianModel(object(), lik)
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(np.arange(5)))
    with pytest.raises(gm.InputError, match="theta must have 1"):
        model.objective(np.zeros(3))
    with pytest.raises(gm.InputError, match="finite"):
        model.objective(np.array([np.nan]))
    with pytest.raises(gm.InputError, match="theta_dot"):
        model.jvp(np.zeros(1), np.zeros(2))


def test_linear_predictor_variance_including_missing_rows():
    rng = np.random.default_rng(5)
    prior = models.Matern2D((6, 5))
    A = sp.random(12, prior.n, density=0.15, random_state=6, format="csr")
    y = rng.poisson(2.0, 12).astype(float)
    y[[2, 7]] = np.nan  # predictions wanted there
    X = np.ones((12, 1))
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), A=A, X=X)
    approx = model.laplace(prior.theta0)
    L = approx.factor.L().toarray()
    p = approx.factor.perm
    H = np.empty((model.n_total, model.n_total))
    H[np.ix_(p, p)] = L @ L.T
    full = np.hstack([A.toarray(), X])
    expected = np.diag(full @ np.linalg.inv(H) @ full.T)
    np.testing.assert_allclose(approx.linear_predictor_variance(), expected, rtol=1e-9)
    np.testing.assert_allclose(approx.linear_predictor, full @ approx.mode, rtol=1e-12)


def test_threaded_factorizations_give_the_same_objective_and_gradient(monkeypatch):
    """threads=2 with a schedule forced on a small model: subtree-parallel factorization and
    selected inversion inside Newton, the objective and both gradient modes."""
    from gmrf_core import linalg

    monkeypatch.setattr(linalg, "_PARALLEL_MIN_FLOPS", 0.0)
    monkeypatch.setattr(linalg, "_PARALLEL_GAIN", 1.0)
    rng = np.random.default_rng(7)
    prior = models.Matern2D((14, 13))
    x = gm.cholesky(prior.precision(prior.theta0)).sample(rng=rng)
    y = rng.poisson(np.exp(0.3 + x))
    results = []
    for threads in (1, 2):
        model = gm.LatentGaussianModel(
            prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)), threads=threads
        )
        theta = prior.theta0 + 0.1
        results.append((*model.value_and_grad(theta), model.jvp(theta, np.ones(2))[1]))
    assert model.symbolic.schedule(2) is not None
    (v1, g1, d1), (v2, g2, d2) = results
    assert v2 == pytest.approx(v1, rel=1e-12)
    np.testing.assert_allclose(g2, g1, rtol=1e-9)
    assert d2 == pytest.approx(d1, rel=1e-9)


# -- Newton accuracy, history independence and intrinsic components (dense references) -----
def dense_objective(model, theta):
    """The Laplace objective computed densely in the coordinates u of the constraint surface
    (z = B u, B an orthonormal basis of ker A_c): Newton to machine precision, slogdet."""
    from scipy.linalg import null_space

    theta = np.asarray(theta, dtype=float)
    k = len(model.prior.theta0)
    theta_prior, theta_lik = theta[:k], theta[k:]
    n, total = model.n_latent, model.n_total
    Q_tilde = np.zeros((total, total))
    Q_tilde[:n, :n] = model.prior.precision(theta_prior).toarray()
    Q_tilde[n:, n:] = model.fixed_precision * np.eye(total - n)
    mu = np.zeros(total)
    mu[:n] = model.prior.mean(theta_prior)
    if model.prior.constraints is None:
        basis = np.eye(total)
    else:
        a = np.atleast_2d(np.asarray(model.prior.constraints[0], dtype=float))
        basis = null_space(np.hstack([a, np.zeros((a.shape[0], total - n))]))
    A = model.A_full.toarray() @ basis
    P = basis.T @ Q_tilde @ basis
    m = basis.T @ mu
    lik = model.likelihood

    def g(u):
        return -lik.log_density(A @ u + model.offset, theta_lik) + 0.5 * (u - m) @ P @ (u - m)

    u = m.copy()
    for _ in range(2000):
        d1, d2, _d3 = lik.eta_derivatives(A @ u + model.offset, theta_lik)
        grad = -A.T @ d1 + P @ (u - m)
        step = -np.linalg.solve(P + A.T @ np.diag(-d2) @ A, grad)
        t = 1.0
        while g(u + t * step) > g(u) + 1e-4 * t * (grad @ step) + 1e-14 * abs(g(u)) and t > 1e-12:
            t /= 2
        u = u + t * step
        if np.max(np.abs(step)) < 1e-14 * (1 + np.max(np.abs(u))):
            break
    d1, d2, _d3 = lik.eta_derivatives(A @ u + model.offset, theta_lik)
    H = P + A.T @ np.diag(-d2) @ A
    return (
        g(u)
        - 0.5 * np.linalg.slogdet(P)[1]
        + 0.5 * np.linalg.slogdet(H)[1]
        - model.log_prior(theta)
    )


def hard_case(name):
    """Weakly identified models: Poisson with many zeros and a weak prior, Bernoulli near
    separation (a steep covariate), intrinsic priors with both."""
    n = 30
    s = np.linspace(-1, 1, n)
    counts = np.zeros(n)
    counts[[4, 17]] = [1, 3]
    separated = (s > 0).astype(float)
    separated[3] = 1.0
    if name == "poisson-zeros-iid":
        return gm.LatentGaussianModel(models.IID(n), likelihoods.Poisson(counts), X=np.ones((n, 1)))
    if name == "bernoulli-separation-iid":
        X = np.column_stack([np.ones(n), 8.0 * s])
        return gm.LatentGaussianModel(models.IID(n), likelihoods.Bernoulli(separated), X=X)
    if name == "poisson-zeros-rw1":
        return gm.LatentGaussianModel(models.RW1(n), likelihoods.Poisson(counts), X=np.ones((n, 1)))
    if name == "bernoulli-separation-rw2":
        X = np.column_stack([np.ones(n), 8.0 * s])
        return gm.LatentGaussianModel(models.RW2(n), likelihoods.Bernoulli(separated), X=X)
    raise KeyError(name)


@pytest.mark.parametrize(
    "name",
    [
        "poisson-zeros-iid",
        "bernoulli-separation-iid",
        "poisson-zeros-rw1",
        "bernoulli-separation-rw2",
    ],
)
def test_objective_is_exact_and_independent_of_the_call_history(name):
    model = hard_case(name)
    for log_tau in (-8.0, -3.0, 0.0, 4.0, 9.0):
        theta = np.array([log_tau])
        reference = dense_objective(model, theta)
        values = []
        for previous in (None, -10.0, 10.0, log_tau + 0.5):
            if previous is not None:  # a warm start from another θ
                model.objective(np.array([previous]))
            else:
                model._last_mode = None
            values.append(model.objective(theta))
        np.testing.assert_allclose(values, reference, rtol=1e-9)


def two_component_besag(observed_components):
    """Besag on a graph with two connected components (4×4 and 3×3 lattices, one
    sum-to-zero constraint each); Poisson counts on the chosen components only."""
    adjacency = sp.block_diag([grid_adjacency(4), grid_adjacency(3)]).tocsr()
    prior = models.Besag(adjacency)
    nodes = np.concatenate([[np.arange(16), np.arange(16, 25)][c] for c in observed_components])
    A = sp.csr_matrix(
        (np.ones(nodes.size), (np.arange(nodes.size), nodes)), shape=(nodes.size, prior.n)
    )
    y = np.random.default_rng(0).poisson(3.0, nodes.size)
    return gm.LatentGaussianModel(prior, likelihoods.Poisson(y), A=A, X=np.ones((nodes.size, 1)))


def test_constrained_intrinsic_component_without_data_over_many_theta():
    """The second Besag component has no data: H is singular along its constrained constant
    direction. Every θ gives the dense value on the constraint surface (no factorization that
    succeeds or fails by rounding), the gradient matches finite differences."""
    model = two_component_besag([0])
    for log_tau in np.linspace(-3.0, 5.0, 25):
        theta = np.array([log_tau])
        assert model.objective(theta) == pytest.approx(dense_objective(model, theta), rel=1e-10)
    assert_exact_gradient(model, np.array([0.7]))
    approx = model.laplace(np.array([0.7]))
    draws = approx.sample(size=4000, rng=1)
    np.testing.assert_allclose(draws[:, 16:25].sum(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(draws[:, :16].sum(axis=1), 0.0, atol=1e-9)
    var = approx.marginal_variance()
    assert np.all(var[:25] > 0)
    # the unobserved component keeps the prior's constrained variances, scaled by 1/τ
    prior_cov = np.linalg.pinv(model.prior.precision(np.array([0.7])).toarray()[16:, 16:])
    np.testing.assert_allclose(var[16:25], np.diag(prior_cov), rtol=1e-8)
    assert np.abs(draws.var(axis=0)[16:25] / var[16:25] - 1).max() < 0.15


def custom_spde_prior(side):
    """An SPDE-type Custom prior Q(θ) = e^θ₀ C + e^θ₁ G² (no analytic log-determinant)."""
    path = sp.diags_array(
        [-np.ones(side - 1), np.r_[1.0, 2.0 * np.ones(side - 2), 1.0], -np.ones(side - 1)],
        offsets=[-1, 0, 1],
    )
    G = sp.csc_matrix(sp.kron(sp.eye_array(side), path) + sp.kron(path, sp.eye_array(side)))
    terms = [sp.eye_array(side * side, format="csc"), sp.csc_matrix(G @ G)]
    pattern = sp.csc_matrix(abs(terms[0]) + abs(terms[1]))
    return models.Custom(
        side * side,
        lambda theta: sum(np.exp(t) * s for t, s in zip(theta, terms)),
        lambda theta: [np.exp(t) * s for t, s in zip(theta, terms)],
        np.log([0.05, 1.0]),
        ("log_c", "log_g"),
        pattern=pattern,
    )


def test_value_and_grad_at_a_known_mode_counts_factorizations():
    """One value_and_grad of a Custom prior (log|Q̃| by factorization) at a θ whose mode is
    already known: exactly one factorization of Q̃ and one of H (the kept factor of H at that
    mode makes the first step a Newton step, below the tolerance: H refactorized there is
    accepted)."""
    prior = custom_spde_prior(9)
    rng = np.random.default_rng(2)
    y = rng.poisson(2.0, prior.n)
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
    theta = prior.theta0 + 0.1
    value, grad = model.value_and_grad(theta)  # the mode at θ is now the warm start
    with counting_factorizations(model) as counts:
        value2, grad2 = model.value_and_grad(theta)
    assert counts["Q"] == 1
    assert counts["H"] == 1
    assert value2 == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(grad2, grad, rtol=1e-9)
    assert_exact_gradient(model, theta)


def _custom_spde_case():
    prior = custom_spde_prior(9)
    y = np.random.default_rng(2).poisson(2.0, prior.n)
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
    return model, prior.theta0 + 0.1


def _mesh_case():
    rng = np.random.default_rng(3)
    mesh = models.mesh_from_points(rng.uniform(0, 1, (15, 2)), max_area=0.01, extend=0.2)
    prior = models.MaternSPDE(mesh)
    y = rng.poisson(2.0, prior.n)
    model = gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=np.ones((prior.n, 1)))
    return model, prior.theta0 + 0.1


@pytest.mark.parametrize(
    "name, prior_factorizations, inverted",
    [
        ("matern-poisson", 0, ["H"]),
        ("besag-binomial", 0, ["H"]),
        ("bym2-negbin", 0, ["H"]),
        ("kronecker-poisson", 0, ["H"]),
        ("rw2-gaussian", 0, ["H"]),
        ("mesh", 0, ["H", "K"]),
        ("custom", 1, ["H", "Q"]),
    ],
)
def test_selected_inversions_per_evaluation(monkeypatch, name, prior_factorizations, inverted):
    """A prior with an analytic log-determinant (Matern2D, Besag, BYM2, Kronecker products,
    RW2 here) costs value_and_grad no factorization of Q̃ and one selected inversion, H's;
    MaternSPDE none of Q̃ either, but one of its sparser K = κ²C + G; a Custom prior (log|Q̃|
    by factorization) one factorization and one selected inversion of Q̃. The gradient stays
    exact."""
    cases = {"custom": _custom_spde_case, "mesh": _mesh_case}
    model, theta = cases[name]() if name in cases else make_case(name)
    model.value_and_grad(theta)
    seen = []
    original = gm.linalg.SelectedInverse.__init__

    def counting(self, factor):
        if factor.symbolic is model.symbolic:
            seen.append("H")
        elif factor.symbolic is model.structure.prior_symbolic:
            seen.append("Q")
        else:
            seen.append("K")
        original(self, factor)

    monkeypatch.setattr(gm.linalg.SelectedInverse, "__init__", counting)
    k_factorizations = []
    refactorize = gm.linalg.Factor.refactorize
    k_symbolic = model.prior._k_logdet.symbolic if name == "mesh" else None

    def counting_k(self, matrix):
        k_factorizations.append(self.symbolic is k_symbolic)
        return refactorize(self, matrix)

    monkeypatch.setattr(gm.linalg.Factor, "refactorize", counting_k)
    with counting_factorizations(model) as counts:
        model.value_and_grad(theta + 0.05)
    assert counts["Q"] == prior_factorizations
    assert counts["H"] >= 1
    assert sorted(seen) == inverted
    # MaternSPDE's value and gradient at one θ share one factorization of K
    assert k_factorizations.count(True) == (1 if name == "mesh" else 0)
    monkeypatch.undo()
    assert_exact_gradient(model, theta + 0.05)


def test_one_model_from_many_threads_matches_serial_results():
    """value_and_grad, objective, jvp and laplace on one model from several threads at once,
    at the same and at different θ: no hang, the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    model, theta = make_case("besag-binomial")
    thetas = [theta + d for d in (0.0, 0.3, -0.2, 0.0, 0.5, 0.3, -0.2, 0.0)]
    serial = [model.value_and_grad(t) for t in thetas]
    serial_jvp = [model.jvp(t, np.ones(1))[1] for t in thetas]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(model.value_and_grad, t) for t in thetas * 3]
        jvps = [pool.submit(model.jvp, t, np.ones(1)) for t in thetas]
        approximations = [pool.submit(model.laplace, t) for t in thetas]
        results = [f.result(timeout=120) for f in futures]
        jvps = [f.result(timeout=120)[1] for f in jvps]
        approximations = [f.result(timeout=120) for f in approximations]
    for (value, grad), (ref_value, ref_grad) in zip(results, serial * 3):
        assert value == pytest.approx(ref_value, rel=1e-10)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(jvps, serial_jvp, rtol=1e-7, atol=1e-10)
    for approx, (ref_value, _g) in zip(approximations, serial):
        assert approx.objective == pytest.approx(ref_value, rel=1e-10)


def test_laplace_approximation_sample_constrained_and_objective():
    model, theta = make_case("besag-binomial")
    approx = model.laplace(theta)
    assert approx.objective == pytest.approx(model.objective(theta), rel=1e-12)
    assert approx.constrained.constraints is not None
    assert approx.factor is approx.constrained.factor
    single = approx.sample(rng=0)
    assert single.shape == (model.n_total,)
    draws = approx.sample(size=20000, rng=np.random.default_rng(1))
    assert draws.shape == (20000, model.n_total)
    np.testing.assert_allclose(draws[:, : model.n_latent].sum(axis=1), 0.0, atol=1e-9)
    # dense reference of the constrained covariance
    L = approx.factor.L().toarray()
    p = approx.factor.perm
    H = np.empty((model.n_total, model.n_total))
    H[np.ix_(p, p)] = L @ L.T
    Ac = np.zeros((1, model.n_total))
    Ac[0, : model.n_latent] = 1.0
    cov = np.linalg.inv(H)
    V = cov @ Ac.T
    cov_c = cov - V @ np.linalg.solve(Ac @ V, V.T)
    sd = np.sqrt(np.diag(cov_c))
    assert np.abs(draws.mean(axis=0) - approx.mode).max() < 5 * sd.max() / np.sqrt(20000)
    assert np.abs(np.cov(draws, rowvar=False) - cov_c).max() < 0.05 * np.abs(cov_c).max()
    np.testing.assert_allclose(
        approx.linear_predictor_variance(),
        np.diag(model.A_full @ cov_c @ model.A_full.T.toarray()),
        rtol=1e-9,
    )


def _cold_objectives(model, path):
    """The objective at each θ of ``path``, Newton started from the prior mean."""
    values = []
    for theta in path:
        model._last_mode = None
        values.append(model.objective(theta))
    return values


def test_mode_predictor_saves_factorizations_and_changes_no_value(monkeypatch):
    """Along a moving θ (steps of 0.05, as inside an optimizer) Newton starts from the
    first-order prediction of the mode: fewer factorizations of H than from the last mode,
    the same objective values as cold starts."""
    from gmrf_core import laplace

    model, theta = make_case("matern-poisson")
    path = [theta + 0.05 * np.array([np.cos(j), np.sin(j)]) for j in range(12)]
    with counting_factorizations(model) as counts:
        model.objective(path[0])
        counts["H"] = 0
        predicted = [model.objective(t) for t in path[1:]]
        with_prediction = counts["H"]
        monkeypatch.setattr(laplace, "_PREDICT_MAX_ETA", -1.0)  # prediction off
        model.objective(path[0])
        counts["H"] = 0
        plain = [model.objective(t) for t in path[1:]]
        without_prediction = counts["H"]
    assert with_prediction < without_prediction
    cold = _cold_objectives(model, path[1:])
    np.testing.assert_allclose(predicted, cold, rtol=1e-10)
    np.testing.assert_allclose(plain, cold, rtol=1e-10)


def _path_factorizations(model, path):
    """H factorizations of each objective along ``path`` (each warm-started from the one
    before), and the values."""
    with counting_factorizations(model) as counts:
        model.objective(path[0])
        per, values = [], []
        for theta in path[1:]:
            before = counts["H"]
            values.append(model.objective(theta))
            per.append(counts["H"] - before)
    return per, values


def test_chord_steps_are_kept_while_cheaper_than_a_factorization(monkeypatch):
    """Along a moving θ the chord steps continue while they are predicted to reach the mode
    in fewer steps than a factorization costs. Priced at 2 chord steps each evaluation
    refactorizes once on the way; priced at 20 (as on a factor with large supernodes) the
    chord steps run to the mode and each evaluation factorizes H once, at the mode. The
    values are those of cold starts."""
    from gmrf_core import laplace

    model, theta = make_case("matern-poisson")
    # on this small lattice the floor price, its own Newton step, and the chord steps after
    # it from 1e-5
    assert model._chord_budget(1e-5) == pytest.approx(4.0 + 1.0 + np.log(1e-14) / np.log(1e-5) - 1)
    path = [theta + 0.05 * np.cos(j + np.arange(2) * np.pi / 4) for j in range(12)]
    monkeypatch.setattr(laplace, "_FACTORIZATION_STEPS", (2.0, 2.0))
    cheap, cheap_values = _path_factorizations(model, path)
    monkeypatch.setattr(laplace, "_FACTORIZATION_STEPS", (20.0, 20.0))
    dear, dear_values = _path_factorizations(model, path)
    assert cheap == [2] * 11
    assert dear == [1] * 11
    cold = _cold_objectives(model, path[1:])
    np.testing.assert_allclose(cheap_values, cold, rtol=1e-12)
    np.testing.assert_allclose(dear_values, cold, rtol=1e-12)
    model.objective(path[0])
    assert_exact_gradient(model, path[1])


def test_chord_steps_after_full_newton_steps_save_factorizations_from_a_cold_start(
    monkeypatch,
):
    """From the prior mean, a chord step is tried after every full Newton step that moved η
    by at most 1 (not only after those below 1e-2): fewer factorizations, the same value."""
    from gmrf_core import laplace

    values, counts = [], []
    for after in (1e-2, laplace._CHORD_AFTER):
        monkeypatch.setattr(laplace, "_CHORD_AFTER", after)
        model, theta = make_case("matern-poisson")
        with counting_factorizations(model) as count:
            values.append(model.objective(theta))
        counts.append(count["H"])
    assert counts[1] < counts[0]
    assert values[1] == pytest.approx(values[0], rel=1e-13)


@pytest.mark.parametrize("threads", [1, 2])
def test_evaluations_run_numpy_and_scipy_blas_on_the_models_threads(monkeypatch, threads):
    """threads=1 runs everything on one thread: every OpenBLAS of the process (NumPy's
    dot products in Newton's glue as well as SciPy's) is held at the model's threads
    during each public evaluation, also inside the factorizations' own limits, and the
    count in force before is restored afterwards."""
    from gmrf_core.bindings import blas

    libraries = blas._openblas_libraries()
    if not libraries:
        pytest.skip("no OpenBLAS loaded")
    before = [lib.get_num_threads() for lib in libraries]
    model, theta = make_case("matern-poisson")
    model = gm.LatentGaussianModel(model.prior, model.likelihood, X=model.X, threads=threads)
    seen = []
    inner = model.likelihood.eta_derivatives

    def recording(eta, theta=None):
        seen.append({lib.get_num_threads() for lib in libraries})
        return inner(eta, theta)

    monkeypatch.setattr(model.likelihood, "eta_derivatives", recording)
    with blas.blas_threads(8):  # a caller's wider setting does not leak into the model
        model.objective(theta)
        model.value_and_grad(theta + 0.01)
        model.jvp(theta, np.ones(2))
        model.laplace(theta)
        model._value_grad_approximation(theta - 0.01)
    assert len(seen) >= 5
    assert all(counts == {threads} for counts in seen)
    assert [lib.get_num_threads() for lib in libraries] == before


def test_anderson_mixing_of_a_linear_chord_iteration_terminates_like_a_krylov_method():
    """On a quadratic g (∇g = H z − b) the chord iteration with another SPD matrix F
    contracts by ρ(I − F⁻¹H) per step; Anderson's mixture of the last 3 steps is a Krylov
    method in 3 dimensions: at the solution to rounding after 4 mixed steps, while the
    plain iteration is still far."""
    from gmrf_core import laplace

    rng = np.random.default_rng(3)
    B = rng.standard_normal((3, 3))
    H = B @ B.T + 3.0 * np.eye(3)
    F = H + np.diag([0.9, -0.8, 0.5]) @ H @ np.diag([0.9, -0.8, 0.5]) * 0.5
    b = rng.standard_normal(3)
    exact = np.linalg.solve(H, b)
    errors = {}
    for mixing in (False, True):
        z, anderson = np.zeros(3), laplace._Anderson()
        for _ in range(5):
            grad = H @ z - b
            f = -np.linalg.solve(F, grad)
            anderson.record(z, f, grad)
            z = z + (anderson.mixed(f, grad) if mixing else f)
        errors[mixing] = np.abs(z - exact).max() / np.abs(exact).max()
    assert errors[True] < 1e-12
    assert errors[False] > 1e-4


def test_anderson_mixing_saves_chord_steps_and_changes_no_value(monkeypatch):
    """Along a moving θ, value_and_grad with Anderson-mixed chord steps needs fewer solves
    than with the plain chord steps, and the same values and gradients (each to its
    tolerance: the chord steps to 2e-9 in η, the value corrected to second order)."""
    from gmrf_core import constrained, laplace

    model, theta = make_case("matern-poisson")
    path = [theta + 0.05 * np.cos(j + np.arange(2) * np.pi / 4) for j in range(12)]
    solves = [0]
    solve = constrained.ConstrainedFactor.solve

    def counted(self, b):
        solves[0] += 1
        return solve(self, b)

    monkeypatch.setattr(constrained.ConstrainedFactor, "solve", counted)
    results, counts = [], []
    for mixing in (True, False):
        if not mixing:
            monkeypatch.setattr(laplace._Anderson, "mixed", lambda self, f, grad: f)
        model.value_and_grad(path[0])
        solves[0] = 0
        results.append([model.value_and_grad(t) for t in path[1:]])
        counts.append(solves[0])
    assert counts[0] < counts[1]
    cold = _cold_objectives(model, path[1:])
    for run in results:
        np.testing.assert_allclose([value for value, _grad in run], cold, rtol=1e-12)
    np.testing.assert_allclose(
        [grad for _value, grad in results[0]], [grad for _value, grad in results[1]], rtol=1e-8
    )
