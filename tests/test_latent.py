"""LatentStructure: H on its fixed pattern, predictor variances, traces, the prior log-det on the
constraint surface, the shared θ-partials and grounding, against dense references."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.linalg import null_space

import gmrf_core as gm
from gmrf_core import likelihoods, models
from gmrf_core.latent import LatentStructure, prior_partials


def grid_adjacency(side):
    path = sp.diags_array([np.ones(side - 1), np.ones(side - 1)], offsets=[-1, 1])
    return sp.csr_matrix(sp.kron(path, sp.eye_array(side)) + sp.kron(sp.eye_array(side), path))


def constrained_custom(side=5):
    """A Custom prior Q = e^θ₀ R + e^θ₁ I on a grid (fill-in), with a sum-to-zero constraint
    and no analytic log-determinant: log det(BᵀQB) is factorized."""
    adjacency = grid_adjacency(side)
    R = sp.csc_matrix(sp.diags_array(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency)
    eye = sp.eye_array(side * side, format="csc")
    n = side * side
    return models.Custom(
        n,
        lambda t: np.exp(t[0]) * R + np.exp(t[1]) * eye,
        lambda t: [np.exp(t[0]) * R, np.exp(t[1]) * eye],
        np.array([0.3, -1.0]),
        ("log_r", "log_i"),
        constraints=(np.ones((1, n)), 0.0),
    )


def structure_with_missing(prior):
    rng = np.random.default_rng(0)
    m = 18
    A = sp.random(m, prior.n, density=0.12, random_state=1, format="csr")
    y = rng.poisson(2.0, m).astype(float)
    y[[3, 11]] = np.nan
    X = np.column_stack([np.ones(m), rng.standard_normal(m)])
    return LatentStructure(prior, likelihoods.Poisson(y), A=A, X=X)


def dense_prior(s, theta_prior):
    n, total = s.n_latent, s.n_total
    Q = np.zeros((total, total))
    Q[:n, :n] = s.prior.precision(theta_prior).toarray()
    Q[n:, n:] = s.fixed_precision * np.eye(total - n)
    return Q


def surface_basis(s):
    if s.constraints is None:
        return np.eye(s.n_total)
    return null_space(s.constraints.A)


def test_hessian_assembly_variances_and_traces_against_dense():
    s = structure_with_missing(constrained_custom())
    theta = s.split_theta(np.array([0.2, -0.5]))
    Q_tilde = s.prior_precision(theta.prior)
    np.testing.assert_allclose(Q_tilde.toarray(), dense_prior(s, theta.prior), rtol=1e-14)
    weights = np.random.default_rng(2).uniform(0.5, 3.0, s.n_obs)
    with s.hessian_pool.borrow() as item:
        cf = s.factorize(item, Q_tilde, weights)
        H = item[0].toarray()
        A_obs = s.A_full.toarray() * s.observed[:, None]
        dense_H = dense_prior(s, theta.prior) + A_obs.T @ np.diag(weights) @ A_obs
        np.testing.assert_allclose(H, dense_H, rtol=1e-12, atol=1e-14)
        B = surface_basis(s)
        cov_c = B @ np.linalg.inv(B.T @ dense_H @ B) @ B.T
        np.testing.assert_allclose(
            s.predictor_variance(cf), np.diag(A_obs @ cov_c @ A_obs.T), rtol=1e-9, atol=1e-14
        )
        dQ = s.prior_precision_grad(theta.prior)
        traces = s.prior_traces(cf, dQ)
        expected = [np.trace(cov_c @ s.q_pattern.matrix(d).toarray()) for d in dQ]
        np.testing.assert_allclose(traces, expected, rtol=1e-9)
        assert cf.logdet() == pytest.approx(np.linalg.slogdet(B.T @ dense_H @ B)[1], rel=1e-11)


def test_prior_logdet_factorized_once_and_its_gradient():
    s = structure_with_missing(constrained_custom())
    assert s.prior_symbolic is not None  # Q̃ analysed at set-up: no analytic log-det
    B = surface_basis(s)

    def dense_logdet(theta_prior):
        return np.linalg.slogdet(B.T @ dense_prior(s, theta_prior) @ B)[1]

    theta_prior = np.array([0.2, -0.5])
    Q_tilde = s.prior_precision(theta_prior)
    logdet = s.prior_logdet(theta_prior, Q_tilde)
    try:
        assert logdet.value == pytest.approx(dense_logdet(theta_prior), rel=1e-11)
        grad = logdet.grad(s.prior_precision_grad(theta_prior))
    finally:
        logdet.close()
    h = 1e-6
    fd = [
        (dense_logdet(theta_prior + h * e) - dense_logdet(theta_prior - h * e)) / (2 * h)
        for e in np.eye(2)
    ]
    np.testing.assert_allclose(grad, fd, rtol=1e-7)
    # an analytic prior: no factorization of Q̃ at all
    analytic = structure_with_missing(models.Besag(grid_adjacency(4)))
    assert analytic.prior_symbolic is None


def test_prior_partials_are_the_derivative_of_the_prior_terms():
    """∂/∂θ_k [½ rᵀQ̃r + ½ tr(Σ_c Q̃) − ½ log det(BᵀQ̃B)] at fixed r and Σ_c, by central
    differences of the dense expression (the function both objectives share)."""
    s = structure_with_missing(constrained_custom())
    B = surface_basis(s)
    theta_prior = np.array([0.2, -0.5])
    rng = np.random.default_rng(3)
    r = B @ rng.standard_normal(B.shape[1])
    weights = rng.uniform(0.5, 3.0, s.n_obs)
    Q_tilde = s.prior_precision(theta_prior)
    with s.hessian_pool.borrow() as item:
        cf = s.factorize(item, Q_tilde, weights)
        logdet = s.prior_logdet(theta_prior, Q_tilde)
        try:
            partial = prior_partials(
                s,
                Q_tilde,
                r,
                cf,
                s.prior_precision_grad(theta_prior),
                s.prior_mean_grad(theta_prior),
                logdet,
            )
        finally:
            logdet.close()
        A_obs = s.A_full.toarray() * s.observed[:, None]
        H = dense_prior(s, theta_prior) + A_obs.T @ np.diag(weights) @ A_obs
    sigma = B @ np.linalg.inv(B.T @ H @ B) @ B.T

    def terms(t):
        Q = dense_prior(s, t)
        return 0.5 * r @ Q @ r + 0.5 * np.trace(sigma @ Q) - 0.5 * np.linalg.slogdet(B.T @ Q @ B)[1]

    h = 1e-6
    fd = [(terms(theta_prior + h * e) - terms(theta_prior - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(partial, fd, rtol=1e-7)


def test_grounding_of_an_unobserved_constrained_component():
    """A Besag component no observation touches is grounded; the factorized H' gives the
    Gaussian of H on the constraint surface exactly."""
    prior = models.Besag(sp.block_diag([grid_adjacency(3), grid_adjacency(3)]).tocsr())
    A = sp.csr_matrix((np.ones(9), (np.arange(9), np.arange(9))), shape=(9, 18))
    s = LatentStructure(prior, likelihoods.Poisson(np.arange(9.0)), A=A, X=np.ones((9, 1)))
    rows, _pos = s._ground
    assert rows.size == 1 and 9 <= rows[0] < 18
    theta_prior = np.array([0.4])
    Q_tilde = s.prior_precision(theta_prior)
    weights = np.linspace(0.5, 2.0, 9)
    A_obs = s.A_full.toarray()
    H = dense_prior(s, theta_prior) + A_obs.T @ np.diag(weights) @ A_obs
    assert np.linalg.eigvalsh(H)[0] < 1e-10  # singular along the unobserved constant
    B = surface_basis(s)
    cov_c = B @ np.linalg.inv(B.T @ H @ B) @ B.T
    with s.hessian_pool.borrow() as item:
        cf = s.factorize(item, Q_tilde, weights)
        np.testing.assert_allclose(cf.marginal_variance(), np.diag(cov_c), rtol=1e-9, atol=1e-13)
        b = np.random.default_rng(4).standard_normal(s.n_total)
        np.testing.assert_allclose(cf.solve(b), cov_c @ b, rtol=1e-8, atol=1e-11)
        assert cf.logdet() == pytest.approx(np.linalg.slogdet(B.T @ H @ B)[1], rel=1e-11)
        traces = s.prior_traces(cf, [Q_tilde.data])
        assert traces[0] == pytest.approx(np.trace(cov_c @ Q_tilde.toarray()), rel=1e-9)


def test_theta_is_validated_once_and_split():
    s = structure_with_missing(constrained_custom())
    theta = s.split_theta([0.1, 0.2])
    assert s.split_theta(theta) is theta
    np.testing.assert_array_equal(theta.prior, [0.1, 0.2])
    assert theta.likelihood.size == 0
    with pytest.raises(gm.InputError, match="real"):
        s.split_theta(np.array([1 + 1j, 0.0]))
    with pytest.raises(gm.InputError, match="numbers"):
        s.split_theta(["a", "b"])
    with pytest.raises(gm.InputError, match="2 entries"):
        s.split_theta([0.0])
    with pytest.raises(gm.InputError, match="finite"):
        s.split_theta([np.inf, 0.0])


def test_pools_give_each_call_its_own_factor_and_pickle():
    s = structure_with_missing(constrained_custom())
    with s.hessian_pool.borrow() as first, s.hessian_pool.borrow() as second:
        assert first is not second
    with s.hessian_pool.borrow() as again:
        assert again is first or again is second  # reused, not reallocated
    s = structure_with_missing(models.Matern2D((5, 4)))  # a picklable prior
    with s.hessian_pool.borrow():
        pass
    copy = pickle.loads(pickle.dumps(s))
    Q_tilde = copy.prior_precision(copy.theta0[: copy.n_theta_prior])
    with copy.hessian_pool.borrow() as item:
        cf = copy.factorize(item, Q_tilde, np.ones(copy.n_obs))
        assert np.isfinite(cf.logdet())


def test_an_intrinsic_prior_needs_an_analytic_log_determinant():
    n = 6
    diagonal = np.r_[1.0, 2 * np.ones(n - 2), 1.0]
    R = sp.csc_matrix(
        sp.diags_array([-np.ones(n - 1), diagonal, -np.ones(n - 1)], offsets=[-1, 0, 1])
    )
    prior = models.Custom(
        n,
        lambda t: np.exp(t[0]) * R,
        lambda t: [np.exp(t[0]) * R],
        np.zeros(1),
        ("log_tau",),
        constraints=(np.ones((1, n)), 0.0),
        rank_deficiency=1,
    )
    with pytest.raises(gm.InputError, match="intrinsic"):
        LatentStructure(prior, likelihoods.Poisson(np.ones(n)))


@pytest.mark.parametrize("theta", [[0.1, "0.2"], ["0.1", "0.2"], [0.1, None]])
def test_theta_of_strings_or_objects_is_refused(theta):
    model = gm.LatentGaussianModel(models.IID(3), likelihoods.Gaussian(np.array([0.1, 0.2, 0.3])))
    with pytest.raises(gm.InputError, match="real numbers"):
        model.objective(theta)


def test_prior_precision_grad_from_value_arrays_matches_the_matrices():
    """A Matérn prior hands dQ/dθ as value arrays on Q̃'s pattern; they equal the values
    gathered from its precision_grad matrices (bit for bit), with and without fixed
    effects."""
    prior = models.Matern2D((8, 6))
    y = np.arange(prior.n) % 4
    theta = np.array([1.2, -0.2])
    for X in (None, np.ones((prior.n, 2))):
        structure = LatentStructure(prior, likelihoods.Poisson(y), None, X)
        assert structure._grad_values_on_pattern
        fast = structure.prior_precision_grad(theta)
        structure._grad_values_on_pattern = False  # the general path through the matrices
        slow = structure.prior_precision_grad(theta)
        for a, b in zip(fast, slow):
            np.testing.assert_array_equal(a, b)
        assert all(a.shape == (structure.q_pattern.nnz,) for a in fast)
    structure._grad_values_on_pattern = True
    structure.prior = type("Short", (), {"precision_grad_values": lambda self, t: [np.ones(3)]})()
    with pytest.raises(gm.InputError, match=r"precision_grad_values\(theta\)\[0\] has shape"):
        structure.prior_precision_grad(theta)
    assert not LatentStructure(
        models.IID(5), likelihoods.Poisson(np.ones(5)), None, None
    )._grad_values_on_pattern


def test_prior_precision_from_value_arrays_matches_the_matrices():
    """Priors that hand Q's values on Q̃'s pattern (Matérn, Custom) give the same Q̃ as the
    general path through their matrices (bit for bit), with and without fixed effects; a
    value array of the wrong length is refused."""
    matern = models.Matern2D((8, 6))
    Q0 = matern.precision(matern.theta0)
    custom = models.Custom(
        matern.n,
        lambda t: np.exp(t[0]) * Q0 + np.exp(t[1]) * sp.identity(matern.n),
        lambda t: [np.exp(t[0]) * Q0, np.exp(t[1]) * sp.identity(matern.n)],
        [0.0, -1.0],
        ("a", "b"),
    )
    y = np.arange(matern.n) % 4
    for prior, theta in ((matern, np.array([1.2, -0.2])), (custom, np.array([0.3, -0.4]))):
        for X in (None, np.ones((prior.n, 2))):
            structure = LatentStructure(prior, likelihoods.Poisson(y), None, X)
            assert structure._values_on_pattern
            fast = structure.prior_precision(theta)
            structure._values_on_pattern = False  # the general path through the matrices
            slow = structure.prior_precision(theta)
            np.testing.assert_array_equal(fast.indptr, slow.indptr)
            np.testing.assert_array_equal(fast.indices, slow.indices)
            np.testing.assert_array_equal(fast.data, slow.data)
    structure = LatentStructure(matern, likelihoods.Poisson(y), None, None)
    structure.prior = type("Short", (), {"precision_values": lambda self, t: np.ones(3)})()
    with pytest.raises(gm.InputError, match="precision_values"):
        structure.prior_precision(np.array([1.2, -0.2]))
    assert not LatentStructure(
        models.IID(5), likelihoods.Poisson(np.ones(5)), None, None
    )._values_on_pattern


class _PlainPrior:
    """A prior of the bare protocol (no value arrays): Q(θ) = exp(θ) T + ``extra``."""

    def __init__(self, extra=None):
        self.n, self.theta0, self.theta_names = 6, np.zeros(1), ("log_tau",)
        self.base = sp.csc_matrix(
            sp.diags_array([-np.ones(5), np.full(6, 3.0), -np.ones(5)], offsets=[-1, 0, 1])
        )
        self.extra = extra

    def precision(self, theta):
        Q = np.exp(theta[0]) * self.base
        return Q if self.extra is None or theta[0] < 0.5 else Q + self.extra

    def precision_grad(self, theta):
        return [np.exp(theta[0]) * self.base]

    def mean(self, theta):
        return np.zeros(self.n)

    def mean_grad(self, theta):
        return np.zeros((1, self.n))


def test_h_from_a_checked_prior_precision_is_factorized_without_checking_it_again(monkeypatch):
    """Q̃ from prior_precision is checked once (then read-only): H assembled from it is
    factorized as it is, with the same factor as through the factorization's own checks;
    a Q̃ whose values were not checked there (a copy) goes through those checks."""
    from gmrf_core.kernels import symbolic as ksym

    y = np.arange(6) % 3
    s = LatentStructure(_PlainPrior(), likelihoods.Poisson(y), None, np.ones((6, 1)))
    checks = []
    original = ksym._check_values
    monkeypatch.setattr(ksym, "_check_values", lambda *a: checks.append(1) or original(*a))
    Q_tilde = s.prior_precision(np.array([0.2]))
    assert s.checked_prior(Q_tilde) and not Q_tilde.data.flags.writeable
    assert len(checks) == 1
    with s.hessian_pool.borrow() as item:
        s.factorize(item, Q_tilde, np.ones(6))  # the first one of the item: checked
        checks.clear()
        s.factorize(item, Q_tilde, np.full(6, 2.0))
        s.factorize(item, Q_tilde.copy(), np.full(6, 2.0))
    assert len(checks) == 1  # the copy's
    monkeypatch.undo()
    with pytest.raises(ValueError, match="read-only"):
        Q_tilde.data[0] = 1.0
    copy = Q_tilde.copy()
    assert not s.checked_prior(copy)
    weights = np.linspace(0.5, 2.0, 6)
    logdets = []
    for matrix in (Q_tilde, copy):
        with s.hessian_pool.borrow() as item:
            s.factorize(item, matrix, weights)  # the first factorization of the item
            logdets.append(s.factorize(item, matrix, weights).logdet())
    assert logdets[0] == logdets[1]
    copy.data[1] += 1.0  # asymmetric, and not checked by prior_precision
    with s.hessian_pool.borrow() as item:
        s.factorize(item, Q_tilde, weights)
        with pytest.raises(gm.NotSymmetricError):
            s.factorize(item, copy, weights)
        with pytest.raises(gm.InputError, match="NaN or infinite"):
            s.factorize(item, Q_tilde, np.r_[np.nan, weights[1:]])
    copy = pickle.loads(pickle.dumps(s))
    assert copy.checked_prior(copy.prior_precision(np.array([0.2])))


@pytest.mark.parametrize(
    "extra, error, match",
    [
        (sp.csc_matrix(([1e-3], ([0], [1])), shape=(6, 6)), gm.NotSymmetricError, "symmetric"),
        (sp.csc_matrix(([np.nan], ([2], [2])), shape=(6, 6)), gm.InputError, "NaN or infinite"),
    ],
)
def test_a_prior_precision_that_is_not_symmetric_or_finite_is_refused(extra, error, match):
    s = LatentStructure(_PlainPrior(extra), likelihoods.Poisson(np.arange(6) % 3), None, None)
    s.prior_precision(np.array([0.2]))
    with pytest.raises(error, match=match):
        s.prior_precision(np.array([1.0]))
    model = gm.LatentGaussianModel(_PlainPrior(extra), likelihoods.Poisson(np.arange(6) % 3))
    with pytest.raises(error, match=match):
        model.objective(np.array([1.0]))


def _matern_poisson_model(side=(42, 40)):
    rng = np.random.default_rng(3)
    prior = models.Matern2D(side)
    y = rng.poisson(3.0, prior.n).astype(float)
    y[[2, 17]] = np.nan
    X = np.column_stack([np.ones(prior.n), rng.standard_normal(prior.n)])
    return gm.LatentGaussianModel(prior, likelihoods.Poisson(y), X=X)


@pytest.mark.parametrize("writer", ["pickle", "compact"])
def test_a_pickled_model_rebuilds_what_it_leaves_out_bit_for_bit(writer):
    from gmrf_core import parallel
    from gmrf_core.linalg import Symbolic

    model = _matern_poisson_model()
    theta = np.array([np.log(2.0), np.log(0.8), np.log(1.0)])[: len(model.structure.theta0)]
    model.value_and_grad(theta)  # the copy starts from the same warm start as the model
    data = pickle.dumps(model) if writer == "pickle" else parallel._dumps(model)
    copy = pickle.loads(data)
    s, c = model.structure, copy.structure
    # what is rebuilt is not in the pickled state
    assert not set(LatentStructure._DERIVED) & set(s.__getstate__())
    assert not set(Symbolic._DERIVED + Symbolic._LAZY) & set(s.symbolic.__getstate__())
    assert s.h_pattern.__getstate__()["_columns"] is None
    assert "_stiffness_eigenvalues" not in s.prior.__getstate__()
    # and equal to the original after loading (values and types)
    pairs = [(getattr(c, k), getattr(s, k)) for k in LatentStructure._DERIVED]
    pairs += [(getattr(c.symbolic, k), getattr(s.symbolic, k)) for k in Symbolic._DERIVED]
    pairs += [
        (c.symbolic.q_positions, s.symbolic.q_positions),
        (c.q_pattern.columns, s.q_pattern.columns),
        (c.h_pattern.columns, s.h_pattern.columns),
        (c.h_pattern.transpose_positions, s.h_pattern.transpose_positions),
        (c.prior._stiffness_eigenvalues, s.prior._stiffness_eigenvalues),
    ]
    for rebuilt, original in pairs:
        assert rebuilt.dtype == original.dtype
        np.testing.assert_array_equal(rebuilt, original)
    # the factor-storage positions against the symbolic lookup of every entry
    qp, hp = s.q_pattern, s.h_pattern
    np.testing.assert_array_equal(c._q_store, s.symbolic.positions(qp.indices, qp.columns))
    trip = s._trip_pos
    expected = s.symbolic.positions(hp.indices[trip].astype(np.int64), hp.columns[trip])
    np.testing.assert_array_equal(c._trip_store, expected)
    # one copy of the arrays equal by construction, in the model and in its copy (plain
    # pickle writes a view as a copy; the compact writer keeps views of 64 KiB and more)
    for t in (s, c):
        assert t.h_pattern.indices is t.symbolic._indices
        assert t.h_pattern.indptr is t.symbolic._indptr
    assert np.shares_memory(s.prior._indices, s.q_pattern.indices)
    assert np.shares_memory(c.prior._indices, c.q_pattern.indices) == (writer == "compact")
    # the same results: value and gradient, factor, selected inverse
    value, grad = model.value_and_grad(theta)
    value_copy, grad_copy = copy.value_and_grad(theta)
    assert value_copy == value
    np.testing.assert_array_equal(grad_copy, grad)
    Q = s.prior_precision(theta[: s.n_theta_prior])
    weights = np.linspace(0.5, 2.0, s.n_obs)
    with s.hessian_pool.borrow() as item, c.hessian_pool.borrow() as item_copy:
        cf = s.factorize(item, Q, weights)
        cf_copy = c.factorize(item_copy, c.prior_precision(theta[: c.n_theta_prior]), weights)
        np.testing.assert_array_equal(cf_copy.factor._lx, cf.factor._lx)
        np.testing.assert_array_equal(
            c.covariance_on_prior_pattern(cf_copy), s.covariance_on_prior_pattern(cf)
        )
        np.testing.assert_array_equal(c.predictor_variance(cf_copy), s.predictor_variance(cf))


def test_start_from_data_only_reads_the_data_as_the_field_when_a_is_the_identity():
    """A square A with n entries of one at columns 0, ..., n-1 that is not the identity
    (node 0's row holds nodes 0 and 1, node 1's row none) keeps θ0; the identity itself,
    given or not, gives the data's start."""
    prior = models.Matern2D((40, 40))
    n = prior.n
    x = gm.cholesky(prior.precision(prior.theta_from(8.0, 0.7))).sample(
        rng=np.random.default_rng(1)
    )
    y = np.random.default_rng(2).poisson(np.exp(1.0 + x)).astype(float)
    shuffled = sp.csr_matrix(
        (np.ones(n), np.arange(n), np.r_[0, 2, np.arange(2, n + 1)]), shape=(n, n)
    )
    assert (shuffled != sp.identity(n)).nnz == 2
    s = LatentStructure(prior, likelihoods.Poisson(y), shuffled, None)
    np.testing.assert_array_equal(s.start_from_data(), s.theta0)
    start = LatentStructure(prior, likelihoods.Poisson(y), None, None).start_from_data()
    assert not np.array_equal(start, s.theta0)
    given = LatentStructure(prior, likelihoods.Poisson(y), sp.identity(n), None)
    np.testing.assert_array_equal(given.start_from_data(), start)


def test_the_design_transposes_are_views_left_out_of_pickles_and_remade_on_load():
    """Ã_fullᵀ and Ã_obsᵀ, made once for the Newton steps, share Ã's arrays, are not
    written into a pickle and are remade (equal, and sharing the copy's arrays) on load."""
    model = _matern_poisson_model()
    s = model.structure
    copy = pickle.loads(pickle.dumps(model)).structure
    assert not set(LatentStructure._TRANSPOSES) & set(s.__getstate__())
    for t in (s, copy):
        for name, matrix in (("A_full_T", t.A_full), ("A_obs_T", t.A_obs)):
            transpose = getattr(t, name)
            assert np.shares_memory(transpose.data, matrix.data)
            assert (transpose != matrix.T).nnz == 0
