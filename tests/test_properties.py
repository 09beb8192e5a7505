"""Property suite (hypothesis): random small models, likelihoods and θ against dense references.

For random latent models (IID, AR1, RW1 with its sum-to-zero constraint, Besag on small
random graphs, Matérn2D on 4×4..6×6 lattices, Custom), likelihoods (Gaussian, Poisson,
Bernoulli, Binomial, negative binomial), data, optional fixed effects and projections
and θ, ``model.objective(θ)`` and ``model.value_and_grad(θ)`` must be finite and equal
to a dense reference written here — or raise a clean ``gm.GMRFError``; never another
exception, a non-finite number or a different value.

The dense reference is the Laplace objective of :mod:`gmrf_core.laplace`,

    f(θ) = −ℓ(η*) + ½ (z*−μ̃)ᵀ Q̃ (z*−μ̃) − ½ log det(BᵀQ̃B) + ½ log det(BᵀHB),

with B an orthonormal basis of the null space of the constraints (the identity
½ log|H| + ½ log|A_c H⁻¹A_cᵀ| − ½ log|A_cA_cᵀ| = ½ log det(BᵀHB) turns the docstring's
form into this one), computed with dense NumPy linear algebra: Newton's method in the
coordinates u of z = z_p + B u, to machine precision, and slogdet. The likelihoods'
log densities and η-derivatives are written here independently (scipy.stats and closed
forms). The gradient is checked against central differences of that dense reference.
Only the public API is used; the latent precision Q(θ) and the constraints are the
model's definition (read through ``prior.precision`` and ``prior.constraints``).

Likelihood-level properties: log densities against scipy.stats at random points, and
the score identities E[∂ log p/∂η] = 0, E[(∂ log p/∂η)²] = −E[∂² log p/∂η²] (and the
same for the θ-score) by exact summation over the support.
"""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import expit, gammaln, log_expit

import gmrf_core as gm
from gmrf_core import likelihoods, models

# bounded and reproducible (derandomized, no example database); no "explain" phase
PHASES = [Phase.explicit, Phase.generate, Phase.shrink]
# every likelihood family, and the settings of the tests at random points of one likelihood
FAMILIES = st.sampled_from(["gaussian", "poisson", "bernoulli", "binomial", "negative_binomial"])
AT_RANDOM_POINTS = settings(
    max_examples=80, deadline=None, derandomize=True, database=None, phases=PHASES
)
# hypothesis' failure report imports a deprecated helper: without this filter a failing
# example surfaces as a pytest INTERNALERROR instead of its falsifying example
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIXED_PRECISION = 1e-3  # the model's default precision of the fixed effects

# -- independent likelihoods: (log density, d1, d2) of η for observed y ----------------


def _reference_likelihood(family, y, eta, theta, setting):
    if family == "gaussian":
        precision = np.exp(theta[0]) * setting
        r = y - eta
        value = np.sum(0.5 * np.log(precision / (2 * np.pi)) - 0.5 * precision * r**2)
        return value, precision * r, -precision
    if family == "poisson":
        mean = setting * np.exp(eta)
        return np.sum(stats.poisson.logpmf(y, mean)), y - mean, -mean
    if family in ("bernoulli", "binomial"):
        p = expit(eta)
        trials = setting
        value = np.sum(stats.binom.logpmf(y, trials, p))
        return value, y - trials * p, -trials * p * (1 - p)
    if family == "negative_binomial":
        size = np.exp(theta[0])
        mean = setting * np.exp(eta)
        q = mean / (size + mean)
        value = np.sum(stats.nbinom.logpmf(y, size, 1 - q))
        return value, size * (y - mean) / (size + mean), -(size + y) * q * (1 - q)
    raise AssertionError(family)


def _make_likelihood(family, y, setting):
    if family == "gaussian":
        return likelihoods.Gaussian(y, scale=setting)
    if family == "poisson":
        return likelihoods.Poisson(y, exposure=setting)
    if family == "bernoulli":
        return likelihoods.Bernoulli(y)
    if family == "binomial":
        return likelihoods.Binomial(y, trials=setting)
    return likelihoods.NegativeBinomial(y, exposure=setting)


def _simulate(family, eta, theta, setting, rng):
    if family == "gaussian":
        return eta + rng.standard_normal(eta.size) / np.sqrt(np.exp(theta[0]) * setting)
    if family == "poisson":
        return rng.poisson(setting * np.exp(eta)).astype(float)
    if family in ("bernoulli", "binomial"):
        return rng.binomial(setting.astype(int), expit(eta)).astype(float)
    size = np.exp(theta[0])
    return rng.negative_binomial(size, size / (size + setting * np.exp(eta))).astype(float)


# -- random models ------------------------------------------------------------------------


def _random_graph(n, rng):
    """A random undirected graph on n nodes (possibly disconnected, islands allowed)."""
    adjacency = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < 0.45:
                adjacency[i, j] = adjacency[j, i] = 1.0
    return sp.csr_matrix(adjacency)


def _custom_model(n, rng):
    """Q(θ) = e^θ0 S + e^θ1 I with S a random sparse graph Laplacian (+ small ridge)."""
    graph = _random_graph(n, rng).toarray()
    laplacian = np.diag(graph.sum(axis=1)) - graph
    structure = sp.csc_matrix(laplacian + 0.1 * np.eye(n))
    identity = sp.identity(n, format="csc")

    def precision(theta):
        return np.exp(theta[0]) * structure + np.exp(theta[1]) * identity

    def precision_grad(theta):
        return [np.exp(theta[0]) * structure, np.exp(theta[1]) * identity]

    return models.Custom(
        n,
        precision,
        precision_grad,
        theta0=[0.0, 0.0],
        theta_names=["log_scale", "log_nugget"],
        pattern=structure + identity,
    )


KINDS = ["iid", "ar1", "rw1", "besag", "matern", "custom"]


@st.composite
def _prior_and_theta(draw, kind):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    if kind == "iid":
        prior = models.IID(draw(st.integers(1, 8)))
        theta = [draw(st.floats(-3.0, 2.0))]
    elif kind == "ar1":
        prior = models.AR1(draw(st.integers(2, 8)))
        theta = [draw(st.floats(-2.0, 2.0)), draw(st.floats(-1.5, 1.5))]
    elif kind == "rw1":
        prior = models.RW1(draw(st.integers(3, 8)))
        theta = [draw(st.floats(-1.0, 2.0))]
    elif kind == "besag":
        prior = models.Besag(_random_graph(draw(st.integers(3, 8)), rng))
        theta = [draw(st.floats(-1.0, 2.0))]
    elif kind == "matern":
        shape = (draw(st.integers(4, 6)), draw(st.integers(4, 6)))
        prior = models.Matern2D(shape)
        theta = [draw(st.floats(np.log(1.0), np.log(4.0))), draw(st.floats(-1.0, 1.0))]
    else:
        prior = _custom_model(draw(st.integers(2, 8)), rng)
        theta = [draw(st.floats(-1.5, 1.5)), draw(st.floats(-2.0, 1.0))]
    return kind, prior, np.array(theta), seed


@st.composite
def _problems(draw, kind):
    kind, prior, theta_prior, seed = draw(_prior_and_theta(kind))
    family = draw(FAMILIES)
    rng = np.random.default_rng(seed + 1)
    n = prior.n
    projection = draw(st.sampled_from(["identity", "random"]))
    if projection == "random":
        m = draw(st.integers(1, 2 * n))
        A = sp.random(m, n, density=0.4, random_state=rng, format="csr")
        A.data = rng.uniform(0.2, 1.0, A.nnz)
    else:
        m, A = n, None
    intercept = draw(st.booleans())
    X = np.ones((m, 1)) if intercept else None
    if family == "gaussian":
        theta_lik = [draw(st.floats(-2.0, 3.0))]
        setting = rng.uniform(0.5, 2.0, m)
    elif family == "negative_binomial":
        theta_lik = [draw(st.floats(-1.0, 6.0))]
        setting = rng.uniform(0.5, 2.0, m)
    elif family == "poisson":
        theta_lik = []
        setting = rng.uniform(0.5, 2.0, m)
    elif family == "binomial":
        theta_lik = []
        setting = rng.integers(1, 12, m).astype(float)
    else:
        theta_lik = []
        setting = np.ones(m)
    theta_lik = np.array(theta_lik)
    # data from the model at a random latent field: moderate, or hard (the weakly
    # identified cases: counts that are mostly zeros, binary data near separation)
    hard = draw(st.booleans())
    eta_true = 0.6 * rng.standard_normal(m) + (0.3 if intercept else 0.0)
    if hard:
        eta_true = 4.0 * eta_true if family in ("bernoulli", "binomial") else eta_true - 2.5
    y = _simulate(family, eta_true, theta_lik, setting, rng)
    missing = rng.random(m) < draw(st.sampled_from([0.0, 0.0, 0.2]))
    y[missing] = np.nan
    return dict(
        kind=kind,
        prior=prior,
        family=family,
        y=y,
        setting=setting,
        A=A,
        X=X,
        theta=np.concatenate([theta_prior, theta_lik]),
        n_prior=theta_prior.size,
        hard=hard,
    )


# -- the dense reference ------------------------------------------------------------------


def _dense_objective(problem, theta):
    """The Laplace objective by dense Newton in null-space coordinates (see module doc)."""
    prior = problem["prior"]
    theta_prior, theta_lik = theta[: problem["n_prior"]], theta[problem["n_prior"] :]
    Q = prior.precision(theta_prior)
    Q = Q.toarray() if sp.issparse(Q) else np.asarray(Q)
    n = prior.n
    y, setting = problem["y"], problem["setting"]
    m = y.size
    A = np.eye(n) if problem["A"] is None else problem["A"].toarray()
    X = np.zeros((m, 0)) if problem["X"] is None else problem["X"]
    p = X.shape[1]
    A_tilde = np.hstack([A, X])
    Q_tilde = scipy.linalg.block_diag(Q, FIXED_PRECISION * np.eye(p))
    mu = np.concatenate([np.asarray(prior.mean(theta_prior), float), np.zeros(p)])
    observed = ~np.isnan(y)
    A_obs, y_obs, set_obs = A_tilde[observed], y[observed], setting[observed]
    constraints = prior.constraints
    if constraints is None:
        B = np.eye(n + p)
        z_particular = np.zeros(n + p)
    else:
        Ac = np.atleast_2d(np.asarray(constraints[0], float))
        Ac = np.hstack([Ac, np.zeros((Ac.shape[0], p))])
        e = np.atleast_1d(np.asarray(constraints[1], float))
        B = scipy.linalg.null_space(Ac)
        z_particular = np.linalg.lstsq(Ac, e, rcond=None)[0]

    def pieces(u):
        z = z_particular + B @ u
        eta = A_obs @ z
        value, d1, d2 = _reference_likelihood(problem["family"], y_obs, eta, theta_lik, set_obs)
        r = z - mu
        g = -value + 0.5 * r @ Q_tilde @ r
        grad = B.T @ (-A_obs.T @ d1 + Q_tilde @ r)
        hess = B.T @ (Q_tilde + A_obs.T @ (-d2[:, None] * A_obs)) @ B
        return g, grad, hess, value, r

    u = np.zeros(B.shape[1])
    g, grad, hess, value, r = pieces(u)
    for _ in range(200):
        step = -np.linalg.solve(hess, grad)
        decrement = -grad @ step
        t = 1.0
        while True:
            g_new, *rest = pieces(u + t * step)
            if np.isfinite(g_new) and g_new <= g + 1e-4 * t * (grad @ step) + 1e-13 * abs(g):
                break
            t *= 0.5
            if t < 1e-12:
                break
        u = u + t * step
        g, grad, hess, value, r = pieces(u)
        if decrement < 1e-24 * max(1.0, abs(g)) or np.linalg.norm(t * step) < 1e-15:
            break
    sign_q, logdet_q = np.linalg.slogdet(B.T @ Q_tilde @ B)
    sign_h, logdet_h = np.linalg.slogdet(hess)
    assert sign_q > 0 and sign_h > 0
    return -value + 0.5 * r @ Q_tilde @ r - 0.5 * logdet_q + 0.5 * logdet_h


def _dense_gradient(problem, theta, step=1e-5):
    grad = np.empty(theta.size)
    for k in range(theta.size):
        shift = np.zeros(theta.size)
        shift[k] = step
        grad[k] = (
            _dense_objective(problem, theta + shift) - _dense_objective(problem, theta - shift)
        ) / (2 * step)
    return grad


def _build(problem):
    return gm.LatentGaussianModel(
        problem["prior"],
        _make_likelihood(problem["family"], problem["y"], problem["setting"]),
        A=problem["A"],
        X=problem["X"],
    )


def _describe(problem):
    return (
        f"{problem['kind']} n={problem['prior'].n} {problem['family']} "
        f"m={problem['y'].size} A={'identity' if problem['A'] is None else 'random'} "
        f"X={'intercept' if problem['X'] is not None else 'none'} "
        f"missing={int(np.isnan(problem['y']).sum())} hard={problem['hard']} "
        f"y={problem['y'].tolist()} theta={problem['theta'].tolist()}"
    )


# -- model-level properties -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data())
def test_objective_and_gradient_equal_the_dense_reference(kind, data):
    problem = data.draw(_problems(kind))
    theta = problem["theta"]
    try:
        model = _build(problem)
        value = model.objective(theta)
        value2, grad = model.value_and_grad(theta)
    except gm.GMRFError as exc:
        event(f"refused: {type(exc).__name__}")
        return  # a clean, documented refusal is allowed; anything else fails the test
    event(f"checked: {problem['kind']}, {problem['family']}, hard={problem['hard']}")
    where = _describe(problem)
    assert np.isfinite(value) and np.isfinite(value2) and np.all(np.isfinite(grad)), where
    reference = _dense_objective(problem, theta)
    assert abs(value - reference) <= 1e-8 * max(1.0, abs(reference)), (where, value, reference)
    assert abs(value2 - value) <= 1e-10 * max(1.0, abs(value)), (where, value2, value)
    reference_grad = _dense_gradient(problem, theta)
    tolerance = 1e-5 * (1.0 + np.abs(reference_grad)) + 1e-9 * abs(reference)
    assert np.all(np.abs(grad - reference_grad) <= tolerance), (where, grad, reference_grad)
    # forward mode agrees with reverse mode along a random direction
    direction = np.random.default_rng(theta.size).standard_normal(theta.size)
    value3, directional = model.jvp(theta, direction)
    assert abs(value3 - value) <= 1e-10 * max(1.0, abs(value)), (where, value3, value)
    expected = float(grad @ direction)
    assert abs(directional - expected) <= 1e-8 * (1.0 + np.abs(grad) @ np.abs(direction)), (
        where,
        directional,
        expected,
    )


@pytest.mark.parametrize("kind", KINDS)
@SETTINGS
@given(data=st.data(), shift=st.floats(-1.0, 1.0))
def test_objective_does_not_depend_on_the_call_history(kind, data, shift):
    problem = data.draw(_problems(kind))
    # Newton warm-starts from the last mode: a value must not depend on where it started
    theta = problem["theta"]
    try:
        model = _build(problem)
        first = model.objective(theta)
        model.objective(theta + shift)
        again = model.objective(theta)
        fresh = _build(problem).objective(theta)
    except gm.GMRFError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    where = _describe(problem)
    scale = max(1.0, abs(first))
    assert abs(again - first) <= 1e-9 * scale, (where, first, again)
    assert abs(fresh - first) <= 1e-9 * scale, (where, first, fresh)


# -- likelihood-level properties --------------------------------------------------------------

_SUPPORT = np.arange(0, 20000, dtype=float)  # counts summed over (tails below e^-100)


def _count_likelihood(family, eta, theta, setting):
    """The likelihood object on y = 0..K with η_i = η (for the support sums)."""
    if family == "poisson":
        lik = likelihoods.Poisson(_SUPPORT, exposure=setting)
    elif family == "negative_binomial":
        lik = likelihoods.NegativeBinomial(_SUPPORT, exposure=setting)
    else:
        trials = int(setting)
        lik = likelihoods.Binomial(np.arange(trials + 1, dtype=float), trials=trials)
    return lik, np.full(lik.n, eta)


@settings(max_examples=60, deadline=None, derandomize=True, database=None, phases=PHASES)
@given(
    family=st.sampled_from(["poisson", "binomial", "negative_binomial"]),
    eta=st.floats(-4.0, 3.0),
    log_size=st.floats(-1.0, 8.0),
    setting=st.floats(0.5, 3.0),
)
def test_score_identities_hold_by_exact_summation(family, eta, log_size, setting):
    if family == "binomial":
        setting = float(round(setting * 7))
    theta = [log_size] if family == "negative_binomial" else []
    lik, etas = _count_likelihood(family, eta, theta, setting)
    log_p = lik.pointwise_log_density(etas, theta)
    weights = np.exp(log_p)
    assert abs(weights.sum() - 1.0) < 1e-10  # the density is normalised
    d1, d2, _ = lik.eta_derivatives(etas, theta)
    scale = max(1.0, float(np.sum(weights * d1**2)))
    assert abs(np.sum(weights * d1)) < 1e-9 * scale
    assert abs(np.sum(weights * d1**2) + np.sum(weights * d2)) < 1e-9 * scale
    if theta:
        # θ-score: E[∂θ log p] = 0, pointwise terms from finite differences of log p in θ
        h = 1e-5
        plus = lik.pointwise_log_density(etas, [log_size + h])
        minus = lik.pointwise_log_density(etas, [log_size - h])
        score = (plus - minus) / (2 * h)
        assert abs(np.sum(weights * score)) < 1e-6 * max(1.0, np.sqrt(np.sum(weights * score**2)))
        g, g_eta, _ = lik.theta_derivatives(etas, theta)
        assert g[0] == pytest.approx(np.sum(score), rel=1e-6, abs=1e-6)
        # E[∂²/∂η∂θ log p] = −E[∂η log p · ∂θ log p]
        assert abs(np.sum(weights * g_eta[0]) + np.sum(weights * d1 * score)) < 1e-6 * scale


@AT_RANDOM_POINTS
@given(
    family=FAMILIES,
    seed=st.integers(0, 2**31 - 1),
    eta_scale=st.sampled_from([0.5, 3.0, 20.0]),
    theta=st.floats(-3.0, 10.0),
)
def test_log_density_matches_scipy_stats_at_random_points(family, seed, eta_scale, theta):
    rng = np.random.default_rng(seed)
    m = 6
    eta = eta_scale * rng.standard_normal(m)
    if family == "gaussian":
        setting = rng.uniform(0.1, 5.0, m)
        y = eta + rng.standard_normal(m) * 3.0
        reference = stats.norm.logpdf(y, eta, 1 / np.sqrt(np.exp(theta) * setting))
    elif family == "poisson":
        setting = rng.uniform(0.1, 5.0, m)
        y = rng.integers(0, 60, m).astype(float)
        reference = stats.poisson.logpmf(y, setting * np.exp(eta))
    elif family == "negative_binomial":
        setting = rng.uniform(0.1, 5.0, m)
        y = rng.integers(0, 60, m).astype(float)
        size = np.exp(theta)
        difference = np.log(setting) + eta - theta  # log(μ / r)
        # not nbinom.logpmf(y, r, r/(r+μ)): the rounding of p costs it 1e-6 at μ/r ~ 1e-11
        reference = (
            gammaln(y + size)
            - gammaln(size)
            - gammaln(y + 1)
            + size * log_expit(-difference)
            + y * log_expit(difference)
        )
    else:
        setting = np.ones(m) if family == "bernoulli" else rng.integers(1, 40, m).astype(float)
        y = rng.binomial(setting.astype(int), 0.5).astype(float)
        # not binom.logpmf(y, N, expit(η)): rounding p to 1 − 5e-12 costs it 1e-7 relative
        reference = (
            gammaln(setting + 1)
            - gammaln(y + 1)
            - gammaln(setting - y + 1)
            + y * log_expit(eta)
            + (setting - y) * log_expit(-eta)
        )
    lik = _make_likelihood(family, y, setting)
    theta_vector = [theta] if family in ("gaussian", "negative_binomial") else []
    values = lik.pointwise_log_density(eta, theta_vector)
    finite = np.isfinite(reference)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(values[finite], reference[finite], rtol=1e-9, atol=1e-9)
    # first η-derivative: central differences of the log density, elementwise
    h = 1e-6 * max(1.0, eta_scale)
    plus = lik.pointwise_log_density(eta + h, theta_vector)
    minus = lik.pointwise_log_density(eta - h, theta_vector)
    d1 = lik.eta_derivatives(eta, theta_vector)[0]
    numeric = (plus - minus) / (2 * h)
    tolerance = 1e-5 * (1 + np.abs(numeric)) + 1e-9 * np.abs(values) / h
    assert np.all(np.abs(d1 - numeric) <= tolerance)


@st.composite
def _sparsely_observed_intrinsic(draw):
    """RW1 or Besag (several components, islands) observed at a random subset of nodes,
    so that whole components may have no data: only the constraints pin them down."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(4, 9))
    if draw(st.booleans()):
        kind, prior = "rw1", models.RW1(n)
    else:
        kind, prior = "besag", models.Besag(_random_graph(n, rng))
    observed_nodes = np.flatnonzero(rng.random(n) < draw(st.sampled_from([0.0, 0.3, 0.6])))
    if observed_nodes.size == 0:
        observed_nodes = np.array([int(rng.integers(n))])
    A = sp.csr_matrix(np.eye(n)[observed_nodes])
    m = observed_nodes.size
    family = draw(st.sampled_from(["gaussian", "poisson", "bernoulli"]))
    theta_lik = np.array([draw(st.floats(-1.0, 2.0))]) if family == "gaussian" else np.zeros(0)
    setting = np.ones(m)
    y = _simulate(family, 0.5 * rng.standard_normal(m), theta_lik, setting, rng)
    intercept = draw(st.booleans())
    return dict(
        kind=kind,
        prior=prior,
        family=family,
        y=y,
        setting=setting,
        A=A,
        X=np.ones((m, 1)) if intercept else None,
        theta=np.concatenate([[draw(st.floats(-2.0, 2.0))], theta_lik]),
        n_prior=1,
        hard=False,
    )


@SETTINGS
@given(_sparsely_observed_intrinsic())
def test_constrained_intrinsic_models_without_data_on_a_component_are_exact(problem):
    # the defect: an unobserved, constrained component made most θ raise
    # NotPositiveDefiniteError; the constrained Gaussian approximation is well defined
    # (B'HB is positive definite), so here a refusal is a failure too
    theta = problem["theta"]
    where = _describe(problem)
    value, grad = _build(problem).value_and_grad(theta)
    reference = _dense_objective(problem, theta)
    assert abs(value - reference) <= 1e-8 * max(1.0, abs(reference)), (where, value, reference)
    reference_grad = _dense_gradient(problem, theta)
    tolerance = 1e-5 * (1.0 + np.abs(reference_grad)) + 1e-9 * abs(reference)
    assert np.all(np.abs(grad - reference_grad) <= tolerance), (where, grad, reference_grad)


@AT_RANDOM_POINTS
@given(
    family=FAMILIES,
    seed=st.integers(0, 2**31 - 1),
    eta_scale=st.sampled_from([0.5, 5.0, 40.0]),
    theta=st.floats(-4.0, 30.0),
)
def test_derivatives_are_the_derivatives_of_the_log_density(family, seed, eta_scale, theta):
    # η-derivatives of orders 2, 3 and every θ-derivative against central differences
    # of the lower order, at random points including large |η| and large log sizes
    rng = np.random.default_rng(seed)
    m = 5
    eta = eta_scale * rng.standard_normal(m)
    setting = rng.uniform(0.5, 3.0, m)
    if family in ("bernoulli", "binomial"):
        setting = np.ones(m) if family == "bernoulli" else rng.integers(1, 30, m).astype(float)
        y = rng.binomial(setting.astype(int), 0.5).astype(float)
    elif family == "gaussian":
        theta = min(theta, 8.0)
        y = eta + rng.standard_normal(m)
    else:
        y = rng.integers(0, 40, m).astype(float)
    lik = _make_likelihood(family, y, setting)
    has_theta = family in ("gaussian", "negative_binomial")
    th = np.array([theta]) if has_theta else np.zeros(0)
    h = 1e-5
    d1, d2, d3 = lik.eta_derivatives(eta, th)
    d1p, d2p, _ = lik.eta_derivatives(eta + h, th)
    d1m, d2m, _ = lik.eta_derivatives(eta - h, th)

    def close(analytic, numeric, scale):
        tolerance = 1e-6 * (np.abs(numeric) + 1.0) + 1e-12 * scale / h
        assert np.all(np.abs(analytic - numeric) <= tolerance), (analytic, numeric)

    close(d2, (d1p - d1m) / (2 * h), np.abs(d1))
    close(d3, (d2p - d2m) / (2 * h), np.abs(d2))
    if has_theta:
        g, g_eta, g_eta2 = lik.theta_derivatives(eta, th)
        plus = lik.pointwise_log_density(eta, th + h)
        minus = lik.pointwise_log_density(eta, th - h)
        scale = np.abs(lik.pointwise_log_density(eta, th))
        close(g[0], np.sum(plus - minus) / (2 * h), np.sum(scale))
        e1p, e2p, _ = lik.eta_derivatives(eta, th + h)
        e1m, e2m, _ = lik.eta_derivatives(eta, th - h)
        close(g_eta[0], (e1p - e1m) / (2 * h), np.abs(d1))
        close(g_eta2[0], (e2p - e2m) / (2 * h), np.abs(d2))
