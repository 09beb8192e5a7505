"""gm.GMRF: log-density, sampling, variances, conditioning and constraints vs dense references."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

import gmrf_core as gm
from tests.test_linalg import grid_laplacian, spde_like


@pytest.fixture
def field():
    Q = spde_like(5, kappa=0.8)
    mean = np.linspace(-1.0, 1.0, 25)
    return gm.GMRF(mean, Q), Q, mean


def test_logpdf_matches_scipy(field):
    gmrf, Q, mean = field
    cov = np.linalg.inv(Q.toarray())
    x = np.random.default_rng(0).standard_normal((4, 25))
    ref = stats.multivariate_normal(mean, cov).logpdf(x)
    np.testing.assert_allclose(gmrf.logpdf(x), ref, rtol=1e-10)
    assert gmrf.logpdf(x[0]) == pytest.approx(ref[0], rel=1e-10)


def test_marginal_variance_and_linear_combinations(field):
    gmrf, Q, _mean = field
    cov = np.linalg.inv(Q.toarray())
    np.testing.assert_allclose(gmrf.marginal_variance(), np.diag(cov), rtol=1e-10)
    A = sp.csr_matrix(([0.5, 0.5, 1.0], ([0, 0, 1], [3, 4, 10])), shape=(2, 25))
    np.testing.assert_allclose(gmrf.marginal_variance(A), np.diag(A @ cov @ A.T), rtol=1e-10)
    np.testing.assert_allclose(gmrf.marginal_sd(), np.sqrt(np.diag(cov)), rtol=1e-10)


@pytest.mark.cholmod
def test_sample_moments_against_cholmod(field):
    cholmod = pytest.importorskip("sksparse.cholmod")
    gmrf, Q, mean = field
    draws = gmrf.sample(size=20000, rng=np.random.default_rng(11))
    ref_factor = cholmod.cholesky(Q)
    z = np.random.default_rng(12).standard_normal((25, 20000))
    ref = (
        ref_factor.apply_Pt(ref_factor.solve_Lt(z, use_LDLt_decomposition=False)) + mean[:, None]
    ).T
    cov = np.linalg.inv(Q.toarray())
    for sample in (draws, ref):
        assert np.abs(sample.mean(axis=0) - mean).max() < 4 * np.sqrt(np.diag(cov).max() / 20000)
        assert np.abs(np.cov(sample, rowvar=False) - cov).max() < 0.06 * np.abs(cov).max()


def test_condition_matches_dense_posterior(field):
    gmrf, Q, mean = field
    rng = np.random.default_rng(1)
    A = sp.random(8, 25, density=0.2, random_state=2, format="csr")
    y = rng.standard_normal(8)
    r = rng.uniform(0.5, 2.0, 8)
    post = gmrf.condition(A, y, r)
    Qd = Q.toarray() + A.T.toarray() @ np.diag(r) @ A.toarray()
    mu = np.linalg.solve(Qd, Q.toarray() @ mean + A.T.toarray() @ (r * y))
    np.testing.assert_allclose(post.mean, mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.marginal_variance(), np.diag(np.linalg.inv(Qd)), rtol=1e-10)
    post_scalar = gmrf.condition(A, y, 2.0)
    post_matrix = gmrf.condition(A, y, sp.eye(8, format="csr") * 2.0)
    np.testing.assert_allclose(post_scalar.mean, post_matrix.mean, rtol=1e-12)


def _dense_constrained(Q, mean, A, e):
    cov = np.linalg.inv(Q)
    V = cov @ A.T
    S = A @ V
    mu = mean - V @ np.linalg.solve(S, A @ mean - e)
    cov_c = cov - V @ np.linalg.solve(S, V.T)
    return mu, cov_c, cov, S


def test_constraints_by_kriging_against_dense():
    Q = grid_laplacian(4, shift=0.3)
    n = Q.shape[0]
    mean = np.arange(n) / n
    A = np.vstack([np.ones(n), np.arange(n, dtype=float)])
    e = np.array([1.0, -2.0])
    gmrf = gm.GMRF(mean, Q, constraints=(A, e))
    mu, cov_c, cov, S = _dense_constrained(Q.toarray(), mean, A, e)
    np.testing.assert_allclose(gmrf.mean, mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gmrf.marginal_variance(), np.diag(cov_c), rtol=1e-9, atol=1e-12)
    B = sp.csr_matrix(([1.0, -1.0], ([0, 0], [0, 1])), shape=(1, n))
    np.testing.assert_allclose(gmrf.marginal_variance(B), np.diag(B @ cov_c @ B.T), rtol=1e-9)
    draws = gmrf.sample(size=3000, rng=3)
    np.testing.assert_allclose(draws @ A.T, np.tile(e, (3000, 1)), atol=1e-9)
    assert np.abs(np.cov(draws, rowvar=False) - cov_c).max() < 0.1 * np.abs(cov_c).max()
    # density on the constraint surface (Rue & Held 2005, eq. 2.32): compare with the
    # Gaussian density of the free coordinates in a basis of the null space of A
    x = draws[0]
    null = np.linalg.svd(A)[2][2:].T  # orthonormal basis of ker(A)
    cov_free = null.T @ cov_c @ null
    ref = stats.multivariate_normal(null.T @ mu, cov_free).logpdf(null.T @ x)
    # x -> (Ax, Nᵀx) has Jacobian |AAᵀ|^(1/2), so eq. 2.32 is exactly the density of the
    # free coordinates Nᵀx on the constraint plane
    assert gmrf.logpdf(x) == pytest.approx(ref, rel=1e-8)
    off = x + 0.1
    assert gmrf.logpdf(off) == -np.inf


def test_sum_to_zero_constraint():
    Q = grid_laplacian(1, 10)
    gmrf = gm.GMRF(0.0, Q, constraints=(np.ones((1, 10)), 0.0))
    assert abs(gmrf.sample(rng=0).sum()) < 1e-10
    assert abs(gmrf.mean.sum()) < 1e-12


def test_bad_input():
    Q = grid_laplacian(3)
    with pytest.raises(gm.InputError, match="mean"):
        gm.GMRF(np.zeros(4), Q)
    with pytest.raises(gm.InputError, match="NaN"):
        gm.GMRF(np.full(9, np.nan), Q)
    with pytest.raises(gm.InputError, match="columns"):
        gm.GMRF(0.0, Q, constraints=(np.ones((1, 4)), 0.0))
    with pytest.raises(gm.InputError, match="full row rank"):
        gm.GMRF(0.0, Q, constraints=(np.ones((2, 9)), [0.0, 0.0]))
    with pytest.raises(gm.InputError, match="pair"):
        gm.GMRF(0.0, Q, constraints=np.ones(9))
    gmrf = gm.GMRF(0.0, Q)
    with pytest.raises(gm.InputError, match="shape"):
        gmrf.logpdf(np.zeros(5))
    with pytest.raises(gm.InputError, match="columns"):
        gmrf.condition(np.ones((2, 4)), np.zeros(2), 1.0)
    with pytest.raises(gm.InputError, match="non-negative"):
        gmrf.condition(np.ones((2, 9)), np.zeros(2), -1.0)
    bad = Q.copy()
    bad.data = -bad.data
    with pytest.raises(gm.NotPositiveDefiniteError):
        gm.GMRF(0.0, bad)
